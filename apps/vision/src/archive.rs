//! The house node's long-term archive of camera frames and motion events.
//!
//! Layout under the archive directory:
//!
//! ```text
//! <camera>/<YYYY-MM-DD>/<HHMMSS.mmm>-<seq>.jpg   every stored frame (UTC date and time of capture)
//! <camera>/thumbs/<YYYY-MM-DD>T<HHMMSS.mmm>-<seq>.jpg   thumbnails of frames with motion
//! events.jsonl                                    one line per motion event, appended
//! index.html                                      overview for a browser, rewritten by write_index
//! rejected/<name>.bin, rejected/<name>.txt        what arrived but is no frame (corrupt JPEG, not a camera
//!                                                 batch), kept as received, with the reason
//! ```
//!
//! Plain files and directories, so the archive can be browsed, copied and pruned (delete old day
//! directories) with ordinary tools. Frames and pages are written atomically; the event log is append-only
//! and repaired on open (see [`crate::eventlog`]).
//!
//! The archive keeps all events and the per-day frame counts in memory; counting walks the day directories
//! once when opening.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::atomic::{is_temp_name, sync_dir, write_atomic};
use crate::camera::{CameraNameError, check_camera_name};
use crate::civil::UtcTime;
use crate::eventlog::{self, EventRecord};
use crate::index_html::{self, CameraSection, EventRow};
use crate::motion::MotionEvent;

/// The event log's file name.
pub const EVENTS_FILE: &str = "events.jsonl";
/// The overview page's file name.
pub const INDEX_FILE: &str = "index.html";
/// A camera's thumbnail directory.
pub const THUMBS_DIR: &str = "thumbs";
/// Where payloads that are not frames are kept aside.
pub const REJECTED_DIR: &str = "rejected";
/// Events listed per camera on the index page; older ones stay in the event log.
pub const INDEX_EVENTS_PER_CAMERA: usize = 100;
/// Days listed with their frame counts per camera on the index page.
pub const INDEX_DAYS_PER_CAMERA: usize = 14;

/// Why the archive failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The camera name cannot be a directory name.
    #[error(transparent)]
    CameraName(#[from] CameraNameError),
    /// What was offered as a frame or thumbnail does not start like a JPEG.
    #[error("not a JPEG (no start-of-image marker)")]
    NotJpeg,
    /// The event cannot be logged as it is.
    #[error("event not recorded: {0}")]
    InvalidEvent(&'static str),
    /// A line of the event log other than the last cannot be read.
    #[error("{EVENTS_FILE} line {line} is corrupt: {detail}")]
    CorruptEventLog {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        detail: String,
    },
    /// Reading or writing the file system failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl ArchiveError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> ArchiveError {
        ArchiveError::Io { context: context.into(), source }
    }
}

