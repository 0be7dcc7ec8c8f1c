//! Decoding camera frames.
//!
//! Frames come from the network, so every failure is a [`DecodeError`], and the decoder runs with limits: a
//! dozen header bytes can claim a 60000×60000 image, and that has to be refused before anything is allocated
//! for it.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, Limits};

/// Widest or tallest frame accepted. Above any camera we expect (a 12 MP still is 4000 px wide), far below
/// what would exhaust the house node's memory.
pub const MAX_FRAME_SIDE: u32 = 10_000;

/// Most memory the decoder may allocate for one frame.
pub const MAX_DECODE_BYTES: u64 = 256 << 20;

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// No bytes at all (an empty payload is a sender bug, not a broken image, so it is told apart).
    #[error("frame is empty")]
    Empty,
    /// Not a JPEG, a damaged one, or one larger than the limits.
    #[error("frame is not a decodable JPEG: {0}")]
    Undecodable(#[source] image::ImageError),
}

/// Decodes a JPEG frame within [`MAX_FRAME_SIDE`] and [`MAX_DECODE_BYTES`].
pub fn decode_jpeg(jpeg: &[u8]) -> Result<DynamicImage, DecodeError> {
    if jpeg.is_empty() {
        return Err(DecodeError::Empty);
    }
    // The format is fixed rather than guessed: cameras send JPEG, and guessing would hand network bytes to
    // whichever decoder the magic number picks.
    let mut reader = ImageReader::with_format(Cursor::new(jpeg), ImageFormat::Jpeg);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_FRAME_SIDE);
    limits.max_image_height = Some(MAX_FRAME_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader.decode().map_err(DecodeError::Undecodable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::Scene;

    #[test]
    fn decodes_a_synthetic_frame() {
        let jpeg = Scene::outdoor(64, 48, 1).jpeg(0).expect("encode");
        let img = decode_jpeg(&jpeg).expect("decode");
        assert_eq!((img.width(), img.height()), (64, 48));
    }

    #[test]
    fn garbage_and_empty_input_are_typed_errors() {
        assert!(matches!(decode_jpeg(&[]), Err(DecodeError::Empty)));
        assert!(matches!(decode_jpeg(b"not a jpeg at all"), Err(DecodeError::Undecodable(_))));
        let jpeg = Scene::outdoor(64, 48, 1).jpeg(0).expect("encode");
        // Cut inside the headers, before any scan data.
        assert!(matches!(decode_jpeg(&jpeg[..40]), Err(DecodeError::Undecodable(_))));
    }

    #[test]
    fn a_header_claiming_a_huge_image_is_refused() {
        let mut jpeg = Scene::outdoor(64, 48, 1).jpeg(0).expect("encode");
        let sof = sof_offset(&jpeg).expect("baseline SOF marker");
        // SOF0 layout: FF C0, length (2), precision (1), height (2), width (2).
        jpeg[sof + 5..sof + 7].copy_from_slice(&60_000u16.to_be_bytes());
        jpeg[sof + 7..sof + 9].copy_from_slice(&60_000u16.to_be_bytes());
        assert!(matches!(decode_jpeg(&jpeg), Err(DecodeError::Undecodable(_))));
    }

    #[test]
    fn damaged_frames_never_panic() {
        let jpeg = Scene::outdoor(64, 48, 7).jpeg(0).expect("encode");
        let mut state = 42u64;
        for _ in 0..200 {
            let mut bad = jpeg.clone();
            for _ in 0..4 {
                let r = crate::synth::splitmix64(&mut state);
                let at = (r as usize) % bad.len();
                bad[at] = (r >> 32) as u8;
            }
            let cut = (crate::synth::splitmix64(&mut state) as usize) % (bad.len() + 1);
            bad.truncate(cut.max(1));
            // Either outcome is fine; reaching the next iteration is the test.
            let _ = decode_jpeg(&bad);
        }
    }

    fn sof_offset(jpeg: &[u8]) -> Option<usize> {
        jpeg.windows(2).position(|w| w == [0xFF, 0xC0])
    }
}
