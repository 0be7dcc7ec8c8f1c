//! The `dtn-sim` command.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use dtn_sim::mobility::Mobility;
use dtn_sim::scenario::Scenario;
use dtn_sim::sweep;
use dtn_sim::trace::{TraceEvent, write_event};
use dtn_sim::{Options, Sim};

// A run allocates and frees small summaries, IDs and bundles by the million; glibc's allocator took a sixth
// of the dense city run's time, mimalloc about half of that.
#[global_allocator]
static ALLOC: Mimalloc = Mimalloc;

/// mimalloc, called the way C calls it where alignment allows. The `mimalloc` crate's allocator asks for
/// every block through mimalloc's aligned entry points, which check and round the alignment on each call;
/// nearly every block here needs no more than the 8 bytes `mi_malloc` always gives.
struct Mimalloc;

/// What `mi_malloc` aligns every block to.
const MI_MIN_ALIGN: usize = 8;

// SAFETY: every block comes from mimalloc and goes back to it; blocks needing more than MI_MIN_ALIGN go
// through the aligned calls, which honour any power-of-two alignment.
unsafe impl std::alloc::GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_malloc, mi_malloc_aligned};
        // SAFETY: plain C calls with a size (and alignment) from a valid layout.
        unsafe {
            if layout.align() <= MI_MIN_ALIGN {
                mi_malloc(layout.size()).cast()
            } else {
                mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_zalloc, mi_zalloc_aligned};
        // SAFETY: as in `alloc`.
        unsafe {
            if layout.align() <= MI_MIN_ALIGN {
                mi_zalloc(layout.size()).cast()
            } else {
                mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { libmimalloc_sys::mi_free(ptr.cast()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        use libmimalloc_sys::{mi_realloc, mi_realloc_aligned};
        // SAFETY: `ptr` came from this allocator with `layout`; the block keeps its alignment.
        unsafe {
            if layout.align() <= MI_MIN_ALIGN {
                mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

/// Turns transparent huge pages off for this process, as dtnd does. mimalloc asks for them on its arenas and
/// gives freed pages back to the kernel within milliseconds; the next allocation there faults in a whole 2 MiB
/// page, which the kernel zeroes first. That zeroing was 4 to 5 % of a dense city run (`perf record`). Where
/// the call is refused nothing changes but speed.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

#[derive(Parser)]
#[command(name = "dtn-sim", version, about = "Simulate a DTN deployment with the real router engine, in virtual time")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario and write its reports.
    Run {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// Seed (default: the scenario's).
        #[arg(long)]
        seed: Option<u64>,
        /// Directory for the reports.
        #[arg(long, default_value = "sim-out")]
        out: PathBuf,
        /// No progress lines.
        #[arg(long, short)]
        quiet: bool,
        /// Virtual bytes per real payload byte (1 = carry every byte).
        #[arg(long, default_value_t = 4096)]
        payload_unit: u64,
        /// Replay this ONE connection trace instead of the scenario's own contacts.
        #[arg(long)]
        trace: Option<PathBuf>,
    },
    /// Run the scenario's [sweep]: every variant with every seed, on several threads.
    Sweep {
        /// Scenario file with a [sweep] section.
        scenario: PathBuf,
        /// Directory for the reports (one subdirectory per run, summary.csv and summary.json).
        #[arg(long, default_value = "sim-sweep")]
        out: PathBuf,
        /// Threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Write the contacts the scenario's mobility produces as a ONE connection trace.
    Trace {
        /// Scenario file with movement.
        scenario: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Seed (default: the scenario's).
        #[arg(long)]
        seed: Option<u64>,
    },
}

fn main() -> Result<()> {
    no_huge_pages();
    match Cli::parse().cmd {
        Cmd::Run { scenario, seed, out, quiet, payload_unit, trace } => {
            let mut s = Scenario::load(&scenario)?;
            if let Some(t) = trace {
                s.replay_trace(&t)?;
            }
            let wall = Instant::now();
            let opts = Options { seed, progress: !quiet, payload_unit: payload_unit.max(1) };
            let mut sim = Sim::new(&s, opts);
            sim.run();
            let report = sim.report();
            let secs = wall.elapsed().as_secs_f64();
            report.write(&out).with_context(|| format!("writing reports to {}", out.display()))?;
            print!("{}", report.one_text());
            eprintln!(
                "dtn-sim: {} nodes, {} simulated in {secs:.2} s wall ({} engine events, {:.0} events/s); reports in {}",
                report.nodes,
                dtn_sim::units::fmt_duration(s.duration),
                report.events,
                report.events as f64 / secs.max(1e-9),
                out.display()
            );
        }
        Cmd::Sweep { scenario, out, threads } => {
            let s = Scenario::load(&scenario)?;
            let Some(sw) = s.sweep.clone() else {
                bail!("{} has no [sweep] section", scenario.display());
            };
            let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let wall = Instant::now();
            let runs = sweep::sweep(&s, &sw.variants, &sw.seeds, threads, true);
            for r in &runs {
                let dir = out.join(format!("{}-seed{}", r.variant, r.seed));
                r.report.write(&dir).with_context(|| format!("writing {}", dir.display()))?;
            }
            let sums = sweep::summarize(&runs);
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let csv = sweep::summary_csv(&sums);
            std::fs::write(out.join("summary.csv"), &csv).context("writing summary.csv")?;
            std::fs::write(out.join("summary.json"), serde_json::to_string_pretty(&sums)? + "\n")
                .context("writing summary.json")?;
            print!("{csv}");
            eprintln!("dtn-sim: {} runs on {threads} threads in {:.2} s", runs.len(), wall.elapsed().as_secs_f64());
        }
        Cmd::Trace { scenario, out, seed } => {
            let s = Scenario::load(&scenario)?;
            let Some(mut m) = Mobility::new(&s, seed.unwrap_or(s.seed)) else {
                bail!("{} gives no node a movement", scenario.display());
            };
            let f = std::fs::File::create(&out).with_context(|| format!("creating {}", out.display()))?;
            let mut w = std::io::BufWriter::new(f);
            let mut changes = Vec::new();
            let mut t = 0;
            let mut n = 0u64;
            while t <= s.duration {
                changes.clear();
                m.step(t, &mut changes);
                for c in &changes {
                    write_event(&mut w, &TraceEvent { time: t, a: c.a, b: c.b, up: c.up })?;
                    n += 1;
                }
                t += s.step;
            }
            w.flush()?;
            eprintln!("dtn-sim: {n} connection events written to {}", out.display());
        }
    }
    Ok(())
}
