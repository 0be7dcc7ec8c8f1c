//! Router engine throughput: engine events handled per second, with in-memory stores and the in-process test
//! network (`tests/net`), so every figure includes what a shell has to do too (commit each batch to a
//! `MemStore`, report it persisted, carry transmissions, fire timers).
//!
//! Run: `cargo bench -p dtn-core --bench engine` (about a minute on two shared cores; add `-- --quick` for a
//! rough figure in about half that). Each scenario runs once before it is measured, to check it and to count
//! its events for the throughput figure (printed, with the bundles it moved), also when a filter leaves it out.
//! The scenarios (the "10,000 bundles x 100 contacts"):
//!
//! * `ingest`: one node takes 10,000 submissions of 200-byte payloads; every `Submit` is followed by the
//!   `Persisted` round trip that makes it `Accepted`. Throughput is events (two per submission).
//! * `contacts_10k_x_100`: a hub holds 10,000 bundles of 20 other sources (200-byte payloads, about 320 bytes on
//!   the wire, received earlier) and meets 100 fresh peers in turn, one a second, epidemic routing on both ends.
//!   Each contact carries about `CONTACT_BUDGET` bytes (256 KiB: a few seconds of a phone passing a kiosk over
//!   Wi-Fi or BLE 5), about 810 bundles, and is then cut mid-transfer as passing contacts are; when the cut
//!   falls in a payload the peer keeps the prefix as a fragment and the hub splits its copy (reactive
//!   fragmentation). Throughput is engine events on both ends (`Net::events`).
//! * `contact_full_10k`: the per-bundle cost without a cut: one fresh peer takes all 10,000 bundles.
//! * `summary_exchange`: two nodes holding the same 10,000 bundles meet: hellos cross, each concludes the
//!   other lacks nothing, no bundle moves (the anti-entropy fast path). Time is per contact, contact up to
//!   quiet; the contact-down that follows is outside the timing. `contiguous`: 20 sources, one sequence run
//!   each; `sparse`: only every other sequence number held, 10,000 runs, the worst case for the summaries.
//!
//! * `hello_summaries`: the summary work of one received hello once delivery knowledge has spread, without
//!   the rest of the engine: 40 sources, each with a run of delivered sequence numbers and 2 to 100 fragment
//!   IDs (the pieces cut transfers leave, which the destination's tombstones list; they are most of a delivered
//!   summary in the 126-node simulation). `decode`: `Hello::decode` of a hello carrying it; `new_knowledge`:
//!   what it tells that the store and the receipts do not (`difference` twice, nothing left;
//!   `new_knowledge_one_pass`: the same with `difference_all`, as the engine does it); `merge`: adding
//!   it to a summary that already holds most of it (`union_with`); `merge_into_contact`: adding the hello's
//!   summaries to a contact's known set that holds little yet.
//!
//! Setup (building bundles, filling stores, adding nodes) stays outside the timed part (`iter_batched`,
//! `iter_custom`). Run as tests (`cargo test --benches`), the scenarios shrink to a tenth (see [`scale`]).

#[path = "../tests/net/mod.rs"]
mod net;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use dtn_core::bpv7::{BlockFlags, BundleBuilder, BundleId, CreationTimestamp, DtnTime, Eid};
use dtn_core::engine::{Event, Notice, Submission};
use dtn_core::proto::{BUNDLE_CLASS_BLOCK, BundleClass, Hello};
use dtn_core::routing::{Epidemic, RoutingAgent};
use dtn_core::store::{Priority, SeqMode, Summary};
use net::{Net, Op, T0, at, config};

const SOURCES: usize = 20;
const PAYLOAD: usize = 200;
/// Bytes one contact carries (both ways, hellos included) before it is cut; contact `k` gets `(97 k) mod 512`
/// bytes more, so the cuts land at different points of a bundle (header or payload) as they would in the field.
const CONTACT_BUDGET: u64 = 256 << 10;
const QUOTA: u64 = 1 << 30;
/// Contacts start here (virtual ms), one a second.
const FIRST_CONTACT_MS: u64 = 10_000;

