//! Motion detection on synthetic 640×480 frames with σ = 8 sensor noise.

use dtn_vision::synth::{Scene, SynthObject};
use dtn_vision::{BBox, DecodeError, MotionConfig, MotionDetector, Outcome};

const W: u32 = 640;
const H: u32 = 480;
const SIDE: u32 = 40;

fn object_at(x: i32, y: i32) -> SynthObject {
    SynthObject { x, y, w: SIDE, h: SIDE, rgb: [235, 230, 220] }
}

fn truth(x: i32, y: i32) -> BBox {
    BBox { x: x as u32, y: y as u32, w: SIDE, h: SIDE }
}

fn distance(a: (f32, f32), b: (f32, f32)) -> f32 {
    ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt()
}

#[test]
fn a_moving_object_is_found_where_it_is() {
    // (x, y) per frame: still for two frames, then walking right and a little down 24 px per frame (less than
    // its size, so its old and new position make one region), then still again.
    let mut path: Vec<(i32, i32)> = vec![(60, 300); 2];
    path.extend((1..=8).map(|i| (60 + 24 * i, 300 + 4 * i)));
    path.push((252, 332));
    let mut detector = MotionDetector::new("garden", MotionConfig::default());
    let mut prev: Option<(i32, i32)> = None;
    for (i, &(x, y)) in path.iter().enumerate() {
        let scene = Scene::outdoor(W, H, 11).with_object(object_at(x, y));
        let jpeg = scene.jpeg(i as u64).expect("encode");
        let out = detector.process_jpeg(1_000 * i as u64, i as u64, &jpeg).expect("decode");
        let moved = prev.is_some_and(|p| p != (x, y));
        match (&out, prev) {
            (Outcome::Baseline, None) => {}
            (Outcome::Motion(e), Some(_)) if moved => {
                assert_eq!((e.camera.as_str(), e.seq, e.time_ms), ("garden", i as u64, 1_000 * i as u64));
                let now = truth(x, y);
                // The difference covers where it was and where it is: the box should hold the new position
                // and be centred between the two.
                let iou = e.bbox.iou(&now);
                let centre = distance(e.bbox.centre(), now.centre());
                assert!(
                    iou >= 0.3 || centre <= 30.0,
                    "frame {i}: box {:?} vs object {now:?} (iou {iou}, centre {centre})",
                    e.bbox
                );
                for (what, b) in [("new", now), ("old", prev.map(|(px, py)| truth(px, py)).unwrap_or(now))] {
                    let (cx, cy) = b.centre();
                    assert!(
                        e.bbox.contains(cx as u32, cy as u32),
                        "frame {i}: box {:?} misses the {what} centre",
                        e.bbox
                    );
                }
                assert!(e.bbox.w <= 2 * SIDE + 40 && e.bbox.h <= SIDE + 40, "frame {i}: box {:?} too large", e.bbox);
                assert!(e.score > 0.002 && e.score < 0.05, "frame {i}: score {}", e.score);
            }
            (Outcome::Still { .. }, Some(_)) if !moved => {}
            _ => panic!("frame {i} (moved: {moved}): unexpected {out:?}"),
        }
        prev = Some((x, y));
    }
}

#[test]
fn an_object_jumping_farther_than_its_size_is_boxed_at_one_of_its_positions() {
    let mut detector = MotionDetector::new("garden", MotionConfig::default());
    let before = Scene::outdoor(W, H, 12).with_object(object_at(100, 300));
    let after = Scene::outdoor(W, H, 12).with_object(object_at(300, 300));
    detector.process_jpeg(0, 0, &before.jpeg(0).expect("encode")).expect("decode");
    let e = detector.process_jpeg(1, 1, &after.jpeg(1).expect("encode")).expect("decode").into_event().expect("event");
    let best = e.bbox.iou(&truth(100, 300)).max(e.bbox.iou(&truth(300, 300)));
    assert!(best >= 0.5, "box {:?}", e.bbox);
}

#[test]
fn noise_alone_gives_no_event() {
    let scene = Scene::outdoor(W, H, 13);
    let mut detector = MotionDetector::new("garden", MotionConfig::default());
    let mut worst: f32 = 0.0;
    for i in 0..20u64 {
        let out = detector.process_jpeg(i * 1_000, i, &scene.jpeg(i).expect("encode")).expect("decode");
        match out {
            Outcome::Baseline if i == 0 => {}
            Outcome::Still { score } => worst = worst.max(score),
            other => panic!("frame {i}: {other:?}"),
        }
    }
    // Not merely under the event threshold: no region at all.
    assert_eq!(worst, 0.0);
}

