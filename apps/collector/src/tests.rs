use super::*;
use dtn_sensor::Reading;

fn batch(station: &str, sensor: &str, seq: u64) -> Vec<u8> {
    let mut b = Batch::new(station, sensor, SensorKind::Temperature, seq, Clock::Unix);
    b.readings = (0..10)
        .map(|i| Reading { t: 1_700_000_000_000 + seq * 10_000 + i * 1000, values: vec![10.0 + i as f32] })
        .collect();
    b.created = b.readings.last().map_or(0, |r| r.t);
    b.encode()
}

fn csv(dir: &Path, station: &str, sensor: &str) -> String {
    fs::read_to_string(csv_path(dir, station, sensor)).expect("csv")
}

#[test]
fn batches_become_rows_and_the_report_shows_gaps_and_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Collector::open(dir.path()).expect("open");
    for seq in [0, 1, 2, 5, 6, 2] {
        c.add(&batch("hill-1", "bme280/temperature", seq), 0, None).expect("add");
    }
    c.add(&batch("hill-2", "t", 0), 0, None).expect("add");
    c.sync().expect("sync");
    let text = csv(dir.path(), "hill-1", "bme280/temperature");
    assert!(text.starts_with("time_unix_ms,time_utc,uptime_ms,batch,value_degC\n"), "{text}");
    assert_eq!(text.lines().count(), 1 + 5 * 10);
    assert!(text.contains("1700000000000,2023-11-14T22:13:20.000Z,,0,10\n"), "{text}");
    let r = c.report();
    let s = &r.stations["hill-1"].sensors["bme280/temperature"];
    assert_eq!((s.batches, s.duplicates, s.readings, s.gaps.clone()), (5, 1, 50, vec![(3, 4)]));
    assert_eq!(r.stations["hill-2"].missing(), 0);
    assert!(r.to_string().contains("3-4"));
}

#[test]
fn a_reopened_archive_knows_what_it_has() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut c = Collector::open(dir.path()).expect("open");
        c.add(&batch("s", "t", 0), 0, None).expect("add");
        c.add(&batch("s", "t", 1), 0, None).expect("add");
        c.sync().expect("sync");
    }
    let mut c = Collector::open(dir.path()).expect("reopen");
    assert!(matches!(c.add(&batch("s", "t", 1), 0, None), Ok(Added::Duplicate { .. })));
    assert!(matches!(c.add(&batch("s", "t", 2), 0, None), Ok(Added::Stored { .. })));
    c.sync().expect("sync");
    assert_eq!(csv(dir.path(), "s", "t").lines().count(), 1 + 30);
    assert_eq!(c.report().stations["s"].sensors["t"].batches, 3);
}

/// A crash after the rows were written but before the manifest line: the batch was never acknowledged, so
/// the node delivers it again, and it must appear once.
#[test]
fn rows_without_a_manifest_line_are_cut_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut c = Collector::open(dir.path()).expect("open");
        c.add(&batch("s", "t", 0), 0, None).expect("add");
        c.sync().expect("sync");
        c.add(&batch("s", "t", 1), 0, None).expect("add");
        // Rows reach the disk, the manifest line does not.
        for w in c.files.values_mut() {
            w.flush().expect("flush");
        }
        c.pending.clear();
    }
    // A half-written manifest line too.
    let mut m = OpenOptions::new().append(true).open(dir.path().join("manifest.jsonl")).expect("manifest");
    m.write_all(b"{\"station\":\"s\",\"sen").expect("write");
    drop(m);
    let mut c = Collector::open(dir.path()).expect("reopen");
    assert_eq!(csv(dir.path(), "s", "t").lines().count(), 1 + 10);
    assert!(matches!(c.add(&batch("s", "t", 1), 0, None), Ok(Added::Stored { .. })));
    c.sync().expect("sync");
    drop(c);
    let c = Collector::open(dir.path()).expect("reopen");
    assert_eq!(csv(dir.path(), "s", "t").lines().count(), 1 + 20);
    assert_eq!(c.report().stations["s"].sensors["t"].batches, 2);
}

#[test]
fn unreadable_payloads_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Collector::open(dir.path()).expect("open");
    assert!(matches!(c.add(b"not cbor at all", 0, None), Err(CollectError::Batch(_))));
    let mut b = Batch::new("s", "t", SensorKind::Humidity, 0, Clock::Unix);
    b.readings = vec![Reading { t: 1, values: vec![50.0] }];
    c.add(&b.encode(), 0, None).expect("add");
    // Same sensor name, other kind: refused.
    assert!(matches!(c.add(&batch("s", "t", 1), 0, None), Err(CollectError::Batch(_))));
    c.sync().expect("sync");
    assert_eq!(c.rejected(), 2);
    assert_eq!(c.report().stations["s"].sensors["t"].batches, 1);
}

