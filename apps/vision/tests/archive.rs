//! The archive as the house node uses it: frames in, motion events with thumbnails, the index page, restarts.

use std::fs;
use std::io::Write;

use dtn_vision::synth::{Scene, SynthObject};
use dtn_vision::{Archive, ArchiveError, MotionConfig, MotionDetector, MotionEvent, thumbnail};

/// 2024-07-01T23:59:58.500Z: two seconds before midnight, so a short sequence spans two days.
const T0: u64 = 1_719_878_398_500;

struct Frame {
    time_ms: u64,
    seq: u64,
    jpeg: Vec<u8>,
}

/// Four frames a second apart of a small scene; a box appears in the third and moves in the fourth.
fn frames() -> Vec<Frame> {
    let scene = Scene::outdoor(160, 120, 21);
    let object = |x| SynthObject { x, y: 70, w: 16, h: 16, rgb: [240, 240, 240] };
    let scenes = [scene.clone(), scene.clone(), scene.clone().with_object(object(40)), scene.with_object(object(52))];
    scenes
        .iter()
        .enumerate()
        .map(|(i, s)| Frame {
            time_ms: T0 + 1_000 * i as u64,
            seq: 100 + i as u64,
            jpeg: s.jpeg(i as u64).expect("encode"),
        })
        .collect()
}

/// Runs the house node's loop over `frames`: store every frame, record motion with a thumbnail.
fn ingest(archive: &mut Archive, camera: &str, frames: &[Frame]) -> Vec<MotionEvent> {
    let mut detector = MotionDetector::new(camera, MotionConfig::default());
    let mut events = Vec::new();
    for f in frames {
        archive.store_frame(camera, f.time_ms, f.seq, &f.jpeg).expect("store frame");
        if let Some(e) = detector.process_jpeg(f.time_ms, f.seq, &f.jpeg).expect("decode").into_event() {
            let thumb = thumbnail(&f.jpeg, 80, Some(e.bbox)).expect("thumbnail");
            archive.record_event(&e, &thumb).expect("record event");
            events.push(e);
        }
    }
    events
}

#[test]
fn frames_and_events_land_where_they_belong_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("archive");
    let mut archive = Archive::open(&root).expect("open");
    let events = ingest(&mut archive, "garden", &frames());
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![102, 103]);

    // Frames under their UTC day.
    for rel in [
        "garden/2024-07-01/235958.500-100.jpg",
        "garden/2024-07-01/235959.500-101.jpg",
        "garden/2024-07-02/000000.500-102.jpg",
        "garden/2024-07-02/000001.500-103.jpg",
    ] {
        assert!(root.join(rel).is_file(), "{rel}");
    }
    assert_eq!(archive.frames_stored("garden"), 4);

    // One log line and one thumbnail per event.
    let log = fs::read_to_string(root.join("events.jsonl")).expect("read log");
    assert_eq!(log.lines().count(), 2);
    assert!(log.contains("\"time_utc\":\"2024-07-02T00:00:00.500Z\""));
    for e in archive.events() {
        assert!(root.join(&e.thumb).is_file(), "{}", e.thumb);
    }

    // The page lists each event's thumbnail, linked to its frame, newest first, and the frame count.
    let page = fs::read_to_string(archive.write_index().expect("index")).expect("read index");
    let newest = page.find("garden/thumbs/2024-07-02T000001.500-103.jpg").expect("newest thumbnail listed");
    let older = page.find("garden/thumbs/2024-07-02T000000.500-102.jpg").expect("older thumbnail listed");
    assert!(newest < older);
    assert!(page.contains("<a href=\"garden/2024-07-02/000001.500-103.jpg\">"));
    assert!(page.contains("2024-07-02T00:00:01.500Z"));
    assert!(page.contains("Frames stored: 4 (recent days: 2024-07-02 2, 2024-07-01 2)"));

    // A restart continues where it stopped.
    let before = archive.events().to_vec();
    drop(archive);
    let reopened = Archive::open(&root).expect("reopen");
    assert_eq!(reopened.events(), before.as_slice());
    assert_eq!(reopened.frames_stored("garden"), 4);
}

#[test]
fn a_crash_mid_append_and_mid_write_is_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut archive = Archive::open(dir.path()).expect("open");
    ingest(&mut archive, "garden", &frames());
    let before = archive.events().to_vec();
    drop(archive);

    let mut log = fs::OpenOptions::new().append(true).open(dir.path().join("events.jsonl")).expect("open log");
    log.write_all(b"{\"camera\":\"garden\",\"time_ms\":17198").expect("tear");
    drop(log);
    let leftover = dir.path().join("garden/2024-07-02/.000002.500-104.jpg.tmp");
    fs::write(&leftover, b"\xFF\xD8half").expect("leftover");

    let mut archive = Archive::open(dir.path()).expect("reopen after crash");
    assert_eq!(archive.events(), before.as_slice());
    assert_eq!(archive.frames_stored("garden"), 4);
    assert!(!leftover.exists(), "temporary file left by the crash is removed");

    // And the log keeps working.
    let mut late = before[0].event.clone();
    late.seq = 999;
    archive.record_event(&late, b"\xFF\xD8thumb").expect("record");
    drop(archive);
    assert_eq!(Archive::open(dir.path()).expect("reopen").events().len(), 3);
}

