//! The house with a real archive: frames in order and out of order, duplicates, corrupt and foreign payloads.

use dtn_camera::{House, HouseConfig, Received, Seen, SyntheticCamera, frame_batch};
use dtn_sensor::{Batch, Clock, Reading, SensorKind};

const T0: u64 = 1_719_835_512_000;

fn payload(cam: &SyntheticCamera, name: &str, seq: u64) -> Vec<u8> {
    frame_batch(name, seq, T0 + 500 * seq, cam.frame(seq).expect("frame")).encode()
}

fn motion_seqs(seen: &[Seen]) -> Vec<u64> {
    seen.iter().filter_map(|s| if let Seen::Motion(e) = s { Some(e.seq) } else { None }).collect()
}

#[test]
fn frames_are_stored_once_and_analysed_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut house = House::open(dir.path(), HouseConfig::default()).expect("open");
    let walker = SyntheticCamera::new(320, 240, 3, true, 85);
    let parked = SyntheticCamera::new(320, 240, 4, false, 85);
    // 5 and 6 swapped (a retransmission), 3 twice.
    let order = [0, 1, 2, 3, 4, 6, 5, 3, 7, 8, 9, 10, 11, 12, 13];
    let mut seen = Vec::new();
    for (i, &seq) in order.iter().enumerate() {
        let (got, s) = house.receive(&format!("w{i}"), &payload(&walker, "walker", seq), T0).expect("receive");
        match (i, got) {
            (7, Received::Duplicate { seq: 3, .. }) => {}
            (_, Received::Stored { seq: s, path, .. }) if s == seq => assert!(path.is_file()),
            (_, other) => panic!("delivery {i} (frame {seq}): {other:?}"),
        }
        seen.extend(s);
    }
    for seq in 0..6 {
        let (got, s) = house.receive(&format!("p{seq}"), &payload(&parked, "parked", seq), T0).expect("receive");
        assert!(matches!(got, Received::Stored { .. }));
        assert!(s.is_empty(), "parked camera frame {seq}: {s:?}");
    }
    seen.extend(house.finish().expect("finish"));
    let expected: Vec<u64> = (0..14).filter(|&s| walker.moved(s)).collect();
    assert_eq!(motion_seqs(&seen), expected, "events at the frames where the object moved, in order");

    let counts = &house.counts()["walker"];
    assert_eq!((counts.stored, counts.duplicates, counts.late, counts.gaps), (14, 1, 0, 0));
    assert_eq!(house.archive().frames_stored("walker"), 14);
    assert_eq!(house.archive().frames_stored("parked"), 6);
    assert_eq!(house.archive().events().len(), expected.len());
    let index = std::fs::read_to_string(dir.path().join("index.html")).expect("index written");
    assert!(index.contains("walker") && index.contains("parked"));
}

#[test]
fn corrupt_and_foreign_payloads_are_kept_aside_and_the_house_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut house = House::open(dir.path(), HouseConfig::default()).expect("open");
    let cam = SyntheticCamera::new(160, 120, 5, true, 85);

    let mut broken = frame_batch("gate", 1, T0, cam.frame(1).expect("frame"));
    if let Some(jpeg) = broken.image.as_mut() {
        jpeg.truncate(60);
    }
    let mut weather = Batch::new("hill", "t", SensorKind::Temperature, 0, Clock::Unix);
    weather.readings = vec![Reading { t: T0, values: vec![12.5] }];
    let inputs: [(&str, Vec<u8>); 4] = [
        ("dtn://gate/-1-0", broken.encode()),
        ("dtn://x/-1-1", b"\xFF\xD8 not even a batch".to_vec()),
        ("dtn://hill/-1-2", weather.encode()),
        ("dtn://gate/-1-3", payload(&cam, "gate", 2)),
    ];
    let mut results = Vec::new();
    for (id, p) in &inputs {
        results.push(house.receive(id, p, T0).expect("never an error for bad input").0);
    }
    match &results[0] {
        Received::Rejected { camera: Some(c), kept, .. } => {
            assert_eq!(c, "gate");
            assert_eq!(std::fs::read(kept).expect("kept"), inputs[0].1, "kept as it came");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(results[1], Received::Rejected { camera: None, .. }));
    assert!(matches!(results[2], Received::Rejected { camera: None, .. }));
    assert!(matches!(results[3], Received::Stored { seq: 2, .. }));
    assert_eq!(house.counts()["gate"].corrupt, 1);
    assert_eq!(house.unattributed(), 2);
    assert_eq!(house.archive().frames_stored("gate"), 1);
    assert_eq!(std::fs::read_dir(dir.path().join("rejected")).expect("rejected dir").count(), 6);
}

#[test]
fn a_gap_is_passed_over_after_waiting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = HouseConfig { reorder_wait_ms: 1_000, ..HouseConfig::default() };
    let mut house = House::open(dir.path(), config).expect("open");
    let cam = SyntheticCamera::new(160, 120, 6, true, 85);
    for seq in [0, 1, 3, 4] {
        house.receive("x", &payload(&cam, "c", seq), T0).expect("receive");
    }
    assert!(house.tick(T0 + 999).expect("tick").is_empty(), "3 and 4 wait for 2");
    let seen = house.tick(T0 + 1_000).expect("tick");
    assert_eq!(motion_seqs(&seen), vec![3, 4]);
    assert_eq!(house.counts()["c"].gaps, 1);
    // Frame 2 after all: stored, and compared as a late frame.
    let (got, _) = house.receive("y", &payload(&cam, "c", 2), T0 + 2_000).expect("receive");
    assert!(matches!(got, Received::Stored { seq: 2, .. }));
    assert_eq!(house.counts()["c"].late, 1);
}
