//! Thumbnails for the archive's index page.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, Rgb, RgbImage, imageops};

use crate::decode::{DecodeError, decode_jpeg};
use crate::motion::BBox;

/// Longest side of a thumbnail unless asked otherwise.
pub const DEFAULT_THUMB_SIDE: u32 = 160;

/// JPEG quality of thumbnails: they are looked at small, and there are many of them.
const THUMB_QUALITY: u8 = 80;

/// Outline colour: red is rare in gardens and rooms, so the box stays visible.
const BOX_COLOUR: Rgb<u8> = Rgb([255, 32, 32]);

/// Why a thumbnail could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ThumbError {
    /// The frame did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Encoding the thumbnail failed.
    #[error("thumbnail encoding: {0}")]
    Encode(#[source] image::ImageError),
}

/// A JPEG thumbnail of a JPEG frame, at most `max_side` pixels wide and tall, with `bbox` (in the frame's
/// pixels) outlined if given.
pub fn thumbnail(jpeg: &[u8], max_side: u32, bbox: Option<BBox>) -> Result<Vec<u8>, ThumbError> {
    thumbnail_image(&decode_jpeg(jpeg)?, max_side, bbox)
}

/// As [`thumbnail`], from a decoded frame.
pub fn thumbnail_image(img: &DynamicImage, max_side: u32, bbox: Option<BBox>) -> Result<Vec<u8>, ThumbError> {
    let (w, h) = (img.width().max(1), img.height().max(1));
    let max_side = max_side.max(1);
    // Never enlarged: a small frame stays as sharp as it came.
    let factor = (max_side as f32 / w.max(h) as f32).min(1.0);
    let (tw, th) = (((w as f32 * factor).round() as u32).max(1), ((h as f32 * factor).round() as u32).max(1));
    let mut thumb = imageops::thumbnail(&img.to_rgb8(), tw, th);
    if let Some(b) = bbox {
        let sx = tw as f32 / w as f32;
        let sy = th as f32 / h as f32;
        let x0 = (b.x as f32 * sx).floor() as u32;
        let y0 = (b.y as f32 * sy).floor() as u32;
        let x1 = ((b.x.saturating_add(b.w) as f32 * sx).ceil() as u32).saturating_sub(1);
        let y1 = ((b.y.saturating_add(b.h) as f32 * sy).ceil() as u32).saturating_sub(1);
        outline(&mut thumb, x0, y0, x1, y1, 2);
    }
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(Cursor::new(&mut out), THUMB_QUALITY)
        .encode_image(&thumb)
        .map_err(ThumbError::Encode)?;
    Ok(out)
}

/// Draws the inclusive rectangle's outline, `thickness` pixels inward, clipped to the image.
fn outline(img: &mut RgbImage, x0: u32, y0: u32, x1: u32, y1: u32, thickness: u32) {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 || x0 >= w || y0 >= h {
        return;
    }
    let (x1, y1) = (x1.clamp(x0, w - 1), y1.clamp(y0, h - 1));
    for y in y0..=y1 {
        for x in x0..=x1 {
            let on_edge = x - x0 < thickness || x1 - x < thickness || y - y0 < thickness || y1 - y < thickness;
            if on_edge {
                img.put_pixel(x, y, BOX_COLOUR);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::Scene;

    #[test]
    fn fits_the_longest_side_and_keeps_the_aspect() {
        let jpeg = Scene::outdoor(320, 240, 3).jpeg(0).expect("encode");
        let t = decode_jpeg(&thumbnail(&jpeg, 160, None).expect("thumb")).expect("decode thumb");
        assert_eq!((t.width(), t.height()), (160, 120));
        let small = Scene::outdoor(100, 50, 3).jpeg(0).expect("encode");
        let t = decode_jpeg(&thumbnail(&small, 160, None).expect("thumb")).expect("decode thumb");
        assert_eq!((t.width(), t.height()), (100, 50));
    }

    #[test]
    fn draws_the_box_where_the_frame_had_it() {
        let jpeg = Scene::outdoor(320, 240, 3).jpeg(0).expect("encode");
        let bbox = BBox { x: 100, y: 60, w: 80, h: 60 };
        let t = decode_jpeg(&thumbnail(&jpeg, 160, Some(bbox)).expect("thumb")).expect("decode").to_rgb8();
        // Halved: the left edge runs down x = 50..52 from y = 30 to 59.
        let p = t.get_pixel(50, 45);
        assert!(p[0] > 180 && p[1] < 110 && p[2] < 110, "{p:?}");
        let inside = t.get_pixel(70, 45);
        assert!(!(inside[0] > 180 && inside[1] < 110), "{inside:?}");
    }

    #[test]
    fn a_box_beyond_the_frame_is_clipped() {
        let jpeg = Scene::outdoor(64, 48, 3).jpeg(0).expect("encode");
        let far = BBox { x: 60, y: 40, w: 1000, h: 1000 };
        assert!(thumbnail(&jpeg, 32, Some(far)).is_ok());
        let outside = BBox { x: 5000, y: 5000, w: 10, h: 10 };
        assert!(thumbnail(&jpeg, 32, Some(outside)).is_ok());
    }

    #[test]
    fn undecodable_input_is_a_typed_error() {
        assert!(matches!(thumbnail(b"\xFF\xD8\xFF\xE0garbage", 160, None), Err(ThumbError::Decode(_))));
    }
}