#[test]
fn duplicates_are_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut archive = Archive::open(dir.path()).expect("open");
    let frames = frames();
    let events = ingest(&mut archive, "garden", &frames);
    // The same bundles delivered again (DTN may), after a restart.
    drop(archive);
    let mut archive = Archive::open(dir.path()).expect("reopen");
    let again = ingest(&mut archive, "garden", &frames);
    assert_eq!(again, events);
    assert_eq!(archive.frames_stored("garden"), 4);
    assert_eq!(archive.events().len(), 2);
    assert_eq!(fs::read_to_string(dir.path().join("events.jsonl")).expect("log").lines().count(), 2);
}

#[test]
fn camera_names_cannot_leave_the_archive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("archive");
    let mut archive = Archive::open(&root).expect("open");
    let jpeg = Scene::outdoor(32, 24, 1).jpeg(0).expect("encode");
    for bad in ["..", "../escape", "a/b", "a\\b", "", ".hidden", "cam\n", "events.jsonl"] {
        assert!(matches!(archive.store_frame(bad, T0, 1, &jpeg), Err(ArchiveError::CameraName(_))), "{bad:?}");
        let event = MotionEvent {
            camera: bad.to_string(),
            time_ms: T0,
            seq: 1,
            score: 0.5,
            bbox: dtn_vision::BBox { x: 0, y: 0, w: 1, h: 1 },
        };
        assert!(matches!(archive.record_event(&event, &jpeg), Err(ArchiveError::CameraName(_))), "{bad:?}");
    }
    assert!(!dir.path().join("escape").exists());
    let outside: Vec<_> = fs::read_dir(dir.path()).expect("list").collect();
    assert_eq!(outside.len(), 1, "only the archive directory itself");
    assert_eq!(fs::read_dir(&root).expect("list").count(), 0, "nothing written inside either");
    assert!(archive.events().is_empty());
}

#[test]
fn what_is_not_a_jpeg_is_not_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut archive = Archive::open(dir.path()).expect("open");
    assert!(matches!(archive.store_frame("garden", T0, 1, b""), Err(ArchiveError::NotJpeg)));
    assert!(matches!(archive.store_frame("garden", T0, 1, b"GIF89a"), Err(ArchiveError::NotJpeg)));
    assert_eq!(archive.frames_stored("garden"), 0);
    let mut event = MotionEvent {
        camera: "garden".into(),
        time_ms: T0,
        seq: 1,
        score: 0.5,
        bbox: dtn_vision::BBox { x: 0, y: 0, w: 1, h: 1 },
    };
    assert!(matches!(archive.record_event(&event, b"PNG"), Err(ArchiveError::NotJpeg)));
    event.score = f32::NAN;
    assert!(matches!(archive.record_event(&event, b"\xFF\xD8thumb"), Err(ArchiveError::InvalidEvent(_))));
    assert!(archive.events().is_empty());
}

#[test]
fn an_event_whose_frame_was_not_stored_is_listed_without_a_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut archive = Archive::open(dir.path()).expect("open");
    let event = MotionEvent {
        camera: "porch light".into(),
        time_ms: T0,
        seq: 5,
        score: 0.01,
        bbox: dtn_vision::BBox { x: 1, y: 2, w: 3, h: 4 },
    };
    archive.record_event(&event, b"\xFF\xD8thumb").expect("record");
    let page = fs::read_to_string(archive.write_index().expect("index")).expect("read");
    assert!(page.contains("src=\"porch%20light/thumbs/2024-07-01T235958.500-5.jpg\""));
    assert!(page.contains("(frame not stored)"));
    assert!(page.contains("Frames stored: 0"));
}

#[test]
fn rejected_payloads_are_kept_aside_under_a_safe_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut archive = Archive::open(dir.path()).expect("open");
    let path = archive.keep_rejected("dtn://cam1/-848640675350-3", b"\xFF\xD8broken", "not decodable").expect("keep");
    assert_eq!(path, dir.path().join("rejected/dtn___cam1_-848640675350-3.bin"));
    assert_eq!(fs::read(&path).expect("read"), b"\xFF\xD8broken");
    let why = fs::read_to_string(path.with_extension("txt")).expect("reason");
    assert!(why.contains("not decodable"), "{why}");
    let hidden = archive.keep_rejected("../..", b"x", "odd").expect("keep");
    assert_eq!(hidden.parent(), Some(dir.path().join("rejected").as_path()));
    // Not a camera: the directory holds no frames and reopening counts none.
    assert_eq!(Archive::open(dir.path()).expect("reopen").frames_stored("rejected"), 0);
}
