//! Synthetic camera frames, for tests and demos.
//!
//! A fixed outdoor scene (sky, a house wall, textured ground) drawn from a seed, with rectangular objects
//! placed on it, a light level, and fresh sensor noise per frame. Everything is deterministic: the same scene
//! and frame number give the same bytes, so tests do not flicker.

use std::io::Cursor;

use image::RgbImage;
use image::codecs::jpeg::JpegEncoder;

/// JPEG quality of synthetic frames, about what a camera sends over a thin link.
pub const SYNTH_QUALITY: u8 = 85;

/// A filled rectangle drawn over the scene.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthObject {
    /// Left column (may be off-frame).
    pub x: i32,
    /// Top row (may be off-frame).
    pub y: i32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
    /// Colour.
    pub rgb: [u8; 3],
}

/// A scene to render frames of.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Chooses the background texture and the noise.
    pub seed: u64,
    /// Standard deviation of per-pixel noise, grey levels (the same on all three channels, so greyscale sees
    /// all of it).
    pub noise_sigma: f32,
    /// Light: every channel becomes `value * gain + offset` before noise.
    pub gain: f32,
    /// See `gain`.
    pub offset: f32,
    /// Drawn in order over the background.
    pub objects: Vec<SynthObject>,
}

impl Scene {
    /// A daylight outdoor scene with noise σ = 8 and no objects.
    pub fn outdoor(width: u32, height: u32, seed: u64) -> Scene {
        Scene { width, height, seed, noise_sigma: 8.0, gain: 1.0, offset: 0.0, objects: Vec::new() }
    }

    /// The same scene with `object` added.
    pub fn with_object(mut self, object: SynthObject) -> Scene {
        self.objects.push(object);
        self
    }

    /// Frame number `frame`: only the noise differs between frame numbers.
    pub fn render(&self, frame: u64) -> RgbImage {
        let w = self.width.max(1) as usize;
        let coarse = Grid::new(self, 32);
        let fine = Grid::new(self, 8);
        let mut img = RgbImage::new(self.width, self.height);
        let buf: &mut [u8] = &mut img;
        for (i, px) in buf.chunks_exact_mut(3).enumerate() {
            px.copy_from_slice(&self.background((i % w) as u32, (i / w) as u32, &coarse, &fine));
        }
        for o in &self.objects {
            let x0 = o.x.clamp(0, self.width as i32) as usize;
            let y0 = o.y.clamp(0, self.height as i32) as usize;
            let x1 = (i64::from(o.x) + i64::from(o.w)).clamp(0, i64::from(self.width)) as usize;
            let y1 = (i64::from(o.y) + i64::from(o.h)).clamp(0, i64::from(self.height)) as usize;
            for y in y0..y1 {
                for px in buf[(y * w + x0) * 3..(y * w + x1) * 3].chunks_exact_mut(3) {
                    px.copy_from_slice(&o.rgb);
                }
            }
        }
        let mut rng = self.seed ^ frame.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        for px in buf.chunks_exact_mut(3) {
            let noise = gaussian(&mut rng) * self.noise_sigma;
            for c in px {
                *c = (f32::from(*c) * self.gain + self.offset + noise).round().clamp(0.0, 255.0) as u8;
            }
        }
        img
    }

    /// Frame number `frame` as a JPEG.
    pub fn jpeg(&self, frame: u64) -> Result<Vec<u8>, image::ImageError> {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(Cursor::new(&mut out), SYNTH_QUALITY).encode_image(&self.render(frame))?;
        Ok(out)
    }