/// An open archive. One per directory: two would interleave their appends to the event log.
#[derive(Debug)]
pub struct Archive {
    dir: PathBuf,
    events: Vec<EventRecord>,
    /// camera → day → frames stored.
    frames: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Archive {
    /// Opens the archive in `dir`, creating the directory if needed. An existing archive continues: its events
    /// are read back and its frames counted.
    pub fn open(dir: impl AsRef<Path>) -> Result<Archive, ArchiveError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| ArchiveError::io(format!("creating {}", dir.display()), e))?;
        let events = eventlog::load(&dir.join(EVENTS_FILE))?;
        let frames = count_frames(&dir)?;
        Ok(Archive { dir, events, frames })
    }

    /// The archive directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every recorded event, in the order recorded.
    pub fn events(&self) -> &[EventRecord] {
        &self.events
    }

    /// Frames stored for `camera`, all days.
    pub fn frames_stored(&self, camera: &str) -> u64 {
        self.frames.get(camera).map_or(0, |days| days.values().sum())
    }

    /// Where the frame of `camera` taken at `time_ms` with number `seq` is stored.
    pub fn frame_path(&self, camera: &str, time_ms: u64, seq: u64) -> Result<PathBuf, ArchiveError> {
        check_camera_name(camera)?;
        Ok(self.dir.join(rel_path(&frame_segments(camera, time_ms, seq))))
    }

    /// Stores a frame durably and returns its path. Storing the same frame again (a duplicate bundle)
    /// rewrites it and is counted once.
    pub fn store_frame(&mut self, camera: &str, time_ms: u64, seq: u64, jpeg: &[u8]) -> Result<PathBuf, ArchiveError> {
        check_camera_name(camera)?;
        check_jpeg(jpeg)?;
        let segments = frame_segments(camera, time_ms, seq);
        let path = self.dir.join(rel_path(&segments));
        self.ensure_dirs(&segments[..2])?;
        let existed = path.exists();
        write_atomic(&path, jpeg).map_err(|e| ArchiveError::io(format!("writing {}", path.display()), e))?;
        if !existed {
            let day = segments[1].clone();
            *self.frames.entry(camera.to_string()).or_default().entry(day).or_default() += 1;
        }
        Ok(path)
    }

    /// Stores an event's thumbnail and appends the event to the log; returns the thumbnail's path. Recording
    /// the same event (camera, time, number) again rewrites the thumbnail but adds no second line.
    pub fn record_event(&mut self, event: &MotionEvent, thumbnail_jpeg: &[u8]) -> Result<PathBuf, ArchiveError> {
        check_camera_name(&event.camera)?;
        check_jpeg(thumbnail_jpeg)?;
        if !event.score.is_finite() {
            // JSON has no NaN: it would be written as null and make the line unreadable.
            return Err(ArchiveError::InvalidEvent("score is not a finite number"));
        }
        let thumb = thumb_segments(&event.camera, event.time_ms, event.seq);
        let path = self.dir.join(rel_path(&thumb));
        self.ensure_dirs(&thumb[..2])?;
        write_atomic(&path, thumbnail_jpeg).map_err(|e| ArchiveError::io(format!("writing {}", path.display()), e))?;
        let same = |r: &EventRecord| {
            (r.event.camera.as_str(), r.event.time_ms, r.event.seq) == (event.camera.as_str(), event.time_ms, event.seq)
        };
        if self.events.iter().any(same) {
            return Ok(path);
        }
        let record = EventRecord {
            event: event.clone(),
            time_utc: UtcTime::from_unix_ms(event.time_ms).iso8601(),
            thumb: thumb.join("/"),
            frame: frame_segments(&event.camera, event.time_ms, event.seq).join("/"),
        };
        eventlog::append(&self.dir.join(EVENTS_FILE), &record)?;
        self.events.push(record);
        Ok(path)
    }

    /// Keeps a payload that is not a usable frame aside, under `rejected/`, as `<name>.bin` with the reason in
    /// `<name>.txt`; returns the `.bin` path. `name` (e.g. a bundle ID) is reduced to characters safe in a file
    /// name; keeping the same name again overwrites it.
    pub fn keep_rejected(&mut self, name: &str, bytes: &[u8], reason: &str) -> Result<PathBuf, ArchiveError> {
        let mut safe: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
            .take(120)
            .collect();
        if safe.is_empty() || safe.starts_with('.') {
            safe.insert(0, '_');
        }
        self.ensure_dirs(&[REJECTED_DIR.to_string()])?;
        let dir = self.dir.join(REJECTED_DIR);
        let bin = dir.join(format!("{safe}.bin"));
        let txt = dir.join(format!("{safe}.txt"));
        write_atomic(&bin, bytes).map_err(|e| ArchiveError::io(format!("writing {}", bin.display()), e))?;
        write_atomic(&txt, format!("{name}\n{reason}\n").as_bytes())
            .map_err(|e| ArchiveError::io(format!("writing {}", txt.display()), e))?;
        Ok(bin)
    }

    /// Rewrites `index.html` from the events and frame counts; returns its path.
    pub fn write_index(&self) -> Result<PathBuf, ArchiveError> {
        let mut cameras: BTreeMap<&str, Vec<&EventRecord>> =
            self.frames.keys().map(|c| (c.as_str(), Vec::new())).collect();
        for r in &self.events {
            cameras.entry(r.event.camera.as_str()).or_default().push(r);
        }
        let sections: Vec<CameraSection> =
            cameras.into_iter().map(|(camera, events)| self.section(camera, events)).collect();
        let path = self.dir.join(INDEX_FILE);
        write_atomic(&path, index_html::render(&sections).as_bytes())
            .map_err(|e| ArchiveError::io(format!("writing {}", path.display()), e))?;
        Ok(path)
    }

    fn section(&self, camera: &str, mut events: Vec<&EventRecord>) -> CameraSection {
        events.sort_by_key(|r| std::cmp::Reverse((r.event.time_ms, r.event.seq)));
        let omitted = events.len().saturating_sub(INDEX_EVENTS_PER_CAMERA);
        events.truncate(INDEX_EVENTS_PER_CAMERA);
        let rows = events
            .into_iter()
            .map(|r| {
                let e = &r.event;
                // Paths are derived again rather than taken from the log, so a hand-edited log cannot point
                // the page elsewhere.
                let frame = frame_segments(camera, e.time_ms, e.seq);
                let stored = self.dir.join(rel_path(&frame)).is_file();
                EventRow {
                    time_utc: UtcTime::from_unix_ms(e.time_ms).iso8601(),
                    score: e.score,
                    bbox: e.bbox,
                    thumb: thumb_segments(camera, e.time_ms, e.seq),
                    frame: stored.then_some(frame),
                }
            })
            .collect();
        let days = self.frames.get(camera);
        CameraSection {
            name: camera.to_string(),
            frames_total: days.map_or(0, |d| d.values().sum()),
            recent_days: days
                .map(|d| d.iter().rev().take(INDEX_DAYS_PER_CAMERA).map(|(day, n)| (day.clone(), *n)).collect())
                .unwrap_or_default(),
            events: rows,
            events_omitted: omitted,
        }
    }

    /// Creates the directories along `segments` below the archive directory, fsyncing each parent that gains an
    /// entry, so a new day's first frame does not vanish with its directory after a power cut.
    fn ensure_dirs(&self, segments: &[String]) -> Result<(), ArchiveError> {
        let mut parent = self.dir.clone();
        for seg in segments {
            let dir = parent.join(seg);
            if !dir.is_dir() {
                let context = || format!("creating {}", dir.display());
                match fs::create_dir(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(ArchiveError::io(context(), e)),
                }
                sync_dir(&parent).map_err(|e| ArchiveError::io(context(), e))?;
            }
            parent = dir;
        }
        Ok(())
    }
}

