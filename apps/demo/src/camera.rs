//! `dtn demo camera`: cameras around a house, each meeting the house node in short Wi-Fi windows.
//!
//! Cameras `cam1 … camN` each run a node that takes one bundle per frame (a camera-still batch of the shared
//! sensor format) for the house's camera endpoint. Each camera's node meets the house node only in windows
//! that come and go (staggered between cameras); closing a window cuts the live TCPCL session. The house runs
//! exactly what `dtn house` runs: it takes deliveries over its node's WebSocket API, stores each frame
//! durably in its archive before acknowledging it, and runs motion detection per camera. The scenes are
//! synthetic with known ground truth: in some a box walks to and fro (motion expected whenever it moved since
//! the previous frame), in the others it stands still (no motion expected). When the cameras stop, every
//! camera gets a last window until the house has everything or the time is up.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use dtn_camera::{House, HouseConfig, Note, Received, Seen, SyntheticCamera, frame_batch};
use dtn_core::bpv7::Eid;
use dtn_core::engine::Submission;
use dtn_core::routing::RoutingConfig;

use crate::net::{self, unix_ms};

/// The endpoint cameras send to and the house registers.
pub const HOUSE_ENDPOINT: &str = "dtn://house/~camera";

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct CameraOptions {
    /// Cameras around the house.
    pub cameras: usize,
    /// How long the cameras take frames.
    pub duration: Duration,
    /// Frames per second per camera.
    pub fps: f64,
    /// Frame size.
    pub width: u32,
    /// Frame size.
    pub height: u32,
    /// JPEG quality.
    pub quality: u8,
    /// How long a camera stays in Wi-Fi range each time.
    pub window: Duration,
    /// Time out of range between two windows of a camera.
    pub gap: Duration,
    /// After the cameras stop: longest the last window stays open waiting for every frame.
    pub drain: Duration,
    /// Which cameras see a walking box (by index from 0); the others see it parked. Default: all but every
    /// second one (cam2, cam4, … are still).
    pub walking: Option<Vec<bool>>,
    /// Routing agent of every node.
    pub routing: RoutingConfig,
    /// Seed of the scenes.
    pub seed: u64,
    /// Keep stores and the archive here (else a temporary directory, removed at the end).
    pub dir: Option<PathBuf>,
    /// Print only the summary.
    pub quiet: bool,
}

impl Default for CameraOptions {
    fn default() -> Self {
        CameraOptions {
            cameras: 3,
            duration: Duration::from_secs(20),
            fps: 2.0,
            width: 640,
            height: 480,
            quality: 80,
            window: Duration::from_secs(3),
            gap: Duration::from_secs(4),
            drain: Duration::from_secs(20),
            walking: None,
            routing: RoutingConfig::Epidemic,
            seed: 1,
            dir: None,
            quiet: false,
        }
    }
}

impl CameraOptions {
    fn walks(&self, i: usize) -> bool {
        match &self.walking {
            Some(w) => w.get(i).copied().unwrap_or(false),
            None => i.is_multiple_of(2),
        }
    }
}

/// One camera's line of the summary.
#[derive(Debug, Clone)]
pub struct CameraRow {
    /// Camera (node) name.
    pub name: String,
    /// Whether its box walks.
    pub walking: bool,
    /// Frames its node accepted (durable there).
    pub generated: u64,
    /// Frames of it in the house's archive.
    pub archived: u64,
    /// Generated but not archived.
    pub missing: u64,
    /// Deliveries the house found already archived.
    pub duplicates: u64,
    /// Motion events at frames where the box had moved.
    pub found: u64,
    /// Frames where the box had moved since the previous one.
    pub expected: u64,
    /// Motion events at frames where nothing had moved.
    pub false_events: u64,
}

/// What the demo ends with.
#[derive(Debug, Clone)]
pub struct CameraSummary {
    /// Per camera.
    pub rows: Vec<CameraRow>,
    /// Where the archive is (gone at the end unless a directory was given).
    pub archive: PathBuf,
    /// Payloads the house kept aside.
    pub rejected: u64,
}

impl CameraSummary {
    /// Every generated frame is in the archive.
    pub fn complete(&self) -> bool {
        self.rows.iter().all(|r| r.missing == 0)
    }
}

