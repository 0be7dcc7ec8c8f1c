//! Motion detection by frame differencing.
//!
//! Frames are first reduced to a small grey working frame (at most [`MotionConfig::max_work_width`] wide,
//! averaged and lightly blurred against noise). Each camera has a [`MotionDetector`] holding a background of
//! that size, by default simply the previous frame. Frames reach the house node as bundles, seconds to
//! minutes apart; over such gaps a slowly updated average would keep a fading trail of everything that
//! passed, so "what changed since the last frame" is the default, and an average is available through
//! [`MotionConfig::background_alpha`].
//!
//! Per frame: the signed difference to the background, minus its median (a small exposure or cloud shift
//! moves every pixel alike and is not motion), thresholded against sensor noise; then the connected regions of
//! changed pixels, ignoring specks. The score is the fraction of the frame covered by the remaining regions,
//! and the box is the largest region's. With a previous-frame background a moving object changes both where it
//! was and where it is, so the box covers both positions when they are close (within
//! [`MotionConfig::join_gap`]), and one of them when the object jumped farther between frames.
//!
//! Lights switching on or off change most of the picture in one direction at once. That is reported as
//! [`Outcome::LightingChange`] instead of motion, and the new picture becomes the background.

use image::DynamicImage;
use serde::{Deserialize, Serialize};

use crate::decode::{DecodeError, decode_jpeg};
use crate::regions::{Region, find_regions};
use crate::workframe::WorkFrame;

/// Tuning of a [`MotionDetector`]. Pixel counts and grey levels refer to the working frame.
#[derive(Debug, Clone, PartialEq)]
pub struct MotionConfig {
    /// Widest working frame; the original is averaged down to fit.
    pub max_work_width: u32,
    /// A working pixel has changed when it differs from the background by more than this many grey levels
    /// (after removing the frame's median difference).
    pub noise_threshold: u8,
    /// Connected regions smaller than this are noise.
    pub min_region_pixels: u32,
    /// Changed pixels up to this many unchanged pixels apart belong to the same region.
    pub join_gap: u32,
    /// An event is reported when the score (fraction of the working frame covered by regions) exceeds this.
    pub event_threshold: f32,
    /// Weight of the new frame when updating the background: 1.0 replaces it with the new frame, smaller values
    /// keep a running average.
    pub background_alpha: f32,
    /// A frame in which at least this fraction of pixels became brighter (or darker) is a lighting change.
    /// Above 1.0 turns the rule off; a uniform change is then absorbed by the median offset, and a non-uniform
    /// one is motion.
    pub lighting_fraction: f32,
}

impl Default for MotionConfig {
    fn default() -> Self {
        MotionConfig {
            max_work_width: 160,
            // Noise of σ = 8 grey levels shrinks to σ ≈ 0.7 after 4×4 averaging and the 3×3 blur, and the
            // difference of two such frames to σ ≈ 1. Even a camera sending frames no larger than the working
            // size (no averaging) ends at σ ≈ 3.8, so 16 is over 4σ there and never reached here; an object
            // has to differ from what it covers by 16 grey levels to be seen, which most do.
            noise_threshold: 16,
            // 6 working pixels is about 10×10 original pixels at 640×480.
            min_region_pixels: 6,
            // 4 working pixels are 16 px at 640×480: joins the two edges of a plain object that moved less than
            // its size, and parts of one person, without merging people a few metres apart.
            join_gap: 4,
            // 0.2 % of the frame: a 25×25 px object at 640×480.
            event_threshold: 0.002,
            background_alpha: 1.0,
            lighting_fraction: 0.8,
        }
    }
}