/// Only the start-of-image marker: a full decode costs more than the write, and the archive keeps what the
/// camera sent even if it turns out damaged further in.
fn check_jpeg(bytes: &[u8]) -> Result<(), ArchiveError> {
    if bytes.starts_with(&[0xFF, 0xD8]) { Ok(()) } else { Err(ArchiveError::NotJpeg) }
}

/// `[camera, date, "HHMMSS.mmm-seq.jpg"]`.
fn frame_segments(camera: &str, time_ms: u64, seq: u64) -> Vec<String> {
    let t = UtcTime::from_unix_ms(time_ms);
    vec![camera.to_string(), t.date(), format!("{}-{seq}.jpg", t.compact_time())]
}

/// `[camera, "thumbs", "dateTHHMMSS.mmm-seq.jpg"]`.
fn thumb_segments(camera: &str, time_ms: u64, seq: u64) -> Vec<String> {
    let t = UtcTime::from_unix_ms(time_ms);
    vec![camera.to_string(), THUMBS_DIR.to_string(), format!("{}T{}-{seq}.jpg", t.date(), t.compact_time())]
}

fn rel_path(segments: &[String]) -> PathBuf {
    segments.iter().collect()
}

/// Whether a directory name is a day directory (`YYYY-MM-DD`, the year possibly longer).
fn is_day_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    matches!(parts.as_slice(), [y, m, d]
        if y.len() >= 4 && m.len() == 2 && d.len() == 2
            && [y, m, d].iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())))
}

/// Counts stored frames per camera and day, removing temporary files left by a crash on the way.
fn count_frames(dir: &Path) -> Result<BTreeMap<String, BTreeMap<String, u64>>, ArchiveError> {
    let mut frames: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (camera, camera_dir) in subdirs(dir)? {
        if check_camera_name(&camera).is_err() {
            continue;
        }
        for (day, day_dir) in subdirs(&camera_dir)? {
            if !is_day_name(&day) {
                continue;
            }
            let mut n = 0;
            for (name, path) in entries(&day_dir)? {
                if is_temp_name(&name) {
                    let _ = fs::remove_file(&path);
                } else if name.ends_with(".jpg") && !name.starts_with('.') {
                    n += 1;
                }
            }
            if n > 0 {
                frames.entry(camera.clone()).or_default().insert(day, n);
            }
        }
    }
    Ok(frames)
}

fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, ArchiveError> {
    Ok(entries(dir)?.into_iter().filter(|(_, p)| p.is_dir()).collect())
}

/// Entries of `dir` whose names are UTF-8 (the archive writes no others).
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, ArchiveError> {
    let context = || format!("listing {}", dir.display());
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| ArchiveError::io(context(), e))? {
        let entry = entry.map_err(|e| ArchiveError::io(context(), e))?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push((name, entry.path()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_names() {
        assert!(is_day_name("2024-07-01") && is_day_name("12024-07-01"));
        assert!(!is_day_name("thumbs") && !is_day_name("2024-7-01") && !is_day_name("2024-07-01-x"));
    }

    #[test]
    fn paths_follow_the_layout() {
        assert_eq!(
            rel_path(&frame_segments("cam", 1_719_835_512_345, 7)),
            Path::new("cam/2024-07-01/120512.345-7.jpg")
        );
        assert_eq!(
            rel_path(&thumb_segments("cam", 1_719_835_512_345, 7)),
            Path::new("cam/thumbs/2024-07-01T120512.345-7.jpg")
        );
    }
}