#[test]
fn noise_alone_gives_no_event_with_a_running_average_either() {
    let scene = Scene::outdoor(W, H, 14);
    let config = MotionConfig { background_alpha: 0.1, ..MotionConfig::default() };
    let mut detector = MotionDetector::new("garden", config);
    for i in 0..5u64 {
        let out = detector.process_jpeg(i, i, &scene.jpeg(i).expect("encode")).expect("decode");
        assert!(out.event().is_none(), "frame {i}: {out:?}");
    }
}

#[test]
fn lights_switching_on_and_off_are_lighting_changes_not_motion() {
    let dark = Scene::outdoor(W, H, 15);
    // Lamps: brighter, and brighter still where it was already bright.
    let lit = Scene { gain: 1.3, offset: 30.0, ..dark.clone() };
    let mut detector = MotionDetector::new("porch", MotionConfig::default());
    let mut outcomes = Vec::new();
    for (i, scene) in [&dark, &dark, &lit, &lit, &dark, &dark].into_iter().enumerate() {
        outcomes
            .push(detector.process_jpeg(i as u64, i as u64, &scene.jpeg(i as u64).expect("encode")).expect("decode"));
    }
    assert_eq!(outcomes[0], Outcome::Baseline);
    for i in [1, 3, 5] {
        assert!(matches!(outcomes[i], Outcome::Still { .. }), "frame {i}: {:?}", outcomes[i]);
    }
    for i in [2, 4] {
        match outcomes[i] {
            Outcome::LightingChange { changed_fraction } => assert!(changed_fraction >= 0.8, "{changed_fraction}"),
            ref other => panic!("frame {i}: {other:?}"),
        }
    }
}

#[test]
fn motion_after_the_lights_came_on_is_seen() {
    let dark = Scene::outdoor(W, H, 16);
    let lit = Scene { gain: 1.3, offset: 30.0, ..dark.clone() };
    let mut detector = MotionDetector::new("porch", MotionConfig::default());
    detector.process_jpeg(0, 0, &dark.jpeg(0).expect("encode")).expect("decode");
    let lights = detector.process_jpeg(1, 1, &lit.clone().with_object(object_at(200, 300)).jpeg(1).expect("encode"));
    assert!(lights.expect("decode").is_lighting_change());
    let moved = lit.with_object(object_at(230, 300)).jpeg(2).expect("encode");
    let e = detector.process_jpeg(2, 2, &moved).expect("decode").into_event().expect("event");
    assert!(e.bbox.contains(250, 320), "{:?}", e.bbox);
}

#[test]
fn a_frame_of_another_size_restarts_the_background() {
    let mut detector = MotionDetector::new("garden", MotionConfig::default());
    let big = Scene::outdoor(W, H, 17);
    let small = Scene::outdoor(320, 240, 17).with_object(object_at(10, 10));
    assert_eq!(detector.process_jpeg(0, 0, &big.jpeg(0).expect("encode")).expect("decode"), Outcome::Baseline);
    assert_eq!(detector.process_jpeg(1, 1, &small.jpeg(1).expect("encode")).expect("decode"), Outcome::Baseline);
    assert!(matches!(
        detector.process_jpeg(2, 2, &small.jpeg(2).expect("encode")).expect("decode"),
        Outcome::Still { .. }
    ));
}

#[test]
fn a_corrupt_frame_is_a_typed_error_and_keeps_the_background() {
    let scene = Scene::outdoor(W, H, 18);
    let jpeg = scene.jpeg(0).expect("encode");
    let mut detector = MotionDetector::new("garden", MotionConfig::default());
    assert_eq!(detector.process_jpeg(0, 0, &jpeg).expect("decode"), Outcome::Baseline);
    assert!(matches!(detector.process_jpeg(1, 1, &[]), Err(DecodeError::Empty)));
    assert!(matches!(detector.process_jpeg(1, 1, b"\xFF\xD8\xFF\xDBnot really"), Err(DecodeError::Undecodable(_))));
    assert!(matches!(detector.process_jpeg(1, 1, &jpeg[..jpeg.len().min(100)]), Err(DecodeError::Undecodable(_))));
    let next = detector.process_jpeg(2, 2, &scene.jpeg(2).expect("encode")).expect("decode");
    assert!(matches!(next, Outcome::Still { .. }), "{next:?}");
}