/// A rectangle in a frame's pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BBox {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl BBox {
    /// Centre, as (x, y).
    pub fn centre(&self) -> (f32, f32) {
        (self.x as f32 + self.w as f32 / 2.0, self.y as f32 + self.h as f32 / 2.0)
    }

    /// Intersection over union with `other` (0 when either is empty).
    pub fn iou(&self, other: &BBox) -> f32 {
        // In u64: boxes read back from the event log are not trusted to stay inside u32 when added up.
        let span = |a: u32, aw: u32, b: u32, bw: u32| {
            (u64::from(a) + u64::from(aw)).min(u64::from(b) + u64::from(bw)).saturating_sub(u64::from(a.max(b)))
        };
        let inter = span(self.x, self.w, other.x, other.w) * span(self.y, self.h, other.y, other.h);
        let union = u64::from(self.w) * u64::from(self.h) + u64::from(other.w) * u64::from(other.h) - inter;
        if union == 0 { 0.0 } else { inter as f32 / union as f32 }
    }

    /// Whether `(x, y)` lies inside.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        x >= self.x && y >= self.y && x - self.x < self.w && y - self.y < self.h
    }
}

/// Motion seen in one frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MotionEvent {
    /// The camera's name.
    pub camera: String,
    /// When the frame was taken, Unix milliseconds.
    pub time_ms: u64,
    /// The frame's sequence number from the camera.
    pub seq: u64,
    /// Fraction of the frame that changed (in changed regions, not counting specks), 0..=1.
    pub score: f32,
    /// The largest changed region, in the original frame's pixels.
    pub bbox: BBox,
}

/// What one frame showed.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The frame became the background with nothing to compare it to: the first frame, or one whose size differs
    /// from the background's.
    Baseline,
    /// Nothing moved (beyond specks), or less than the event threshold.
    Still {
        /// The frame's score, below the event threshold.
        score: f32,
    },
    /// Something moved.
    Motion(MotionEvent),
    /// Most of the picture became brighter or darker at once (lights, or the sun behind a cloud); not reported as
    /// motion. Whatever moved in this very frame is missed, but the next frame is compared with the new lighting.
    LightingChange {
        /// Fraction of pixels that changed in the dominant direction.
        changed_fraction: f32,
    },
}

impl Outcome {
    /// The motion event, if there was one.
    pub fn event(&self) -> Option<&MotionEvent> {
        match self {
            Outcome::Motion(e) => Some(e),
            _ => None,
        }
    }

