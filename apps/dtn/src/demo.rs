//! `dtn demo`: the whole story on one machine, with real nodes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use dtn_core::routing::{ProphetParams, RoutingConfig};
use dtn_demo::{CameraOptions, WeatherOptions, run_camera, run_weather};

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
    /// Cameras around a house, each meeting the house node in short Wi-Fi windows
    ///
    /// Every camera and the house is a real node with an LMDB store in a temporary directory, talking
    /// TCPCLv4 on loopback. Each camera sends one bundle per frame of a synthetic scene (in cam1, cam3, … a
    /// box walks; in cam2, cam4, … it stands still); the house runs what `dtn house` runs, over its node's
    /// WebSocket. Ends with a table per camera (frames taken, archived, missing, duplicates, motion found
    /// against ground truth) and exits with status 3 if any frame is missing from the archive.
    Camera(CameraArgs),
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

#[derive(Args)]
pub struct CameraArgs {
    /// Cameras around the house
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    cameras: u16,
    /// Seconds the cameras take frames
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Frames per second per camera
    #[arg(long, default_value_t = 2.0)]
    fps: f64,
    /// Frame size
    #[arg(long, default_value = "640x480", value_parser = crate::camera::parse_size)]
    size: (u32, u32),
    /// JPEG quality, 1 to 100
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// Seconds a camera stays in Wi-Fi range each time
    #[arg(long, default_value_t = 3.0)]
    window: f64,
    /// Seconds out of range between two windows
    #[arg(long, default_value_t = 4.0)]
    gap: f64,
    /// Longest the last window stays open after the cameras stop, seconds
    #[arg(long, default_value_t = 20.0)]
    drain: f64,
    /// Routing agent of every node
    #[arg(long, value_enum, default_value = "epidemic")]
    routing: Routing,
    /// Seed of the scenes
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep the stores and the house's archive in this directory
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Print only the summary
    #[arg(long)]
    quiet: bool,
}

fn routing(r: Routing, nodes: u32) -> RoutingConfig {
    match r {
        Routing::Epidemic => RoutingConfig::Epidemic,
        Routing::Spray => RoutingConfig::SprayAndWait { copies: 2 * nodes },
        Routing::Prophet => RoutingConfig::Prophet(ProphetParams::default()),
    }
}

fn secs(name: &str, v: f64) -> Result<Duration> {
    if !(v.is_finite() && v > 0.0 && v < 1e6) {
        return Err(BadInput(format!("--{name} must be a positive number of seconds, not {v}")).into());
    }
    Ok(Duration::from_secs_f64(v))
}

/// Makes the `--keep` directory, if there is one, and the multi-threaded runtime a demo's nodes run on.
fn runtime(keep: Option<&Path>) -> Result<tokio::runtime::Runtime> {
    if let Some(d) = keep {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")
}

/// A demo's last lines: where its files are (`kept`, or that they were temporary), and whether everything
/// arrived. The exit status is 3 if not.
fn ending(kept: Option<String>, complete: bool, yes: &str, no: &str) -> ExitCode {
    match kept {
        Some(line) => println!("{line}"),
        None => println!("(stores and archive were in a temporary directory; --keep DIR keeps them)"),
    }
    if complete {
        println!("{yes}");
        ExitCode::SUCCESS
    } else {
        println!("{no}");
        ExitCode::from(3)
    }
}

pub fn run(cmd: &DemoCommand) -> Result<ExitCode> {
    match cmd {
        DemoCommand::Weather(a) => weather(a),
        DemoCommand::Camera(a) => camera(a),
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
        routing: routing(a.routing, u32::from(a.stations)),
        seed: a.seed,
        dir: a.keep.clone(),
        quiet: a.quiet,
    };
    let rt = runtime(opts.dir.as_deref())?;
    let summary = rt.block_on(run_weather(&opts, &mut std::io::stdout()))?;
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
    let kept = opts.dir.as_ref().map(|_| format!("archive kept in {}", summary.archive.display()));
    Ok(ending(
        kept,
        summary.complete(),
        "complete: every batch of every station reached the van",
        "INCOMPLETE: some batches did not reach the van",
    ))
}

fn camera(a: &CameraArgs) -> Result<ExitCode> {
    if !(a.fps.is_finite() && a.fps > 0.0 && a.fps <= 100.0) {
        return Err(BadInput(format!("--fps must be between 0 and 100, not {}", a.fps)).into());
    }
    let opts = CameraOptions {
        cameras: usize::from(a.cameras),
        duration: secs("duration", a.duration)?,
        fps: a.fps,
        width: a.size.0,
        height: a.size.1,
        quality: a.quality,
        window: secs("window", a.window)?,
        gap: secs("gap", a.gap)?,
        drain: secs("drain", a.drain)?,
        walking: None,
        routing: routing(a.routing, u32::from(a.cameras) + 1),
        seed: a.seed,
        dir: a.keep.clone(),
        quiet: a.quiet,
    };
    let rt = runtime(opts.dir.as_deref())?;
    let summary = rt.block_on(run_camera(&opts, &mut std::io::stdout()))?;
    println!();
    print!("{summary}");
    if summary.rejected > 0 {
        println!("{} payloads were not camera frames (kept in rejected/)", summary.rejected);
    }
    let kept = opts.dir.as_ref().map(|_| format!("archive kept in {} (open index.html)", summary.archive.display()));
    Ok(ending(
        kept,
        summary.complete(),
        "complete: every frame of every camera is in the house's archive",
        "INCOMPLETE: some frames did not reach the house",
    ))
}
