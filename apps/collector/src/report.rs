//! The completeness report: per station and sensor, what came in, what is missing, what came twice.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use dtn_sensor::SensorKind;
use serde::Serialize;

/// The whole archive.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Per station.
    pub stations: BTreeMap<String, StationReport>,
    /// Payloads refused as unreadable.
    pub rejected: u64,
}

/// One station.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StationReport {
    /// Per sensor.
    pub sensors: BTreeMap<String, SensorReport>,
}

/// One sensor of a station.
#[derive(Debug, Clone, Serialize)]
pub struct SensorReport {
    /// What it measures.
    pub kind: String,
    /// Batches in the archive.
    pub batches: u64,
    /// Highest batch number seen.
    pub last_seq: Option<u64>,
    /// Batch numbers missing below the highest seen, as inclusive ranges.
    pub gaps: Vec<(u64, u64)>,
    /// Batches that arrived again and were dropped.
    pub duplicates: u64,
    /// Readings written.
    pub readings: u64,
    /// Payload bytes.
    pub bytes: u64,
}

impl SensorReport {
    pub(crate) fn of(kind: SensorKind, seen: &BTreeSet<u64>, duplicates: u64, readings: u64, bytes: u64) -> Self {
        let mut gaps = Vec::new();
        let mut next = 0u64;
        for &s in seen {
            if s > next {
                gaps.push((next, s - 1));
            }
            next = s + 1;
        }
        SensorReport {
            kind: kind.name().to_string(),
            batches: seen.len() as u64,
            last_seq: seen.last().copied(),
            gaps,
            duplicates,
            readings,
            bytes,
        }
    }

    /// Batch numbers missing below the highest seen.
    pub fn missing(&self) -> u64 {
        self.gaps.iter().map(|(a, b)| b - a + 1).sum()
    }
}

impl StationReport {
    /// Batches in the archive, all sensors.
    pub fn batches(&self) -> u64 {
        self.sensors.values().map(|s| s.batches).sum()
    }

    /// Missing batches (gaps), all sensors.
    pub fn missing(&self) -> u64 {
        self.sensors.values().map(SensorReport::missing).sum()
    }

    /// Duplicates dropped, all sensors.
    pub fn duplicates(&self) -> u64 {
        self.sensors.values().map(|s| s.duplicates).sum()
    }

    /// Readings, all sensors.
    pub fn readings(&self) -> u64 {
        self.sensors.values().map(|s| s.readings).sum()
    }

    /// Payload bytes, all sensors.
    pub fn bytes(&self) -> u64 {
        self.sensors.values().map(|s| s.bytes).sum()
    }
}

impl Report {
    /// One line per station: sensors, batches, readings, missing batches (gaps), duplicates dropped.
    pub fn per_station(&self) -> String {
        let mut out = format!(
            "{:<16} {:>7} {:>8} {:>9} {:>8} {:>6} {:>11}\n",
            "station", "sensors", "batches", "readings", "missing", "dups", "bytes"
        );
        for (name, st) in &self.stations {
            out.push_str(&format!(
                "{name:<16} {:>7} {:>8} {:>9} {:>8} {:>6} {:>11}\n",
                st.sensors.len(),
                st.batches(),
                st.readings(),
                st.missing(),
                st.duplicates(),
                st.bytes()
            ));
        }
        if self.rejected > 0 {
            out.push_str(&format!("{} payloads were not sensor batches and were set aside\n", self.rejected));
        }
        out
    }
}

/// Per station and sensor, with the gaps spelled out.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<16} {:<28} {:>8} {:>8} {:>6} {:>10}  gaps",
            "station", "sensor", "batches", "readings", "dups", "bytes"
        )?;
        for (station, st) in &self.stations {
            for (sensor, s) in &st.sensors {
                let gaps = if s.gaps.is_empty() {
                    "none".to_string()
                } else {
                    s.gaps
                        .iter()
                        .map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
                        .collect::<Vec<_>>()
                        .join(",")
                };
                writeln!(
                    f,
                    "{station:<16} {sensor:<28} {:>8} {:>8} {:>6} {:>10}  {gaps}",
                    s.batches, s.readings, s.duplicates, s.bytes
                )?;
            }
        }
        if self.rejected > 0 {
            writeln!(f, "{} payloads were not sensor batches and were set aside", self.rejected)?;
        }
        Ok(())
    }
}
