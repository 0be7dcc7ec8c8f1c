//! Performance figures of the LMDB bundle store against its targets. Run through `bench/store.sh`.
//!
//! ```text
//! store_bench ingest-1mb [--count N] [--dir D]   durable ingest of 1 MB bundles vs. write + sync_data of a file
//! store_bench small [--count N] [--writers W] [--dir D]
//!                                                pipelined durable ingest of 200-byte bundles
//! store_bench million [--count N] [--dir D]      1M bundles, then memory, reopen time and summary cost
//! store_bench churn [--count N] [--dir D]        a sending node's cycle: insert in batches of 1,000, then
//!                                                remove each (forwarded) in batches of 100; CPU per bundle
//! store_bench all [--dir D]                      the three with their defaults
//! ```
//!
//! Every figure is for durable writes: a bundle counts once the store says it is durable. The scratch
//! directory (a fresh temporary directory under `--dir`, default the current directory) holds the stores and
//! the baseline file, so both are on the same file system; it is removed at the end.
//! MB means 10^6 bytes throughout.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use dtn_core::bpv7::{BundleBuilder, BundleId, CreationTimestamp, DtnTime, Eid};
use dtn_core::store::{
    BundleMeta, BundleStore, Custody, Delivery, Payload, Priority, SeqMode, Summary, TombstoneReason, WriteBatch,
    WriteOp,
};
use dtn_store_lmdb::{LmdbStore, Options};

const MB: f64 = 1e6;
const LIFETIME_MS: u64 = 86_400_000;
/// Outstanding batches per pipelined writer.
const WINDOW: usize = 512;
/// Creation time of the sources that have a clock (late October 2025, in DTN milliseconds).
const CLOCK_T0: u64 = 815_000_000_000;

/// Rounds of each 1 MB ingest measurement.
const ROUNDS_1MB: usize = 5;

const TARGET_RATIO: f64 = 0.7;
const TARGET_SMALL_PER_S: f64 = 50_000.0;
const TARGET_RSS_MB: f64 = 100.0;
const TARGET_REOPEN_S: f64 = 1.0;
const TARGET_SUMMARY_MS: f64 = 50.0;

fn main() -> ExitCode {
    let args = match Args::parse() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut verdicts = Verdicts::default();
    let result = match args.cmd.as_str() {
        "ingest-1mb" => ingest_1mb(&args, &mut verdicts),
        "small" => small(&args, &mut verdicts),
        "million" => million(&args, &mut verdicts),
        "churn" => churn(&args),
        "all" => ingest_1mb(&args, &mut verdicts)
            .and_then(|_| small(&args, &mut verdicts))
            .and_then(|_| million(&args, &mut verdicts)),
        _ => unreachable!("checked by Args::parse"),
    };
    if let Err(e) = result {
        eprintln!("store_bench: {e}");
        return ExitCode::FAILURE;
    }
    println!("targets met: {} of {}{}", verdicts.pass, verdicts.pass + verdicts.fail, verdicts.failed_list());
    ExitCode::SUCCESS
}

type Res<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const USAGE: &str = "usage: store_bench <ingest-1mb|small|million|churn|all> [--count N] [--writers W] [--dir D]
  ingest-1mb  durable ingest of 1 MB bundles against write + sync_data of one file (default --count 300)
  small       200-byte bundles from W pipelined writers (default --count 200000 --writers 4)
  million     1M 200-byte bundles from 100 sources, then RSS, reopen time, summary cost (default --count 1000000)
  churn       a sending node's cycle over 200-byte bundles: insert in batches of 1,000, remove each once
              forwarded in batches of 100; CPU time per bundle (default --count 200000; not part of `all`)
  all         ingest-1mb, small and million with their defaults (--dir only)
  --dir D     where the scratch directory goes (default: the current directory)";

