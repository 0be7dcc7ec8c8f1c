//! What a run measured, with the ONE's `MessageStatsReport` fields and their meaning, plus buffer occupancy
//! over time and per-node storage peaks; written as JSON, CSV, the ONE's text format and SVG plots.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::plot;

/// Message statistics, as the ONE's `MessageStatsReport` defines them (see docs/sim.md for each field).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MessageStats {
    /// Messages created (after the warm-up).
    pub created: u64,
    /// Transfers of message bundles that began on a link.
    pub started: u64,
    /// Transfers that completed and were stored by the receiver.
    pub relayed: u64,
    /// Transfers cut by the end of a contact (the receiver keeps the bytes as a fragment).
    pub aborted: u64,
    /// Copies dropped from buffers: evicted for room, or lifetime over.
    pub dropped: u64,
    /// Copies removed otherwise: handed on, or known delivered elsewhere.
    pub removed: u64,
    /// Messages delivered to their destination's application.
    pub delivered: u64,
    /// delivered / created.
    pub delivery_prob: f64,
    /// (relayed − delivered) / delivered.
    pub overhead_ratio: f64,
    /// Creation to first delivery, seconds.
    pub latency_avg: f64,
    /// Median latency, seconds (the ONE's median: element n/2 of the sorted values).
    pub latency_med: f64,
    /// Hops of delivered messages.
    pub hopcount_avg: f64,
    /// Median hop count.
    pub hopcount_med: f64,
    /// Seconds a copy spent in a buffer before it was dropped or removed.
    pub buffertime_avg: f64,
    /// Median buffer time.
    pub buffertime_med: f64,
    // Beyond the ONE's report.
    /// Transfers the receiver refused (no room).
    pub refused: u64,
    /// Messages the source could not store (its buffer full of what it may not evict).
    pub rejected: u64,
    /// Most nodes other than the destination that ever held a copy of one message.
    pub copies_max: u64,
    /// Bundles that are not messages (hellos, receipts, custody signals, status reports) sent.
    pub control_bundles: u64,
    /// Their bytes.
    pub control_bytes: u64,
    /// Message bytes (virtual) carried by completed transfers.
    pub relayed_bytes: u64,
}

/// Buffer occupancy across nodes at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the start.
    pub time: f64,
    /// Mean of used/quota over nodes, percent.
    pub avg_pct: f64,
    /// Highest used/quota, percent.
    pub max_pct: f64,
    /// Virtual bytes held over all nodes.
    pub bytes: u64,
    /// Messages delivered so far.
    pub delivered: u64,
    /// Messages created so far.
    pub created: u64,
}

/// One node's storage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeStats {
    /// Name.
    pub name: String,
    /// Routing agent.
    pub routing: &'static str,
    /// Buffer size, bytes.
    pub buffer: u64,
    /// Most bytes held at once.
    pub peak: u64,
    /// Bytes held at the end.
    pub end: u64,
    /// Bundles held at the end.
    pub bundles_end: u64,
}

/// One message's fate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageRow {
    /// Name.
    pub id: String,
    /// Source node.
    pub from: String,
    /// Destination node.
    pub to: String,
    /// Bytes.
    pub size: u64,
    /// Created, seconds.
    pub created: f64,
    /// Delivered, seconds (none if not).
    pub delivered: Option<f64>,
    /// Hops when delivered.
    pub hops: Option<u32>,
}

/// Everything a run reports. Contains nothing that depends on the machine, so the same scenario and seed
/// give byte-identical files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Simulated seconds.
    pub sim_time: f64,
    /// Nodes.
    pub nodes: usize,
    /// Contacts that came up.
    pub contacts: u64,
    /// Engine events handled.
    pub events: u64,
    /// Message statistics.
    pub stats: MessageStats,
    /// Latencies of delivered messages, seconds, sorted.
    pub latencies: Vec<f64>,
    /// Buffer occupancy samples.
    pub occupancy: Vec<Sample>,
    /// Per-node storage.
    pub node_stats: Vec<NodeStats>,
    /// Per-message outcome (also in messages.csv).
    pub messages: Vec<MessageRow>,
}

