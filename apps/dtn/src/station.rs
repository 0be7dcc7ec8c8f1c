//! `dtn station`: a weather station's loop. Samples its sensors (synthetic, Linux IIO, a directory of
//! images for the camera), numbers each closed batch durably, and hands the batches to its node, one
//! `/send/batch` request per tick, addressed to the collection endpoint.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use dtn_client::{ClientError, SendOptions};
use dtn_sensor::{Batch, Clock, ImageDir, SensorKind, SeqFile, StationConfig, StationSources};

use crate::BadInput;
use crate::node::{ApiArg, client_err};

/// The endpoint stations send to and the van's collector registers (the weather demo's too).
pub const COLLECTION_ENDPOINT: &str = dtn_demo::weather::COLLECTION_ENDPOINT;

/// Batches kept for another try while the node refuses them (store full) or cannot be reached; beyond
/// this the oldest are given up, and their numbers become gaps at the collector.
const MAX_BACKLOG: usize = 10_000;

#[derive(Args, Debug)]
pub struct StationArgs {
    #[command(flatten)]
    api: ApiArg,
    /// The station's name, written into every batch (usually its node name).
    #[arg(long)]
    station: String,
    /// Sensors and their sample periods: KIND=PERIOD_MS,… with kinds temperature, humidity, barometer,
    /// accelerometer, gyroscope, magnetometer, camera.
    #[arg(long, default_value = "temperature=1000,humidity=1000,barometer=1000")]
    sensors: String,
    /// Bundle lifetime, e.g. 30d, 12h, 90m, 3600 (seconds). Default: the node's.
    #[arg(long, value_parser = parse_duration)]
    lifetime: Option<Duration>,
    /// Readings per batch (one bundle).
    #[arg(long, default_value_t = 60)]
    batch: usize,
    /// A batch also closes when its oldest reading is this old.
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    batch_age: Duration,
    /// Read Linux IIO sensors under ROOT (default /sys/bus/iio/devices) instead of the synthetic ones;
    /// if none of the configured kinds is found there, the synthetic sources are used.
    #[arg(long, num_args = 0..=1, default_missing_value = "/sys/bus/iio/devices", value_name = "ROOT")]
    iio: Option<PathBuf>,
    /// Camera stills from the images of this directory, in name order (adds camera=60000 if no camera is
    /// configured).
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// Seed of the synthetic sensors.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop after this long (then close the open batches and send them).
    #[arg(long, value_parser = parse_duration, conflicts_with = "count")]
    duration: Option<Duration>,
    /// Stop once this many batches were accepted by the node (the open batches are closed and sent too).
    #[arg(long)]
    count: Option<u64>,
    /// Destination endpoint.
    #[arg(long, default_value = COLLECTION_ENDPOINT)]
    dst: String,
    /// Where the station keeps its batch numbers (default: $XDG_STATE_HOME/dtn/station, else
    /// ~/.local/state/dtn/station).
    #[arg(long)]
    state: Option<PathBuf>,
    /// The clock readings are stamped with: unix, or uptime for a station without a real-time clock (run
    /// its node with `dtnd --no-clock`; the collector dates readings by the bundles' age).
    #[arg(long, default_value = "unix", value_parser = ["unix", "uptime"])]
    clock: String,
}

/// `1500ms`, `30s`, `90m`, `12h`, `30d`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}: expected e.g. 30s, 90m, 12h, 30d"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        other => return Err(format!("bad duration {s:?}: unknown unit {other:?} (ms, s, m, h, d)")),
    };
    if !(0.0..=1e10).contains(&secs) {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_sensors(spec: &str) -> Result<Vec<(SensorKind, u64)>> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((kind, period)) = part.split_once('=') else {
            bail!(BadInput(format!("--sensors {part:?}: expected KIND=PERIOD_MS")));
        };
        let kind: SensorKind = kind.trim().parse().map_err(|e| BadInput(format!("--sensors {part:?}: {e}")))?;
        let period: u64 = period
            .trim()
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| BadInput(format!("--sensors {part:?}: the period is milliseconds, above 0")))?;
        out.push((kind, period));
    }
    if out.is_empty() {
        bail!(BadInput("--sensors: no sensor".into()));
    }
    Ok(out)
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Milliseconds since the machine booted (CLOCK_BOOTTIME through /proc/uptime), else since this process
/// started.
fn uptime_base_ms() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|s| s.parse::<f64>().ok()))
        .map_or(0, |s| (s * 1000.0) as u64)
}

