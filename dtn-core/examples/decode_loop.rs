//! Decodes one small bundle in a loop; handy under `perf record` or `valgrind --tool=callgrind`.
use dtn_core::bpv7::{Bundle, BundleBuilder, CreationTimestamp};

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2_000_000);
    let bytes = BundleBuilder::new("dtn://station-12/".parse().unwrap(), "dtn://collector/~data".parse().unwrap())
        .creation(CreationTimestamp::new(817_171_717_171, 42))
        .hop_limit(32)
        .payload(vec![7u8; 100])
        .build()
        .unwrap()
        .to_vec();
    let bp7 = std::env::args().nth(2).as_deref() == Some("bp7");
    let start = std::time::Instant::now();
    let mut total = 0;
    for _ in 0..n {
        if bp7 {
            // The same bytes through dtn7-rs's codec, for instruction-count comparisons.
            let b = bp7::Bundle::try_from(std::hint::black_box(&bytes[..])).unwrap();
            b.validate().unwrap();
            total += b.payload().map_or(0, |p| p.len());
        } else {
            let b = Bundle::decode(std::hint::black_box(&bytes)).unwrap();
            total += b.payload().len();
        }
    }
    let el = start.elapsed();
    println!(
        "{n} decodes, {:.0} ns each, {:.2} M/s ({total})",
        el.as_nanos() as f64 / n as f64,
        n as f64 / el.as_secs_f64() / 1e6
    );
}