#[test]
fn camera_stills_are_files_and_clockless_stations_are_placed_by_age() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Collector::open(dir.path()).expect("open");
    let mut b = Batch::new("house", "cam0", SensorKind::CameraStill, 3, Clock::Uptime);
    b.created = 50_000;
    b.readings = vec![Reading { t: 40_000, values: vec![640.0, 480.0] }];
    b.image = Some(vec![0xff, 0xd8, 1, 2, 3, 0xff, 0xd9]);
    c.add(&b.encode(), 1_700_000_100_000, Some(20_000)).expect("add");
    c.sync().expect("sync");
    let img = fs::read(dir.path().join("house").join("cam0").join("00000003.jpg")).expect("image");
    assert_eq!(img, vec![0xff, 0xd8, 1, 2, 3, 0xff, 0xd9]);
    // Closed 20 s before reception, the reading 10 s before that.
    assert!(csv(dir.path(), "house", "cam0").contains("1700000070000,2023-11-14T22:14:30.000Z,40000,3,640,480\n"));
}

#[test]
fn a_round_of_stills_larger_than_memory_allows_is_archived_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Collector::open(dir.path()).expect("open");
    // Five stills of 20 MB: past the bytes held for a sync, so some are written before it.
    let image = |seq: u64| -> Vec<u8> { (0..20_000_000u64).map(|i| ((i * 7 + seq) % 251) as u8).collect() };
    for seq in 1..=5 {
        let mut b = Batch::new("house", "cam1", SensorKind::CameraStill, seq, Clock::Unix);
        b.created = 1_700_000_000_000 + seq;
        b.readings = vec![Reading { t: b.created, values: vec![4000.0, 3000.0] }];
        b.image = Some(image(seq));
        c.add(&b.encode(), 1_700_000_100_000, None).expect("add");
    }
    c.sync().expect("sync");
    for seq in 1..=5 {
        let got = fs::read(dir.path().join("house").join("cam1").join(format!("{seq:08}.jpg"))).expect("image");
        assert!(got == image(seq), "still {seq} differs");
    }
    let leftovers: Vec<_> = fs::read_dir(dir.path().join("house").join("cam1"))
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn names_map_to_distinct_files() {
    assert_ne!(safe("a/b"), safe("a_b"));
    assert_ne!(safe("a/b"), safe("a%2Fb"));
    assert!(!safe("x/y\\z:w").contains(['/', '\\', ':']));
}

#[test]
fn the_report_is_written_beside_the_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Collector::open(dir.path()).expect("open");
    for seq in [0, 2] {
        c.add(&batch("hill-1", "t", seq), 0, None).expect("add");
    }
    c.sync().expect("sync");
    let r = c.write_report().expect("report");
    assert_eq!(r.stations["hill-1"].missing(), 1);
    let text = fs::read_to_string(dir.path().join("report.txt")).expect("report.txt");
    // The per-sensor line names the missing batch.
    assert!(text.lines().any(|l| l.starts_with("hill-1") && l.ends_with("  1")), "{text}");
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("report.json")).expect("report.json")).expect("json");
    assert_eq!(json["stations"]["hill-1"]["sensors"]["t"]["gaps"][0][0], 1);
}

#[test]
fn intake_sets_aside_what_is_not_a_batch_and_keeps_count_across_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = batch("hill-1", "t", 0);
    let again = batch("hill-1", "t", 0);
    let items = [
        Delivered { id: "dtn://hill-1/-0-1", payload: &good, received_unix_ms: 0, age_ms: None },
        Delivered { id: "dtn://x/-5-0", payload: b"not cbor at all", received_unix_ms: 0, age_ms: None },
        Delivered { id: "dtn://hill-1/-0-2", payload: &again, received_unix_ms: 0, age_ms: None },
    ];
    {
        let mut c = Collector::open(dir.path()).expect("open");
        let got = c.intake(items).expect("intake");
        assert_eq!((got.stored, got.duplicates, got.readings), (1, 1, 10));
        assert_eq!(got.rejected.len(), 1);
        assert_eq!(got.rejected[0].0, "dtn://x/-5-0");
        assert_eq!(got.stations.iter().collect::<Vec<_>>(), ["hill-1"]);
        assert_eq!(c.report().rejected, 1);
    }
    let kept = fs::read(dir.path().join(SET_ASIDE).join("dtn%3A%2F%2Fx%2F-5-0.bin")).expect("set aside");
    assert_eq!(kept, b"not cbor at all");
    // Delivered again after a crash: still one payload set aside, and the batch a duplicate.
    let mut c = Collector::open(dir.path()).expect("reopen");
    assert_eq!(c.report().rejected, 1);
    let got = c.intake(items).expect("intake");
    assert_eq!((got.stored, got.duplicates, c.report().rejected), (0, 2, 1));
    assert!(c.write_report().expect("report").to_string().contains("1 payloads were not sensor batches"));
}
