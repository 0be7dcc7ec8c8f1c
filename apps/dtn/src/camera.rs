//! `dtn camera` and `dtn house`: a camera node's frames to the house node, and the house's archive.

use std::io::Cursor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Args;
use dtn_camera::{FrameSource, House, HouseConfig, Note, Received, Seen, SyntheticCamera, frame_batch};
use dtn_client::{Client, ClientError, SendOptions};
use dtn_sensor::ImageDir;
use dtn_vision::UtcTime;

use crate::BadInput;

/// The house node's camera endpoint unless told otherwise.
pub const DEFAULT_ENDPOINT: &str = "dtn://house/~camera";

/// `500ms`, `2s`, `1.5m`, `6h`, `1d`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let scale = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return Err(format!("{s:?}: expected a number with unit ms, s, m, h or d")),
    };
    let n: f64 = num.parse().map_err(|_| format!("{s:?}: expected a number with unit ms, s, m, h or d"))?;
    let secs = n * scale;
    if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
        return Err(format!("{s:?}: must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `640x480`.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let err = || format!("{s:?}: expected WIDTHxHEIGHT, each 16 to 8192, e.g. 640x480");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(err)?;
    let (w, h): (u32, u32) = (w.parse().map_err(|_| err())?, h.parse().map_err(|_| err())?);
    if !(16..=8192).contains(&w) || !(16..=8192).contains(&h) {
        return Err(err());
    }
    Ok((w, h))
}

#[derive(Args)]
pub struct CameraArgs {
    /// The camera node's API address
    #[arg(long, default_value = dtn_client::DEFAULT_API)]
    api: SocketAddr,
    /// The camera's name (its directory in the house's archive)
    #[arg(long)]
    camera: String,
    /// Where frames go
    #[arg(long, default_value = DEFAULT_ENDPOINT)]
    dst: String,
    /// Frames per second
    #[arg(long, conflicts_with = "period")]
    fps: Option<f64>,
    /// Time between frames (e.g. 500ms, 10s, 1m); default 1s
    #[arg(long, value_parser = parse_duration)]
    period: Option<Duration>,
    /// Send the images of this directory (JPEG as they are, PNG converted), in name order, over and over
    #[arg(long, conflicts_with = "synthetic")]
    images: Option<PathBuf>,
    /// Send a synthetic scene in which a box walks to and fro (the default without --images)
    #[arg(long)]
    synthetic: bool,
    /// With the synthetic scene: the box stands still (a scene without motion)
    #[arg(long, conflicts_with = "images")]
    parked: bool,
    /// Size of synthetic frames
    #[arg(long, default_value = "640x480", value_parser = parse_size)]
    size: (u32, u32),
    /// Stop after this long (default: run until interrupted)
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many frames
    #[arg(long)]
    count: Option<u64>,
    /// JPEG quality of synthetic frames and converted PNG images, 1 to 100
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// Bundle lifetime (default: the node's)
    #[arg(long, value_parser = parse_duration)]
    lifetime: Option<Duration>,
    /// Number of the first frame: give the next number after a restart, so the house sees one sequence
    #[arg(long, default_value_t = 0)]
    first_seq: u64,
    /// Seed of the synthetic scene
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print nothing per frame
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
pub struct HouseArgs {
    /// The house node's API address
    #[arg(long, default_value = dtn_client::DEFAULT_API)]
    api: SocketAddr,
    /// The archive directory (created if needed; an existing archive is continued)
    #[arg(long)]
    out: PathBuf,
    /// The endpoint cameras send to
    #[arg(long, default_value = DEFAULT_ENDPOINT)]
    endpoint: String,
    /// Longest a frame waits for a missing earlier one before motion analysis goes on without it
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    reorder_wait: Duration,
    /// Print every frame stored, not only events and rejects
    #[arg(long)]
    verbose: bool,
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Sets the returned flag on Ctrl-C (or SIGTERM on Unix).
fn stop_on_signal() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{SignalKind, signal};
                let Ok(mut term) = signal(SignalKind::terminate()) else { return };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
        });
        flag.store(true, Ordering::Relaxed);
    });
    stop
}

