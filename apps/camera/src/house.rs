//! The house node's side: frames into the archive, then motion detection.
//!
//! [`House::receive`] takes one delivered payload. It returns only once the frame is durable in the archive
//! (or kept aside as unusable), so the caller may then acknowledge the delivery; an error means the archive
//! could not write, and the delivery must not be acknowledged.
//!
//! Motion detection compares each frame with the camera's previous one, so it runs per camera in frame-number
//! order. Bundles can arrive out of order (a retransmission after a cut session, two paths), so a frame that
//! arrives ahead of a missing one waits, decoded, until the gap fills, [`HouseConfig::reorder_frames`] frames
//! have piled up, or it has waited [`HouseConfig::reorder_wait_ms`] ([`House::tick`]); then the gap is passed
//! over. A frame that arrives after its successors were analysed is still compared with the current picture,
//! but does not become it. A frame already in the archive (same camera, time and number) is a duplicate:
//! acknowledged, not stored or analysed again. Frames waiting for a gap are in the archive already; if the
//! house stops before analysing them, their motion is not looked for again.

use std::collections::BTreeMap;
use std::path::PathBuf;

use dtn_sensor::{Batch, SensorKind};
use dtn_vision::{Archive, ArchiveError, MotionConfig, MotionDetector, MotionEvent, Outcome, ThumbError};
use dtn_vision::{check_camera_name, decode_jpeg, thumbnail_image};
use image::DynamicImage;

use crate::frames::camera_name;

/// How the house works.
#[derive(Debug, Clone)]
pub struct HouseConfig {
    /// Motion detection tuning, the same for every camera.
    pub motion: MotionConfig,
    /// Frames per camera held back waiting for a missing one.
    pub reorder_frames: usize,
    /// Longest a frame waits for a missing one, ms.
    pub reorder_wait_ms: u64,
    /// Longest side of event thumbnails.
    pub thumb_side: u32,
}

impl Default for HouseConfig {
    fn default() -> Self {
        HouseConfig {
            motion: MotionConfig::default(),
            reorder_frames: 16,
            reorder_wait_ms: 10_000,
            thumb_side: dtn_vision::DEFAULT_THUMB_SIDE,
        }
    }
}

/// Why the house could not take a frame. The delivery must not be acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum HouseError {
    /// The archive could not write.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A thumbnail could not be made.
    #[error(transparent)]
    Thumb(#[from] ThumbError),
}

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A new frame, now durable in the archive.
    Stored {
        /// The camera.
        camera: String,
        /// Its frame number.
        seq: u64,
        /// Where it is.
        path: PathBuf,
    },
    /// A frame the archive had already.
    Duplicate {
        /// The camera.
        camera: String,
        /// Its frame number.
        seq: u64,
    },
    /// Not a usable frame: kept aside under `rejected/`.
    Rejected {
        /// The camera, if the payload said.
        camera: Option<String>,
        /// Why.
        reason: String,
        /// Where the payload is kept.
        kept: PathBuf,
    },
}

/// What analysis found.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// Motion, recorded in the event log with a thumbnail.
    Motion(MotionEvent),
    /// The whole picture changed brightness (not motion).
    Lighting {
        /// The camera.
        camera: String,
        /// The frame.
        seq: u64,
        /// Fraction of pixels that changed.
        changed_fraction: f32,
    },
}

/// Counters of one camera since the house started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CameraCounts {
    /// New frames stored.
    pub stored: u64,
    /// Frames that came again.
    pub duplicates: u64,
    /// Frames kept aside (corrupt JPEG).
    pub corrupt: u64,
    /// Frames analysed after a later one.
    pub late: u64,
    /// Gaps passed over (frames never seen by the time analysis went on).
    pub gaps: u64,
    /// Motion events.
    pub events: u64,
    /// Lighting changes.
    pub lighting: u64,
}

struct Waiting {
    time_ms: u64,
    image: DynamicImage,
    since_ms: u64,
}

struct Track {
    detector: MotionDetector,
    /// The next frame number to analyse.
    next: Option<u64>,
    waiting: BTreeMap<u64, Waiting>,
}

