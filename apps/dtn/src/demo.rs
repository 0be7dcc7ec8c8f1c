//! `dtn demo`: the whole story on one machine, with real nodes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use dtn_core::routing::{ProphetParams, RoutingConfig};
use dtn_demo::{WeatherOptions, run_weather};

use crate::BadInput;

#[derive(Subcommand)]
pub enum DemoCommand {
    /// Weather stations in a chain, and a van that meets only the last one and leaves with everybody's data
    ///
    /// Every station and the van is a real node (the runtime dtnd runs) with an LMDB store in a temporary
    /// directory, talking TCPCLv4 on loopback. Neighbours meet in short staggered windows; closing a window
    /// cuts the live sessions. Ends with a table per station (generated, collected, missing, left in its
    /// store) and exits with status 3 if anything generated is missing from the van's archive.
    Weather(WeatherArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Routing {
    Epidemic,
    Spray,
    Prophet,
}

#[derive(Args)]
pub struct WeatherArgs {
    /// Stations in the chain
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=64))]
    stations: u16,
    /// Seconds the stations sample
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Seconds neighbours stay in contact each time they meet
    #[arg(long, default_value_t = 3.0)]
    window: f64,
    /// Seconds between two meetings of the same neighbours
    #[arg(long, default_value_t = 3.0)]
    gap: f64,
    /// Seconds the van stays at the last station
    #[arg(long, default_value_t = 15.0)]
    van_window: f64,
    /// Readings per station-second, per sensor
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Station seconds per wall-clock second
    #[arg(long, default_value_t = 60)]
    speedup: u64,
    /// Readings per batch (one bundle per batch)
    #[arg(long, default_value_t = 60)]
    batch: usize,
    /// Routing agent of every node
    #[arg(long, value_enum, default_value = "epidemic")]
    routing: Routing,
    /// Seed of the synthetic sensors
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep the stores and the van's archive in this directory
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Print only the summary
    #[arg(long)]
    quiet: bool,
}

fn secs(name: &str, v: f64) -> Result<Duration> {
    if !(v.is_finite() && v > 0.0 && v < 1e6) {
        return Err(BadInput(format!("--{name} must be a positive number of seconds, not {v}")).into());
    }
    Ok(Duration::from_secs_f64(v))
}

pub fn run(cmd: &DemoCommand) -> Result<ExitCode> {
    match cmd {
        DemoCommand::Weather(a) => weather(a),
    }
}

fn weather(a: &WeatherArgs) -> Result<ExitCode> {
    if !(a.rate.is_finite() && a.rate > 0.0) || a.batch == 0 || a.speedup == 0 {
        return Err(BadInput("--rate, --batch and --speedup must be positive".into()).into());
    }
    let opts = WeatherOptions {
        stations: usize::from(a.stations),
        duration: secs("duration", a.duration)?,
        window: secs("window", a.window)?,
        gap: secs("gap", a.gap)?,
        van_window: secs("van-window", a.van_window)?,
        rate: a.rate,
        speedup: a.speedup,
        batch_readings: a.batch,
        routing: match a.routing {
            Routing::Epidemic => RoutingConfig::Epidemic,
            Routing::Spray => RoutingConfig::SprayAndWait { copies: 2 * u32::from(a.stations) },
            Routing::Prophet => RoutingConfig::Prophet(ProphetParams::default()),
        },
        seed: a.seed,
        dir: a.keep.clone(),
        quiet: a.quiet,
    };
    if let Some(d) = &opts.dir {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let mut out = std::io::stdout();
    let summary = rt.block_on(run_weather(&opts, &mut out))?;
    println!();
    print!("{summary}");
    println!();
    println!("van archive, per station (per sensor in report.txt in the archive):");
    print!("{}", summary.report.per_station());
    if summary.van_busy > Duration::ZERO {
        let mb = summary.van_bytes as f64 / 1e6;
        println!(
            "the van took {mb:.2} MB in {:.1} s of its {:.0} s window",
            summary.van_busy.as_secs_f64(),
            opts.van_window.as_secs_f64()
        );
    }
    match &opts.dir {
        Some(_) => println!("archive kept in {}", summary.archive.display()),
        None => println!("(stores and archive were in a temporary directory; --keep DIR keeps them)"),
    }
    if summary.complete() {
        println!("complete: every batch of every station reached the van");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("INCOMPLETE: some batches did not reach the van");
        Ok(ExitCode::from(3))
    }
}
