//! Time per 640×480 frame. Ignored by default (debug timings mean little); run with
//! `cargo test --release -p dtn-vision --test timing -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use dtn_vision::synth::{Scene, SynthObject};
use dtn_vision::{MotionConfig, MotionDetector, decode_jpeg, thumbnail_image};

#[test]
#[ignore]
fn time_per_640x480_frame() {
    const FRAMES: u64 = 200;
    let scene = Scene::outdoor(640, 480, 5);
    let jpegs: Vec<Vec<u8>> = (0..FRAMES)
        .map(|i| {
            let object = SynthObject { x: 20 + 3 * i as i32, y: 300, w: 40, h: 40, rgb: [235, 230, 220] };
            scene.clone().with_object(object).jpeg(i).expect("encode")
        })
        .collect();
    let per_frame = |d: Duration| d / FRAMES as u32;

    let start = Instant::now();
    let decoded: Vec<_> = jpegs.iter().map(|j| decode_jpeg(j).expect("decode")).collect();
    let decode = per_frame(start.elapsed());

    let mut detector = MotionDetector::new("cam", MotionConfig::default());
    let start = Instant::now();
    let events = decoded
        .iter()
        .enumerate()
        .filter(|(i, img)| detector.process_image(*i as u64, *i as u64, img).event().is_some())
        .count();
    let detect = per_frame(start.elapsed());

    let mut detector = MotionDetector::new("cam", MotionConfig::default());
    let start = Instant::now();
    for (i, j) in jpegs.iter().enumerate() {
        detector.process_jpeg(i as u64, i as u64, j).expect("decode");
    }
    let total = per_frame(start.elapsed());

    let start = Instant::now();
    for img in &decoded {
        thumbnail_image(img, 160, None).expect("thumbnail");
    }
    let thumb = per_frame(start.elapsed());

    println!(
        "640x480, {FRAMES} frames ({events} with motion): decode {decode:?}, detect {detect:?}, \
         process_jpeg (both) {total:?}, thumbnail {thumb:?} per frame"
    );
}