impl std::fmt::Display for CameraSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<7} {:<8} {:>9} {:>8} {:>7} {:>5} {:>13} {:>6}",
            "camera", "scene", "generated", "archived", "missing", "dups", "motion found", "false"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<7} {:<8} {:>9} {:>8} {:>7} {:>5} {:>13} {:>6}",
                r.name,
                if r.walking { "walking" } else { "still" },
                r.generated,
                r.archived,
                r.missing,
                r.duplicates,
                format!("{}/{}", r.found, r.expected),
                r.false_events
            )?;
        }
        let (g, a) = self.rows.iter().fold((0, 0), |(g, a), r| (g + r.generated, a + r.archived));
        writeln!(f, "{:<7} {:<8} {:>9} {:>8} {:>7}", "total", "", g, a, g.saturating_sub(a))
    }
}

/// Runs the demo, printing what happens to `out`. Needs tokio's multi-threaded runtime.
pub async fn run_camera(opts: &CameraOptions, out: &mut (dyn Write + Send)) -> Result<CameraSummary> {
    if opts.cameras < 1 {
        bail!("the demo needs at least one camera");
    }
    if !(opts.fps.is_finite() && opts.fps > 0.0) {
        bail!("frames per second must be positive");
    }
    // Removes the temporary directory, if it is one, when the demo is over.
    let (dir, _tmp) = net::work_dir(opts.dir.as_deref())?;
    let n = opts.cameras;
    let ports = net::free_ports(n + 1)?;
    let mut house_cfg = net::config(&dir, "house", ports[n], Vec::new(), opts.routing.clone(), 8 << 30, opts.seed)?;
    house_cfg.api = Some("127.0.0.1:0".parse().context("API address")?);
    let house = net::start_with(house_cfg).await?;
    let api = house.node.api_addr().context("the house node has no API")?;
    let mut cams = Vec::with_capacity(n);
    for i in 0..n {
        let c = net::start(
            &dir,
            &format!("cam{}", i + 1),
            ports[i],
            vec![ports[n]],
            opts.routing.clone(),
            2 << 30,
            opts.seed + 1 + i as u64,
        )
        .await?;
        net::set_link(&c, &house, false)?;
        cams.push(c);
    }
    let say = net::progress(opts.quiet);

    // The house: the same code as `dtn house`, on a thread of its own (it blocks on its WebSocket).
    let archive_dir = dir.join("house-archive");
    let mut home = House::open(&archive_dir, HouseConfig::default())?;
    let stop_house = Arc::new(AtomicBool::new(false));
    let (notes_tx, notes) = mpsc::channel::<Note>();
    let house_task = {
        let stop = stop_house.clone();
        tokio::task::spawn_blocking(move || {
            let served = dtn_camera::serve(api, HOUSE_ENDPOINT, &mut home, &stop, &mut |note| {
                let _ = notes_tx.send(note);
            });
            (home, served)
        })
    };

    let start = Instant::now();
    say(
        out,
        start,
        format!(
            "{n} cameras around the house, {} fps at {}x{}; each is in Wi-Fi range of the house for {:?} every {:?}",
            opts.fps,
            opts.width,
            opts.height,
            opts.window,
            opts.window + opts.gap
        ),
    );

    // Cameras take frames until `duration`.
    let stop = Arc::new(AtomicBool::new(false));
    let generated: Vec<Arc<AtomicU64>> = (0..n).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let scenes: Vec<SyntheticCamera> = (0..n)
        .map(|i| SyntheticCamera::new(opts.width, opts.height, opts.seed + i as u64, opts.walks(i), opts.quality))
        .collect();
    let to: Eid = HOUSE_ENDPOINT.parse().context("house endpoint")?;
    let mut shooters = Vec::new();
    for (i, c) in cams.iter().enumerate() {
        let (handle, name, scene) = (c.handle.clone(), c.name.clone(), scenes[i].clone());
        let (stop, count, to) = (stop.clone(), generated[i].clone(), to.clone());
        let period = Duration::from_secs_f64(1.0 / opts.fps);
        shooters.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seq = 0u64;
            loop {
                tick.tick().await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let time_ms = unix_ms();
                let (scene, name) = (scene.clone(), name.clone());
                let payload = tokio::task::spawn_blocking(move || {
                    scene.frame(seq).map(|still| frame_batch(&name, seq, time_ms, still).encode())
                })
                .await;
                let Ok(Ok(payload)) = payload else { break };
                if handle.submit(Submission::new(0, to.clone(), payload)).await.is_err() {
                    break;
                }
                count.fetch_add(1, Ordering::Relaxed);
                seq += 1;
            }
        }));
    }

    let schedule = net::staggered_windows(n, opts.window, opts.gap, opts.duration);
    let mut k = 0;
    let mut next_status = Duration::from_secs(2);
    let mut draining = false;
    let archived = |house: &House, i: usize| house.archive().frames_stored(&format!("cam{}", i + 1));
    let mut stored = vec![0u64; n];
    let mut events = 0u64;
    loop {
        let now = start.elapsed();
        while k < schedule.len() && schedule[k].0 <= now {
            let (_, i, up) = schedule[k];
            net::set_link(&cams[i], &house, up)?;
            say(out, start, format!("{} {} the house", cams[i].name, if up { "meets" } else { "loses" }));
            k += 1;
        }
        while let Ok(note) = notes.try_recv() {
            match note {
                Note::Received(Received::Stored { camera, .. }) => {
                    if let Some(i) = camera.strip_prefix("cam").and_then(|s| s.parse::<usize>().ok()) {
                        stored[(i - 1).min(n - 1)] += 1;
                    }
                }
                Note::Received(Received::Rejected { reason, .. }) => say(out, start, format!("rejected: {reason}")),
                Note::Seen(Seen::Motion(e)) => {
                    events += 1;
                    say(
                        out,
                        start,
                        format!(
                            "motion at {} frame {}: {:.2}% of the picture, box {}x{} at {},{}",
                            e.camera,
                            e.seq,
                            e.score * 100.0,
                            e.bbox.w,
                            e.bbox.h,
                            e.bbox.x,
                            e.bbox.y
                        ),
                    );
                }
                Note::Seen(s @ Seen::Lighting { .. }) => say(out, start, format!("{s:?}")),
                Note::Disconnected(e) => say(out, start, format!("house lost its node: {e}")),
                Note::Connected | Note::Received(_) => {}
            }
        }
        if !draining && now >= opts.duration {
            draining = true;
            stop.store(true, Ordering::Relaxed);
            for s in shooters.drain(..) {
                let _ = s.await;
            }
            say(out, start, "cameras stop; every camera comes into range for a last window".into());
            for c in &cams {
                net::set_link(c, &house, true)?;
            }
        }
        if draining {
            let all = (0..n).all(|i| stored[i] >= generated[i].load(Ordering::Relaxed));
            if all || now >= opts.duration + opts.drain {
                break;
            }
        }
        if now >= next_status {
            next_status += Duration::from_secs(2);
            let held = net::held_by(&cams).await;
            let g: u64 = generated.iter().map(|g| g.load(Ordering::Relaxed)).sum();
            let a: u64 = stored.iter().sum();
            say(out, start, format!("frames taken {g}, archived {a}, motion events {events}; waiting at {held}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for c in &cams {
        net::set_link(c, &house, false)?;
    }
    stop_house.store(true, Ordering::Relaxed);
    let (home, served) = house_task.await.context("the house stopped")?;
    served.context("the house failed")?;
    say(out, start, "the house has written its index".into());

    let mut rows = Vec::with_capacity(n);
    for (i, c) in cams.iter().enumerate() {
        let generated = generated[i].load(Ordering::Relaxed);
        let archived = archived(&home, i);
        let counts = home.counts().get(&c.name).cloned().unwrap_or_default();
        let scene = &scenes[i];
        let (mut found, mut false_events) = (0, 0);
        for r in home.archive().events().iter().filter(|r| r.event.camera == c.name) {
            if scene.moved(r.event.seq) { found += 1 } else { false_events += 1 }
        }
        rows.push(CameraRow {
            name: c.name.clone(),
            walking: scene.walking(),
            generated,
            archived,
            missing: generated.saturating_sub(archived),
            duplicates: counts.duplicates,
            found,
            expected: (1..generated).filter(|&s| scene.moved(s)).count() as u64,
            false_events,
        });
    }
    let summary = CameraSummary { rows, archive: archive_dir, rejected: home.unattributed() };
    net::shutdown(cams.into_iter().chain(std::iter::once(house))).await;
    Ok(summary)
}