/// Scenario sizes: the when benchmarking; a tenth of the bundles and contacts when the benches run once
/// as tests (`cargo test --benches`, an unoptimised build), where only correctness matters.
#[derive(Clone, Copy)]
struct Scale {
    bundles: usize,
    contacts: usize,
}

fn scale() -> Scale {
    // Criterion's rule: without `--bench`, or with `--test`, every routine runs once as a test.
    let args: Vec<String> = std::env::args().collect();
    let test = !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test");
    if test { Scale { bundles: 1_000, contacts: 10 } } else { Scale { bundles: 10_000, contacts: 100 } }
}

fn epidemic() -> Box<dyn RoutingAgent> {
    Box::new(Epidemic::new())
}

fn collector() -> Eid {
    "dtn://collector/~data".parse().expect("endpoint")
}

fn payload(k: usize) -> Vec<u8> {
    (0..PAYLOAD).map(|i| (i * 31 + k) as u8).collect()
}

/// Bundles as sources running our router make them (class block, unique sequence numbers), created in the hour
/// before the run: (source node, encoded bundle). `stride` 2 leaves a gap after every sequence number.
fn source_bundles(count: usize, stride: u64) -> Vec<(Eid, Vec<u8>)> {
    let class = BundleClass { priority: Priority::NORMAL, unique_seq: true };
    (0..count)
        .map(|k| {
            let (s, n) = (k % SOURCES, (k / SOURCES) as u64);
            let src: Eid = format!("dtn://source{s}/").parse().expect("source EID");
            let bundle = BundleBuilder::new(src.clone(), collector())
                .creation(CreationTimestamp { time: DtnTime(T0 - 3_600_000 + k as u64), sequence: n * stride })
                .lifetime_ms(7 * 86_400_000)
                .extension_block(BUNDLE_CLASS_BLOCK, BlockFlags::REPLICATE_IN_FRAGMENTS, class.encode())
                .payload(payload(k))
                .build()
                .expect("bundle");
            (src, bundle.to_vec())
        })
        .collect()
}

/// A node that received `bundles` from their sources (not in contact now).
fn add_holding(net: &mut Net, name: &str, seed: u64, bundles: &[(Eid, Vec<u8>)]) -> usize {
    let i = net.add(config(name), QUOTA, epidemic, seed);
    for (src, bytes) in bundles {
        net.inject(i, Event::Received { peer: src.clone(), bytes: bytes.clone() });
    }
    assert_eq!(net.held(i).len(), bundles.len(), "{name} stored every bundle");
    i
}

// ---------------------------------------------------------------------------------------------------------
// ingest
// ---------------------------------------------------------------------------------------------------------

fn ingest_setup(count: usize) -> (Net, Vec<Submission>) {
    let mut net = Net::new();
    net.add(config("station"), QUOTA, epidemic, 1);
    let subs = (0..count).map(|k| Submission::new(k as u64, collector(), payload(k))).collect();
    (net, subs)
}

/// Submits everything, one submission at a time with its persisted round trip; returns the events handled.
fn ingest_run(net: &mut Net, subs: Vec<Submission>) -> u64 {
    let before = net.events;
    for s in subs {
        net.inject(0, Event::Submit(s));
    }
    net.events - before
}

