//! `dtn collect`: the van's collector. Registers the collection endpoint at its node, takes the bundles over
//! a WebSocket, writes them into the archive (`dtn-collector`) and acknowledges each round only once the
//! archive has synced it, so a crash anywhere loses nothing: the node delivers what was not acknowledged
//! again, and the archive drops what it already has as a duplicate.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Args;
use dtn_collector::{Collector, Delivered};

use crate::node::{ApiArg, client_err};
use crate::station::{COLLECTION_ENDPOINT, parse_duration};

#[derive(Args, Debug)]
pub struct CollectArgs {
    #[command(flatten)]
    api: ApiArg,
    /// The archive directory (created, or continued).
    #[arg(long)]
    out: PathBuf,
    /// The collection endpoint to register.
    #[arg(long, default_value = COLLECTION_ENDPOINT)]
    endpoint: String,
    /// Batches expected in all, for the progress line's ETA.
    #[arg(long)]
    expect: Option<u64>,
    /// Stop once nothing has arrived for this long (e.g. 30s). Default: run until stopped.
    #[arg(long, value_parser = parse_duration)]
    until_idle: Option<Duration>,
    /// Stop after this many bundles.
    #[arg(long)]
    count: Option<u64>,
    /// No progress lines.
    #[arg(long, short)]
    quiet: bool,
}

/// Bundles taken into one archive sync (and one acknowledgement).
const ROUND: usize = 256;

/// Payload bytes kept per bundle: one more than any sensor batch, so that a larger payload is still cut
/// short of exhausting the van's memory and then set aside as too large by the archive.
const MAX_PAYLOAD: usize = dtn_sensor::format::MAX_BATCH_BYTES + 1;

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[derive(Default)]
struct Progress {
    bundles: u64,
    stored: u64,
    duplicates: u64,
    rejected: u64,
    bytes: u64,
}

pub fn run(a: &CollectArgs) -> Result<ExitCode> {
    let mut archive = Collector::open(&a.out).with_context(|| format!("opening the archive {}", a.out.display()))?;
    let client = a.api.client();
    client.register(&a.endpoint).map_err(client_err)?;
    let started = Instant::now();
    let mut last_arrival = Instant::now();
    let mut next_line = Instant::now() + Duration::from_secs(2);
    let mut p = Progress::default();
    let had = archive.report().stations.values().map(|s| s.batches()).sum::<u64>();
    let mut stream = None;
    'run: loop {
        if a.count.is_some_and(|c| p.bundles >= c) || a.until_idle.is_some_and(|d| last_arrival.elapsed() >= d) {
            break;
        }
        if Instant::now() >= next_line {
            next_line += Duration::from_secs(2);
            progress(a, &archive, &p, started, had);
        }
        let s = match stream.as_mut() {
            Some(s) => s,
            None => match client.subscribe(&a.endpoint, true, MAX_PAYLOAD) {
                Ok(s) => stream.insert(s),
                Err(e) => {
                    // The node restarts, or is not up yet: try again, within the idle limit.
                    eprintln!("waiting for the node: {e}");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            },
        };
        // A round: the first bundle within a second, then whatever else is already there.
        let mut round = Vec::new();
        let mut wait = Duration::from_secs(1);
        while round.len() < ROUND && a.count.is_none_or(|c| p.bundles + (round.len() as u64) < c) {
            match s.next(wait) {
                Ok(Some(d)) => {
                    round.push((d, unix_ms()));
                    wait = Duration::from_millis(20);
                }
                Ok(None) => break,
                Err(e) => {
                    // What was not acknowledged comes again on the next stream.
                    eprintln!("delivery stream ended: {e}");
                    stream = None;
                    continue 'run;
                }
            }
        }
        if round.is_empty() {
            continue;
        }
        last_arrival = Instant::now();
        let items = round.iter().map(|(d, at)| Delivered {
            id: &d.id,
            payload: &d.payload,
            received_unix_ms: *at,
            age_ms: d.age_ms,
        });
        let got = archive.intake(items).context("writing the archive")?;
        for (id, why) in &got.rejected {
            eprintln!("set aside {id}: {why}");
        }
        let ids: Vec<String> = round.iter().map(|(d, _)| d.id.clone()).collect();
        if let Err(e) = s.ack(&ids) {
            eprintln!("acknowledging: {e}");
            stream = None;
        }
        p.bundles += round.len() as u64;
        p.stored += got.stored;
        p.duplicates += got.duplicates;
        p.rejected += got.rejected.len() as u64;
        p.bytes += got.bytes;
    }
    if let Some(s) = stream {
        s.close();
    }
    progress(a, &archive, &p, started, had);
    let report = archive.write_report().context("writing the report")?;
    println!("{}", report.per_station());
    print!("{report}");
    println!(
        "{} bundles this run: {} batches stored, {} duplicates dropped, {} set aside; archive in {}",
        p.bundles,
        p.stored,
        p.duplicates,
        p.rejected,
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn progress(a: &CollectArgs, archive: &Collector, p: &Progress, started: Instant, had: u64) {
    if a.quiet {
        return;
    }
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let rate = p.bundles as f64 / secs;
    let report = archive.report();
    let in_archive: u64 = report.stations.values().map(|s| s.batches()).sum();
    let new_batches = in_archive.saturating_sub(had);
    let eta = match a.expect {
        Some(n) if n <= in_archive => ", all expected batches in".to_string(),
        Some(n) if new_batches > 0 => {
            format!(", ETA {:.0}s", (n - in_archive) as f64 / (new_batches as f64 / secs))
        }
        _ => String::new(),
    };
    let of = a.expect.map(|n| format!("/{n}")).unwrap_or_default();
    eprintln!(
        "[{secs:>6.1}s] {} bundles, {:.1} MB, {} stations, {rate:.1} bundles/s; archive {in_archive}{of} batches{eta}",
        p.bundles,
        p.bytes as f64 / 1e6,
        report.stations.len(),
    );
}
