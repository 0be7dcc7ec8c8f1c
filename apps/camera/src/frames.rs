//! A camera's frames as bundles.
//!
//! Each frame travels as one [`Batch`] of kind [`SensorKind::CameraStill`]: the camera's name as the station,
//! [`CAMERA_SENSOR`] as the sensor, one reading (capture time; width and height) and the JPEG. The house names
//! the camera in its archive with [`camera_name`].

use dtn_sensor::stills::{Still, StillError, encode_jpeg};
use dtn_sensor::{Batch, Clock, ImageDir, Reading, SensorKind};
use dtn_vision::synth::{Scene, SynthObject};

/// The sensor name of a camera node's one camera (the same as a weather station's camera).
pub const CAMERA_SENSOR: &str = "cam0";

/// The batch carrying frame `seq` of `camera`, taken at `time_ms` (Unix ms).
pub fn frame_batch(camera: &str, seq: u64, time_ms: u64, still: Still) -> Batch {
    let mut b = Batch::new(camera, CAMERA_SENSOR, SensorKind::CameraStill, seq, Clock::Unix);
    b.created = time_ms;
    b.readings = vec![Reading { t: time_ms, values: vec![still.width as f32, still.height as f32] }];
    b.image = Some(still.jpeg);
    b
}

/// The camera's name in the house's archive: the station's name for its camera [`CAMERA_SENSOR`], else
/// `station-sensor` (a station with several cameras).
pub fn camera_name(b: &Batch) -> String {
    if b.sensor == CAMERA_SENSOR { b.station.clone() } else { format!("{}-{}", b.station, b.sensor.replace('/', "-")) }
}

/// Frames of a synthetic outdoor scene ([`dtn_vision::synth`]) with, optionally, a box that walks across the
/// ground and stops now and then. Where the box is in every frame is known, so what motion detection should
/// find is known too ([`SyntheticCamera::moved`]).
#[derive(Debug, Clone)]
pub struct SyntheticCamera {
    scene: Scene,
    quality: u8,
    walking: bool,
}

/// Frames the object walks, then frames it stands still, over and over.
const WALK_FRAMES: u64 = 8;
const REST_FRAMES: u64 = 4;

impl SyntheticCamera {
    /// A `width` × `height` camera. With `walking`, a box walks to and fro; without, the same box stands still
    /// (a parked car: present, never moving).
    pub fn new(width: u32, height: u32, seed: u64, walking: bool, quality: u8) -> SyntheticCamera {
        let (width, height) = (width.clamp(16, 8192), height.clamp(16, 8192));
        SyntheticCamera { scene: Scene::outdoor(width, height, seed), quality: quality.clamp(1, 100), walking }
    }

    /// Whether the object walks.
    pub fn walking(&self) -> bool {
        self.walking
    }

    fn side(&self) -> u32 {
        (self.scene.height / 8).max(4)
    }

    /// The object in frame `seq`.
    pub fn object_at(&self, seq: u64) -> SynthObject {
        let side = self.side();
        let span = u64::from(self.scene.width.saturating_sub(side)).max(1);
        let steps = if self.walking {
            seq / (WALK_FRAMES + REST_FRAMES) * WALK_FRAMES + (seq % (WALK_FRAMES + REST_FRAMES)).min(WALK_FRAMES)
        } else {
            0
        };
        // To and fro across the free width, half its size per step.
        let p = (steps * u64::from(side / 2).max(1)) % (2 * span);
        let x = if p <= span { p } else { 2 * span - p };
        let y = self.scene.height * 7 / 10;
        SynthObject { x: x as i32, y: y as i32, w: side, h: side, rgb: [235, 230, 220] }
    }

    /// Whether the object is somewhere else in frame `seq` than in frame `seq - 1`: motion a detector comparing
    /// consecutive frames should report.
    pub fn moved(&self, seq: u64) -> bool {
        seq > 0 && self.object_at(seq) != self.object_at(seq - 1)
    }

    /// Frame `seq` as a JPEG.
    pub fn frame(&self, seq: u64) -> Result<Still, StillError> {
        let scene = self.scene.clone().with_object(self.object_at(seq));
        encode_jpeg(&scene.render(seq), self.quality)
    }
}

/// Where a camera's frames come from.
#[derive(Debug)]
pub enum FrameSource {
    /// A synthetic scene.
    Synthetic(SyntheticCamera),
    /// The images of a directory, in name order, over and over.
    Dir(ImageDir),
}

impl FrameSource {
    /// Frame number `seq`. A directory image that cannot be read is an error, and the next call goes on
    /// with the image after it.
    pub fn frame(&mut self, seq: u64) -> Result<Still, StillError> {
        match self {
            FrameSource::Synthetic(s) => s.frame(seq),
            FrameSource::Dir(d) => d.next_still(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walker_walks_rests_and_stays_in_the_frame() {
        let cam = SyntheticCamera::new(320, 240, 1, true, 80);
        let moved: Vec<bool> = (0..24).map(|s| cam.moved(s)).collect();
        assert!(!moved[0]);
        assert!(moved[1..=8].iter().all(|&m| m), "{moved:?}");
        assert!(moved[9..=12].iter().all(|&m| !m), "{moved:?}");
        assert!(moved[13], "{moved:?}");
        for s in 0..500 {
            let o = cam.object_at(s);
            assert!(o.x >= 0 && o.x as u32 + o.w <= 320, "{s}: {o:?}");
        }
        let parked = SyntheticCamera::new(320, 240, 1, false, 80);
        assert!((0..50).all(|s| !parked.moved(s)));
    }

    #[test]
    fn a_frame_is_a_camera_batch() {
        let still = SyntheticCamera::new(64, 48, 2, true, 70).frame(3).expect("frame");
        let b = frame_batch("garden", 3, 1_700_000_000_000, still);
        let back = Batch::decode(&b.encode()).expect("decodes");
        assert_eq!((back.kind, back.seq, camera_name(&back).as_str()), (SensorKind::CameraStill, 3, "garden"));
        assert_eq!(back.readings[0].values, vec![64.0, 48.0]);
        assert!(back.image.is_some_and(|j| j.starts_with(&[0xFF, 0xD8])));
    }
}
