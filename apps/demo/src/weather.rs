//! `dtn demo weather`: stations in a chain, a van at one end.
//!
//! Stations `s1 … sN` stand in a line; only neighbours ever meet, each pair in short windows that come and go
//! (staggered, so data has to hop from window to window). Every station samples its sensors and hands one
//! bundle per batch to its node, addressed to the collection endpoint. When the stations stop, the van drives
//! up to the last station and stays for a limited window; it registers the collection endpoint, so it
//! collects every station's data through that one station, writing each batch to its archive and
//! acknowledging it only once the archive is synced. The summary compares what each station generated with
//! what the archive holds.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use dtn_collector::{Collector, Delivered, Report};
use dtn_core::bpv7::Eid;
use dtn_core::engine::Submission;
use dtn_core::routing::RoutingConfig;
use dtn_sensor::{Clock, SensorKind, StationConfig, StationSources};
use tokio::sync::Mutex;

use crate::net::{self, unix_ms};

/// The endpoint every station sends to and the van registers.
pub const COLLECTION_ENDPOINT: &str = "dtn://collector/~weather";

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct WeatherOptions {
    /// Stations in the chain.
    pub stations: usize,
    /// How long the stations sample (wall time).
    pub duration: Duration,
    /// How long neighbours stay in contact each time they meet.
    pub window: Duration,
    /// Time between two meetings of the same neighbours.
    pub gap: Duration,
    /// How long the van stays at the end station.
    pub van_window: Duration,
    /// Readings per second of station time, per sensor.
    pub rate: f64,
    /// Station seconds per wall second (a long day in a short demo).
    pub speedup: u64,
    /// Readings per batch (one bundle).
    pub batch_readings: usize,
    /// Routing agent of every node.
    pub routing: RoutingConfig,
    /// Seed of the synthetic sensors.
    pub seed: u64,
    /// Keep stores and the archive here (else a temporary directory, removed at the end).
    pub dir: Option<PathBuf>,
    /// Print only the summary.
    pub quiet: bool,
}

impl Default for WeatherOptions {
    fn default() -> Self {
        WeatherOptions {
            stations: 5,
            duration: Duration::from_secs(20),
            window: Duration::from_secs(3),
            gap: Duration::from_secs(3),
            van_window: Duration::from_secs(15),
            rate: 1.0,
            speedup: 60,
            batch_readings: 60,
            routing: RoutingConfig::Epidemic,
            seed: 1,
            dir: None,
            quiet: false,
        }
    }
}

/// One station's line of the summary.
#[derive(Debug, Clone)]
pub struct StationRow {
    /// Station name.
    pub name: String,
    /// Batches its node accepted (durable there).
    pub generated: u64,
    /// Batches of it in the van's archive.
    pub collected: u64,
    /// Generated but not in the archive.
    pub missing: u64,
    /// Bundles left in its store at the end.
    pub left: u64,
}

/// What the demo ends with.
#[derive(Debug, Clone)]
pub struct WeatherSummary {
    /// Per station.
    pub rows: Vec<StationRow>,
    /// The van's archive report.
    pub report: Report,
    /// Where the archive is (gone at the end unless a directory was given).
    pub archive: PathBuf,
    /// Payload bytes the van collected, and how long its window was open until it had them all.
    pub van_bytes: u64,
    /// Time from the van's arrival to its last batch.
    pub van_busy: Duration,
}

impl WeatherSummary {
    /// Every generated batch is in the archive.
    pub fn complete(&self) -> bool {
        self.rows.iter().all(|r| r.missing == 0)
    }
}

impl std::fmt::Display for WeatherSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<8} {:>10} {:>10} {:>8} {:>14}",
            "station", "generated", "collected", "missing", "left in store"
        )?;
        for r in &self.rows {
            writeln!(f, "{:<8} {:>10} {:>10} {:>8} {:>14}", r.name, r.generated, r.collected, r.missing, r.left)?;
        }
        let (g, c) = self.rows.iter().fold((0, 0), |(g, c), r| (g + r.generated, c + r.collected));
        writeln!(f, "{:<8} {:>10} {:>10} {:>8}", "total", g, c, g.saturating_sub(c))?;
        Ok(())
    }
}