struct Args {
    cmd: String,
    count: Option<u64>,
    writers: Option<usize>,
    dir: PathBuf,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut it = std::env::args().skip(1);
        let cmd = it.next().ok_or("no subcommand")?;
        if cmd == "-h" || cmd == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if !["ingest-1mb", "small", "million", "churn", "all"].contains(&cmd.as_str()) {
            return Err(format!("unknown subcommand {cmd:?}"));
        }
        let mut args = Args { cmd, count: None, writers: None, dir: PathBuf::from(".") };
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or(format!("{flag} needs a value"));
            match flag.as_str() {
                "--count" => args.count = Some(value()?.parse().map_err(|e| format!("--count: {e}"))?),
                "--writers" => args.writers = Some(value()?.parse().map_err(|e| format!("--writers: {e}"))?),
                "--dir" => args.dir = PathBuf::from(value()?),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if args.cmd == "all" && (args.count.is_some() || args.writers.is_some()) {
            return Err("`all` runs every benchmark with its defaults; only --dir applies".into());
        }
        if args.writers.is_some() && args.cmd != "small" {
            return Err("--writers applies to `small` only".into());
        }
        if args.count == Some(0) || args.writers == Some(0) {
            return Err("--count and --writers must be at least 1".into());
        }
        Ok(args)
    }

    fn count(&self, default: u64) -> u64 {
        if self.cmd == "all" { default } else { self.count.unwrap_or(default) }
    }
}

#[derive(Default)]
struct Verdicts {
    pass: u32,
    fail: u32,
    failed: Vec<&'static str>,
}

impl Verdicts {
    fn check(&mut self, name: &'static str, ok: bool) -> &'static str {
        if ok {
            self.pass += 1;
            "PASS"
        } else {
            self.fail += 1;
            self.failed.push(name);
            "FAIL"
        }
    }

    fn failed_list(&self) -> String {
        if self.failed.is_empty() { String::new() } else { format!("  (missed: {})", self.failed.join(", ")) }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Bundles and metadata

/// An encoded bundle with `payload_len` bytes of payload.
fn encode(source: &Eid, dest: &Eid, time: u64, seq: u64, payload_len: usize) -> Vec<u8> {
    BundleBuilder::new(source.clone(), dest.clone())
        .creation(CreationTimestamp::new(time, seq))
        .lifetime_ms(LIFETIME_MS)
        .payload(vec![(seq as u8) ^ 0x5a; payload_len])
        .build()
        .unwrap_or_else(|e| panic!("building a bundle: {e}"))
        .to_vec()
}

/// The payload length that makes a bundle from `source` to `dest` about `total` bytes encoded (exactly, for
/// the probe's time and sequence number; a byte or two off for others).
fn payload_len_for(total: usize, source: &Eid, dest: &Eid, time: u64, seq: u64) -> usize {
    let probe = total - 100;
    let overhead = encode(source, dest, time, seq, probe).len() - probe;
    total - overhead
}

fn meta(source: &Eid, dest: &Eid, time: u64, seq: u64, size: usize, seq_mode: SeqMode) -> BundleMeta {
    BundleMeta {
        id: BundleId { source: source.clone(), creation: CreationTimestamp::new(time, seq), fragment: None },
        destination: dest.clone(),
        seq_mode,
        arrival: 0,
        received_at: DtnTime(time),
        expires_at: DtnTime(time + LIFETIME_MS),
        size: size as u64,
        priority: Priority::NORMAL,
        custody: Custody::None,
        delivery: Delivery::Forward,
        total_adu_len: None,
        copies: 1,
    }
}

fn insert(meta: BundleMeta, payload: Payload) -> WriteBatch {
    let mut b = WriteBatch::new(meta.received_at);
    b.push(WriteOp::Insert { meta, payload });
    b
}

fn options() -> Options {
    Options::with_quota(64 << 30)
}

// ---------------------------------------------------------------------------------------------------------
// Measuring helpers

/// A fresh scratch directory under `--dir`, and its name as the user gave the parent (for printing).
fn scratch(args: &Args) -> Res<(tempfile::TempDir, String)> {
    fs::create_dir_all(&args.dir)?;
    let dir = tempfile::Builder::new().prefix("store-bench-").tempdir_in(&args.dir)?;
    let shown = args.dir.join(dir.path().file_name().unwrap_or_default()).display().to_string();
    Ok((dir, shown))
}

/// `RssAnon` of this process, in MB (heap and other anonymous memory; the LMDB map is file-backed and not
/// counted).
fn rss_anon_mb() -> f64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb * 1024.0 / MB)
}

/// Returns freed heap to the kernel, so that RssAnon shows what is in use rather than what the allocator
/// kept from earlier phases.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Drops a file's pages from the page cache (they are clean: the store synced them).
fn evict_from_page_cache(path: &Path) -> Res {
    use std::os::fd::AsRawFd;
    let f = File::open(path)?;
    // SAFETY: a valid, open descriptor; advice has no memory effects in this process.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(format!("posix_fadvise: error {rc}").into());
    }
    Ok(())
}

