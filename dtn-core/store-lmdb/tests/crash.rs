//! Crash safety: a child process ingests bundles as fast as it can (small ones inline, large ones through
//! payload files, partial transfers) and prints each bundle the moment the store reports it durable; the
//! parent SIGKILLs it at a random moment, reopens the store, and checks that every reported bundle is there
//! byte for byte and that the store passes its integrity check. The map starts tiny so that it also grows
//! while being killed.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dtn_core::bpv7::{BundleId, CreationTimestamp, DtnTime, Eid};
use dtn_core::store::testkit::{bundle, meta_for};
use dtn_core::store::{BundleStore, PartialBundle, Payload, WriteBatch, WriteOp};
use dtn_store_lmdb::{LmdbStore, Options, read_to_vec};

const CHILD_ENV: &str = "DTN_STORE_CRASH_CHILD";
const ROUNDS: u64 = 24;

fn opts() -> Options {
    Options { quota: 64 << 30, map_size: 2 << 20, ..Options::default() }
}

fn dest() -> Eid {
    Eid::dtn("collector", "~data").unwrap_or(Eid::Null)
}

/// Node number of writer `w` in round `r`: every round writes new IDs.
fn node(round: u64, w: u64) -> u64 {
    round * 10 + w + 1
}

/// Payload length of the n-th bundle of a writer: small ones vary around 200 B, large ones 256 KiB–2 MiB.
fn payload_len(w: u64, n: u64) -> usize {
    match w {
        0 => 100 + (n * 37 % 1900) as usize,
        _ => (256 << 10) + (n * 7919 % (1792 << 10)) as usize,
    }
}

#[test]
fn killed_mid_write_loses_nothing_reported_durable() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut durable: Vec<(u64, u64, u64, usize)> = Vec::new(); // (round, writer, seq, payload length)
    let mut partials: Vec<(BundleId, u64, u64, usize)> = Vec::new(); // (id, durable len, seq, payload length)
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["--exact", "killed_mid_write_loses_nothing_reported_durable", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env("DTN_STORE_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let reader = {
            let lines = lines.clone();
            let out = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for l in BufReader::new(out).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(l);
                }
            })
        };
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Between 20 and 400 ms: some kills land while the store opens, most mid-ingest.
        std::thread::sleep(Duration::from_millis(20 + rng % 380));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        for l in lines.lock().unwrap().iter() {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                ["D", w, seq, len] => {
                    durable.push((round, w.parse().unwrap(), seq.parse().unwrap(), len.parse().unwrap()))
                }
                ["P", seq, dur, len] => {
                    let seq: u64 = seq.parse().unwrap();
                    let id = BundleId {
                        source: Eid::ipn(node(round, 2), 0),
                        creation: CreationTimestamp::new(0, seq),
                        fragment: None,
                    };
                    partials.push((id, dur.parse().unwrap(), seq, len.parse().unwrap()));
                }
                _ => {}
            }
        }

        // Every round checks the store's consistency and what this round reported; the last round re-reads
        // everything reported in all rounds, so damage done to old data by a later crash is caught too.
        let last = round + 1 == ROUNDS;
        let store = LmdbStore::open(dir.path(), opts()).unwrap();
        let report = store.check(last).unwrap();
        assert!(report.ok(), "round {round}: integrity problems {:?}", report.problems);
        for &(r, w, seq, len) in durable.iter().filter(|d| last || d.0 == round) {
            let src = Eid::ipn(node(r, w), 0);
            let expect = bundle(&src, 0, seq, len, &dest());
            let id = BundleId { source: src, creation: CreationTimestamp::new(0, seq), fragment: None };
            let got = store.read_bundle(&id).map(|rd| read_to_vec(rd).unwrap());
            assert_eq!(got.ok().as_deref(), Some(&expect[..]), "round {round}: reported bundle {id} lost or changed");
        }
        let kept = store.partials().unwrap();
        for (id, dur, seq, len) in &partials {
            let p = kept.iter().find(|p| &p.id == id).unwrap_or_else(|| panic!("partial {id} lost"));
            assert!(p.durable_len >= *dur);
            if last || id.source == Eid::ipn(node(round, 2), 0) {
                let whole = bundle(&id.source, 0, *seq, *len, &dest());
                let prefix = read_to_vec(store.read_partial(id).unwrap()).unwrap();
                assert_eq!(prefix[..], whole[..p.durable_len as usize], "partial {id} prefix differs");
            }
        }
        store.close();
    }
    let small = durable.iter().filter(|d| d.1 == 0).count();
    let large = durable.len() - small;
    println!(
        "{ROUNDS} kills: {small} small and {large} large bundles and {} partials reported durable, all intact",
        partials.len()
    );
    assert!(small > 100 && large > 10, "the child made too little progress to test anything");
}

