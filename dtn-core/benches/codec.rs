//! Encode and decode+validate throughput of our BPv7 codec, with the `bp7` crate (dtn7-rs's codec)
//! measured on the same bytes in the same run.
//!
//! Run: `cargo bench -p dtn-core --bench codec`. Targets: >= 2 M small bundles/s decoded and validated
//! on one core and >= 3x bp7; >= 1 GB/s for 1 MB bundles including CRC-32C.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dtn_core::bpv7::{Bundle, BundleBuilder, CrcType, CreationTimestamp, Limits, StreamDecoder, StreamEncoder};

fn make(payload_len: usize) -> Vec<u8> {
    BundleBuilder::new("dtn://station-12/".parse().unwrap(), "dtn://collector/~data".parse().unwrap())
        .report_to("dtn://station-12/".parse().unwrap())
        .creation(CreationTimestamp::new(817_171_717_171, 42))
        .lifetime_ms(86_400_000)
        .hop_limit(32)
        .crc_type(CrcType::Crc32c)
        .payload((0..payload_len).map(|i| (i * 31 % 251) as u8).collect())
        .build()
        .unwrap()
        .to_vec()
}

fn bench(c: &mut Criterion) {
    for (name, len) in [("small_100B", 100usize), ("large_1MB", 1 << 20)] {
        let bytes = make(len);
        let mut g = c.benchmark_group(format!("decode_validate/{name}"));
        if len > 1000 {
            g.throughput(Throughput::Bytes(bytes.len() as u64));
        } else {
            g.throughput(Throughput::Elements(1));
        }
        g.bench_function(BenchmarkId::new("ours", len), |b| {
            b.iter(|| {
                let bundle = Bundle::decode(black_box(&bytes)).unwrap();
                black_box(bundle.payload().len())
            })
        });
        g.bench_function(BenchmarkId::new("ours_streaming", len), |b| {
            let mut dec = StreamDecoder::new(Limits::default());
            let mut sink = CountingSink(0);
            b.iter(|| {
                dec.reset();
                let f = dec.feed(black_box(&bytes), &mut sink).unwrap();
                assert!(f.done);
                black_box(sink.0)
            })
        });
        g.bench_function(BenchmarkId::new("bp7", len), |b| {
            b.iter(|| {
                let bundle = bp7::Bundle::try_from(black_box(&bytes[..])).unwrap();
                bundle.validate().unwrap();
                black_box(bundle.payload().map(|p| p.len()))
            })
        });
        g.finish();

        let mut g = c.benchmark_group(format!("encode/{name}"));
        if len > 1000 {
            g.throughput(Throughput::Bytes(bytes.len() as u64));
        } else {
            g.throughput(Throughput::Elements(1));
        }
        let decoded = Bundle::decode(&bytes).unwrap();
        // Re-encoding a received bundle (what a forwarder does most): blocks keep their bytes.
        g.bench_function(BenchmarkId::new("ours_reencode", len), |b| {
            let mut out = Vec::with_capacity(bytes.len());
            b.iter(|| {
                out.clear();
                decoded.encode_into(&mut out);
                black_box(out.len())
            })
        });
        // Building from fields, CRCs computed: what a source does.
        let payload: Vec<u8> = decoded.payload().to_vec();
        g.bench_function(BenchmarkId::new("ours_build_encode", len), |b| {
            b.iter(|| {
                let bundle =
                    BundleBuilder::new("dtn://station-12/".parse().unwrap(), "dtn://collector/~data".parse().unwrap())
                        .creation(CreationTimestamp::new(817_171_717_171, 42))
                        .hop_limit(32)
                        .payload(payload.clone())
                        .build()
                        .unwrap();
                black_box(bundle.to_vec().len())
            })
        });
        g.bench_function(BenchmarkId::new("ours_stream_encode", len), |b| {
            let header = decoded.header();
            let mut out = Vec::with_capacity(bytes.len());
            b.iter(|| {
                out.clear();
                let mut enc = StreamEncoder::begin(&header, &mut out);
                enc.payload(&payload).unwrap();
                out.extend_from_slice(&payload);
                enc.finish(&mut out).unwrap();
                black_box(out.len())
            })
        });
        let bp7_bundle = bp7::Bundle::try_from(&bytes[..]).unwrap();
        g.bench_function(BenchmarkId::new("bp7", len), |b| {
            b.iter(|| {
                let mut bundle = bp7_bundle.clone();
                black_box(bundle.to_cbor().len())
            })
        });
        g.finish();
    }
}

struct CountingSink(u64);

impl dtn_core::bpv7::PayloadSink for CountingSink {
    fn on_payload(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.0 += chunk.len() as u64;
        Ok(())
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
