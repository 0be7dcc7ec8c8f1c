//! The small grey frame that motion detection works on.
//!
//! One working pixel is the mean of a k×k block of the original, with k chosen so the result is at most
//! `max_width` wide. Averaging divides independent sensor noise by k and makes the cost of everything after
//! it independent of the camera's resolution. A 3×3 box blur then removes what averaging leaves of noise and
//! of JPEG's 8×8 block edges, which would otherwise flicker from frame to frame.

use image::DynamicImage;

/// A reduced, blurred greyscale frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkFrame {
    /// Working width in pixels.
    pub width: u32,
    /// Working height in pixels.
    pub height: u32,
    /// Original pixels per working pixel along each axis.
    pub scale: u32,
    /// Width of the frame it was made from.
    pub source_width: u32,
    /// Height of the frame it was made from.
    pub source_height: u32,
    /// Row-major grey levels.
    pub pixels: Vec<u8>,
}

impl WorkFrame {
    /// Reduces a decoded frame to at most `max_width` working pixels across (at least 1).
    pub fn from_image(img: &DynamicImage, max_width: u32) -> WorkFrame {
        match img {
            DynamicImage::ImageLuma8(g) => Self::reduce(g.as_raw(), 1, g.width(), g.height(), max_width),
            DynamicImage::ImageRgb8(rgb) => Self::reduce(rgb.as_raw(), 3, rgb.width(), rgb.height(), max_width),
            // JPEG decodes to one of the two above; anything else takes a conversion first.
            other => {
                let rgb = other.to_rgb8();
                Self::reduce(rgb.as_raw(), 3, rgb.width(), rgb.height(), max_width)
            }
        }
    }

    /// `src` holds `channels` (1: grey, 3: RGB) bytes per pixel. Grey is taken while averaging, so no full-size
    /// grey copy is made.
    fn reduce(src: &[u8], channels: usize, sw: u32, sh: u32, max_width: u32) -> WorkFrame {
        let scale = sw.div_ceil(max_width.max(1)).max(1);
        // Rounding up keeps the right and bottom edges: their partial blocks average fewer pixels.
        let (w, h) = (sw.div_ceil(scale), sh.div_ceil(scale));
        let (wu, su, swu) = (w as usize, scale as usize, sw as usize);
        // Sums of grey levels times 256 (BT.601 weights 77, 150, 29), so RGB needs no division per pixel.
        let mut sums = vec![0u64; wu];
        let mut counts = vec![0u64; wu];
        let mut reduced = Vec::with_capacity(wu * h as usize);
        for by in 0..h as usize {
            sums.fill(0);
            counts.fill(0);
            for y in (by * su)..((by + 1) * su).min(sh as usize) {
                let row = &src[y * swu * channels..(y + 1) * swu * channels];
                for (bx, block) in row.chunks(su * channels).enumerate() {
                    sums[bx] += match channels {
                        1 => block.iter().map(|&p| u64::from(p) << 8).sum::<u64>(),
                        _ => block
                            .chunks_exact(3)
                            .map(|p| 77 * u64::from(p[0]) + 150 * u64::from(p[1]) + 29 * u64::from(p[2]))
                            .sum::<u64>(),
                    };
                    counts[bx] += (block.len() / channels) as u64;
                }
            }
            reduced.extend(sums.iter().zip(&counts).map(|(&s, &c)| {
                let c = c.max(1) << 8;
                ((s + c / 2) / c) as u8
            }));
        }
        WorkFrame {
            width: w,
            height: h,
            scale,
            source_width: sw,
            source_height: sh,
            pixels: box_blur3(&reduced, wu, h as usize),
        }
    }
}

/// 3×3 mean, edges clamped, done as two 1-D passes.
fn box_blur3(src: &[u8], w: usize, h: usize) -> Vec<u8> {
    let mut horizontal = vec![0u16; src.len()];
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        for x in 0..w {
            let left = row[x.saturating_sub(1)];
            let right = row[(x + 1).min(w - 1)];
            horizontal[y * w + x] = u16::from(left) + u16::from(row[x]) + u16::from(right);
        }
    }
    let mut out = vec![0u8; src.len()];
    for y in 0..h {
        let up = y.saturating_sub(1) * w;
        let down = (y + 1).min(h - 1) * w;
        for x in 0..w {
            let sum = horizontal[up + x] + horizontal[y * w + x] + horizontal[down + x];
            out[y * w + x] = ((sum + 4) / 9) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduces_to_the_working_width_and_keeps_partial_blocks() {
        let img = image::GrayImage::from_pixel(641, 481, image::Luma([100]));
        let f = WorkFrame::from_image(&DynamicImage::ImageLuma8(img), 160);
        assert_eq!(f.scale, 5);
        assert_eq!((f.width, f.height), (129, 97));
        assert!(f.pixels.iter().all(|&p| p == 100));
    }

    #[test]
    fn rgb_is_reduced_to_grey() {
        let rgb = image::RgbImage::from_pixel(320, 240, image::Rgb([200, 100, 50]));
        let f = WorkFrame::from_image(&DynamicImage::ImageRgb8(rgb), 160);
        let grey = (77 * 200 + 150 * 100 + 29 * 50 + 128) / 256;
        assert_eq!((f.width, f.height, f.scale), (160, 120, 2));
        assert!(f.pixels.iter().all(|&p| u32::from(p) == grey), "{}", f.pixels[0]);
    }

    #[test]
    fn small_frames_are_not_enlarged() {
        let img = image::GrayImage::from_pixel(100, 1, image::Luma([7]));
        let f = WorkFrame::from_image(&DynamicImage::ImageLuma8(img), 160);
        assert_eq!((f.width, f.height, f.scale), (100, 1, 1));
        assert!(f.pixels.iter().all(|&p| p == 7));
    }

    #[test]
    fn averaging_places_a_bright_block_at_the_reduced_coordinates() {
        let mut img = image::GrayImage::from_pixel(640, 480, image::Luma([0]));
        for y in 200..240 {
            for x in 320..360 {
                img.put_pixel(x, y, image::Luma([200]));
            }
        }
        let f = WorkFrame::from_image(&DynamicImage::ImageLuma8(img), 160);
        assert_eq!(f.scale, 4);
        // Block centre (working 80..90, 50..60) keeps full brightness; one pixel outside is a blurred edge.
        assert_eq!(f.pixels[55 * 160 + 85], 200);
        assert!(f.pixels[55 * 160 + 79] > 0 && f.pixels[55 * 160 + 79] < 200);
        assert_eq!(f.pixels[55 * 160 + 77], 0);
    }
}
