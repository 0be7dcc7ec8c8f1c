//! Transfer throughput of two of our nodes and of two dtn7-rs 0.21.0 nodes on loopback, in the same run,
//! against a plain write + sync_data of the same bytes. Run through `bench/transfer.sh`, which builds
//! `target/release/dtnd` first and documents what is measured; `--help` lists the options.
//!
//! Per size and system: two fresh nodes, A (sender, dialing B) and B (receiver, endpoint registered first);
//! one warm-up bundle, then the clock runs from the first submit at A to the last delivery at B. Ours: the
//! last payload read from B's WebSocket (B's `/stats` delivered counter is shown too). dtn7-rs: B's
//! `/status/info` delivered counter (its WebSocket parks deliveries unsent once 32 are unread, so it cannot
//! count them). Every wait is bounded: a run stopped by `--timeout`, or by nothing arriving for 10 s after
//! the last submit, reports the rate up to its last delivery. Nodes are killed when their run ends, also on
//! error or panic.

use std::fmt::Display;
use std::fs::{self, File};
use std::io::{Cursor, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use dtn_client::{Client, SendOptions};

type Res<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const MIB: usize = 1 << 20;
/// Payloads up to this size are submitted to our node in batches (as a camera node queueing frames would);
/// larger ones one per request.
const BATCH_UP_TO: usize = 64 << 10;
/// Payload bytes per batch request at most: a batch is stored in one write, all or none.
const BATCH_BYTES: usize = 4 << 20;
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(5);
/// A run stops when nothing is delivered for this long after the last submit.
const STALL: Duration = Duration::from_secs(10);
/// Clock ticks per second in /proc/PID/stat (USER_HZ).
const TICKS: f64 = 100.0;
const OUR_DST: &str = "dtn://b/sink";

const TARGET_1MB_VS_DISK: f64 = 0.6;
const TARGET_64K_PER_S: f64 = 3_000.0;
const TARGET_100B_PER_S: f64 = 50_000.0;
const TARGET_VS_DTN7: f64 = 10.0;

const USAGE: &str = "usage: transfer_bench [options]
  --sizes A,B,...     payload sizes in bytes (default 100,65536,1048576)
  --counts N,...      bundles per size: one per size, or one for all
                      (default 100000 up to 1 KiB, 5000 up to 256 KiB, 500 above)
  --senders S         concurrent submitting connections per system (default 4)
  --batch B           payloads per POST /send/batch to our node, for payloads up to 64 KiB (default 1000,
                      and at most 4 MiB of payload per request)
  --readers R         WebSocket readers at our receiving node (default 2)
  --dir D             where the scratch directory goes (default: the current directory)
  --dtn7-store STORE  dtn7-rs bundle store: mem, sled or sneakers (default mem)
  --skip-dtn7         our nodes and the disk baseline only
  --timeout S         time limit of each timed run, in seconds (default 60)";

struct Args {
    sizes: Vec<usize>,
    counts: Option<Vec<u64>>,
    senders: usize,
    batch: usize,
    readers: usize,
    dir: PathBuf,
    dtn7_store: String,
    skip_dtn7: bool,
    timeout: Duration,
    /// Our daemon, next to this program's directory.
    dtnd: PathBuf,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut a = Args {
            sizes: vec![100, 65_536, MIB],
            counts: None,
            senders: 4,
            batch: 1000,
            readers: 2,
            dir: PathBuf::from("."),
            dtn7_store: "mem".into(),
            skip_dtn7: false,
            timeout: Duration::from_secs(60),
            dtnd: PathBuf::new(),
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or(format!("{flag} needs a value"));
            fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
                v.trim().parse().map_err(|_| format!("{flag}: bad number {v:?}"))
            }
            fn nums<T: std::str::FromStr>(flag: &str, v: &str) -> Result<Vec<T>, String> {
                v.split(',').map(|v| num(flag, v)).collect()
            }
            match flag.as_str() {
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                "--sizes" => a.sizes = nums(&flag, &value()?)?,
                "--counts" => a.counts = Some(nums(&flag, &value()?)?),
                "--senders" => a.senders = num(&flag, &value()?)?,
                "--batch" => a.batch = num(&flag, &value()?)?,
                "--readers" => a.readers = num(&flag, &value()?)?,
                "--dir" => a.dir = PathBuf::from(value()?),
                "--dtn7-store" => a.dtn7_store = value()?,
                "--skip-dtn7" => a.skip_dtn7 = true,
                "--timeout" => a.timeout = Duration::from_secs(num(&flag, &value()?)?),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if !["mem", "sled", "sneakers"].contains(&a.dtn7_store.as_str()) {
            return Err(format!("--dtn7-store: {:?} is not mem, sled or sneakers", a.dtn7_store));
        }
        if a.counts.as_ref().is_some_and(|c| c.len() != 1 && c.len() != a.sizes.len()) {
            return Err("--counts needs one count, or one per size".into());
        }
        let zero = a.sizes.contains(&0) || a.counts.iter().flatten().any(|&c| c == 0);
        if zero || a.senders == 0 || a.batch == 0 || a.readers == 0 || a.timeout.is_zero() {
            return Err("sizes, counts, --senders, --batch, --readers and --timeout must be at least 1".into());
        }
        Ok(a)
    }

    fn count(&self, i: usize) -> u64 {
        match (&self.counts, self.sizes[i]) {
            (Some(c), _) => c[i.min(c.len() - 1)],
            (None, 0..=1024) => 100_000,
            (None, 1025..=262_144) => 5_000,
            (None, _) => 500,
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse().unwrap_or_else(|msg| {
        eprintln!("{msg}\n\n{USAGE}");
        std::process::exit(2)
    });
    if let Err(e) = bench(args) {
        eprintln!("transfer_bench: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// A node process, killed when dropped. Its output goes to a log file in the scratch directory.
struct Proc {
    child: Child,
    name: String,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: String, mut cmd: Command, log: PathBuf) -> Res<Proc> {
        let out = File::create(&log)?;
        cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        let child = cmd.spawn().map_err(|e| format!("starting {name} ({}): {e}", cmd.get_program().display()))?;
        Ok(Proc { child, name, log })
    }

    /// Why it stopped, with the end of its log, if it has.
    fn exited(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok()??;
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let tail = log.lines().skip(log.lines().count().saturating_sub(8)).collect::<Vec<_>>().join("\n    ");
        Some(format!("{} exited ({status}); end of its log:\n    {tail}", self.name))
    }

    fn cpu(&self) -> f64 {
        cpu_seconds(&format!("/proc/{}/stat", self.child.id()))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU seconds from a /proc stat file (utime and stime: the 12th and 13th fields after the
/// parenthesised command name).
fn cpu_seconds(stat: &str) -> f64 {
    let s = fs::read_to_string(stat).unwrap_or_default();
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest.split_whitespace().skip(11).take(2).filter_map(|v| v.parse().ok()).collect();
    if f.len() == 2 { (f[0] + f[1]) / TICKS } else { f64::NAN }
}

fn free_port() -> Res<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Polls `ready` until it holds; fails on timeout or when a node has exited.
fn wait_until(what: &str, procs: &mut [Proc], mut ready: impl FnMut() -> bool) -> Res {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    while !ready() {
        if let Some(e) = procs.iter_mut().find_map(Proc::exited) {
            return Err(format!("waiting for {what}: {e}").into());
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {}s waiting for {what}", SETUP_TIMEOUT.as_secs()).into());
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// What the threads of one timed run share.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    next: AtomicU64,
    submitted: AtomicU64,
    /// Payloads read by the application at B (ours), the warm-up bundle included.
    read: AtomicU64,
    /// B's delivered counter as last polled, the warm-up bundle included.
    counted: AtomicU64,
    submit_done: Mutex<Option<Instant>>,
    read_all: Mutex<Option<Instant>>,
    counted_all: Mutex<Option<Instant>>,
    error: Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, e: impl Display) {
        lock(&self.error).get_or_insert_with(|| e.to_string());
        self.stop.store(true, Relaxed);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn mark(at: &Mutex<Option<Instant>>) {
    lock(at).get_or_insert_with(Instant::now);
}

/// Starts `count` submitting threads, each with its own connection (made by `make`). They take `chunk`
/// bundles at a time until `n` are taken, and hand the number to send to their `send`.
fn start_senders<F>(count: usize, chunk: u64, n: u64, shared: &Arc<Shared>, make: impl Fn() -> F) -> Vec<JoinHandle<()>>
where
    F: FnMut(u64) -> Res + Send + 'static,
{
    let start = |(mut send, shared): (F, Arc<Shared>)| {
        thread::spawn(move || {
            while !shared.stopped() {
                let first = shared.next.fetch_add(chunk, Relaxed);
                if first >= n {
                    break;
                }
                let k = chunk.min(n - first);
                if let Err(e) = send(k) {
                    return shared.fail(format!("submitting: {e}"));
                }
                if shared.submitted.fetch_add(k, Relaxed) + k == n {
                    mark(&shared.submit_done);
                }
            }
        })
    };
    (0..count).map(|_| start((make(), shared.clone()))).collect()
}

/// Polls B's delivered counter (`read`, which includes the warm-up bundle) until it reaches `target`.
fn start_counter(
    shared: &Arc<Shared>,
    target: u64,
    mut read: impl FnMut() -> Res<u64> + Send + 'static,
) -> JoinHandle<()> {
    let shared = shared.clone();
    thread::spawn(move || {
        while !shared.stopped() {
            match read() {
                Ok(d) => {
                    shared.counted.store(d, Relaxed);
                    if d >= target {
                        return mark(&shared.counted_all);
                    }
                }
                Err(e) => return shared.fail(format!("reading the delivered counter: {e}")),
            }
            thread::sleep(POLL);
        }
    })
}

/// One system's figures at one size.
#[derive(Default)]
struct Run {
    system: String,
    n: u64,
    /// Bundles delivered within the run: all `n` unless it was stopped.
    done: u64,
    elapsed: Duration,
    submit: Option<Duration>,
    /// When B's delivered counter reached the last bundle.
    counter: Option<Duration>,
    /// CPU seconds of A, B and this program during the run.
    cpu: [f64; 3],
    error: Option<String>,
}

impl Run {
    fn failed(system: &str, n: u64, e: impl Display) -> Run {
        Run { system: system.into(), n, error: Some(e.to_string()), ..Run::default() }
    }

    fn per_s(&self) -> f64 {
        if self.done == 0 { 0.0 } else { self.done as f64 / self.elapsed.as_secs_f64() }
    }
}

/// A timed run under way: its start, its threads and its nodes (A first).
struct Timed {
    t0: Instant,
    shared: Arc<Shared>,
    procs: Vec<Proc>,
    threads: Vec<JoinHandle<()>>,
}

/// Waits for the end of a timed run (the last delivery read, or counted if `!app_reads`; an error; a node
/// exiting; the time limit), then stops the threads and the nodes and returns the figures.
fn finish(system: &str, n: u64, a: &Args, app_reads: bool, timed: Timed) -> Run {
    let Timed { t0, shared, mut procs, threads } = timed;
    let cpu0 = [procs[0].cpu(), procs[1].cpu(), cpu_seconds("/proc/self/stat")];
    let (all, seen) = if app_reads { (&shared.read_all, &shared.read) } else { (&shared.counted_all, &shared.counted) };
    let deadline = t0 + a.timeout;
    let (mut error, mut last, mut last_at) = (None, 0, t0);
    while lock(all).is_none() && error.is_none() {
        let now = Instant::now();
        if seen.load(Relaxed) != last {
            (last, last_at) = (seen.load(Relaxed), now);
        }
        error = lock(&shared.error).clone().or_else(|| procs.iter_mut().find_map(Proc::exited));
        if error.is_none() && now > deadline {
            error = Some(format!("stopped at the time limit ({}s)", a.timeout.as_secs()));
        } else if error.is_none() && lock(&shared.submit_done).is_some() && now - last_at > STALL {
            error = Some(format!("stopped: nothing delivered for {}s after the last submit", STALL.as_secs()));
        }
        thread::sleep(Duration::from_millis(1));
    }
    // The counter is polled: give it a moment to see the last delivery.
    let counter_deadline = deadline.min(Instant::now() + Duration::from_secs(5));
    while app_reads && error.is_none() && lock(&shared.counted_all).is_none() && Instant::now() < counter_deadline {
        thread::sleep(Duration::from_millis(1));
    }
    let cpu = [procs[0].cpu() - cpu0[0], procs[1].cpu() - cpu0[1], cpu_seconds("/proc/self/stat") - cpu0[2]];
    shared.stop.store(true, Relaxed);
    // Killing the nodes ends any request a thread is blocked in.
    drop(procs);
    for t in threads {
        let _ = t.join();
    }
    let since = |at: &Mutex<Option<Instant>>| lock(at).map(|t| t - t0);
    let (done, elapsed) = match since(all) {
        Some(d) => (n, d),
        // Stopped: the rate up to the last delivery seen.
        None => (seen.load(Relaxed).saturating_sub(1).min(n), last_at - t0),
    };
    let (submit, counter) = (since(&shared.submit_done), since(&shared.counted_all));
    Run { system: system.into(), n, done, elapsed, submit, counter, cpu, error }
}

fn spawn_ours(a: &Args, dir: &Path, name: &str, tcpcl: u16, api: u16, peer: Option<u16>) -> Res<Proc> {
    let mut cmd = Command::new(&a.dtnd);
    cmd.args(["--node-id", &format!("dtn://{name}/"), "--store"]).arg(dir.join(name));
    cmd.args(["--tcpcl", &loopback(tcpcl).to_string(), "--api", &loopback(api).to_string(), "--no-discovery"]);
    if let Some(p) = peer {
        cmd.args(["--peer", &format!("tcp://{}", loopback(p))]);
    }
    cmd.env("RUST_LOG", "info");
    Proc::spawn(format!("our dtnd {name}"), cmd, dir.join(format!("{name}.log")))
}

/// A thread reading deliveries from B's WebSocket, counting payloads of the right size.
fn ws_reader(api: SocketAddr, size: usize, target: u64, shared: &Arc<Shared>) -> Res<JoinHandle<()>> {
    let stream = TcpStream::connect(api)?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{api}/ws?endpoint={OUR_DST}");
    let (mut ws, _) = tungstenite::client(url, stream).map_err(|e| format!("WebSocket handshake: {e}"))?;
    // So that the thread sees the end of the run.
    ws.get_ref().set_read_timeout(Some(Duration::from_millis(100)))?;
    let shared = shared.clone();
    Ok(thread::spawn(move || {
        loop {
            let e = match ws.read() {
                Ok(tungstenite::Message::Binary(p)) if p.len() == size => {
                    if shared.read.fetch_add(1, Relaxed) + 1 == target {
                        mark(&shared.read_all);
                    }
                    continue;
                }
                Ok(tungstenite::Message::Binary(p)) => format!("a payload of {} bytes arrived, not {size}", p.len()),
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock && !shared.stopped() => {
                    continue;
                }
                Err(e) => format!("WebSocket reader: {e}"),
            };
            if !shared.stopped() {
                shared.fail(e);
            }
            return;
        }
    }))
}

fn run_ours(a: &Args, dir: &Path, payload: &Arc<[u8]>, n: u64) -> Res<Run> {
    let size = payload.len();
    let (tcp_a, tcp_b, api_a, api_b) = (free_port()?, free_port()?, free_port()?, free_port()?);
    fs::create_dir_all(dir)?;
    let b = spawn_ours(a, dir, "b", tcp_b, api_b, None)?;
    let mut procs = vec![spawn_ours(a, dir, "a", tcp_a, api_a, Some(tcp_b))?, b];
    let (api_a, api_b) = (loopback(api_a), loopback(api_b));
    let (ca, cb) = (Client::new(api_a), Client::new(api_b));
    wait_until("the APIs of our nodes", &mut procs, || ca.node_id().is_ok() && cb.node_id().is_ok())?;
    cb.register(OUR_DST)?;
    wait_until("a session between our nodes", &mut procs, || ca.peers().is_ok_and(|p| !p.is_empty()))?;

    let shared = Arc::new(Shared::default());
    let target = n + 1;
    let mut threads = (0..a.readers).map(|_| ws_reader(api_b, size, target, &shared)).collect::<Res<Vec<_>>>()?;
    ca.send(OUR_DST, Cursor::new(payload.clone()), Some(size as u64), &SendOptions::default())?;
    wait_until("the warm-up bundle", &mut procs, || shared.read.load(Relaxed) >= 1 || shared.stopped())?;
    if let Some(e) = lock(&shared.error).clone() {
        return Err(e.into());
    }

    let t0 = Instant::now();
    threads.push(start_counter(&shared, target, move || {
        cb.stats()?["delivered"].as_u64().ok_or_else(|| "no `delivered` in /stats".into())
    }));
    if size <= BATCH_UP_TO {
        let per = a.batch.min((BATCH_BYTES / size.max(1)).max(1));
        let batch = vec![payload.to_vec(); per];
        threads.extend(start_senders(a.senders, per as u64, n, &shared, || {
            let (c, batch) = (Client::new(api_a), batch.clone());
            move |k| Ok(c.send_batch(OUR_DST, &batch[..k as usize]).map(drop)?)
        }));
    } else {
        threads.extend(start_senders(a.senders, 1, n, &shared, || {
            let (c, p) = (Client::new(api_a), payload.clone());
            move |_| {
                Ok(c.send(OUR_DST, Cursor::new(p.clone()), Some(p.len() as u64), &SendOptions::default()).map(drop)?)
            }
        }));
    }
    Ok(finish("ours", n, a, true, Timed { t0, shared, procs, threads }))
}

fn dtn7_bin() -> Option<PathBuf> {
    let dir = match std::env::var_os("DTN7_BIN") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/dtn-interop/dtn7-0.21.0/bin"),
    };
    dir.join("dtnd").exists().then_some(dir)
}

fn spawn_dtn7(a: &Args, bin: &Path, dir: &Path, name: &str, tcp: u16, web: u16, peer: Option<u16>) -> Res<Proc> {
    let work = dir.join(name);
    fs::create_dir_all(&work)?;
    // Always by full path: our daemon is called dtnd too.
    let mut cmd = Command::new(bin.join("dtnd"));
    cmd.args(["-n", &format!("dtn://{name}/"), "-W"]).arg(&work);
    cmd.args(["-D", &a.dtn7_store, "-r", "epidemic", "-e", "sink", "--disable_nd", "-i", "0"]);
    cmd.args(["-C", &format!("tcp:port={tcp}:bind=127.0.0.1"), "-w", &web.to_string()]);
    if let Some(p) = peer {
        cmd.args(["-s", &format!("tcp://127.0.0.1:{p}/r7")]);
    }
    cmd.env("RUST_LOG", "warn");
    Proc::spawn(format!("dtn7-rs dtnd {name}"), cmd, dir.join(format!("{name}.log")))
}

/// A client of dtn7's API (an answer other than 2xx is an error).
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(60))).build().new_agent()
}

fn dtn7_get(agent: &ureq::Agent, web: u16, path: &str) -> Res<String> {
    Ok(agent.get(format!("http://127.0.0.1:{web}{path}")).call()?.into_body().read_to_string()?)
}

fn dtn7_send(agent: &ureq::Agent, url: &str, payload: &[u8]) -> Res {
    Ok(agent.post(url).send(payload)?.into_body().read_to_string().map(drop)?)
}

fn dtn7_delivered(agent: &ureq::Agent, web: u16) -> Res<u64> {
    let v: serde_json::Value = serde_json::from_str(&dtn7_get(agent, web, "/status/info")?)?;
    v["delivered"].as_u64().ok_or_else(|| "no `delivered` in /status/info".into())
}

fn run_dtn7(a: &Args, bin: &Path, dir: &Path, payload: &Arc<[u8]>, n: u64) -> Res<Run> {
    let (tcp_s, tcp_r, web_s, web_r) = (free_port()?, free_port()?, free_port()?, free_port()?);
    let r = spawn_dtn7(a, bin, dir, "r7", tcp_r, web_r, None)?;
    let mut procs = vec![spawn_dtn7(a, bin, dir, "s7", tcp_s, web_s, Some(tcp_r))?, r];
    let ag = agent();
    let up = |web: u16| dtn7_get(&ag, web, "/status/nodeid").is_ok();
    wait_until("the APIs of the dtn7-rs nodes", &mut procs, || up(web_s) && up(web_r))?;
    let send_url = format!("http://127.0.0.1:{web_s}/send?dst=dtn://r7/sink&lifetime=1h");
    // The warm-up bundle also makes A dial B.
    dtn7_send(&ag, &send_url, payload)?;
    wait_until("the warm-up bundle", &mut procs, || dtn7_delivered(&ag, web_r).is_ok_and(|d| d >= 1))?;

    let shared = Arc::new(Shared::default());
    let t0 = Instant::now();
    let mut threads = vec![start_counter(&shared, n + 1, move || dtn7_delivered(&ag, web_r))];
    threads.extend(start_senders(a.senders, 1, n, &shared, || {
        let (ag, url, p) = (agent(), send_url.clone(), payload.clone());
        move |_| dtn7_send(&ag, &url, &p)
    }));
    let system = format!("dtn7-rs 0.21.0 ({} store)", a.dtn7_store);
    Ok(finish(&system, n, a, false, Timed { t0, shared, procs, threads }))
}

/// Writes `n` pieces of `payload` to a new file in `dir` with `sync_data` after each piece of 1 MiB or more,
/// else after each MiB written and at the end.
fn disk_baseline(dir: &Path, payload: &[u8], n: u64) -> Res<Duration> {
    let path = dir.join("baseline");
    let t0 = Instant::now();
    let mut f = File::create(&path)?;
    let mut unsynced = 0;
    for i in 0..n {
        f.write_all(payload)?;
        unsynced += payload.len();
        if unsynced >= MIB || (i + 1 == n && unsynced > 0) {
            f.sync_data()?;
            unsynced = 0;
        }
    }
    let d = t0.elapsed();
    drop(f);
    fs::remove_file(&path)?;
    Ok(d)
}

/// Random bytes (xorshift), so that nothing on the way can take a shortcut.
fn random_payload(size: usize) -> Arc<[u8]> {
    let mut x = 0x9e37_79b9_7f4a_7c15 ^ size as u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    };
    (0..size).map(|_| next()).collect()
}

fn size_label(size: usize) -> String {
    match size {
        s if s >= MIB && s % MIB == 0 => format!("{} MB", s / MIB),
        s if s >= 1024 && s % 1024 == 0 => format!("{} KB", s / 1024),
        s => format!("{s} B"),
    }
}

fn mbit_s(per_s: f64, size: usize) -> f64 {
    per_s * size as f64 * 8.0 / 1e6
}

/// The header of the table, or a row: size, system, bundles, bundles/s, Mbit/s, then `rest`.
fn row(size: &str, system: &str, bundles: &str, per_s: &str, mbit: &str, rest: [&str; 6]) {
    let [time, counted, submit, vs7, vsd, cpu] = rest;
    println!(
        "{size:<6} {system:<27} {bundles:>13} {per_s:>9} {mbit:>8} {time:>7} {counted:>9} {submit:>8} {vs7:>7} {vsd:>7}  \
         {cpu}"
    );
}

fn print_runs(size: usize, n: u64, disk: Duration, ours: &Run, dtn7: Option<&Run>) {
    let disk_mbit = mbit_s(n as f64 / disk.as_secs_f64(), size);
    let ratio = |a: f64, b: f64| if b > 0.0 && a > 0.0 { format!("{:.2}", a / b) } else { "-".into() };
    let secs = |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.3}", d.as_secs_f64()));
    let (label, per_s, mbit) =
        (size_label(size), |r: f64| format!("{r:.0}"), |r: f64| format!("{:.1}", mbit_s(r, size)));
    for (run, vs) in [(Some(ours), dtn7), (dtn7, None)] {
        let Some(run) = run else { continue };
        let vs7 = vs.map_or("-".into(), |d| ratio(run.per_s(), d.per_s()));
        let vsd = ratio(mbit_s(run.per_s(), size), disk_mbit);
        let cpu = format!("{:.1}/{:.1}/{:.1}", run.cpu[0], run.cpu[1], run.cpu[2]);
        let times = [secs(Some(run.elapsed)), secs(run.counter), secs(run.submit)];
        let bundles = if run.done == run.n { run.n.to_string() } else { format!("{}/{}", run.done, run.n) };
        let rest = [&times[0], &times[1], &times[2], &vs7, &vsd, &cpu].map(String::as_str);
        row(&label, &run.system, &bundles, &per_s(run.per_s()), &mbit(run.per_s()), rest);
        if let Some(e) = &run.error {
            println!("       {}: {e}", run.system);
        }
    }
    let disk_per_s = n as f64 / disk.as_secs_f64();
    let rest = [&secs(Some(disk)), "", "", "", "", ""];
    row(&label, "disk write + sync_data", &n.to_string(), &per_s(disk_per_s), &mbit(disk_per_s), rest);
}

fn bench(mut args: Args) -> Res {
    let exe = std::env::current_exe()?;
    args.dtnd = exe.parent().and_then(Path::parent).map(|d| d.join("dtnd")).ok_or("no directory for dtnd")?;
    if !args.dtnd.exists() {
        return Err(format!("{} is not built (bench/transfer.sh builds it)", args.dtnd.display()).into());
    }
    let dtn7 = if args.skip_dtn7 { None } else { dtn7_bin() };
    if !args.skip_dtn7 && dtn7.is_none() {
        println!("dtn7-rs 0.21.0 is not installed (scripts/install-dtn7.sh, or set DTN7_BIN): measuring ours only");
    }
    fs::create_dir_all(&args.dir)?;
    let scratch = tempfile::Builder::new().prefix("transfer-bench-").tempdir_in(&args.dir)?;
    let shown = args.dir.join(scratch.path().file_name().unwrap_or_default());
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "loopback, {cores} cores, scratch {}; {} senders per system; our batches of up to {} (payloads up to 64 KiB, 4 MiB a request); \
         {} WebSocket readers",
        shown.display(),
        args.senders,
        args.batch,
        args.readers,
    );
    let rest = ["time s", "counted s", "submit s", "vs dtn7", "vs disk", "cpu s A/B/bench"];
    row("size", "system", "bundles", "bundles/s", "Mbit/s", rest);
    let a = &args;
    let mut verdicts = Vec::new();
    for (i, &size) in a.sizes.iter().enumerate() {
        let n = a.count(i);
        let payload = random_payload(size);
        let disk = disk_baseline(scratch.path(), &payload, n)?;
        let dir = scratch.path().join(format!("ours-{size}"));
        let ours = run_ours(a, &dir, &payload, n).unwrap_or_else(|e| Run::failed("ours", n, e));
        let _ = fs::remove_dir_all(&dir);
        let dtn7 = dtn7.as_ref().map(|bin| {
            let dir = scratch.path().join(format!("dtn7-{size}"));
            let r = run_dtn7(a, bin, &dir, &payload, n).unwrap_or_else(|e| Run::failed("dtn7-rs 0.21.0", n, e));
            let _ = fs::remove_dir_all(&dir);
            r
        });
        print_runs(size, n, disk, &ours, dtn7.as_ref());
        verdicts.extend(verdicts_at(size, mbit_s(n as f64 / disk.as_secs_f64(), size), &ours, dtn7.as_ref()));
    }
    println!(
        "\ntime s: from the first submit at A to the last payload read from B's WebSocket (ours) or counted delivered \
         by B's /status/info (dtn7-rs: queued for the endpoint); counted s: B's counter (ours: /stats); submit s: \
         until A acknowledged the last submit; bundles/s, Mbit/s (payload bits, 10^6/s) and ratios: over time s"
    );
    println!();
    for (ok, what) in &verdicts {
        println!("{}  {what}", if *ok { "PASS" } else { "FAIL" });
    }
    println!("targets met: {} of {}", verdicts.iter().filter(|(ok, _)| *ok).count(), verdicts.len());
    Ok(())
}

/// The targets that apply at one size: (met, what).
fn verdicts_at(size: usize, disk_mbit: f64, ours: &Run, dtn7: Option<&Run>) -> Vec<(bool, String)> {
    let (per_s, complete) = (ours.per_s(), ours.error.is_none());
    let mut v = match size {
        100 => vec![(
            per_s >= TARGET_100B_PER_S,
            format!("ours {per_s:.0} bundles/s >= 50000 (batch submit, group commit)"),
        )],
        65_536 => vec![(per_s >= TARGET_64K_PER_S, format!("ours {per_s:.0} bundles/s >= 3000"))],
        MIB => {
            let (mbit, ratio) = (mbit_s(per_s, size), mbit_s(per_s, size) / disk_mbit);
            let what =
                format!("ours {mbit:.1} Mbit/s = {ratio:.2} of write + sync_data ({disk_mbit:.1} Mbit/s) >= 0.6");
            vec![(ratio >= TARGET_1MB_VS_DISK, what)]
        }
        _ => vec![],
    };
    if let Some(d) = dtn7 {
        let ratio = per_s / d.per_s();
        let partial = if d.done < d.n && d.done > 0 { ", its rate over a stopped run" } else { "" };
        v.push((ratio >= TARGET_VS_DTN7, format!("ours {ratio:.1}x {}{partial} >= 10x", d.system)));
    }
    v.into_iter().map(|(ok, what)| (ok && complete, format!("{}: {what}", size_label(size)))).collect()
}
