//! The simulator's store: dtn-core's `MemStore` holding bundles whose payloads are small stand-ins, with every
//! size it accounts (quota, eviction, usage) replaced by the *virtual* size the bundle would have.
//!
//! A simulated message of 1 MB is created with a payload of `ceil(V / unit)` bytes, so each real payload byte
//! stands for `unit` virtual bytes (the last one for the remainder). The engine encodes, decodes, splits and
//! reassembles these real bundles exactly as it does in a deployment, only cheaply; the sizes the store and
//! the links see are derived from the real bytes:
//!
//! `virtual size = encoded size − real payload length + virtual payload length of the same stretch`
//!
//! so headers and extension blocks count as they are, and a fragment of real payload bytes `[o, o + l)`
//! counts as virtual bytes `[o·V/R, (o + l)·V/R)`. Nothing in dtn-core changes: every `Insert` the engine
//! writes carries the real encoded size, which this store rewrites before committing.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use crate::fasthash::FastMap;
use dtn_core::bpv7::{BundleId, DtnTime, Eid};
use dtn_core::store::{
    BundleMeta, BundleReader, BundleStore, CommitReport, MemStore, PartialBundle, Payload, Priority, Result,
    StoreError, StoredBytes, Summary, Tombstone, TombstoneReason, Usage, WriteBatch, WriteOp,
};

/// A message's sizes: virtual and real payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgSize {
    /// Index of the message in the simulation.
    pub msg: u32,
    /// Virtual payload length (what the scenario asked for).
    pub virt: u64,
    /// Real payload length of the stand-in.
    pub real: u64,
}

impl MsgSize {
    /// Virtual offset of real payload offset `x`.
    pub fn voff(&self, x: u64) -> u64 {
        (u128::from(x.min(self.real)) * u128::from(self.virt) / u128::from(self.real.max(1))) as u64
    }

    /// Virtual payload length of real payload stretch `[o, o + l)`.
    pub fn vspan(&self, o: u64, l: u64) -> u64 {
        self.voff(o + l) - self.voff(o)
    }

    /// The largest real payload length from offset `o` whose virtual length is at most `v`.
    pub fn real_within(&self, o: u64, l: u64, v: u64) -> u64 {
        // voff is monotone: binary search over the real bytes.
        let (mut lo, mut hi) = (0u64, l);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if self.vspan(o, mid) <= v { lo = mid } else { hi = mid - 1 }
        }
        lo
    }
}

/// Message sizes, shared by every node's store in one run: (source node number, creation time, sequence).
#[derive(Debug, Default)]
pub struct SizeTable {
    map: FastMap<(u64, u64, u64), MsgSize>,
}

fn key(id: &BundleId) -> Option<(u64, u64, u64)> {
    match &id.source {
        Eid::Ipn(_) => Some((ipn_node(&id.source)?, id.creation.time.0, id.creation.sequence)),
        _ => None,
    }
}

/// The node number of an `ipn:` EID.
pub fn ipn_node(eid: &Eid) -> Option<u64> {
    match eid {
        Eid::Ipn(i) => Some(i.fqnn),
        _ => None,
    }
}

impl SizeTable {
    /// Records the sizes of a message whose bundle has this ID (fragment part ignored).
    pub fn insert(&mut self, id: &BundleId, size: MsgSize) {
        if let Some(k) = key(id) {
            self.map.insert(k, size);
        }
    }

    /// The message a bundle (or fragment) belongs to, if it is a simulated message.
    pub fn get(&self, id: &BundleId) -> Option<MsgSize> {
        self.map.get(&key(id)?).copied()
    }

    /// Virtual size of a bundle whose encoding is `real` bytes long.
    pub fn virtual_size(&self, id: &BundleId, real: u64) -> u64 {
        match self.get(id) {
            None => real,
            Some(m) => {
                let (o, l) = id.fragment.unwrap_or((0, m.real));
                real.saturating_sub(l) + m.vspan(o, l)
            }
        }
    }
}

