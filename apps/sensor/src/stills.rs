//! Camera stills: a synthetic outdoor scene ([`Scene`]), or the images in a directory ([`ImageDir`]). Both
//! give JPEG bytes and the image's size ([`Still`]).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use image::{ImageFormat, ImageReader, Limits, Rgb, RgbImage};

use crate::rng::{SplitMix64, hash, signed, unit};

/// Largest image file [`ImageDir`] reads: a still travels in one bundle, so a larger one is refused rather
/// than loaded into memory.
pub const MAX_IMAGE_BYTES: u64 = 16 << 20;

/// Largest width or height of a scene, and of an image decoded from a directory.
pub const MAX_SIDE: u32 = 8192;

/// One still: a JPEG and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Still {
    /// The JPEG file's bytes.
    pub jpeg: Vec<u8>,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
}

/// Why a still could not be had.
#[derive(Debug, thiserror::Error)]
pub enum StillError {
    /// The image directory cannot be listed.
    #[error("cannot list image directory {path}: {source}")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The image directory holds no JPEG or PNG files.
    #[error("no .jpg, .jpeg or .png files in {path}")]
    Empty {
        /// The directory.
        path: PathBuf,
    },
    /// An image file cannot be read.
    #[error("cannot read image {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An image file is larger than [`MAX_IMAGE_BYTES`].
    #[error("image {path} is {size} bytes, more than the {MAX_IMAGE_BYTES} accepted")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// An image file is corrupt, truncated, too large in pixels, or not a JPEG or PNG.
    #[error("image {path} cannot be decoded: {source}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// Why.
        source: image::ImageError,
    },
    /// JPEG encoding failed.
    #[error("cannot encode a JPEG: {0}")]
    Encode(#[source] image::ImageError),
}

/// Encodes an RGB image as a JPEG of `quality` (1–100).
pub fn encode_jpeg(img: &RgbImage, quality: u8) -> Result<Still, StillError> {
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, quality.clamp(1, 100)).encode_image(img).map_err(StillError::Encode)?;
    Ok(Still { jpeg, width: img.width(), height: img.height() })
}

/// A rectangle in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
}

#[derive(Debug, Clone)]
struct Tree {
    x: f64,
    base_y: f64,
    height: f64,
}

#[derive(Debug, Clone)]
struct Cloud {
    x0: f64,
    y: f64,
    size: f64,
    px_per_s: f64,
    // Puffs as (dx, dy, radius) relative to the cloud's size.
    puffs: Vec<(f64, f64, f64)>,
}

/// A synthetic outdoor view: sky with sun and drifting clouds, a horizon, grass, trees, optionally someone
/// walking across, and a little sensor noise. Light follows the time of day. The layout comes from the seed;
/// what changes with time (light, sun, clouds, the walker, noise) comes from the time, so a frame is a
/// function of (seed, time).
#[derive(Debug, Clone)]
pub struct Scene {
    seed: u64,
    width: u32,
    height: u32,
    quality: u8,
    utc_offset_min: i32,
    walker_period_ms: Option<u64>,
    horizon: f64,
    trees: Vec<Tree>,
    clouds: Vec<Cloud>,
}

impl Scene {
    /// A `width` × `height` view (each side 1..=[`MAX_SIDE`], clamped), JPEG quality 80, nobody walking.
    pub fn new(seed: u64, width: u32, height: u32) -> Self {
        let (width, height) = (width.clamp(1, MAX_SIDE), height.clamp(1, MAX_SIDE));
        let (w, h) = (width as f64, height as f64);
        let mut r = SplitMix64::new(seed);
        let horizon = h * r.range(0.5, 0.62);
        let mut trees: Vec<Tree> = (0..r.range(3.0, 8.0) as usize)
            .map(|_| {
                let base_y = r.range(horizon + 0.02 * h, horizon + 0.3 * (h - horizon));
                // Nearer (lower) trees look taller.
                let near = (base_y - horizon) / (h - horizon).max(1.0);
                Tree { x: r.range(0.0, w), base_y, height: h * (0.12 + 0.35 * near) * r.range(0.8, 1.2) }
            })
            .collect();
        // Far trees first, so near ones are drawn over them.
        trees.sort_by(|a, b| a.base_y.total_cmp(&b.base_y));
        let clouds = (0..r.range(2.0, 6.0) as usize)
            .map(|_| Cloud {
                x0: r.range(0.0, w),
                y: r.range(0.08, 0.7) * horizon,
                size: r.range(0.05, 0.12) * w,
                px_per_s: r.range(0.002, 0.01) * w,
                puffs: (0..4).map(|_| (r.range(-1.0, 1.0), r.range(-0.25, 0.2), r.range(0.35, 0.7))).collect(),
            })
            .collect();
        Scene { seed, width, height, quality: 80, utc_offset_min: 0, walker_period_ms: None, horizon, trees, clouds }
    }