/// The house: the archive, a motion detector per camera, counters.
pub struct House {
    archive: Archive,
    config: HouseConfig,
    tracks: BTreeMap<String, Track>,
    counts: BTreeMap<String, CameraCounts>,
    /// Payloads that named no usable camera.
    unattributed: u64,
    index_stale: bool,
}

impl House {
    /// Opens (or creates) the archive in `dir`.
    pub fn open(dir: impl Into<PathBuf>, config: HouseConfig) -> Result<House, HouseError> {
        let archive = Archive::open(dir.into())?;
        Ok(House {
            archive,
            config,
            tracks: BTreeMap::new(),
            counts: BTreeMap::new(),
            unattributed: 0,
            index_stale: true,
        })
    }

    /// The archive.
    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    /// Counters per camera.
    pub fn counts(&self) -> &BTreeMap<String, CameraCounts> {
        &self.counts
    }

    /// Payloads kept aside that named no usable camera (not a camera batch at all).
    pub fn unattributed(&self) -> u64 {
        self.unattributed
    }

    /// Takes one delivered payload (`id` names it, for what is kept aside) at `now_ms`; see the module
    /// documentation.
    pub fn receive(&mut self, id: &str, payload: &[u8], now_ms: u64) -> Result<(Received, Vec<Seen>), HouseError> {
        let batch = match Batch::decode(payload) {
            Ok(b) => b,
            Err(e) => return Ok((self.reject(None, id, payload, format!("not a sensor batch: {e}"))?, Vec::new())),
        };
        let camera = camera_name(&batch);
        let image = match (&batch.image, batch.kind) {
            (Some(img), SensorKind::CameraStill) => img,
            _ => {
                let why = format!("a {} batch, not a camera frame", batch.kind.name());
                return Ok((self.reject(None, id, payload, why)?, Vec::new()));
            }
        };
        if let Err(e) = check_camera_name(&camera) {
            return Ok((self.reject(None, id, payload, e.to_string())?, Vec::new()));
        }
        let seq = batch.seq;
        // The capture time; frames of a camera without a clock are filed by its uptime.
        let time_ms = batch.readings.first().map_or(batch.created, |r| r.t);
        if self.archive.frame_path(&camera, time_ms, seq)?.exists() {
            self.counts.entry(camera.clone()).or_default().duplicates += 1;
            return Ok((Received::Duplicate { camera, seq }, Vec::new()));
        }
        let decoded = match decode_jpeg(image) {
            Ok(img) => img,
            Err(e) => {
                // Kept as the camera sent it (the whole batch), so it can be looked at.
                let got = self.reject(Some(&camera), id, payload, format!("frame {seq}: {e}"))?;
                return Ok((got, Vec::new()));
            }
        };
        let path = self.archive.store_frame(&camera, time_ms, seq, image)?;
        self.counts.entry(camera.clone()).or_default().stored += 1;
        self.index_stale = true;
        let seen = self.analyse(&camera, seq, time_ms, decoded, now_ms)?;
        Ok((Received::Stored { camera, seq, path }, seen))
    }

    /// Keeps a payload aside that is known not to be a frame.
    pub fn keep_aside(&mut self, id: &str, payload: &[u8], reason: String) -> Result<Received, HouseError> {
        self.reject(None, id, payload, reason)
    }

    fn reject(
        &mut self,
        camera: Option<&str>,
        id: &str,
        payload: &[u8],
        reason: String,
    ) -> Result<Received, HouseError> {
        let kept = self.archive.keep_rejected(id, payload, &reason)?;
        match camera {
            Some(c) => self.counts.entry(c.to_string()).or_default().corrupt += 1,
            None => self.unattributed += 1,
        }
        Ok(Received::Rejected { camera: camera.map(str::to_string), reason, kept })
    }