    fn background(&self, x: u32, y: u32, coarse: &Grid, fine: &Grid) -> [u8; 3] {
        let (w, h) = (self.width.max(1) as f32, self.height.max(1) as f32);
        let (fx, fy) = (x as f32 / w, y as f32 / h);
        let horizon = 0.4;
        if fy < horizon {
            // Sky, lighter towards the horizon.
            let t = fy / horizon;
            return [(150.0 + 50.0 * t) as u8, (180.0 + 35.0 * t) as u8, (220.0 + 15.0 * t) as u8];
        }
        if (0.6..0.85).contains(&fx) && fy < 0.7 {
            // A plain grey house wall: flat areas are where noise alone must not look like motion.
            return [128, 124, 120];
        }
        // Ground: grass with patches of two sizes.
        let t = coarse.at(x, y) * 0.7 + fine.at(x, y) * 0.3;
        let v = (t - 0.5) * 60.0;
        [(90.0 + v) as u8, (115.0 + v) as u8, (70.0 + v * 0.5) as u8]
    }
}

/// Smooth noise in 0..1 with features about `cell` pixels across: random heights at the corners of a grid of
/// cells, interpolated between them.
struct Grid {
    cell: u32,
    columns: usize,
    heights: Vec<f32>,
}

impl Grid {
    fn new(scene: &Scene, cell: u32) -> Grid {
        let columns = (scene.width / cell + 2) as usize;
        let rows = (scene.height / cell + 2) as usize;
        let mut state = scene.seed ^ u64::from(cell).wrapping_mul(0xA24B_AED4_963E_E407);
        let heights =
            (0..columns * rows).map(|_| (splitmix64(&mut state) >> 40) as f32 / (1u64 << 24) as f32).collect();
        Grid { cell, columns, heights }
    }

    fn at(&self, x: u32, y: u32) -> f32 {
        let (cx, cy) = ((x / self.cell) as usize, (y / self.cell) as usize);
        let (tx, ty) = ((x % self.cell) as f32 / self.cell as f32, (y % self.cell) as f32 / self.cell as f32);
        let h = |i: usize, j: usize| self.heights[j * self.columns + i];
        let top = h(cx, cy) * (1.0 - tx) + h(cx + 1, cy) * tx;
        let bottom = h(cx, cy + 1) * (1.0 - tx) + h(cx + 1, cy + 1) * tx;
        top * (1.0 - ty) + bottom * ty
    }
}

/// The splitmix64 generator: small, fast and good enough for noise; advances `state`.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Roughly standard normal: the sum of four uniforms (Irwin–Hall), centred and scaled to unit variance. Its
/// tails stop at ±3.5σ, which real sensor noise hardly reaches either.
fn gaussian(state: &mut u64) -> f32 {
    let r = splitmix64(state);
    let sum = (r & 0xFFFF) + (r >> 16 & 0xFFFF) + (r >> 32 & 0xFFFF) + (r >> 48);
    (sum as f32 / 65536.0 - 2.0) * 3f32.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_deterministic_and_only_noise_differs() {
        let s = Scene::outdoor(64, 48, 9);
        assert_eq!(s.render(3), s.render(3));
        assert_ne!(s.render(3), s.render(4));
        let quiet = Scene { noise_sigma: 0.0, ..s };
        assert_eq!(quiet.render(3), quiet.render(4));
    }

    #[test]
    fn noise_has_the_requested_spread() {
        let mut state = 1;
        let xs: Vec<f32> = (0..20_000).map(|_| gaussian(&mut state)).collect();
        let mean = xs.iter().sum::<f32>() / xs.len() as f32;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / xs.len() as f32;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var.sqrt() - 1.0).abs() < 0.03, "{var}");
    }

    #[test]
    fn objects_are_drawn_and_clipped() {
        let s = Scene { noise_sigma: 0.0, ..Scene::outdoor(64, 48, 9) }.with_object(SynthObject {
            x: -5,
            y: 40,
            w: 10,
            h: 100,
            rgb: [250, 250, 250],
        });
        let img = s.render(0);
        assert_eq!(img.get_pixel(0, 47).0, [250, 250, 250]);
        assert_eq!(img.get_pixel(4, 40).0, [250, 250, 250]);
        assert_ne!(img.get_pixel(5, 40).0, [250, 250, 250]);
    }
}