    /// JPEG quality, 1–100.
    pub fn with_quality(mut self, quality: u8) -> Self {
        self.quality = quality.clamp(1, 100);
        self
    }

    /// Local time minus UTC, minutes: where the sun is and how light it is follow local time.
    pub fn with_utc_offset_min(mut self, minutes: i32) -> Self {
        self.utc_offset_min = minutes;
        self
    }

    /// Someone walks across the grass and back every `period_ms`, so that consecutive stills differ where
    /// they are (something for motion detection to find).
    pub fn with_walker(mut self, period_ms: u64) -> Self {
        self.walker_period_ms = Some(period_ms.max(1));
        self
    }

    /// Width and height.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Where the walker is at `t_ms`, if there is one.
    pub fn walker_box(&self, t_ms: u64) -> Option<Rect> {
        let period = self.walker_period_ms?;
        let (w, h) = (self.width as f64, self.height as f64);
        let bw = (0.06 * w).max(2.0).min(w);
        let bh = (0.3 * (h - self.horizon)).max(2.0).min(h);
        // There and back: a triangle wave over the free width.
        let phase = (t_ms % period) as f64 / period as f64;
        let along = 1.0 - (2.0 * phase - 1.0).abs();
        let x = along * (w - bw);
        let y = (self.horizon + 0.55 * (h - self.horizon) - bh / 2.0).clamp(0.0, h - bh);
        Some(Rect { x: x as u32, y: y as u32, width: bw as u32, height: bh as u32 })
    }

    /// Daylight in [0, 1], the sun's height above the horizon in [-1, 1], and the local hour.
    fn light(&self, t_ms: u64) -> (f64, f64, f64) {
        let day = 86_400_000i128;
        let local = (t_ms as i128 + self.utc_offset_min as i128 * 60_000).rem_euclid(day) as f64;
        let hour = local / 3_600_000.0;
        let elevation = (std::f64::consts::PI * (hour - 6.0) / 12.0).sin();
        let s = ((elevation + 0.2) / 0.5).clamp(0.0, 1.0);
        // Never fully dark: a camera at night still sees a porch light's worth.
        (0.2 + 0.8 * s * s * (3.0 - 2.0 * s), elevation, hour)
    }

