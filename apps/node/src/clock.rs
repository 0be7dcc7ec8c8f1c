//! The node's time base: DTN time from the system clock, or, on a node without a real-time clock, a time base
//! that only ever moves forward, across restarts too.
//!
//! A clockless node still needs a `now` for expiry, custody timers and bundle age (RFC 9171 §4.2.6: such a
//! node creates bundles with time 0 and a bundle-age block). Its time base is kept in the store directory as
//! a *lease*: a time written ahead of now, which `now` never passes. A restart starts from the last lease, so
//! even after a crash the time base is at least as late as any time the node used before.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dtn_core::bpv7::DtnTime;

use crate::NodeError;

/// How far ahead of now the lease is written.
const LEASE_AHEAD_MS: u64 = 60_000;
/// How often the lease is renewed: well within [`LEASE_AHEAD_MS`], so a busy disk does not stall time.
pub(crate) const RENEW_EVERY: Duration = Duration::from_secs(10);
/// The lease's file in the store directory.
const FILE: &str = "clock";

/// Where a node's `now` comes from. Cheap to clone; clones share the time base.
#[derive(Clone, Debug)]
pub struct NodeClock(Option<Arc<Monotonic>>);

#[derive(Debug)]
struct Monotonic {
    path: PathBuf,
    base: u64,
    started: Instant,
    lease: AtomicU64,
}

impl NodeClock {
    /// DTN time from the system clock.
    pub fn real() -> NodeClock {
        NodeClock(None)
    }

    /// A time base for a node without a real-time clock, kept in `dir` (the store directory). It starts
    /// where the previous run's lease ended (0 the first time).
    pub fn monotonic(dir: &Path) -> Result<NodeClock, NodeError> {
        let path = dir.join(FILE);
        let base = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<u64>().map_err(|_| {
                NodeError::Corrupt(format!("{} should hold a time in milliseconds, not {text:?}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => return Err(NodeError::Io { context: format!("reading {}", path.display()), source }),
        };
        let m = Monotonic { path, base, started: Instant::now(), lease: AtomicU64::new(base) };
        let clock = NodeClock(Some(Arc::new(m)));
        clock.renew().map_err(|source| NodeError::Io { context: "writing the clock lease".into(), source })?;
        Ok(clock)
    }

    /// Whether this is real DTN time.
    pub fn has_clock(&self) -> bool {
        self.0.is_none()
    }

    /// Now, in DTN time or in the node's own time base.
    pub fn now(&self) -> DtnTime {
        match &self.0 {
            None => crate::core::now(),
            Some(m) => {
                let t = m.base.saturating_add(m.started.elapsed().as_millis() as u64);
                // Never past what is durably promised: if the lease could not be renewed, time waits.
                DtnTime(t.min(m.lease.load(Ordering::Acquire)))
            }
        }
    }

    /// Writes a new lease ahead of now (durably, then publishes it). Nothing to do with a real clock.
    pub(crate) fn renew(&self) -> std::io::Result<()> {
        let Some(m) = &self.0 else { return Ok(()) };
        let lease = m.base.saturating_add(m.started.elapsed().as_millis() as u64).saturating_add(LEASE_AHEAD_MS);
        let tmp = m.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(format!("{lease}\n").as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &m.path)?;
        if let Some(dir) = m.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        m.lease.fetch_max(lease, Ordering::AcqRel);
        Ok(())
    }
}

/// Renews a clockless node's lease until aborted.
pub(crate) async fn keep_lease(clock: NodeClock) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let c = clock.clone();
        match tokio::task::spawn_blocking(move || c.renew()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not renew the clock lease; the time base waits"),
            Err(e) => tracing::warn!(error = %e, "clock lease task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clockless_time_base_never_goes_back_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = NodeClock::monotonic(dir.path()).expect("first start");
        assert!(!a.has_clock());
        std::thread::sleep(Duration::from_millis(20));
        let t1 = a.now();
        assert!(t1.0 >= 20 && t1.0 < LEASE_AHEAD_MS, "{t1:?}");
        // A crash: no clean shutdown, the process is simply gone. The next run starts at the lease.
        drop(a);
        let b = NodeClock::monotonic(dir.path()).expect("restart");
        assert!(b.now().0 >= LEASE_AHEAD_MS, "{:?}", b.now());
        assert!(b.now() > t1);
        std::fs::write(dir.path().join(FILE), "garbage").expect("write");
        assert!(matches!(NodeClock::monotonic(dir.path()), Err(NodeError::Corrupt(_))));
    }
}