/// The id of the last committed LMDB write transaction, read from the meta pages of `data.mdb` (the
/// larger of the two). The difference over a run is the number of group commits the store made.
fn lmdb_txnid(store_dir: &Path) -> Option<u64> {
    // MDB_page header: 16 bytes. MDB_meta: magic u32, version u32, address, mapsize, 2 × MDB_db (48 bytes,
    // the first starting with the page size as u32), last_pg, txnid.
    const PSIZE_AT: u64 = 16 + 24;
    const TXNID_AT: u64 = 16 + 128;
    let mut f = File::open(store_dir.join("data.mdb")).ok()?;
    let mut read_u = |at: u64, n: usize| -> Option<u64> {
        let mut b = [0u8; 8];
        f.seek(SeekFrom::Start(at)).ok()?;
        f.read_exact(&mut b[..n]).ok()?;
        Some(u64::from_le_bytes(b))
    };
    let psize = read_u(PSIZE_AT, 4)?;
    Some(read_u(TXNID_AT, 8)?.max(read_u(psize + TXNID_AT, 8)?))
}

fn median_f(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Flushes every dirty page to disk, so that a timed run does not pay for the previous one's writeback.
fn settle() {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Completions of pipelined submissions.
#[derive(Default)]
struct Completions {
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Completions {
    fn record(&self, r: dtn_core::store::Result<dtn_core::store::CommitReport>) {
        match r {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.first_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(|| e.to_string());
            }
        }
    }

    fn check(&self, expected: u64) -> Res {
        let (ok, failed) = (self.ok.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed));
        if failed > 0 || ok != expected {
            let first = self.first_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
            return Err(format!("{ok} of {expected} batches committed, {failed} failed; first error: {first:?}").into());
        }
        Ok(())
    }
}

/// Submits one single-insert batch per item, keeping at most [`WINDOW`] of them in flight (the way a
/// convergence layer pipelines what it receives), and returns once every one has completed.
fn pipelined_writer(store: &LmdbStore, items: impl Iterator<Item = (BundleMeta, Vec<u8>)>, done: &Arc<Completions>) {
    // A counting semaphore: the channel holds one token per free slot; a completion puts its token back.
    let (release, acquire): (SyncSender<()>, Receiver<()>) = mpsc::sync_channel(WINDOW);
    for _ in 0..WINDOW {
        release.send(()).expect("receiver alive");
    }
    for (meta, bytes) in items {
        acquire.recv().expect("sender alive");
        let (release, done) = (release.clone(), done.clone());
        store.submit_with(insert(meta, Payload::Bytes(bytes)), move |r| {
            done.record(r);
            let _ = release.send(());
        });
    }
    for _ in 0..WINDOW {
        acquire.recv().expect("sender alive");
    }
}

// ---------------------------------------------------------------------------------------------------------
// ingest-1mb

fn ingest_1mb(args: &Args, v: &mut Verdicts) -> Res {
    const TAG: &str = "ingest 1MB ";
    let count = args.count(300);
    let (dir, shown) = scratch(args)?;
    let (source, dest) = (Eid::ipn(1, 0), Eid::ipn(2, 1));
    let plen = payload_len_for(1_000_000, &source, &dest, 0, count / 2);
    let bundles: Vec<Vec<u8>> = (0..count).map(|seq| encode(&source, &dest, 0, seq, plen)).collect();
    let total: usize = bundles.iter().map(Vec::len).sum();
    println!(
        "{TAG} {count} bundles of ~{} B ({plen} B payload), {:.0} MB per run, {ROUNDS_1MB} rounds; scratch {}",
        total / count as usize,
        total as f64 / MB,
        shown
    );
    let rate = |d: Duration| total as f64 / MB / d.as_secs_f64();

    // Disk throughput drifts a lot on a shared machine, so every measurement runs in each of several
    // rounds, in a rotating order, starting from a flushed file system. The figures are medians over the
    // rounds; a ratio is the median of each round's figure over that round's baseline.
    // (name, label, writers, staged, in flight per writer, counts toward the target). A writer that waits
    // for each bundle's commit before starting the next pays every sync in sequence; that figure is shown
    // for information. A convergence layer does not wait: it keeps receiving while earlier bundles commit
    // and acknowledges each on its durability callback, which is what the pipelined mode measures.
    const MODES: [(&str, &str, usize, bool, usize, bool); 4] = [
        ("ingest 1MB 1 writer, waits for each (bytes)", "1 writer, waits each (bytes):  ", 1, false, 1, false),
        ("ingest 1MB 1 writer, waits for each (staged)", "1 writer, waits each (staged): ", 1, true, 1, false),
        ("ingest 1MB 1 writer, pipelined (staged)", "1 writer, pipelined (staged):  ", 1, true, 4, true),
        ("ingest 1MB 4 writers, wait each (staged)", "4 writers, wait each (staged): ", 4, true, 1, true),
    ];
    let mut rates: [Vec<f64>; 5] = Default::default();
    let mut commits = [Some(0u64); 4];
    for round in 0..ROUNDS_1MB {
        for k in 0..5 {
            let i = (k + round) % 5;
            settle();
            if i == 0 {
                rates[0].push(rate(baseline(dir.path(), &bundles)?));
            } else {
                let (_, _, writers, staged, in_flight, _) = MODES[i - 1];
                let (d, groups) = store_run(dir.path(), &format!("s{i}"), &bundles, writers, staged, in_flight)?;
                rates[i].push(rate(d));
                commits[i - 1] = commits[i - 1].zip(groups).map(|(a, b)| a + b);
            }
        }
    }
    let show = |v: &[f64]| v.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(" ");
    let base = median_f(&rates[0]);
    println!("{TAG} baseline write+sync_data: {base:7.1} MB/s  (rounds: {})", show(&rates[0]));
    for (m, (name, label, _, _, _, counts)) in MODES.iter().enumerate() {
        let ours = median_f(&rates[m + 1]);
        // Each round's figure against the baseline of the same round, which ran next to it.
        let ratios: Vec<f64> = rates[m + 1].iter().zip(&rates[0]).map(|(o, b)| o / b).collect();
        let r = median_f(&ratios);
        let verdict = if *counts { v.check(name, r >= TARGET_RATIO) } else { "(information)" };
        let per_commit = commits[m].map_or(String::new(), |g| {
            format!(", {:.2} bundles per LMDB commit", (count * ROUNDS_1MB as u64) as f64 / g as f64)
        });
        println!(
            "{TAG} {label}{ours:7.1} MB/s  ratio {r:.2}  (target >= {TARGET_RATIO})  {verdict}  (rounds: {}{per_commit})",
            show(&rates[m + 1])
        );
    }
    Ok(())
}

/// Writes the bundles one after another to one file, each made durable (sync_data) before the next.
fn baseline(dir: &Path, bundles: &[Vec<u8>]) -> Res<Duration> {
    let path = dir.join("baseline.bin");
    let mut f = File::create(&path)?;
    let start = Instant::now();
    for b in bundles {
        f.write_all(b)?;
        f.sync_data()?;
    }
    let elapsed = start.elapsed();
    drop(f);
    fs::remove_file(&path)?;
    Ok(elapsed)
}

/// Durable ingest into a fresh store with `writers` threads, each committing one bundle at a time (and
/// waiting for it): the bytes in the batch, or staged through `stage()` first. Returns the time and the
/// number of LMDB commits it took.
fn store_run(
    dir: &Path,
    name: &str,
    bundles: &[Vec<u8>],
    writers: usize,
    staged: bool,
    in_flight: usize,
) -> Res<(Duration, Option<u64>)> {
    let path = dir.join(name);
    let store = LmdbStore::open(&path, options())?;
    let (source, dest) = (Eid::ipn(1, 0), Eid::ipn(2, 1));
    // Per writer: (meta, owned copy for `Payload::Bytes`, bytes to stage). The copies are made here, before
    // the clock starts.
    type Item<'b> = (BundleMeta, Option<Vec<u8>>, &'b [u8]);
    let mut work: Vec<Vec<Item>> = (0..writers).map(|_| Vec::new()).collect();
    for (seq, b) in bundles.iter().enumerate() {
        let m = meta(&source, &dest, 0, seq as u64, b.len(), SeqMode::Unique);
        work[seq % writers].push((m, (!staged).then(|| b.clone()), b));
    }
    let tx0 = lmdb_txnid(&path);
    let start = Instant::now();
    let results: Vec<Res> = thread::scope(|s| {
        let handles: Vec<_> = work
            .into_iter()
            .map(|items| {
                let store = &store;
                s.spawn(move || -> Res {
                    // A counting semaphore of `in_flight` tokens; a durability callback returns its token.
                    let (release, acquire): (SyncSender<Res<()>>, Receiver<Res<()>>) = mpsc::sync_channel(in_flight);
                    for _ in 0..in_flight {
                        release.send(Ok(()))?;
                    }
                    for (m, owned, b) in items {
                        acquire.recv()??;
                        let payload = match owned {
                            Some(bytes) => Payload::Bytes(bytes),
                            None => {
                                let mut w = store.stage()?;
                                w.write_all(b)?;
                                Payload::Staged(w.finish()?)
                            }
                        };
                        let release = release.clone();
                        store.submit_with(insert(m, payload), move |r| {
                            let _ = release.send(r.map(|_| ()).map_err(|e| e.to_string().into()));
                        });
                    }
                    for _ in 0..in_flight {
                        acquire.recv()??;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("writer panicked".into()))).collect()
    });
    let elapsed = start.elapsed();
    results.into_iter().collect::<Res<Vec<()>>>()?;
    let groups = lmdb_txnid(&path).zip(tx0).map(|(b, a)| b - a);
    if store.usage().bundles != bundles.len() as u64 {
        return Err(format!("store {name} holds {} bundles, expected {}", store.usage().bundles, bundles.len()).into());
    }
    store.close();
    fs::remove_dir_all(&path)?;
    Ok((elapsed, groups))
}

// ---------------------------------------------------------------------------------------------------------
// small

fn small(args: &Args, v: &mut Verdicts) -> Res {
    const TAG: &str = "small 200B ";
    let count = args.count(200_000);
    let writers = if args.cmd == "all" { 4 } else { args.writers.unwrap_or(4) };
    let (dir, shown) = scratch(args)?;
    let dest = Eid::ipn(1000, 1);
    let plen = payload_len_for(200, &Eid::ipn(1, 0), &dest, 0, count / writers as u64 / 2);
    // Built before the clock starts: writer w sends ipn:<w+1>.0, creation time 0, sequence 0, 1, ...
    let work: Vec<Vec<(BundleMeta, Vec<u8>)>> = (0..writers)
        .map(|w| {
            let source = Eid::ipn(w as u64 + 1, 0);
            let mode = if w % 2 == 0 { SeqMode::Unique } else { SeqMode::PerTime };
            let n = count / writers as u64 + u64::from((w as u64) < count % writers as u64);
            (0..n)
                .map(|seq| {
                    let b = encode(&source, &dest, 0, seq, plen);
                    (meta(&source, &dest, 0, seq, b.len(), mode), b)
                })
                .collect()
        })
        .collect();
    let bytes: usize = work.iter().flatten().map(|(_, b)| b.len()).sum();
    println!(
        "{TAG} {count} bundles of ~{} B from {writers} writers, {WINDOW} in flight per writer; scratch {}",
        bytes / count as usize,
        shown
    );
    let path = dir.path().join("store");
    let store = LmdbStore::open(&path, options())?;
    let done = Arc::new(Completions::default());
    let tx0 = lmdb_txnid(&path);
    let start = Instant::now();
    thread::scope(|s| {
        for items in work {
            let (store, done) = (&store, &done);
            s.spawn(move || pipelined_writer(store, items.into_iter(), done));
        }
    });
    let elapsed = start.elapsed();
    done.check(count)?;
    let groups = lmdb_txnid(&path).zip(tx0).map(|(b, a)| b - a);
    let per_s = count as f64 / elapsed.as_secs_f64();
    let verdict = v.check("small 200B", per_s >= TARGET_SMALL_PER_S);
    println!(
        "{TAG} durable ingest: {per_s:.0} bundles/s ({:.1} MB/s) in {:.2} s  (target >= {TARGET_SMALL_PER_S:.0})  {verdict}",
        bytes as f64 / MB / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    if let Some(g) = groups {
        println!("{TAG} group commits: {g}, {:.1} bundles each on average", count as f64 / g as f64);
    }
    store.close();
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// million

const SOURCES: u64 = 100;

/// Bundle `k` of source `s` (1-based): even sources have a clock and number their bundles uniquely, odd ones
/// are clockless (creation time 0, per-time numbering). Every 97th sequence number is skipped (lost on the
/// way), so each source's summary has a run per 96 bundles.
fn million_id(s: u64, k: u64) -> (Eid, u64, u64, SeqMode) {
    let seq = k + k / 96;
    if s.is_multiple_of(2) {
        (Eid::ipn(s, 0), CLOCK_T0 + seq * 1000, seq, SeqMode::Unique)
    } else {
        (Eid::ipn(s, 0), 0, seq, SeqMode::PerTime)
    }
}

fn million(args: &Args, v: &mut Verdicts) -> Res {
    const TAG: &str = "million    ";
    let count = args.count(1_000_000);
    let writers = 4u64;
    let (dir, shown) = scratch(args)?;
    let path = dir.path().join("store");
    let dest = Eid::ipn(1000, 1);
    let per_source = |s: u64| count / SOURCES + u64::from(s - 1 < count % SOURCES);
    let (ps, pt, _, _) = million_id(2, per_source(2) / 2);
    let plen_clock = payload_len_for(200, &ps, &dest, pt, per_source(2) / 2);
    let (ps, pt, _, _) = million_id(1, per_source(1) / 2);
    let plen_clockless = payload_len_for(200, &ps, &dest, pt, per_source(1) / 2);
    println!(
        "{TAG} {count} bundles of ~200 B from {SOURCES} sources (half unique-numbered with a clock, half clockless), \
         every 97th sequence number missing, {writers} pipelined writers; scratch {}",
        shown
    );

    // Ingest. Bundles are made as they are sent (1M of them in memory would dwarf what is measured next);
    // each writer takes every fourth source and sends from its sources in turn.
    let store = LmdbStore::open(&path, options())?;
    let done = Arc::new(Completions::default());
    let start = Instant::now();
    thread::scope(|s| {
        for w in 0..writers {
            let (store, done, dest) = (&store, &done, &dest);
            s.spawn(move || {
                let sources: Vec<u64> = (1..=SOURCES).filter(|s| (s - 1) % writers == w).collect();
                let longest = sources.iter().map(|&s| per_source(s)).max().unwrap_or(0);
                let items = (0..longest).flat_map(move |k| {
                    sources.clone().into_iter().filter(move |&s| k < per_source(s)).map(move |s| {
                        let (src, time, seq, mode) = million_id(s, k);
                        let plen = if mode == SeqMode::Unique { plen_clock } else { plen_clockless };
                        let b = encode(&src, dest, time, seq, plen);
                        (meta(&src, dest, time, seq, b.len(), mode), b)
                    })
                });
                pipelined_writer(store, items, done);
            });
        }
    });
    let elapsed = start.elapsed();
    done.check(count)?;
    let data_mb = fs::metadata(path.join("data.mdb"))?.len() as f64 / MB;
    println!(
        "{TAG} ingest: {:.1} s, {:.0} bundles/s; data.mdb {data_mb:.0} MB",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64()
    );
    println!("{TAG} RssAnon with the store open after ingest: {:.1} MB", rss_anon_mb());
    store.close();
    trim_heap();
    let rss_closed = rss_anon_mb();
    println!("{TAG} RssAnon before reopen (store closed, freed heap returned): {rss_closed:.1} MB");

    // Reopen (the data file is in the page cache: it was just written).
    let start = Instant::now();
    let store = LmdbStore::open(&path, options())?;
    let reopen = start.elapsed();
    let rss = rss_anon_mb();
    if store.usage().bundles != count {
        return Err(format!("reopened store holds {} bundles, expected {count}", store.usage().bundles).into());
    }
    let verdict = v.check("million reopen", reopen.as_secs_f64() < TARGET_REOPEN_S);
    println!("{TAG} reopen: {:.3} s  (target < {TARGET_REOPEN_S} s)  {verdict}", reopen.as_secs_f64());
    let verdict = v.check("million RssAnon", rss < TARGET_RSS_MB);
    println!(
        "{TAG} RssAnon after reopen: {rss:.1} MB (+{:.1} MB for the open store)  (target < {TARGET_RSS_MB} MB)  {verdict}",
        rss - rss_closed
    );

    // Summary: what a contact starts with. The peer holds every bundle of the first half of the sources.
    let mut peer = Summary::new();
    for s in 1..=SOURCES / 2 {
        for k in 0..per_source(s) {
            let (source, time, seq, mode) = million_id(s, k);
            peer.insert(&BundleId { source, creation: CreationTimestamp::new(time, seq), fragment: None }, mode);
        }
    }
    let (mut t_sum, mut t_bytes, mut t_diff, mut t_all) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut runs, mut encoded, mut diff_runs) = (0, 0, 0);
    for i in 0..12 {
        let t0 = Instant::now();
        let sum = store.summary();
        let t1 = Instant::now();
        let bytes = std::hint::black_box(sum.to_bytes());
        let t2 = Instant::now();
        let diff = std::hint::black_box(sum.difference(&peer));
        let t3 = Instant::now();
        if i > 0 {
            // The first round warms caches and is not counted.
            t_sum.push(t1 - t0);
            t_bytes.push(t2 - t1);
            t_diff.push(t3 - t2);
            t_all.push(t3 - t0);
        }
        (runs, encoded, diff_runs) = (sum.run_count(), bytes.len(), diff.run_count());
    }
    println!(
        "{TAG} summary: {runs} runs over {SOURCES} sources, {encoded} B encoded; difference with a peer holding \
         half the sources: {diff_runs} runs"
    );
    println!(
        "{TAG} summary() {:.2} ms + to_bytes() {:.2} ms + difference(peer) {:.2} ms (medians of {})",
        ms(median(t_sum)),
        ms(median(t_bytes)),
        ms(median(t_diff)),
        t_all.len()
    );
    let all = ms(median(t_all));
    let verdict = v.check("million summary", all < TARGET_SUMMARY_MS);
    println!(
        "{TAG} summary + to_bytes + difference, warm: {all:.2} ms median  (target < {TARGET_SUMMARY_MS} ms)  {verdict}"
    );
    store.close();

    // For information: reopen with the data file evicted from the page cache, as after a reboot.
    evict_from_page_cache(&path.join("data.mdb"))?;
    let start = Instant::now();
    let store = LmdbStore::open(&path, options())?;
    println!(
        "{TAG} reopen with data.mdb evicted from the page cache: {:.3} s  (information)",
        start.elapsed().as_secs_f64()
    );
    store.close();
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// churn

/// CPU seconds (user + system) this process has used so far, all threads.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// What a sending node asks of its store per bundle: the bundle is submitted in a batch of 1,000, and once
/// the next hop has acknowledged it, it is removed with a "forwarded" tombstone, in batches of 100 (the
/// acknowledgements of one burst). Up to 4 insert batches are in flight. Reports wall time and the
/// process's CPU time per bundle, which on a shared machine is the steadier figure.
fn churn(args: &Args) -> Res {
    const TAG: &str = "churn 200B ";
    const INSERT_BATCH: usize = 1000;
    const REMOVE_BATCH: usize = 100;
    const IN_FLIGHT: usize = 4;
    let count = args.count(200_000) as usize;
    let (dir, shown) = scratch(args)?;
    let source = Eid::ipn(1, 0);
    let dest = Eid::ipn(2, 1);
    let plen = payload_len_for(200, &source, &dest, CLOCK_T0, count as u64 / 2);
    let work: Vec<(BundleMeta, Vec<u8>)> = (0..count as u64)
        .map(|seq| {
            let b = encode(&source, &dest, CLOCK_T0, seq, plen);
            (meta(&source, &dest, CLOCK_T0, seq, b.len(), SeqMode::Unique), b)
        })
        .collect();
    println!(
        "{TAG} {count} bundles: insert batches of {INSERT_BATCH} ({IN_FLIGHT} in flight), removal batches of \
         {REMOVE_BATCH} with a forwarded tombstone; scratch {shown}"
    );
    // Batches are built before the clock starts.
    let mut batches: Vec<(WriteBatch, Vec<BundleId>)> = Vec::new();
    let mut work = work.into_iter().peekable();
    while work.peek().is_some() {
        let mut b = WriteBatch::new(DtnTime(CLOCK_T0));
        let mut ids = Vec::with_capacity(INSERT_BATCH);
        for (m, bytes) in work.by_ref().take(INSERT_BATCH) {
            ids.push(m.id.clone());
            b.push(WriteOp::Insert { meta: m, payload: Payload::Bytes(bytes) });
        }
        batches.push((b, ids));
    }
    let path = dir.path().join("store");
    let store = LmdbStore::open(&path, options())?;
    let (ins_tx, ins_rx) = mpsc::channel::<Result<Vec<BundleId>, String>>();
    let (rem_tx, rem_rx) = mpsc::channel::<Result<usize, String>>();
    let tx0 = lmdb_txnid(&path);
    let (cpu0, start) = (cpu_seconds(), Instant::now());
    let mut batches = batches.into_iter();
    let (mut in_flight, mut removals) = (0, 0);
    loop {
        while in_flight < IN_FLIGHT {
            let Some((b, ids)) = batches.next() else { break };
            let tx = ins_tx.clone();
            store.submit_with(b, move |r| {
                let _ = tx.send(r.map(|_| ids).map_err(|e| e.to_string()));
            });
            in_flight += 1;
        }
        if in_flight == 0 {
            break;
        }
        let ids = ins_rx.recv()?.map_err(|e| format!("insert failed: {e}"))?;
        in_flight -= 1;
        for part in ids.chunks(REMOVE_BATCH) {
            let mut b = WriteBatch::new(DtnTime(CLOCK_T0));
            for id in part {
                b.push(WriteOp::Remove { id: id.clone(), tombstone: Some(TombstoneReason::Forwarded) });
            }
            let (tx, n) = (rem_tx.clone(), part.len());
            store.submit_with(b, move |r| {
                let _ = tx.send(r.map(|_| n).map_err(|e| e.to_string()));
            });
            removals += 1;
        }
    }
    let mut removed = 0;
    for _ in 0..removals {
        removed += rem_rx.recv()?.map_err(|e| format!("removal failed: {e}"))?;
    }
    let (elapsed, cpu) = (start.elapsed(), cpu_seconds() - cpu0);
    let groups = lmdb_txnid(&path).zip(tx0).map(|(b, a)| b - a);
    let usage = store.usage();
    if removed != count || usage.bundles != 0 || usage.tombstones != count as u64 {
        return Err(format!(
            "store holds {} bundles and {} tombstones after the cycle",
            usage.bundles, usage.tombstones
        )
        .into());
    }
    store.close();
    let data_mb = fs::metadata(path.join("data.mdb"))?.len() as f64 / MB;
    println!(
        "{TAG} {:.0} bundles/s inserted and removed in {:.2} s; CPU {:.2} s = {:.1} us per bundle; {} commits; \
         data.mdb {data_mb:.1} MB",
        count as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        cpu,
        cpu * 1e6 / count as f64,
        groups.map_or("?".into(), |g| g.to_string()),
    );
    Ok(())
}