    /// The frame at `t_ms` (Unix ms).
    pub fn render(&self, t_ms: u64) -> RgbImage {
        let (w, h) = (self.width as f64, self.height as f64);
        let (daylight, elevation, hour) = self.light(t_ms);
        // Morning sun on the left, evening sun on the right.
        let sun = (elevation > 0.0)
            .then(|| ((hour - 6.0) / 12.0 * w, self.horizon * (1.0 - 0.85 * elevation), (0.04 * w.min(h)).max(2.0)));
        let t_s = t_ms as f64 / 1000.0;
        let clouds: Vec<(f64, f64, f64)> = self
            .clouds
            .iter()
            .flat_map(|c| {
                let span = w + 4.0 * c.size;
                let x = (c.x0 + t_s * c.px_per_s).rem_euclid(span) - 2.0 * c.size;
                c.puffs.iter().map(move |&(dx, dy, r)| (x + dx * c.size, c.y + dy * c.size, r * c.size))
            })
            .collect();

        let mut img = RgbImage::new(self.width, self.height);
        for (px, py, pixel) in img.enumerate_pixels_mut() {
            let (x, y) = (px as f64 + 0.5, py as f64 + 0.5);
            let mut c = if y < self.horizon {
                let f = y / self.horizon;
                let mut c = lerp([55.0, 110.0, 200.0], [175.0, 200.0, 230.0], f);
                if let Some((sx, sy, sr)) = sun {
                    let d = ((x - sx).powi(2) + (y - sy).powi(2)).sqrt() / sr;
                    let glow = if d < 1.0 { 1.0 } else { (1.0 / (d * d)).min(1.0) * 0.5 };
                    c = lerp(c, [255.0, 245.0, 210.0], glow);
                }
                let cover = clouds
                    .iter()
                    .map(|&(cx, cy, r)| {
                        let d = ((x - cx).powi(2) + ((y - cy) * 1.6).powi(2)).sqrt() / r;
                        (1.2 - d).clamp(0.0, 0.4) / 0.4
                    })
                    .fold(0.0f64, f64::max);
                lerp(c, [235.0, 235.0, 240.0], cover)
            } else {
                let f = (y - self.horizon) / (h - self.horizon).max(1.0);
                // Grass texture is fixed in place: it does not flicker from frame to frame.
                let tuft = signed(hash(self.seed, &[px as u64 / 3, py as u64 / 2])) * 10.0;
                lerp([95.0, 135.0, 65.0], [45.0, 95.0, 35.0], f).map(|v| v + tuft)
            };
            for tree in &self.trees {
                if let Some(tc) = tree.colour(x, y) {
                    c = tc;
                }
            }
            *pixel = Rgb(c.map(|v| v.clamp(0.0, 255.0) as u8));
        }
        if let Some(b) = self.walker_box(t_ms) {
            for yy in b.y..(b.y + b.height).min(self.height) {
                for xx in b.x..(b.x + b.width).min(self.width) {
                    // A red jacket over dark trousers.
                    let lower = yy - b.y > b.height * 11 / 20;
                    img.put_pixel(xx, yy, if lower { Rgb([40, 40, 60]) } else { Rgb([190, 40, 35]) });
                }
            }
        }
        let mut noise = SplitMix64::new(hash(self.seed, &[t_ms]));
        for pixel in img.pixels_mut() {
            let n = (unit(noise.next_u64()) - 0.5) * 8.0;
            *pixel = Rgb(pixel.0.map(|v| (v as f64 * daylight + n).clamp(0.0, 255.0) as u8));
        }
        img
    }

    /// The frame at `t_ms`, as a JPEG.
    pub fn still(&self, t_ms: u64) -> Result<Still, StillError> {
        encode_jpeg(&self.render(t_ms), self.quality)
    }
}

impl Tree {
    /// The tree's colour at (x, y), if it covers it: a trunk and a round crown.
    fn colour(&self, x: f64, y: f64) -> Option<[f64; 3]> {
        let trunk_w = self.height * 0.08;
        let crown_r = self.height * 0.3;
        let crown_y = self.base_y - self.height + crown_r;
        let d = ((x - self.x).powi(2) + (y - crown_y).powi(2)).sqrt();
        if d < crown_r {
            // Lit from above: the crown is lighter at its top.
            let shade = 1.0 - 0.35 * ((y - crown_y) / crown_r + 1.0) / 2.0;
            return Some([40.0 * shade, 105.0 * shade, 40.0 * shade]);
        }
        let in_trunk = (x - self.x).abs() < trunk_w / 2.0 && y <= self.base_y && y > crown_y;
        in_trunk.then_some([90.0, 65.0, 40.0])
    }
}

fn lerp(a: [f64; 3], b: [f64; 3], f: f64) -> [f64; 3] {
    let f = f.clamp(0.0, 1.0);
    [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f]
}

/// The images of a directory, one at a time in name order, starting again after the last. JPEG files are
/// passed on as they are (after checking they decode); PNG files are converted to JPEG.
///
/// The directory is listed again each time the cycle starts over, so images added or removed while running
/// are noticed.
#[derive(Debug)]
pub struct ImageDir {
    dir: PathBuf,
    files: Vec<PathBuf>,
    next: usize,
    quality: u8,
}