fn default_state_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("dtn/station"));
    }
    let home = std::env::var_os("HOME").context("no HOME: give --state DIR")?;
    Ok(PathBuf::from(home).join(".local/state/dtn/station"))
}

/// What became of the batches of one request.
enum Outcome {
    Accepted(Vec<String>),
    /// The node has no room, or cannot be reached: worth another try.
    Retry(String),
}

pub fn run(a: &StationArgs) -> Result<ExitCode> {
    let mut sensors = parse_sensors(&a.sensors)?;
    if a.images.is_some() && !sensors.iter().any(|(k, _)| *k == SensorKind::CameraStill) {
        sensors.push((SensorKind::CameraStill, 60_000));
    }
    let clock = if a.clock == "uptime" { Clock::Uptime } else { Clock::Unix };
    let mut cfg = StationConfig::new(&a.station, a.seed, clock, &sensors);
    cfg.batch.batch_readings = a.batch.max(1);
    cfg.batch.max_age_ms = a.batch_age.as_millis() as u64;
    let uptime0 = uptime_base_ms();
    if clock == Clock::Uptime {
        // Places the synthetic weather's day; the batches carry uptime only.
        cfg.boot_unix_ms = unix_ms().saturating_sub(uptime0);
    }
    let mut sources = match &a.iio {
        Some(root) => {
            let found = dtn_sensor::iio::discover(root).unwrap_or_else(|e| {
                eprintln!("{}: {e}", root.display());
                Vec::new()
            });
            let s = StationSources::with_iio(cfg.clone(), found);
            if s.sensors().iter().all(|(_, k, _)| *k == SensorKind::CameraStill) {
                eprintln!("no IIO sensor of the configured kinds under {}; using synthetic sensors", root.display());
                StationSources::synthetic(cfg)
            } else {
                s
            }
        }
        None => StationSources::synthetic(cfg),
    };
    if let Some(dir) = &a.images {
        let d = ImageDir::open(dir).with_context(|| format!("opening {}", dir.display()))?;
        sources = sources.with_camera_dir(d);
    }
    let state_dir = match &a.state {
        Some(d) => d.clone(),
        None => default_state_dir()?,
    };
    let mut seqs = SeqFile::open(&state_dir, &a.station).context("reading the station's batch numbers")?;
    let mut sources = sources.with_next_seqs(seqs.get());
    for (name, kind, period) in sources.sensors() {
        let next = seqs.get().get(&name).copied().unwrap_or(0);
        eprintln!("{}: {name} ({}) every {period} ms, next batch {next}", a.station, kind.name());
    }

    let client = a.api.client();
    let opts = SendOptions { lifetime_s: a.lifetime.map(|d| d.as_secs().max(1)), ..SendOptions::default() };
    let tick = sources.sensors().iter().map(|(_, _, p)| *p).min().unwrap_or(1000).clamp(10, 250);
    let started = Instant::now();
    let wall_to_clock = |now_unix: u64| match clock {
        Clock::Unix => now_unix,
        Clock::Uptime => uptime0 + started.elapsed().as_millis() as u64,
    };
    let mut backlog: VecDeque<Batch> = VecDeque::new();
    let (mut accepted, mut refusals, mut dropped) = (0u64, 0u64, 0u64);
    let mut last_refusal: Option<String> = None;
    let mut finishing: Option<Instant> = None;
    loop {
        let done_sampling = finishing.is_some()
            || a.duration.is_some_and(|d| started.elapsed() >= d)
            || a.count.is_some_and(|c| accepted >= c);
        let t = wall_to_clock(unix_ms());
        let last = done_sampling && finishing.is_none();
        if finishing.is_none() {
            let batches = sources.step(t, last);
            for e in sources.take_errors() {
                eprintln!("sensor: {e}");
            }
            if !batches.is_empty() {
                // Numbers durable before anyone sees them: a restart never reuses one.
                seqs.save(&sources.next_seqs()).context("saving the station's batch numbers")?;
                backlog.extend(batches);
            }
            if last {
                finishing = Some(Instant::now());
            }
        }
        while backlog.len() > MAX_BACKLOG {
            if let Some(b) = backlog.pop_front() {
                dropped += 1;
                eprintln!("gave up {} {} {}: kept too long", b.station, b.sensor, b.seq);
            }
        }
        while !backlog.is_empty() {
            // One request per tick, unless what waits is more than a request should carry.
            let mut payloads: Vec<Vec<u8>> = Vec::new();
            let mut bytes = 0;
            for b in backlog.iter().take(MAX_PER_REQUEST) {
                let p = b.encode();
                bytes += p.len();
                payloads.push(p);
                if bytes >= MAX_REQUEST_BYTES {
                    break;
                }
            }
            match submit(&client, &a.dst, &payloads, &opts)? {
                Outcome::Accepted(ids) => {
                    for (b, id) in backlog.drain(..payloads.len()).zip(ids) {
                        accepted += 1;
                        println!("sent {} {} {} {} {id}", b.station, b.sensor, b.seq, b.readings.len());
                    }
                    last_refusal = None;
                }
                Outcome::Retry(why) => {
                    refusals += 1;
                    if last_refusal.as_deref() != Some(&why) {
                        eprintln!("refused {} batches: {why}; kept for another try", backlog.len());
                        last_refusal = Some(why);
                    }
                    break;
                }
            }
        }
        if let Some(f) = finishing
            && (backlog.is_empty() || f.elapsed() >= FINAL_TRIES)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(tick));
    }
    dropped += backlog.len() as u64;
    eprintln!(
        "{}: {accepted} batches accepted by the node, {refusals} refused tries, {dropped} batches given up",
        a.station
    );
    Ok(if dropped > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS })
}

