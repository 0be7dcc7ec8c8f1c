//! The camera demo end to end: camera nodes meeting the house node in windows that cut live sessions, the
//! house archiving over its node's WebSocket and looking for motion.

use std::time::Duration;

use dtn_demo::{CameraOptions, run_camera};
use dtn_vision::Archive;

/// Every frame of every camera is archived exactly once; motion is found where the box walks and nowhere
/// else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_reaches_the_house_once_and_motion_is_found_where_it_happened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = CameraOptions {
        cameras: 3,
        duration: Duration::from_secs(6),
        fps: 4.0,
        width: 320,
        height: 240,
        window: Duration::from_millis(1500),
        gap: Duration::from_millis(1500),
        drain: Duration::from_secs(15),
        dir: Some(dir.path().to_path_buf()),
        ..CameraOptions::default()
    };
    let mut log = Vec::new();
    let s = run_camera(&opts, &mut log).await.expect("demo runs");
    let log = String::from_utf8_lossy(&log);
    assert!(s.complete(), "{s}\n{log}");
    // The archive on disk, counted afresh.
    let archive = Archive::open(&s.archive).expect("reopen archive");
    for r in &s.rows {
        assert!(r.generated >= 12, "{} took only {} frames:\n{s}", r.name, r.generated);
        assert_eq!((r.archived, r.duplicates), (r.generated, 0), "{s}");
        assert_eq!(archive.frames_stored(&r.name), r.generated, "{s}");
        assert_eq!(r.false_events, 0, "motion where nothing moved:\n{s}\n{log}");
    }
    let (walking, still) = (&s.rows[0], &s.rows[1]);
    assert!(walking.walking && !still.walking);
    assert!(walking.found > 0 && walking.found * 10 >= walking.expected * 9, "{s}");
    assert_eq!(still.found, 0, "{s}");
    assert!(log.contains("cam2 loses the house") && log.contains("motion at cam1"), "{log}");
    assert!(s.archive.join("index.html").is_file());
}
