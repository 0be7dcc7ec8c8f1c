//! The weather demo end to end: real nodes on loopback, windows that cut live sessions, a van at one end.

use std::time::Duration;

use dtn_demo::{WeatherOptions, run_weather};

/// Every batch of every station reaches the van through the one station it meets, exactly once, and
/// delivery receipts clear the stations' stores while the chain keeps meeting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_van_leaves_with_every_stations_data() {
    let opts = WeatherOptions {
        stations: 3,
        duration: Duration::from_secs(4),
        window: Duration::from_millis(1500),
        gap: Duration::from_millis(1500),
        van_window: Duration::from_secs(9),
        ..WeatherOptions::default()
    };
    let mut log = Vec::new();
    let s = run_weather(&opts, &mut log).await.expect("demo runs");
    let log = String::from_utf8_lossy(&log);
    assert!(s.complete(), "{s}\n{log}");
    for r in &s.rows {
        assert!(r.generated >= 10, "{} generated only {}: {s}", r.name, r.generated);
        assert_eq!(r.collected, r.generated, "{s}");
    }
    for (name, st) in &s.report.stations {
        assert_eq!((st.missing(), st.duplicates()), (0, 0), "{name}: {}", s.report);
    }
    assert!(s.rows.iter().all(|r| r.left == 0), "stores not cleared by receipts:\n{s}\n{log}");
    assert!(log.contains("the van drives up to s3") && log.contains("s1 loses s2"), "{log}");
}