/// Batches and bytes per request at most.
const MAX_PER_REQUEST: usize = 1024;
const MAX_REQUEST_BYTES: usize = 64 << 20;

/// How long a stopping station keeps trying to hand over what it still holds.
const FINAL_TRIES: Duration = Duration::from_secs(10);

fn submit(client: &dtn_client::Client, dst: &str, payloads: &[Vec<u8>], opts: &SendOptions) -> Result<Outcome> {
    match client.send_batch_with(dst, payloads, opts) {
        Ok(ids) if ids.len() == payloads.len() => Ok(Outcome::Accepted(ids)),
        Ok(ids) => bail!("the node answered {} IDs for {} batches", ids.len(), payloads.len()),
        Err(ClientError::Node(m)) if m.contains("store full") => Ok(Outcome::Retry(m)),
        Err(e @ (ClientError::NotRunning { .. } | ClientError::Http(_))) => Ok(Outcome::Retry(e.to_string())),
        Err(e) => Err(client_err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sensor_lists() {
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("3 weeks").is_err());
        let s = parse_sensors("temperature=1000, camera=60000").unwrap();
        assert_eq!(s, [(SensorKind::Temperature, 1000), (SensorKind::CameraStill, 60_000)]);
        assert!(parse_sensors("temperature").is_err());
        assert!(parse_sensors("wind=100").is_err());
        assert!(parse_sensors("humidity=0").is_err());
    }
}