fn bench_ingest(c: &mut Criterion) {
    let n = scale().bundles;
    let (mut net, subs) = ingest_setup(n);
    let events = ingest_run(&mut net, subs);
    assert_eq!(net.accepted.len(), n, "every submission accepted");
    eprintln!("ingest: {events} events per iteration ({n} submissions)");

    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(events));
    g.bench_function("ingest", |b| {
        b.iter_batched(
            || ingest_setup(n),
            |(mut net, subs)| {
                ingest_run(&mut net, subs);
                net
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------------------
// contacts
// ---------------------------------------------------------------------------------------------------------

/// A hub holding `bundles` and `peers` fresh nodes, one contact with each scheduled (a second apart).
fn contacts_setup(bundles: &[(Eid, Vec<u8>)], peers: usize, budget: Option<u64>) -> Net {
    let mut net = Net::new();
    let hub = add_holding(&mut net, "hub", 1, bundles);
    for k in 0..peers {
        let p = net.add(config(&format!("peer{k}")), QUOTA, epidemic, 100 + k as u64);
        let t = FIRST_CONTACT_MS + 1_000 * k as u64;
        net.at(at(t), Op::Up(hub, p, budget.map(|b| b + (97 * k as u64) % 512)));
        net.at(at(t + 500), Op::Down(hub, p));
    }
    net
}

/// What one run did.
#[derive(Debug, Default)]
struct ContactsRun {
    events: u64,
    /// Whole bundles stored at peers.
    stored: u64,
    /// Transfers cut by the end of a contact.
    cut: u64,
    /// Cut transfers whose kept prefix held payload (the hub split its copy).
    split: u64,
}

fn contacts_run(net: &mut Net, peers: usize) -> ContactsRun {
    let (e0, n0, t0) = (net.events, net.notices.len(), net.txs.len());
    net.run_until(at(FIRST_CONTACT_MS + 1_000 * peers as u64));
    let count = |f: fn(&Notice) -> bool| net.notices[n0..].iter().filter(|(_, _, n)| f(n)).count() as u64;
    ContactsRun {
        events: net.events - e0,
        stored: count(|n| matches!(n, Notice::Stored { .. })),
        cut: net.txs[t0..].iter().filter(|t| !t.finished).count() as u64,
        split: count(|n| matches!(n, Notice::SplitAfterCut { .. })),
    }
}

fn bench_contacts(c: &mut Criterion) {
    let sc = scale();
    let bundles = source_bundles(sc.bundles, 1);
    let mut g = c.benchmark_group("engine");
    // Iterations of 0.1 to 2 s: the same number in every sample.
    g.sampling_mode(SamplingMode::Flat);
    for (name, peers, budget) in
        [("contacts_10k_x_100", sc.contacts, Some(CONTACT_BUDGET)), ("contact_full_10k", 1, None)]
    {
        let t = Instant::now();
        let mut net = contacts_setup(&bundles, peers, budget);
        let setup = t.elapsed();
        let t = Instant::now();
        let r = contacts_run(&mut net, peers);
        let run = t.elapsed();
        if let Err(e) = net.check_invariants() {
            panic!("{name}: {e}");
        }
        assert!(r.stored >= peers as u64, "{name}: every peer got bundles: {r:?}");
        if budget.is_none() {
            assert_eq!(r.stored, bundles.len() as u64, "{name}: the peer got everything");
        }
        eprintln!(
            "{name}: {} events per iteration, {} bundles stored at {peers} peers, {} transfers cut ({} split), \
             {:.2} events per bundle (first run {run:.2?}, setup {setup:.2?})",
            r.events,
            r.stored,
            r.cut,
            r.split,
            r.events as f64 / r.stored as f64
        );
        g.throughput(Throughput::Elements(r.events));
        if budget.is_some() {
            // One iteration takes 1 to 2 s: ten samples of one.
            g.measurement_time(Duration::from_secs(10));
        }
        g.bench_function(name, |b| {
            b.iter_batched(
                || contacts_setup(&bundles, peers, budget),
                |mut net| {
                    black_box(contacts_run(&mut net, peers));
                    net
                },
                BatchSize::PerIteration,
            )
        });
        g.measurement_time(MEASUREMENT);
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------------------
// summary exchange
// ---------------------------------------------------------------------------------------------------------

fn bench_summary_exchange(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine/summary_exchange");
    g.sample_size(30);
    g.throughput(Throughput::Elements(1));
    for (name, stride) in [("contiguous", 1), ("sparse", 2)] {
        let bundles = source_bundles(scale().bundles, stride);
        let mut net = Net::new();
        let a = add_holding(&mut net, "a", 1, &bundles);
        let b = add_holding(&mut net, "b", 2, &bundles);
        let (e0, tx0) = (net.events, net.txs.len());
        net.apply_now(Op::Up(a, b, None));
        let events = net.events - e0;
        let hello_bytes: Vec<u64> = net.txs[tx0..].iter().map(|t| t.len).collect();
        assert_eq!(hello_bytes.len(), 2, "{name}: only the hellos cross");
        assert!(net.txs[tx0..].iter().all(|t| t.id.is_none() && t.finished), "{name}: only the hellos cross");
        net.apply_now(Op::Down(a, b));
        eprintln!("summary_exchange/{name}: {events} events per contact, hellos of {hello_bytes:?} bytes");
        g.bench_function(BenchmarkId::new("10k", name), |bch| {
            bch.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    net.apply_now(Op::Up(a, b, None));
                    spent += t.elapsed();
                    net.apply_now(Op::Down(a, b));
                    // What crossed is recorded; over millions of contacts the records would only grow.
                    debug_assert!(net.txs.iter().all(|t| t.id.is_none()));
                    net.txs.clear();
                    net.notices.clear();
                }
                spent
            })
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------------------
// hello summaries
// ---------------------------------------------------------------------------------------------------------

/// A delivered summary as hellos carry it late in a dense simulation: `sources` sources, each with a run of
/// whole bundles and fragment IDs, `frags` per source on average but skewed as there (most sources a few,
/// some a hundred); `skip` leaves out every source whose number it divides.
fn delivered_summary(sources: u64, frags: u64, skip: u64) -> Summary {
    const SKEW: [u64; 8] = [2, 4, 13, 4, 35, 9, 14, 100];
    let mut s = Summary::new();
    for src in (1..=sources).filter(|n| skip == 0 || n % skip != 0) {
        let source = Eid::ipn(src, 0);
        for q in 0..20 {
            let id = BundleId { source: source.clone(), creation: CreationTimestamp::new(1000 + q, q), fragment: None };
            s.insert(&id, SeqMode::Unique);
        }
        for f in 0..(SKEW[src as usize % 8] * frags).div_ceil(23) {
            let creation = CreationTimestamp::new(1000 + 20 + f / 3, 20 + f / 3);
            let id = BundleId { source: source.clone(), creation, fragment: Some(((f % 3) * 1000, 1000)) };
            s.insert(&id, SeqMode::Unique);
        }
    }
    s
}

fn bench_hello_summaries(c: &mut Criterion) {
    let mut g = c.benchmark_group("summary/hello_40x23");
    g.sample_size(50);
    g.throughput(Throughput::Elements(1));
    let delivered = delivered_summary(40, 23, 0);
    let receipts = delivered_summary(40, 23, 7);
    let store_delivered = delivered.difference(&receipts);
    let hello = Hello {
        node: Eid::ipn(500, 0),
        endpoints: vec![Eid::ipn(500, 1)],
        held: delivered_summary(4, 6, 0),
        delivered: delivered.clone(),
        routing: Vec::new(),
        signature: None,
    };
    let content = hello.encode();
    eprintln!("hello_summaries: {} runs and fragments, hello content {} bytes", delivered.run_count(), content.len());
    g.bench_function("decode", |b| b.iter(|| Hello::decode(black_box(&content)).unwrap()));
    g.bench_function("new_knowledge", |b| {
        b.iter(|| {
            let d = black_box(&delivered).difference(&store_delivered).difference(&receipts);
            assert!(d.is_empty());
            d
        })
    });
    // What the engine does since summaries could subtract several at once.
    g.bench_function("new_knowledge_one_pass", |b| {
        b.iter(|| {
            let d = black_box(&delivered).difference_all(&[&store_delivered, &receipts]);
            assert!(d.is_empty());
            d
        })
    });
    // A contact's known set right after the hello: what crossed so far (a little) plus the hello's summaries.
    let crossed = delivered_summary(3, 2, 0);
    g.bench_function("merge_into_contact", |b| {
        b.iter_batched(
            || crossed.clone(),
            |mut known| {
                known.union_with(black_box(&hello.held));
                known.union_with(black_box(&delivered));
                known
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("merge", |b| {
        b.iter_batched(
            || receipts.clone(),
            |mut known| {
                known.union_with(black_box(&delivered));
                known
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

const MEASUREMENT: Duration = Duration::from_secs(5);

criterion_group! {
    name = benches;
    // No plots: the plotters backend takes about 5 s per benchmark here, more than most of them run.
    config = Criterion::default()
        .without_plots()
        .sample_size(10)
        .measurement_time(MEASUREMENT)
        .warm_up_time(Duration::from_secs(1));
    targets = bench_ingest, bench_contacts, bench_summary_exchange, bench_hello_summaries
}
criterion_main!(benches);