/// Runs the demo, printing what happens to `out`. Needs tokio's multi-threaded runtime: the van's collector
/// writes and syncs its archive in place on a worker thread.
pub async fn run_weather(opts: &WeatherOptions, out: &mut (dyn Write + Send)) -> Result<WeatherSummary> {
    if opts.stations < 1 {
        bail!("the demo needs at least one station");
    }
    // Removes the temporary directory, if it is one, when the demo is over.
    let (dir, _tmp) = net::work_dir(opts.dir.as_deref())?;
    let n = opts.stations;
    let ports = net::free_ports(n + 1)?;
    let mut stations = Vec::with_capacity(n);
    for i in 0..n {
        // Each station dials its next neighbour; the van dials the last station.
        let peers = if i + 1 < n { vec![ports[i + 1]] } else { Vec::new() };
        let s = net::start(
            &dir,
            &format!("s{}", i + 1),
            ports[i],
            peers,
            opts.routing.clone(),
            1 << 30,
            opts.seed + i as u64,
        )
        .await?;
        stations.push(s);
    }
    let van =
        net::start(&dir, "van", ports[n], vec![ports[n - 1]], opts.routing.clone(), 4 << 30, opts.seed + 1000).await?;
    // Nobody meets anybody until their window opens.
    for i in 0..n {
        if i + 1 < n {
            net::set_link(&stations[i], &stations[i + 1], false)?;
        }
    }
    net::set_link(&van, &stations[n - 1], false)?;
    let say = net::progress(opts.quiet);
    let start = Instant::now();
    say(
        out,
        start,
        format!(
            "{n} stations in a chain (s1 … s{n}), neighbours meet for {:?} every {:?}; the van comes to s{n} after {:?} for {:?}",
            opts.window,
            opts.window + opts.gap,
            opts.duration,
            opts.van_window
        ),
    );

    // Stations sample and submit until `duration`.
    let stop = Arc::new(AtomicBool::new(false));
    let generated: Vec<Arc<AtomicU64>> = (0..n).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut gens = Vec::new();
    let t0 = unix_ms();
    let to: Eid = COLLECTION_ENDPOINT.parse().context("collection endpoint")?;
    for (i, s) in stations.iter().enumerate() {
        let handle = s.handle.clone();
        let name = s.name.clone();
        let (stop, count, to) = (stop.clone(), generated[i].clone(), to.clone());
        let period_ms = (1000.0 / opts.rate.max(0.001)) as u64;
        let sensors = [
            SensorKind::Temperature,
            SensorKind::Humidity,
            SensorKind::Barometer,
            SensorKind::Accelerometer,
            SensorKind::Gyroscope,
            SensorKind::Magnetometer,
        ]
        .map(|k| (k, period_ms.max(1)));
        let mut cfg = StationConfig::new(&name, opts.seed + i as u64, Clock::Unix, &sensors);
        cfg.batch.batch_readings = opts.batch_readings;
        let mut sources = StationSources::synthetic(cfg);
        let speedup = opts.speedup.max(1);
        gens.push(tokio::spawn(async move {
            let wall0 = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let last = stop.load(Ordering::Relaxed);
                let station_t = t0 + wall0.elapsed().as_millis() as u64 * speedup;
                let batches = sources.step(station_t, last);
                let subs = batches.iter().map(|b| Submission::new(0, to.clone(), b.encode())).collect::<Vec<_>>();
                if !subs.is_empty() {
                    let Ok(waits) = handle.submit_batch_now(subs) else { break };
                    for w in waits {
                        if w.await.is_ok() {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                if last {
                    break;
                }
            }
        }));
    }

    // Neighbour windows, staggered along the chain, until the van leaves.
    let end = opts.duration + opts.gap + opts.window + opts.van_window;
    let schedule = net::staggered_windows(n.saturating_sub(1), opts.window, opts.gap, end);

    // The van: its collector takes what its node delivers, syncs the archive, then acknowledges.
    let archive_dir = dir.join("van-archive");
    let collector = Arc::new(Mutex::new(Collector::open(&archive_dir)?));
    van.handle.register(to.clone()).context("van node stopped")?;
    let van_bytes = Arc::new(AtomicU64::new(0));
    let last_batch_at = Arc::new(Mutex::new(None::<Instant>));
    let collect_task = {
        let (handle, collector, to, bytes, last) =
            (van.handle.clone(), collector.clone(), to.clone(), van_bytes.clone(), last_batch_at.clone());
        tokio::spawn(async move {
            let _reading = handle.reading(to.clone());
            loop {
                let Ok(batch) = handle.next_deliveries(to.clone(), true, 256).await else { break };
                let mut read = Vec::with_capacity(batch.len());
                let mut unreadable = Vec::new();
                for inc in batch {
                    let (id, age) = (inc.id.clone(), inc.age_ms);
                    match tokio::task::block_in_place(|| inc.into_delivery()) {
                        Ok(d) => read.push((id.compact(), id, d.payload, age)),
                        Err(_) => unreadable.push(id),
                    }
                }
                let now = unix_ms();
                let items = read.iter().map(|(name, _, payload, age)| Delivered {
                    id: name,
                    payload,
                    received_unix_ms: now,
                    age_ms: *age,
                });
                // Acknowledged only once the archive has them durably; a payload that is not a batch is set
                // aside there and must not hold up the rest.
                let mut c = collector.lock().await;
                let synced = tokio::task::block_in_place(|| c.intake(items));
                drop(c);
                if let Ok(i) = &synced {
                    bytes.fetch_add(i.bytes, Ordering::Relaxed);
                }
                *last.lock().await = Some(Instant::now());
                for (_, id, _, _) in read {
                    handle.taken(id, synced.is_ok());
                }
                for id in unreadable {
                    handle.taken(id, false);
                }
            }
        })
    };

    let van_at = opts.duration + opts.gap;
    let mut van_here = false;
    let mut van_arrived = None;
    let mut next_status = Duration::from_secs(2);
    let mut k = 0;
    loop {
        let now = start.elapsed();
        if now >= end {
            break;
        }
        while k < schedule.len() && schedule[k].0 <= now {
            let (_, i, up) = schedule[k];
            net::set_link(&stations[i], &stations[i + 1], up)?;
            say(
                out,
                start,
                format!("{} {} {}", stations[i].name, if up { "meets" } else { "loses" }, stations[i + 1].name),
            );
            k += 1;
        }
        if !stop.load(Ordering::Relaxed) && now >= opts.duration {
            stop.store(true, Ordering::Relaxed);
            say(out, start, "stations stop sampling".into());
        }
        if !van_here && now >= van_at {
            van_here = true;
            van_arrived = Some(Instant::now());
            net::set_link(&van, &stations[n - 1], true)?;
            say(out, start, format!("the van drives up to s{n}"));
        }
        if now >= next_status {
            next_status += Duration::from_secs(2);
            let held = net::held_by(&stations).await;
            let gen_total: u64 = generated.iter().map(|g| g.load(Ordering::Relaxed)).sum();
            let collected: u64 = collector.lock().await.report().stations.values().map(|s| s.batches()).sum();
            say(out, start, format!("generated {gen_total}, van has {collected}; held {held}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    net::set_link(&van, &stations[n - 1], false)?;
    say(out, start, format!("the van leaves s{n}"));
    for g in gens {
        let _ = g.await;
    }
    collect_task.abort();
    let _ = collect_task.await;

    let report = collector.lock().await.write_report()?;
    let mut rows = Vec::with_capacity(n);
    for (i, s) in stations.iter().enumerate() {
        let generated = generated[i].load(Ordering::Relaxed);
        let collected = report.stations.get(&s.name).map_or(0, |r| r.batches());
        rows.push(StationRow {
            name: s.name.clone(),
            generated,
            collected,
            missing: generated.saturating_sub(collected),
            left: net::held(s).await,
        });
    }
    let van_busy = match (van_arrived, *last_batch_at.lock().await) {
        (Some(a), Some(l)) if l > a => l - a,
        _ => Duration::ZERO,
    };
    let summary =
        WeatherSummary { rows, report, archive: archive_dir, van_bytes: van_bytes.load(Ordering::Relaxed), van_busy };
    net::shutdown(stations.into_iter().chain(std::iter::once(van))).await;
    Ok(summary)
}
