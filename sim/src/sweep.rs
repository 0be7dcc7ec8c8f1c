//! Parameter sweeps: a scenario run for each (variant, seed), spread over threads. Each run is independent
//! and single-threaded, so results do not depend on the number of threads.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use crate::report::Report;
use crate::scenario::{Scenario, Variant};
use crate::sim::{Options, run};

/// One finished run of a sweep.
#[derive(Debug, Clone)]
pub struct SweepRun {
    /// Variant name.
    pub variant: String,
    /// Seed.
    pub seed: u64,
    /// Its report.
    pub report: Report,
}

/// Mean and standard deviation of a few figures per variant.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Variant.
    pub variant: String,
    /// Runs.
    pub runs: usize,
    /// delivery_prob: mean, standard deviation.
    pub delivery_prob: (f64, f64),
    /// overhead_ratio.
    pub overhead_ratio: (f64, f64),
    /// latency_avg, seconds.
    pub latency_avg: (f64, f64),
    /// hopcount_avg.
    pub hopcount_avg: (f64, f64),
    /// copies_max.
    pub copies_max: (f64, f64),
}

/// Runs every (variant, seed) on `threads` threads; results come back in (variant, seed) order.
pub fn sweep(s: &Scenario, variants: &[Variant], seeds: &[u64], threads: usize, progress: bool) -> Vec<SweepRun> {
    let variants: Vec<Variant> = if variants.is_empty() {
        vec![Variant { name: "as-written".into(), ..Variant::default() }]
    } else {
        variants.to_vec()
    };
    let jobs: Vec<(usize, u64)> = (0..variants.len()).flat_map(|v| seeds.iter().map(move |&s| (v, s))).collect();
    let scenarios: Vec<Scenario> = variants.iter().map(|v| s.with_variant(v)).collect();
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<Option<SweepRun>>> = Mutex::new(vec![None; jobs.len()]);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1).min(jobs.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(v, seed)) = jobs.get(j) else { break };
                    let report = run(&scenarios[v], &Options { seed: Some(seed), ..Options::default() });
                    if progress {
                        eprintln!(
                            "dtn-sim: {} seed {seed}: delivery {:.3}, overhead {:.2}",
                            variants[v].name, report.stats.delivery_prob, report.stats.overhead_ratio
                        );
                    }
                    let r = SweepRun { variant: variants[v].name.clone(), seed, report };
                    done.lock().unwrap_or_else(|e| e.into_inner())[j] = Some(r);
                }
            });
        }
    });
    done.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().flatten().collect()
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64;
    (m, var.sqrt())
}

/// Per-variant means and deviations, in the order variants first appear.
pub fn summarize(runs: &[SweepRun]) -> Vec<Summary> {
    let mut names: Vec<&str> = Vec::new();
    for r in runs {
        if !names.contains(&r.variant.as_str()) {
            names.push(&r.variant);
        }
    }
    names
        .into_iter()
        .map(|n| {
            let rs: Vec<&SweepRun> = runs.iter().filter(|r| r.variant == n).collect();
            let pick = |f: fn(&Report) -> f64| mean_sd(&rs.iter().map(|r| f(&r.report)).collect::<Vec<_>>());
            Summary {
                variant: n.to_string(),
                runs: rs.len(),
                delivery_prob: pick(|r| r.stats.delivery_prob),
                overhead_ratio: pick(|r| r.stats.overhead_ratio),
                latency_avg: pick(|r| r.stats.latency_avg),
                hopcount_avg: pick(|r| r.stats.hopcount_avg),
                copies_max: pick(|r| r.stats.copies_max as f64),
            }
        })
        .collect()
}

/// The summary as CSV.
pub fn summary_csv(sums: &[Summary]) -> String {
    let mut o = String::from(
        "variant,runs,delivery_prob,delivery_prob_sd,overhead_ratio,overhead_ratio_sd,latency_avg,latency_avg_sd,hopcount_avg,hopcount_avg_sd,copies_max,copies_max_sd\n",
    );
    for s in sums {
        o.push_str(&format!(
            "{},{},{:.4},{:.4},{:.4},{:.4},{:.2},{:.2},{:.3},{:.3},{:.2},{:.2}\n",
            s.variant,
            s.runs,
            s.delivery_prob.0,
            s.delivery_prob.1,
            s.overhead_ratio.0,
            s.overhead_ratio.1,
            s.latency_avg.0,
            s.latency_avg.1,
            s.hopcount_avg.0,
            s.hopcount_avg.1,
            s.copies_max.0,
            s.copies_max.1
        ));
    }
    o
}