/// Why a bundle left a node's store, for buffer-time statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// Dropped: evicted for room, or its lifetime ended.
    Dropped,
    /// Removed otherwise: delivered, handed on, known delivered elsewhere.
    Removed,
}

/// A bundle that left the store: (bundle, when it arrived, why).
pub type Departure = (BundleId, DtnTime, Gone);

/// A node's store in the simulator. `MemStore` keeps the metadata, indexes, summaries and quota with
/// virtual sizes (its bundles are inserted size-only); the encoded stand-in bundles live here beside it.
pub struct SimStore {
    inner: MemStore,
    bytes: RefCell<FastMap<BundleId, Arc<[u8]>>>,
    sizes: Rc<RefCell<SizeTable>>,
    /// Virtual bytes minus real bytes of the bundle the shell is about to hand in, so that the engine's
    /// room check before storing a received bundle sees its virtual size.
    pub incoming_extra: Cell<u64>,
    peak: Cell<u64>,
    departures: RefCell<Vec<Departure>>,
}

impl SimStore {
    /// An empty store with a quota in virtual bytes.
    pub fn new(quota: u64, sizes: Rc<RefCell<SizeTable>>) -> Self {
        SimStore {
            inner: MemStore::new(quota),
            bytes: RefCell::new(FastMap::default()),
            sizes,
            incoming_extra: Cell::new(0),
            peak: Cell::new(0),
            departures: RefCell::new(Vec::new()),
        }
    }

    /// Most virtual bytes ever held at once.
    pub fn peak(&self) -> u64 {
        self.peak.get()
    }

    /// Bundles that left the store since the last call.
    pub fn take_departures(&self) -> Vec<Departure> {
        std::mem::take(&mut *self.departures.borrow_mut())
    }

    /// Every bundle held.
    pub fn all(&self) -> Vec<BundleMeta> {
        self.inner.select(&self.inner.summary(), usize::MAX).unwrap_or_default()
    }
}

impl BundleStore for SimStore {
    fn meta(&self, id: &BundleId) -> Result<Option<BundleMeta>> {
        self.inner.meta(id)
    }
    fn meta_seen_at(&self, id: &BundleId, arrival: u64) -> Result<Option<BundleMeta>> {
        self.inner.meta_seen_at(id, arrival)
    }
    fn contains(&self, id: &BundleId) -> Result<bool> {
        self.inner.contains(id)
    }
    fn read_bundle(&self, id: &BundleId) -> Result<BundleReader> {
        match self.bytes.borrow().get(id) {
            Some(b) => Ok(Box::new(std::io::Cursor::new(b.clone()))),
            None => Err(StoreError::NotFound(id.clone())),
        }
    }
    fn bundle_bytes(&self, id: &BundleId) -> Result<StoredBytes> {
        match self.bytes.borrow().get(id) {
            Some(b) => Ok(StoredBytes::Shared(b.clone())),
            None => Err(StoreError::NotFound(id.clone())),
        }
    }
    fn tombstone(&self, id: &BundleId) -> Result<Option<Tombstone>> {
        self.inner.tombstone(id)
    }
    fn by_destination(&self, destination: &Eid, after: Option<u64>, limit: usize) -> Result<Vec<BundleMeta>> {
        self.inner.by_destination(destination, after, limit)
    }
    fn expiring(&self, until: DtnTime, limit: usize) -> Result<Vec<BundleMeta>> {
        self.inner.expiring(until, limit)
    }
    fn by_priority(&self, after: Option<(Priority, u64)>, limit: usize) -> Result<Vec<BundleMeta>> {
        self.inner.by_priority(after, limit)
    }
    fn custody_due(&self, until: DtnTime, limit: usize) -> Result<Vec<BundleMeta>> {
        self.inner.custody_due(until, limit)
    }
    fn select(&self, want: &Summary, limit: usize) -> Result<Vec<BundleMeta>> {
        self.inner.select(want, limit)
    }
    fn select_keys(&self, want: &Summary) -> Result<Vec<(Priority, u64, BundleId)>> {
        self.inner.select_keys(want)
    }
    fn summary(&self) -> Summary {
        self.inner.summary()
    }
    fn delivered_summary(&self) -> Summary {
        self.inner.delivered_summary()
    }
    fn with_summaries(&self, f: &mut dyn FnMut(&Summary, &Summary)) {
        self.inner.with_summaries(f)
    }
    fn state(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.state(key)
    }
    fn peer(&self, peer: &Eid) -> Result<Option<Summary>> {
        self.inner.peer(peer)
    }
    fn partials(&self) -> Result<Vec<PartialBundle>> {
        self.inner.partials()
    }
    fn read_partial(&self, id: &BundleId) -> Result<BundleReader> {
        self.inner.read_partial(id)
    }
    fn usage(&self) -> Usage {
        self.inner.usage()
    }
    fn check_room(&self, size: u64, priority: Priority, now: DtnTime) -> Result<()> {
        self.inner.check_room(size + self.incoming_extra.get(), priority, now)
    }