    fn analyse(
        &mut self,
        camera: &str,
        seq: u64,
        time_ms: u64,
        image: DynamicImage,
        now_ms: u64,
    ) -> Result<Vec<Seen>, HouseError> {
        let limit = self.config.reorder_frames as u64;
        let track = self.tracks.entry(camera.to_string()).or_insert_with(|| Track {
            detector: MotionDetector::new(camera, self.config.motion.clone()),
            next: None,
            waiting: BTreeMap::new(),
        });
        let next = *track.next.get_or_insert(seq);
        let mut out = Vec::new();
        if seq < next && next - seq > 4 * limit.max(1) {
            // Far behind: the camera started numbering again (a restart without its counter).
            track.next = Some(seq);
        } else if seq < next {
            self.counts.entry(camera.to_string()).or_default().late += 1;
            let outcome = track.detector.process_image(time_ms, seq, &image);
            self.record(camera, seq, outcome, &image, &mut out)?;
            return Ok(out);
        }
        let track = self.tracks.get_mut(camera).expect("inserted above");
        track.waiting.insert(seq, Waiting { time_ms, image, since_ms: now_ms });
        let skip = track.waiting.len() > self.config.reorder_frames;
        self.drain(camera, skip, &mut out)?;
        Ok(out)
    }

    /// Analyses the camera's waiting frames that are next in order; with `skip`, first passes over the gap
    /// before the oldest waiting frame.
    fn drain(&mut self, camera: &str, skip: bool, out: &mut Vec<Seen>) -> Result<(), HouseError> {
        let Some(track) = self.tracks.get_mut(camera) else { return Ok(()) };
        if skip && let Some((&first, _)) = track.waiting.first_key_value() {
            let next = track.next.unwrap_or(first);
            if first > next {
                self.counts.entry(camera.to_string()).or_default().gaps += first - next;
            }
            track.next = Some(first);
        }
        loop {
            let Some(track) = self.tracks.get_mut(camera) else { return Ok(()) };
            let Some(next) = track.next else { return Ok(()) };
            let Some(w) = track.waiting.remove(&next) else { return Ok(()) };
            track.next = Some(next + 1);
            let outcome = track.detector.process_image(w.time_ms, next, &w.image);
            self.record(camera, next, outcome, &w.image, out)?;
        }
    }

    fn record(
        &mut self,
        camera: &str,
        seq: u64,
        outcome: Outcome,
        image: &DynamicImage,
        out: &mut Vec<Seen>,
    ) -> Result<(), HouseError> {
        let counts = self.counts.entry(camera.to_string()).or_default();
        match outcome {
            Outcome::Motion(e) => {
                counts.events += 1;
                let thumb = thumbnail_image(image, self.config.thumb_side, Some(e.bbox))?;
                self.archive.record_event(&e, &thumb)?;
                self.index_stale = true;
                out.push(Seen::Motion(e));
            }
            Outcome::LightingChange { changed_fraction } => {
                counts.lighting += 1;
                out.push(Seen::Lighting { camera: camera.to_string(), seq, changed_fraction });
            }
            Outcome::Baseline | Outcome::Still { .. } => {}
        }
        Ok(())
    }

    /// Passes over gaps that frames have waited on longer than the configured wait.
    pub fn tick(&mut self, now_ms: u64) -> Result<Vec<Seen>, HouseError> {
        let wait = self.config.reorder_wait_ms;
        let stale: Vec<String> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.waiting.values().any(|w| now_ms.saturating_sub(w.since_ms) >= wait))
            .map(|(c, _)| c.clone())
            .collect();
        let mut out = Vec::new();
        for camera in stale {
            while self
                .tracks
                .get(&camera)
                .is_some_and(|t| t.waiting.values().any(|w| now_ms.saturating_sub(w.since_ms) >= wait))
            {
                self.drain(&camera, true, &mut out)?;
            }
        }
        Ok(out)
    }

    /// Analyses every waiting frame (gaps are passed over) and rewrites the index: for stopping.
    pub fn finish(&mut self) -> Result<Vec<Seen>, HouseError> {
        let mut out = Vec::new();
        let cameras: Vec<String> = self.tracks.keys().cloned().collect();
        for camera in cameras {
            while self.tracks.get(&camera).is_some_and(|t| !t.waiting.is_empty()) {
                self.drain(&camera, true, &mut out)?;
            }
        }
        self.write_index()?;
        Ok(out)
    }

    /// Rewrites `index.html` if anything changed since it was last written.
    pub fn write_index(&mut self) -> Result<(), HouseError> {
        if self.index_stale {
            self.archive.write_index()?;
            self.index_stale = false;
        }
        Ok(())
    }
}