impl ImageDir {
    /// Lists `dir`; an error if it cannot be listed or holds no images.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StillError> {
        let dir = dir.into();
        let files = list_images(&dir)?;
        if files.is_empty() {
            return Err(StillError::Empty { path: dir });
        }
        Ok(ImageDir { dir, files, next: 0, quality: 85 })
    }

    /// JPEG quality for converted PNG files, 1–100.
    pub fn with_quality(mut self, quality: u8) -> Self {
        self.quality = quality.clamp(1, 100);
        self
    }

    /// The images of the current cycle, in the order they are given.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The next image. A file that cannot be read or decoded gives its error and is passed over: the next
    /// call goes on to the file after it.
    pub fn next_still(&mut self) -> Result<Still, StillError> {
        if self.next >= self.files.len() {
            self.next = 0;
            // On a listing error the old list stays, so the next call carries on with it.
            let files = list_images(&self.dir)?;
            self.files = files;
        }
        let Some(path) = self.files.get(self.next) else {
            return Err(StillError::Empty { path: self.dir.clone() });
        };
        self.next += 1;
        load_still(path, self.quality)
    }
}

fn list_images(dir: &Path) -> Result<Vec<PathBuf>, StillError> {
    let err = |source| StillError::ReadDir { path: dir.to_path_buf(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        // Dot files are usually a camera's or an editor's half-written temporaries.
        let image = matches!(ext.as_deref(), Some("jpg" | "jpeg" | "png")) && !name.starts_with('.');
        if image && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads one image file as a still.
pub fn load_still(path: &Path, quality: u8) -> Result<Still, StillError> {
    let read_err = |source| StillError::Read { path: path.to_path_buf(), source };
    let size = std::fs::metadata(path).map_err(read_err)?.len();
    if size > MAX_IMAGE_BYTES {
        return Err(StillError::TooLarge { path: path.to_path_buf(), size });
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    let decode_err = |source| StillError::Decode { path: path.to_path_buf(), source };
    let mut reader = ImageReader::new(Cursor::new(&bytes[..])).with_guessed_format().map_err(read_err)?;
    let format = reader.format();
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(256 << 20);
    reader.limits(limits);
    // Decoding the whole image (not just its header) is what catches truncated and corrupt files.
    let img = reader.decode().map_err(decode_err)?;
    match format {
        Some(ImageFormat::Jpeg) => Ok(Still { jpeg: bytes, width: img.width(), height: img.height() }),
        _ => encode_jpeg(&img.to_rgb8(), quality),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-03-20 12:00 UTC.
    const NOON: u64 = 1_710_936_000_000;

    fn mean_abs_diff(a: &RgbImage, b: &RgbImage, r: Option<Rect>) -> f64 {
        let inside = |x: u32, y: u32| r.is_none_or(|r| x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height);
        let (mut sum, mut n) = (0.0, 0.0);
        for (x, y, p) in a.enumerate_pixels() {
            if inside(x, y) {
                let q = b.get_pixel(x, y);
                sum += (0..3).map(|i| (p[i] as f64 - q[i] as f64).abs()).sum::<f64>() / 3.0;
                n += 1.0;
            }
        }
        sum / n
    }

    #[test]
    fn a_scene_is_a_function_of_seed_and_time() {
        let s = Scene::new(3, 96, 64);
        assert_eq!(s.render(NOON), Scene::new(3, 96, 64).render(NOON));
        assert_ne!(s.render(NOON), Scene::new(4, 96, 64).render(NOON));
        // Sky above, grass below, brighter by day than by night.
        let img = s.render(NOON);
        let sky = img.get_pixel(2, 2);
        let grass = img.get_pixel(2, 62);
        assert!(sky[2] > sky[1] && grass[1] > grass[2] && grass[1] > grass[0], "{sky:?} {grass:?}");
        let night = s.render(NOON + 12 * 3_600_000);
        let brightness = |i: &RgbImage| i.pixels().map(|p| p.0.iter().map(|&v| v as u64).sum::<u64>()).sum::<u64>();
        assert!(brightness(&night) * 2 < brightness(&img));
    }

    #[test]
    fn the_walker_moves_and_the_rest_holds_still() {
        let s = Scene::new(8, 160, 120).with_walker(60_000);
        let (a, b) = (s.walker_box(NOON), s.walker_box(NOON + 15_000));
        assert!(a.is_some() && b.is_some() && a != b);
        let (ia, ib) = (s.render(NOON), s.render(NOON + 15_000));
        // Where the walker was, the frame changed a lot; over the whole frame, little (noise, clouds).
        assert!(mean_abs_diff(&ia, &ib, a) > 40.0, "{}", mean_abs_diff(&ia, &ib, a));
        assert!(mean_abs_diff(&ia, &ib, None) < 8.0, "{}", mean_abs_diff(&ia, &ib, None));
        assert_eq!(Scene::new(8, 160, 120).walker_box(NOON), None);
    }

    #[test]
    fn a_still_is_a_jpeg_of_the_frame() {
        let still = Scene::new(1, 128, 72).with_quality(70).still(NOON).expect("encodes");
        assert_eq!((still.width, still.height), (128, 72));
        assert_eq!(&still.jpeg[..2], &[0xff, 0xd8]);
        let back = image::load_from_memory(&still.jpeg).expect("decodes");
        assert_eq!((back.width(), back.height()), (128, 72));
        // Degenerate sizes are clamped, not a panic.
        let tiny = Scene::new(0, 0, 0).with_walker(1000).still(NOON).expect("encodes");
        assert_eq!((tiny.width, tiny.height), (1, 1));
    }

    #[test]
    fn a_directory_is_cycled_in_name_order_and_bad_files_are_passed_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let scene = Scene::new(2, 40, 30);
        std::fs::write(dir.path().join("b.jpg"), scene.still(NOON).expect("jpeg").jpeg).expect("write");
        let mut png = Vec::new();
        scene.render(NOON).write_to(&mut Cursor::new(&mut png), ImageFormat::Png).expect("png");
        std::fs::write(dir.path().join("a.PNG"), png).expect("write");
        std::fs::write(dir.path().join("c.jpeg"), b"not a jpeg at all").expect("write");
        std::fs::write(dir.path().join("notes.txt"), b"ignored").expect("write");
        std::fs::write(dir.path().join(".d.jpg"), b"ignored").expect("write");

        let mut d = ImageDir::open(dir.path()).expect("open");
        let names: Vec<_> = d.files().iter().filter_map(|p| p.file_name()?.to_str()).collect();
        assert_eq!(names, ["a.PNG", "b.jpg", "c.jpeg"]);
        for _round in 0..2 {
            let a = d.next_still().expect("png converted");
            assert_eq!((a.width, a.height, &a.jpeg[..2]), (40, 30, &[0xff, 0xd8][..]));
            let b = d.next_still().expect("jpeg");
            assert_eq!(b.jpeg, scene.still(NOON).expect("jpeg").jpeg);
            match d.next_still() {
                Err(StillError::Decode { path, .. }) => assert!(path.ends_with("c.jpeg")),
                other => panic!("{other:?}"),
            }
        }
        // A file removed meanwhile is noticed at the next cycle.
        std::fs::remove_file(dir.path().join("a.PNG")).expect("remove");
        assert_eq!(d.next_still().expect("jpeg").width, 40);
        assert_eq!(d.files().len(), 2);
    }

    #[test]
    fn unusable_directories_are_typed_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(ImageDir::open(dir.path()), Err(StillError::Empty { .. })));
        let missing = dir.path().join("missing");
        match ImageDir::open(&missing) {
            Err(StillError::ReadDir { path, .. }) => assert_eq!(path, missing),
            other => panic!("{other:?}"),
        }
        // A JPEG cut short.
        let jpeg = Scene::new(2, 64, 48).still(NOON).expect("jpeg").jpeg;
        std::fs::write(dir.path().join("cut.jpg"), &jpeg[..jpeg.len() / 3]).expect("write");
        let mut d = ImageDir::open(dir.path()).expect("open");
        assert!(matches!(d.next_still(), Err(StillError::Decode { .. })));
    }
}