    fn commit(&self, mut batch: WriteBatch) -> Result<CommitReport> {
        let mut leaving = Vec::new();
        // Byte changes in batch order, applied only if the commit succeeds.
        let mut changes: Vec<(BundleId, Option<Arc<[u8]>>)> = Vec::new();
        {
            let sizes = self.sizes.borrow();
            for op in &mut batch.ops {
                match op {
                    WriteOp::Insert { meta, payload } => {
                        meta.size = sizes.virtual_size(&meta.id, meta.size);
                        match std::mem::replace(payload, Payload::SizeOnly) {
                            Payload::Bytes(b) => changes.push((meta.id.clone(), Some(b.into()))),
                            other => {
                                return Err(StoreError::Invalid(format!(
                                    "the simulator's store takes bundles as bytes, not {other:?}"
                                )));
                            }
                        }
                    }
                    WriteOp::Remove { id, .. } | WriteOp::Tombstone { id, .. } => changes.push((id.clone(), None)),
                    _ => {}
                }
                match op {
                    WriteOp::Remove { id, tombstone: Some(reason) }
                    | WriteOp::Tombstone { id, tombstone: Tombstone { reason, .. } } => {
                        if sizes.get(id).is_some()
                            && let Ok(Some(m)) = self.inner.meta(id)
                        {
                            let gone = match reason {
                                TombstoneReason::Deleted(_) => Gone::Dropped,
                                _ => Gone::Removed,
                            };
                            leaving.push((m.id, m.received_at, gone));
                        }
                    }
                    _ => {}
                }
            }
        }
        let report = self.inner.commit(batch)?;
        self.peak.set(self.peak.get().max(self.inner.usage().bytes));
        let mut bytes = self.bytes.borrow_mut();
        for (id, b) in changes {
            match b {
                Some(b) => bytes.insert(id, b),
                None => bytes.remove(&id),
            };
        }
        for m in report.evicted.iter().chain(&report.expired) {
            bytes.remove(&m.id);
        }
        let mut d = self.departures.borrow_mut();
        d.extend(leaving);
        let sizes = self.sizes.borrow();
        for m in report.evicted.iter().chain(&report.expired) {
            if sizes.get(&m.id).is_some() {
                d.push((m.id.clone(), m.received_at, Gone::Dropped));
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_add_up_to_the_virtual_message() {
        let m = MsgSize { msg: 0, virt: 1_000_000, real: 245 };
        let cut = 100;
        assert_eq!(m.vspan(0, cut) + m.vspan(cut, m.real - cut), 1_000_000);
        let v = m.vspan(0, cut);
        assert_eq!(m.real_within(0, m.real, v), cut);
        assert_eq!(m.real_within(0, m.real, v - 1), cut - 1);
        assert_eq!(m.real_within(0, m.real, 10_000_000), m.real);
    }
}