    /// The motion event, if there was one.
    pub fn into_event(self) -> Option<MotionEvent> {
        match self {
            Outcome::Motion(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the frame was a lighting change.
    pub fn is_lighting_change(&self) -> bool {
        matches!(self, Outcome::LightingChange { .. })
    }
}

struct Background {
    /// Size of the frames it was made from.
    source: (u32, u32),
    levels: Vec<f32>,
    /// Capture time of the newest frame folded in.
    time_ms: u64,
}

/// Motion detection for one camera.
pub struct MotionDetector {
    camera: String,
    config: MotionConfig,
    background: Option<Background>,
}

impl MotionDetector {
    /// A detector for `camera`, with no background yet.
    pub fn new(camera: impl Into<String>, config: MotionConfig) -> MotionDetector {
        MotionDetector { camera: camera.into(), config, background: None }
    }

    /// The camera's name.
    pub fn camera(&self) -> &str {
        &self.camera
    }

    /// The tuning in use.
    pub fn config(&self) -> &MotionConfig {
        &self.config
    }

    /// Forgets the background; the next frame is a [`Outcome::Baseline`].
    pub fn reset(&mut self) {
        self.background = None;
    }

    /// Decodes a JPEG frame and examines it. A frame that fails to decode leaves the background as it was.
    pub fn process_jpeg(&mut self, time_ms: u64, seq: u64, jpeg: &[u8]) -> Result<Outcome, DecodeError> {
        let img = decode_jpeg(jpeg)?;
        Ok(self.process_image(time_ms, seq, &img))
    }

    /// Examines a decoded frame (for callers that decode once for several uses).
    pub fn process_image(&mut self, time_ms: u64, seq: u64, img: &DynamicImage) -> Outcome {
        let frame = WorkFrame::from_image(img, self.config.max_work_width);
        self.process_work_frame(time_ms, seq, frame)
    }

    fn process_work_frame(&mut self, time_ms: u64, seq: u64, frame: WorkFrame) -> Outcome {
        if frame.pixels.is_empty() {
            // A zero-sized frame shows nothing; it should not cost the background either.
            return Outcome::Still { score: 0.0 };
        }
        let bg = match self.background.as_mut() {
            Some(bg) if bg.source == (frame.source_width, frame.source_height) => bg,
            _ => {
                self.background = Some(Background::from_frame(frame, time_ms));
                return Outcome::Baseline;
            }
        };
        let cfg = &self.config;
        let threshold = f32::from(cfg.noise_threshold);
        let diff: Vec<f32> = frame.pixels.iter().zip(&bg.levels).map(|(&p, &b)| f32::from(p) - b).collect();
        let n = diff.len() as f32;

        let brighter = diff.iter().filter(|&&d| d > threshold).count() as f32 / n;
        let darker = diff.iter().filter(|&&d| d < -threshold).count() as f32 / n;
        let dominant = brighter.max(darker);
        if dominant >= cfg.lighting_fraction {
            if time_ms >= bg.time_ms {
                *bg = Background::from_frame(frame, time_ms);
            }
            return Outcome::LightingChange { changed_fraction: dominant };
        }

        let offset = median(&diff);
        let mask: Vec<bool> = diff.iter().map(|&d| (d - offset).abs() > threshold).collect();
        let regions = find_regions(&mask, frame.width, frame.height, cfg.min_region_pixels, cfg.join_gap);
        let score = regions.iter().map(|r| r.area).sum::<u32>() as f32 / n;
        let largest = regions.iter().max_by_key(|r| r.area).copied();

        bg.fold_in(frame.pixels.as_slice(), time_ms, cfg.background_alpha);
        match largest {
            Some(region) if score > cfg.event_threshold => Outcome::Motion(MotionEvent {
                camera: self.camera.clone(),
                time_ms,
                seq,
                score,
                bbox: to_source(&region, &frame),
            }),
            _ => Outcome::Still { score },
        }
    }
}

impl Background {
    fn from_frame(frame: WorkFrame, time_ms: u64) -> Background {
        let levels = frame.pixels.iter().map(|&p| f32::from(p)).collect();
        Background { source: (frame.source_width, frame.source_height), levels, time_ms }
    }

    fn fold_in(&mut self, pixels: &[u8], time_ms: u64, alpha: f32) {
        // Bundles can arrive out of order. A late frame is still compared (differences are symmetric), but the
        // background must not step back in time, or the next in-order frame would be compared with the past.
        if time_ms < self.time_ms {
            return;
        }
        self.time_ms = time_ms;
        let alpha = if alpha.is_finite() { alpha.clamp(0.0, 1.0) } else { 1.0 };
        for (b, &p) in self.levels.iter_mut().zip(pixels) {
            *b += alpha * (f32::from(p) - *b);
        }
    }
}

/// Median of the differences, to the nearest grey level: a 511-bin histogram instead of a sort.
fn median(diff: &[f32]) -> f32 {
    let mut hist = [0u32; 511];
    for &d in diff {
        hist[(d.round().clamp(-255.0, 255.0) + 255.0) as usize] += 1;
    }
    let half = diff.len().div_ceil(2) as u32;
    let mut seen = 0;
    for (i, &count) in hist.iter().enumerate() {
        seen += count;
        if seen >= half {
            return i as f32 - 255.0;
        }
    }
    0.0
}

fn to_source(r: &Region, frame: &WorkFrame) -> BBox {
    let s = frame.scale;
    let (x, y) = ((r.x0 * s).min(frame.source_width), (r.y0 * s).min(frame.source_height));
    let right = ((r.x1 + 1) * s).min(frame.source_width);
    let bottom = ((r.y1 + 1) * s).min(frame.source_height);
    BBox { x, y, w: right - x, h: bottom - y }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(w: u32, h: u32, level: u8) -> WorkFrame {
        let img = image::GrayImage::from_pixel(w, h, image::Luma([level]));
        WorkFrame::from_image(&DynamicImage::ImageLuma8(img), 160)
    }

    fn with_block(level: u8, block: u8, x: u32, y: u32, side: u32) -> WorkFrame {
        let mut img = image::GrayImage::from_pixel(640, 480, image::Luma([level]));
        for yy in y..y + side {
            for xx in x..x + side {
                img.put_pixel(xx, yy, image::Luma([block]));
            }
        }
        WorkFrame::from_image(&DynamicImage::ImageLuma8(img), 160)
    }

    #[test]
    fn first_frame_and_size_change_are_baselines() {
        let mut d = MotionDetector::new("cam", MotionConfig::default());
        assert_eq!(d.process_work_frame(0, 0, flat(640, 480, 100)), Outcome::Baseline);
        assert_eq!(d.process_work_frame(1, 1, flat(320, 240, 200)), Outcome::Baseline);
        assert_eq!(d.process_work_frame(2, 2, flat(320, 240, 200)), Outcome::Still { score: 0.0 });
    }

    #[test]
    fn box_is_mapped_to_source_pixels() {
        let mut d = MotionDetector::new("cam", MotionConfig::default());
        d.process_work_frame(0, 0, flat(640, 480, 100));
        let e = d.process_work_frame(1, 7, with_block(100, 220, 400, 100, 40)).into_event().expect("event");
        assert_eq!((e.camera.as_str(), e.time_ms, e.seq), ("cam", 1, 7));
        // The blur widens the region by one working pixel (4 px) on each side.
        assert_eq!(e.bbox, BBox { x: 396, y: 96, w: 48, h: 48 });
    }

    #[test]
    fn a_late_frame_does_not_replace_the_background() {
        let mut d = MotionDetector::new("cam", MotionConfig::default());
        d.process_work_frame(1000, 1, flat(640, 480, 100));
        assert!(d.process_work_frame(500, 0, with_block(100, 220, 0, 0, 40)).event().is_some());
        assert_eq!(d.process_work_frame(2000, 2, flat(640, 480, 100)), Outcome::Still { score: 0.0 });
    }

    #[test]
    fn a_moderate_exposure_change_is_not_motion() {
        let gradient = |gain: f32| {
            let img =
                image::GrayImage::from_fn(640, 480, |x, _| image::Luma([((60.0 + x as f32 * 0.22) * gain) as u8]));
            WorkFrame::from_image(&DynamicImage::ImageLuma8(img), 160)
        };
        let mut d = MotionDetector::new("cam", MotionConfig::default());
        d.process_work_frame(0, 0, gradient(1.0));
        // 12 % more exposure: bright pixels gain up to 24 levels, dark ones 7, so about half the frame passes
        // the noise threshold — too little for the lighting rule, and all of it without the median offset.
        match d.process_work_frame(1, 1, gradient(1.12)) {
            Outcome::Still { score } => assert_eq!(score, 0.0),
            other => panic!("expected no motion, got {other:?}"),
        }
    }

    #[test]
    fn lighting_rule_and_what_happens_without_it() {
        let mut d = MotionDetector::new("cam", MotionConfig::default());
        d.process_work_frame(0, 0, flat(640, 480, 100));
        assert_eq!(d.process_work_frame(1, 1, flat(640, 480, 160)), Outcome::LightingChange { changed_fraction: 1.0 });
        // Not a late frame's business to change the background.
        assert!(d.process_work_frame(0, 2, flat(640, 480, 40)).is_lighting_change());
        assert_eq!(d.process_work_frame(3, 3, flat(640, 480, 160)), Outcome::Still { score: 0.0 });

        let off = MotionConfig { lighting_fraction: 1.1, ..MotionConfig::default() };
        let mut d = MotionDetector::new("cam", off);
        d.process_work_frame(0, 0, flat(640, 480, 100));
        assert_eq!(d.process_work_frame(1, 1, flat(640, 480, 160)), Outcome::Still { score: 0.0 });
    }

    #[test]
    fn median_of_differences() {
        assert_eq!(median(&[0.0, 1.0, 2.0, 100.0, 100.0]), 2.0);
        assert_eq!(median(&[-3.0]), -3.0);
    }

    #[test]
    fn bbox_helpers() {
        let a = BBox { x: 0, y: 0, w: 10, h: 10 };
        let b = BBox { x: 5, y: 0, w: 10, h: 10 };
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(a.iou(&BBox { x: 20, y: 20, w: 0, h: 0 }), 0.0);
        assert!(a.contains(9, 9) && !a.contains(10, 0));
        assert_eq!(b.centre(), (10.0, 5.0));
    }
}
