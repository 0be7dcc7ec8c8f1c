//! The archive's event log, `events.jsonl`: one JSON object per line, appended, never rewritten.
//!
//! A crash can leave the last line half-written. Reading drops such a line and cuts the file back to the last
//! complete one, because the next append would otherwise glue a new record onto the fragment and make a
//! corrupt line in the middle. A bad line anywhere else is not a crash artefact, so it is an error.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::archive::ArchiveError;
use crate::camera::check_camera_name;
use crate::motion::MotionEvent;

/// One line of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// The event.
    #[serde(flatten)]
    pub event: MotionEvent,
    /// The event's time as ISO 8601, for people reading the log; the archive uses `time_ms`.
    #[serde(default)]
    pub time_utc: String,
    /// The thumbnail, relative to the archive directory, '/'-separated.
    pub thumb: String,
    /// Where the full frame is (or would be) stored, relative to the archive directory.
    pub frame: String,
}

/// Reads the log at `path` (none yet: no records), repairing a torn last line.
pub fn load(path: &Path) -> Result<Vec<EventRecord>, ArchiveError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ArchiveError::io(format!("reading {}", path.display()), e)),
    };
    let mut records = Vec::new();
    let mut start = 0;
    let mut line_no = 0;
    while start < bytes.len() {
        line_no += 1;
        let end = bytes[start..].iter().position(|&b| b == b'\n').map(|i| start + i);
        let line = &bytes[start..end.unwrap_or(bytes.len())];
        let next = end.map_or(bytes.len(), |e| e + 1);
        let is_last = bytes[next..].iter().all(|b| b.is_ascii_whitespace());
        match parse(line) {
            Ok(None) => {}
            Ok(Some(r)) if end.is_some() => records.push(r),
            Err(detail) if !is_last => return Err(ArchiveError::CorruptEventLog { line: line_no, detail }),
            // Without its newline, or unreadable as the last line: a write cut short by a crash.
            _ => {
                truncate(path, start as u64)?;
                break;
            }
        }
        start = next;
    }
    Ok(records)
}

/// Appends `record` as one line and makes it durable.
pub fn append(path: &Path, record: &EventRecord) -> Result<(), ArchiveError> {
    let mut line = serde_json::to_vec(record)
        .map_err(|e| ArchiveError::io("encoding an event", io::Error::new(io::ErrorKind::InvalidData, e)))?;
    line.push(b'\n');
    let created = !path.exists();
    let context = || format!("appending to {}", path.display());
    let mut f = OpenOptions::new().create(true).append(true).open(path).map_err(|e| ArchiveError::io(context(), e))?;
    // One write call per record, so a crash tears at most this line.
    f.write_all(&line).map_err(|e| ArchiveError::io(context(), e))?;
    f.sync_data().map_err(|e| ArchiveError::io(context(), e))?;
    if created && let Some(dir) = path.parent() {
        crate::atomic::sync_dir(dir).map_err(|e| ArchiveError::io(context(), e))?;
    }
    Ok(())
}

fn parse(line: &[u8]) -> Result<Option<EventRecord>, String> {
    if line.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    let r: EventRecord = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    // The name becomes a path again when the index is written.
    check_camera_name(&r.event.camera).map_err(|e| e.to_string())?;
    Ok(Some(r))
}

fn truncate(path: &Path, len: u64) -> Result<(), ArchiveError> {
    let context = || format!("cutting the torn last line off {}", path.display());
    let f = File::options().write(true).open(path).map_err(|e| ArchiveError::io(context(), e))?;
    f.set_len(len).map_err(|e| ArchiveError::io(context(), e))?;
    f.sync_all().map_err(|e| ArchiveError::io(context(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::motion::BBox;

    fn record(seq: u64) -> EventRecord {
        EventRecord {
            event: MotionEvent {
                camera: "cam".into(),
                time_ms: 1000 + seq,
                seq,
                score: 0.25,
                bbox: BBox { x: 1, y: 2, w: 3, h: 4 },
            },
            time_utc: String::new(),
            thumb: format!("cam/thumbs/{seq}.jpg"),
            frame: format!("cam/1970-01-01/{seq}.jpg"),
        }
    }

    #[test]
    fn appended_records_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        assert_eq!(load(&path).expect("missing log"), vec![]);
        append(&path, &record(1)).expect("append");
        append(&path, &record(2)).expect("append");
        assert_eq!(load(&path).expect("load"), vec![record(1), record(2)]);
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_cut_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        append(&path, &record(1)).expect("append");
        let good_len = fs::metadata(&path).expect("stat").len();
        let whole = serde_json::to_string(&record(2)).expect("json");
        for cut in [whole.len() / 2, whole.len()] {
            let mut f = OpenOptions::new().append(true).open(&path).expect("open");
            f.write_all(&whole.as_bytes()[..cut]).expect("tear");
            drop(f);
            assert_eq!(load(&path).expect("load"), vec![record(1)]);
            assert_eq!(fs::metadata(&path).expect("stat").len(), good_len);
        }
        append(&path, &record(3)).expect("append after repair");
        assert_eq!(load(&path).expect("load"), vec![record(1), record(3)]);
    }

    #[test]
    fn a_bad_line_in_the_middle_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        append(&path, &record(1)).expect("append");
        fs::write(&path, [fs::read(&path).expect("read"), b"{nonsense\n".to_vec()].concat()).expect("write");
        append(&path, &record(2)).expect("append");
        assert!(matches!(load(&path), Err(ArchiveError::CorruptEventLog { line: 2, .. })));
    }

    #[test]
    fn a_traversing_camera_name_in_the_log_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        let mut bad = record(1);
        bad.event.camera = "../x".into();
        append(&path, &bad).expect("append");
        append(&path, &record(2)).expect("append");
        assert!(matches!(load(&path), Err(ArchiveError::CorruptEventLog { line: 1, .. })));
    }
}