fn f(x: f64) -> String {
    // Fixed precision so that reports compare byte for byte and read easily.
    format!("{x:.4}")
}

impl Report {
    /// The ONE's `MessageStatsReport` text.
    pub fn one_text(&self) -> String {
        let s = &self.stats;
        let mut o = String::new();
        let _ = writeln!(o, "Message stats for scenario {}", self.scenario);
        let _ = writeln!(o, "sim_time: {}", f(self.sim_time));
        for (k, v) in self.stat_rows() {
            let _ = writeln!(o, "{k}: {v}");
        }
        let _ = s;
        o
    }

    /// The statistics as (name, value) rows, ONE fields first.
    pub fn stat_rows(&self) -> Vec<(&'static str, String)> {
        let s = &self.stats;
        vec![
            ("created", s.created.to_string()),
            ("started", s.started.to_string()),
            ("relayed", s.relayed.to_string()),
            ("aborted", s.aborted.to_string()),
            ("dropped", s.dropped.to_string()),
            ("removed", s.removed.to_string()),
            ("delivered", s.delivered.to_string()),
            ("delivery_prob", f(s.delivery_prob)),
            ("overhead_ratio", f(s.overhead_ratio)),
            ("latency_avg", f(s.latency_avg)),
            ("latency_med", f(s.latency_med)),
            ("hopcount_avg", f(s.hopcount_avg)),
            ("hopcount_med", f(s.hopcount_med)),
            ("buffertime_avg", f(s.buffertime_avg)),
            ("buffertime_med", f(s.buffertime_med)),
            ("refused", s.refused.to_string()),
            ("rejected", s.rejected.to_string()),
            ("copies_max", s.copies_max.to_string()),
            ("control_bundles", s.control_bundles.to_string()),
            ("control_bytes", s.control_bytes.to_string()),
            ("relayed_bytes", s.relayed_bytes.to_string()),
        ]
    }

    /// Writes report.json, stats.csv, MessageStatsReport.txt, messages.csv, occupancy.csv, nodes.csv and the
    /// plots into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("report.json"), json + "\n")?;
        std::fs::write(dir.join("MessageStatsReport.txt"), self.one_text())?;
        let mut csv = String::from("stat,value\n");
        for (k, v) in self.stat_rows() {
            let _ = writeln!(csv, "{k},{v}");
        }
        std::fs::write(dir.join("stats.csv"), csv)?;
        let mut m = String::from("id,from,to,size,created,delivered,latency,hops\n");
        for r in &self.messages {
            let d = r.delivered.map(f).unwrap_or_default();
            let l = r.delivered.map(|d| f(d - r.created)).unwrap_or_default();
            let h = r.hops.map(|h| h.to_string()).unwrap_or_default();
            let _ = writeln!(m, "{},{},{},{},{},{d},{l},{h}", r.id, r.from, r.to, r.size, f(r.created));
        }
        std::fs::write(dir.join("messages.csv"), m)?;
        let mut o = String::from("time,avg_pct,max_pct,bytes,created,delivered\n");
        for s in &self.occupancy {
            let _ = writeln!(
                o,
                "{},{},{},{},{},{}",
                f(s.time),
                f(s.avg_pct),
                f(s.max_pct),
                s.bytes,
                s.created,
                s.delivered
            );
        }
        std::fs::write(dir.join("occupancy.csv"), o)?;
        let mut n = String::from("node,routing,buffer,peak,end,bundles_end\n");
        for s in &self.node_stats {
            let _ = writeln!(n, "{},{},{},{},{},{}", s.name, s.routing, s.buffer, s.peak, s.end, s.bundles_end);
        }
        std::fs::write(dir.join("nodes.csv"), n)?;
        std::fs::write(dir.join("delivery.svg"), plot::delivery(self))?;
        std::fs::write(dir.join("latency.svg"), plot::latency(self))?;
        std::fs::write(dir.join("buffer.svg"), plot::buffer(self))?;
        Ok(())
    }
}

/// Mean and the ONE's median (element n/2 of the sorted values); zeros when empty.
pub fn avg_med(v: &mut [f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    (v.iter().sum::<f64>() / v.len() as f64, v[v.len() / 2])
}