pub fn camera(a: &CameraArgs) -> Result<ExitCode> {
    dtn_vision::check_camera_name(&a.camera).map_err(|e| BadInput(e.to_string()))?;
    let period = match (a.fps, a.period) {
        (Some(f), _) if !(f.is_finite() && f > 0.0 && f <= 1000.0) => {
            return Err(BadInput(format!("--fps must be between 0 and 1000, not {f}")).into());
        }
        (Some(f), _) => Duration::from_secs_f64(1.0 / f),
        (None, Some(p)) => p,
        (None, None) => Duration::from_secs(1),
    };
    let mut source = match &a.images {
        Some(dir) => {
            FrameSource::Dir(ImageDir::open(dir).map_err(|e| BadInput(e.to_string()))?.with_quality(a.quality))
        }
        None => FrameSource::Synthetic(SyntheticCamera::new(a.size.0, a.size.1, a.seed, !a.parked, a.quality)),
    };
    let client = Client::new(a.api);
    let opts = SendOptions { lifetime_s: a.lifetime.map(|d| d.as_secs().max(1)), ..SendOptions::default() };
    let stop = stop_on_signal();
    let start = Instant::now();
    let mut seq = a.first_seq;
    let mut sent = 0u64;
    let mut failing = None::<String>;
    while !stop.load(Ordering::Relaxed)
        && a.duration.is_none_or(|d| start.elapsed() < d)
        && a.count.is_none_or(|c| sent < c)
    {
        let due = start + period.mul_f64(sent as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let time_ms = unix_ms();
        let still = match source.frame(seq) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("skipped: {e}");
                sent += 1;
                continue;
            }
        };
        let (w, h) = (still.width, still.height);
        let payload = frame_batch(&a.camera, seq, time_ms, still).encode();
        let len = payload.len() as u64;
        // The frame is retried until the node has it durably: a camera's node restarting loses nothing.
        let id = loop {
            match client.send(&a.dst, Cursor::new(payload.clone()), Some(len), &opts) {
                Ok(s) => break Some(s.id),
                Err(e @ ClientError::Node(_)) if failing.is_none() => return Err(BadInput(e.to_string()).into()),
                Err(e) => {
                    if failing.as_deref() != Some(&e.to_string()) {
                        eprintln!("frame {seq} not sent yet: {e}");
                        failing = Some(e.to_string());
                    }
                    if stop.load(Ordering::Relaxed) {
                        break None;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        };
        let Some(id) = id else { break };
        failing = None;
        if !a.quiet {
            println!("frame {seq} {w}x{h} {len} bytes -> {id}");
        }
        seq += 1;
        sent += 1;
    }
    if !a.quiet {
        println!("{} frames sent (next frame number {seq})", seq - a.first_seq);
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(s: &Seen) -> String {
    match s {
        Seen::Motion(e) => format!(
            "{} {} frame {}: motion, score {:.2}%, box {}x{} at {},{}",
            UtcTime::from_unix_ms(e.time_ms).iso8601(),
            e.camera,
            e.seq,
            e.score * 100.0,
            e.bbox.w,
            e.bbox.h,
            e.bbox.x,
            e.bbox.y
        ),
        Seen::Lighting { camera, seq, changed_fraction } => {
            format!("{camera} frame {seq}: lighting changed ({:.0}% of the picture)", changed_fraction * 100.0)
        }
    }
}

pub fn house(a: &HouseArgs) -> Result<ExitCode> {
    let config = HouseConfig { reorder_wait_ms: a.reorder_wait.as_millis() as u64, ..HouseConfig::default() };
    let mut house =
        House::open(&a.out, config).with_context(|| format!("opening the archive in {}", a.out.display()))?;
    let stop = stop_on_signal();
    let verbose = a.verbose;
    println!("archive in {}; waiting for frames to {} (Ctrl-C stops)", a.out.display(), a.endpoint);
    let served = dtn_camera::serve(a.api, &a.endpoint, &mut house, &stop, &mut |n| match n {
        Note::Connected => println!("connected to the node at {}", a.api),
        Note::Disconnected(e) => eprintln!("node not reachable ({e}); trying again"),
        Note::Received(Received::Stored { camera, seq, path }) if verbose => {
            println!("{camera} frame {seq} stored: {}", path.display())
        }
        Note::Received(Received::Duplicate { camera, seq }) if verbose => println!("{camera} frame {seq}: duplicate"),
        Note::Received(Received::Rejected { camera, reason, kept }) => {
            println!("rejected ({}): {reason}; kept in {}", camera.as_deref().unwrap_or("no camera"), kept.display())
        }
        Note::Received(_) => {}
        Note::Seen(s) => println!("{}", describe(&s)),
    });
    println!();
    println!("{:<16} {:>8} {:>6} {:>8} {:>6} {:>6}", "camera", "stored", "dups", "corrupt", "late", "events");
    for (camera, c) in house.counts() {
        println!("{camera:<16} {:>8} {:>6} {:>8} {:>6} {:>6}", c.stored, c.duplicates, c.corrupt, c.late, c.events);
    }
    if house.unattributed() > 0 {
        println!("{} payloads that were no camera frame kept in {}/rejected", house.unattributed(), a.out.display());
    }
    println!("index: {}", a.out.join("index.html").display());
    match served {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(dtn_camera::serve::ServeError::Node(m)) => Err(BadInput(m).into()),
        Err(e) => Err(anyhow::Error::new(e).context("the archive failed; unacknowledged frames stay with the node")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0").is_err() && parse_duration("5y").is_err() && parse_duration("").is_err());
        assert_eq!(parse_size("320x240"), Ok((320, 240)));
        assert!(parse_size("320").is_err() && parse_size("0x5").is_err());
    }
}