/// The child: three writers until killed.
fn child(dir: &Path) -> ! {
    let round: u64 = std::env::var("DTN_STORE_CRASH_ROUND").ok().and_then(|r| r.parse().ok()).unwrap_or(0);
    let store = Arc::new(LmdbStore::open(dir, opts()).unwrap());
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let say = move |out: &Mutex<std::io::Stdout>, line: String| {
        let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    };
    // Small bundles, pipelined: the callback is the durability signal.
    let (s0, o0) = (store.clone(), out.clone());
    std::thread::spawn(move || {
        let src = Eid::ipn(node(round, 0), 0);
        let window = Arc::new((Mutex::new(0u32), std::sync::Condvar::new()));
        for seq in 0.. {
            let len = payload_len(0, seq);
            let bytes = bundle(&src, 0, seq, len, &dest());
            let meta = meta_for(&src, 0, seq, &bytes, &dest());
            {
                let (m, cv) = &*window;
                let mut n = m.lock().unwrap();
                while *n >= 64 {
                    n = cv.wait(n).unwrap();
                }
                *n += 1;
            }
            let (o, w) = (o0.clone(), window.clone());
            let batch =
                WriteBatch { now: DtnTime(0), ops: vec![WriteOp::Insert { meta, payload: Payload::Bytes(bytes) }] };
            s0.submit_with(batch, move |r| {
                if r.is_ok() {
                    say(&o, format!("D 0 {seq} {len}"));
                }
                let (m, cv) = &*w;
                *m.lock().unwrap() -= 1;
                cv.notify_one();
            });
        }
    });
    // Large bundles streamed into payload files.
    let (s1, o1) = (store.clone(), out.clone());
    std::thread::spawn(move || {
        let src = Eid::ipn(node(round, 1), 0);
        for seq in 0.. {
            let len = payload_len(1, seq);
            let bytes = bundle(&src, 0, seq, len, &dest());
            let meta = meta_for(&src, 0, seq, &bytes, &dest());
            let mut w = s1.stage().unwrap();
            for chunk in bytes.chunks(100_000) {
                w.write_all(chunk).unwrap();
            }
            let sid = w.finish().unwrap();
            let batch =
                WriteBatch { now: DtnTime(0), ops: vec![WriteOp::Insert { meta, payload: Payload::Staged(sid) }] };
            if s1.submit(batch).wait().is_ok() {
                say(&o1, format!("D 1 {seq} {len}"));
            }
        }
    });
    // Transfers cut part-way: the durable prefix is recorded, then the rest goes on arriving.
    let (s2, o2) = (store.clone(), out.clone());
    std::thread::spawn(move || {
        let src = Eid::ipn(node(round, 2), 0);
        for seq in 0.. {
            let len = payload_len(2, seq);
            let bytes = bundle(&src, 0, seq, len, &dest());
            let meta = meta_for(&src, 0, seq, &bytes, &dest());
            let mut w = s2.stage().unwrap();
            let cut = bytes.len() / 3;
            w.write_all(&bytes[..cut]).unwrap();
            let dur = w.sync().unwrap();
            let p = PartialBundle {
                id: meta.id.clone(),
                staged: w.id(),
                total_len: bytes.len() as u64,
                durable_len: dur,
                expires_at: meta.expires_at,
                from: None,
            };
            if s2.submit(WriteBatch { now: DtnTime(0), ops: vec![WriteOp::PutPartial(p)] }).wait().is_ok() {
                say(&o2, format!("P {seq} {dur} {len}"));
            }
            // Bytes past the durable prefix, never synced: a crash may keep or drop them.
            w.write_all(&bytes[cut..cut + 1000]).unwrap();
            w.flush().unwrap();
        }
    });
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        if start.elapsed() > Duration::from_secs(60) {
            // The parent died; do not linger.
            std::process::exit(3);
        }
    }
}
