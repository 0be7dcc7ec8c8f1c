//! Contact traces in the ONE's connection-event format, as its `ConnectivityONEReport` writes them and its
//! `StandardEventsReader` reads them:
//!
//! ```text
//! 12.5 CONN 3 17 up
//! 40.0 CONN 3 17 down
//! ```
//!
//! Times are seconds; hosts are the ONE's addresses (0-based, in group order, as the scenario numbers its
//! nodes) or node names.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use crate::units::Micros;

/// One connection event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceEvent {
    /// When.
    pub time: Micros,
    /// One host.
    pub a: usize,
    /// The other.
    pub b: usize,
    /// Up or down.
    pub up: bool,
}

/// A bad trace file.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Unreadable.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line that is not a connection event.
    #[error("{path} line {line}: {detail}")]
    Line {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        detail: String,
    },
}

/// Reads a trace file.
pub fn load(path: &Path, names: &HashMap<String, usize>, nodes: usize) -> Result<Vec<TraceEvent>, TraceError> {
    let p = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|source| TraceError::Io { path: p.clone(), source })?;
    parse(BufReader::new(f), &p, names, nodes)
}

/// Parses a trace; events come back sorted by time (stable, so equal times keep file order).
pub fn parse(
    r: impl BufRead,
    path: &str,
    names: &HashMap<String, usize>,
    nodes: usize,
) -> Result<Vec<TraceEvent>, TraceError> {
    let mut out = Vec::new();
    for (i, line) in r.lines().enumerate() {
        let line = line.map_err(|source| TraceError::Io { path: path.to_string(), source })?;
        let err = |detail: String| TraceError::Line { path: path.to_string(), line: i + 1, detail };
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let w: Vec<&str> = t.split_whitespace().collect();
        let [time, kind, h1, h2, state, ..] = w.as_slice() else {
            return Err(err(format!("expected `<time> CONN <host1> <host2> up|down`, got {t:?}")));
        };
        if *kind != "CONN" {
            return Err(err(format!("only CONN events are supported, got {kind:?}")));
        }
        let secs: f64 = time.parse().map_err(|_| err(format!("bad time {time:?}")))?;
        if !(secs >= 0.0 && secs.is_finite()) {
            return Err(err(format!("bad time {time:?}")));
        }
        let host = |h: &str| -> Result<usize, TraceError> {
            if let Some(&i) = names.get(h) {
                return Ok(i);
            }
            match h.parse::<usize>() {
                Ok(i) if i < nodes => Ok(i),
                Ok(i) => Err(err(format!("host address {i} but the scenario has {nodes} nodes"))),
                Err(_) => Err(err(format!("unknown host {h:?}"))),
            }
        };
        let (a, b) = (host(h1)?, host(h2)?);
        if a == b {
            return Err(err(format!("host {h1} connects to itself")));
        }
        let up = match *state {
            "up" => true,
            "down" => false,
            s => return Err(err(format!("expected up or down, got {s:?}"))),
        };
        out.push(TraceEvent { time: (secs * 1e6).round() as Micros, a, b, up });
    }
    out.sort_by_key(|e| e.time);
    Ok(out)
}

/// Writes one event as the ONE does.
pub fn write_event(w: &mut impl Write, e: &TraceEvent) -> std::io::Result<()> {
    let (s, frac) = (e.time / 1_000_000, e.time % 1_000_000 / 10_000);
    writeln!(w, "{s}.{frac:02} CONN {} {} {}", e.a, e.b, if e.up { "up" } else { "down" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_writes_and_names_bad_lines() {
        let names: HashMap<String, usize> = [("van".to_string(), 2)].into();
        let mut buf = Vec::new();
        write_event(&mut buf, &TraceEvent { time: 12_500_000, a: 0, b: 1, up: true }).unwrap();
        buf.extend_from_slice(b"# comment\n40 CONN 1 van down\n");
        let ev = parse(&buf[..], "t", &names, 3).unwrap();
        assert_eq!(
            ev,
            [
                TraceEvent { time: 12_500_000, a: 0, b: 1, up: true },
                TraceEvent { time: 40_000_000, a: 1, b: 2, up: false }
            ]
        );
        let e = parse(&b"1 CONN 0 1 up\n2 CONN 0 9 up\n"[..], "t", &names, 3).unwrap_err();
        assert!(e.to_string().starts_with("t line 2:"), "{e}");
        let e = parse(&b"1 CONN 0 1 sideways\n"[..], "t", &names, 3).unwrap_err();
        assert!(e.to_string().contains("up or down"), "{e}");
    }
}
