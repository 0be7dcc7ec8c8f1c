//! In-memory store for the simulator and tests: the same semantics as the persistent store, nothing durable.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Cursor, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{
    BundleMeta, BundleReader, BundleStore, CommitReport, Custody, PartialBundle, Payload, Priority, Result, SeqMode,
    StagedId, StoreError, StoredBytes, Summary, Tombstone, TombstoneReason, Usage, WriteBatch, WriteOp,
};
use crate::bpv7::{BundleId, CreationTimestamp, DtnTime, Eid};

/// A store held in memory. Batches are atomic (an undo log rolls back a failed one).
pub struct MemStore {
    inner: Mutex<Inner>,
    staged: Arc<Mutex<Staging>>,
}

#[derive(Default)]
struct Staging {
    next: u64,
    data: HashMap<StagedId, Vec<u8>>,
}

#[derive(Clone)]
enum Bytes {
    Data(Arc<[u8]>),
    SizeOnly,
}

#[derive(Clone)]
struct Entry {
    meta: BundleMeta,
    bytes: Bytes,
}

#[derive(Default)]
struct Inner {
    quota: u64,
    used: u64,
    next_arrival: u64,
    /// Bundle ID to arrival and priority: the ID order `select` walks, with what a contact's queue needs. The
    /// entries themselves are found by arrival, which every other index holds, and sit in a hash map so that
    /// no insert or removal moves other entries.
    bundles: BTreeMap<BundleId, (u64, Priority)>,
    entries: HashMap<u64, Entry, BuildHasherDefault<ArrivalHasher>>,
    by_dest: BTreeSet<(Eid, u64)>,
    by_expiry: BTreeSet<(DtnTime, u64)>,
    by_prio: BTreeSet<(Reverse<Priority>, u64)>,
    custody_due: BTreeSet<(DtnTime, u64)>,
    /// Replicas only, in eviction order.
    evictable: BTreeSet<(Priority, DtnTime, u64)>,
    unique_seq: BTreeMap<(Eid, u64), (BundleId, u64, Priority)>,
    tombstones: BTreeMap<BundleId, Tombstone>,
    tomb_expiry: BTreeSet<(DtnTime, BundleId)>,
    state: BTreeMap<Vec<u8>, Vec<u8>>,
    peers: BTreeMap<Eid, Summary>,
    partials: BTreeMap<BundleId, PartialBundle>,
    held: Summary,
    delivered: Summary,
}

/// Inverse of one applied change, for rolling back a failed batch.
enum Undo {
    Uninsert(BundleId),
    Reinsert(Box<Entry>),
    Meta(Box<BundleMeta>),
    Tomb(BundleId, Option<Tombstone>),
    State(Vec<u8>, Option<Vec<u8>>),
    Peer(Eid, Option<Summary>),
    Partial(BundleId, Option<PartialBundle>),
    Staged(StagedId, Vec<u8>),
}

/// Writes bytes into a [`MemStore`]'s staging area.
pub struct MemStager {
    staging: Arc<Mutex<Staging>>,
    id: StagedId,
    buf: Vec<u8>,
}

impl Write for MemStager {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl MemStager {
    /// The staging handle the bytes will be committed under.
    pub fn id(&self) -> StagedId {
        self.id
    }

    /// Makes everything written so far readable as staged data; returns its length.
    pub fn sync(&mut self) -> Result<u64> {
        lock(&self.staging).data.insert(self.id, self.buf.clone());
        Ok(self.buf.len() as u64)
    }

    /// Finishes writing; the handle can go in a [`Payload::Staged`] or a [`PartialBundle`].
    pub fn finish(mut self) -> Result<StagedId> {
        self.sync()?;
        Ok(self.id)
    }
}

/// Hashes an arrival number: arrivals are distinct counters, so a multiply spreads them well enough, and the
/// map's order is never looked at.
#[derive(Default)]
struct ArrivalHasher(u64);

impl Hasher for ArrivalHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves no half-applied batch (the undo log runs first), so the data is
    // still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemStore {
    /// An empty store with a byte quota.
    pub fn new(quota: u64) -> Self {
        MemStore {
            inner: Mutex::new(Inner { quota, ..Default::default() }),
            staged: Arc::new(Mutex::new(Staging::default())),
        }
    }

    /// Starts writing bytes to stage.
    pub fn stage(&self) -> MemStager {
        let id = {
            let mut s = lock(&self.staged);
            s.next += 1;
            StagedId(s.next)
        };
        MemStager { staging: self.staged.clone(), id, buf: Vec::new() }
    }

    /// Continues a staged (partial) payload from its first `keep` bytes.
    pub fn resume(&self, id: StagedId, keep: u64) -> Result<MemStager> {
        let s = lock(&self.staged);
        let mut buf =
            s.data.get(&id).cloned().ok_or_else(|| StoreError::Invalid(format!("no staged data {}", id.0)))?;
        buf.truncate(keep as usize);
        Ok(MemStager { staging: self.staged.clone(), id, buf })
    }
}

impl Inner {
    fn index(&mut self, m: &BundleMeta) {
        let a = m.arrival;
        self.bundles.insert(m.id.clone(), (a, m.priority));
        self.by_dest.insert((m.destination.clone(), a));
        self.by_expiry.insert((m.expires_at, a));
        self.by_prio.insert((Reverse(m.priority), a));
        match m.custody {
            Custody::None => {
                self.evictable.insert((m.priority, m.expires_at, a));
            }
            Custody::Transferring { deadline, .. } => {
                self.custody_due.insert((deadline, a));
            }
            Custody::Held => {}
        }
        if m.id.fragment.is_none() && m.seq_mode == SeqMode::Unique {
            self.unique_seq.insert((m.id.source.clone(), m.id.creation.sequence), (m.id.clone(), a, m.priority));
        }
    }

    fn unindex(&mut self, m: &BundleMeta) {
        let a = m.arrival;
        self.bundles.remove(&m.id);
        self.by_dest.remove(&(m.destination.clone(), a));
        self.by_expiry.remove(&(m.expires_at, a));
        self.by_prio.remove(&(Reverse(m.priority), a));
        self.evictable.remove(&(m.priority, m.expires_at, a));
        if let Custody::Transferring { deadline, .. } = m.custody {
            self.custody_due.remove(&(deadline, a));
        }
        if m.id.fragment.is_none() && m.seq_mode == SeqMode::Unique {
            self.unique_seq.remove(&(m.id.source.clone(), m.id.creation.sequence));
        }
    }

    fn put_entry(&mut self, e: Entry) {
        self.index(&e.meta);
        self.held.insert(&e.meta.id, e.meta.seq_mode);
        self.used += e.meta.size;
        self.entries.insert(e.meta.arrival, e);
    }

    fn get(&self, id: &BundleId) -> Option<&Entry> {
        self.bundles.get(id).and_then(|(a, _)| self.entries.get(a))
    }

    fn get_mut(&mut self, id: &BundleId) -> Option<&mut Entry> {
        self.bundles.get(id).and_then(|(a, _)| self.entries.get_mut(a))
    }

    fn take_entry(&mut self, id: &BundleId) -> Option<Entry> {
        let &(a, _) = self.bundles.get(id)?;
        self.take_at(a)
    }

    fn take_at(&mut self, a: u64) -> Option<Entry> {
        let e = self.entries.remove(&a)?;
        self.unindex(&e.meta);
        self.held.remove(&e.meta.id, e.meta.seq_mode);
        self.used -= e.meta.size;
        Some(e)
    }

    fn set_tomb(&mut self, id: &BundleId, t: Option<Tombstone>) -> Option<Tombstone> {
        let old = match t {
            Some(t) => self.tombstones.insert(id.clone(), t),
            None => self.tombstones.remove(id),
        };
        if let Some(o) = old {
            self.tomb_expiry.remove(&(o.expires_at, id.clone()));
            if o.reason == TombstoneReason::Delivered {
                self.delivered.remove(id, o.seq_mode);
            }
        }
        if let Some(t) = t {
            self.tomb_expiry.insert((t.expires_at, id.clone()));
            if t.reason == TombstoneReason::Delivered {
                self.delivered.insert(id, t.seq_mode);
            }
        }
        old
    }

    fn set_partial(&mut self, id: &BundleId, p: Option<PartialBundle>) -> Option<PartialBundle> {
        let old = match p {
            Some(p) => {
                self.used += p.total_len;
                self.partials.insert(id.clone(), p)
            }
            None => self.partials.remove(id),
        };
        if let Some(o) = &old {
            self.used -= o.total_len;
        }
        old
    }

    /// Calls `f` with the ID, arrival and priority of every stored bundle in `want`, at most `limit` of them:
    /// per source the whole bundles (by sequence number, then by creation time) and then the fragments, each
    /// in ID order.
    fn select_in(&self, want: &Summary, limit: usize, mut f: impl FnMut(&BundleId, u64, Priority)) {
        let mut n = 0usize;
        let mut take = |id: &BundleId, a: u64, p: Priority| {
            if n >= limit {
                return false;
            }
            n += 1;
            f(id, a, p);
            true
        };
        for (src, s) in want.sources() {
            // Ranges open at the top, ended by hand: a closed range searches the tree for both ends.
            for r in s.unique_seq.runs() {
                for ((source, seq), (id, a, p)) in self.unique_seq.range((src.clone(), *r.start())..) {
                    if source != src || seq > r.end() {
                        break;
                    }
                    if !take(id, *a, *p) {
                        return;
                    }
                }
            }
            for (t, set) in &s.by_time {
                for r in set.runs() {
                    let lo = BundleId {
                        source: src.clone(),
                        creation: CreationTimestamp::new(*t, *r.start()),
                        fragment: None,
                    };
                    let hi = BundleId {
                        source: src.clone(),
                        creation: CreationTimestamp::new(*t, *r.end()),
                        fragment: None,
                    };
                    for (id, (a, p)) in self.bundles.range(lo..=hi) {
                        if id.fragment.is_some() {
                            continue;
                        }
                        if self.entries.get(a).is_some_and(|e| e.meta.seq_mode == SeqMode::PerTime) && !take(id, *a, *p)
                        {
                            return;
                        }
                    }
                }
            }
            // Fragments are most of what a busy node holds (every cut transfer leaves two): rather than look
            // each one up, walk the stored IDs between the first and the last wanted, which sort the same way.
            let mut frags = s.fragments.iter().peekable();
            let Some(&&(t0, q0, o0, l0)) = frags.peek() else { continue };
            let lo =
                BundleId { source: src.clone(), creation: CreationTimestamp::new(t0, q0), fragment: Some((o0, l0)) };
            // Until every wanted fragment is found or passed (the last wanted is the top of the walk).
            for (id, (a, p)) in self.bundles.range(lo..) {
                if frags.peek().is_none() || id.source != *src {
                    break;
                }
                let Some((off, len)) = id.fragment else { continue };
                let key = (id.creation.time.0, id.creation.sequence, off, len);
                while frags.next_if(|&&f| f < key).is_some() {}
                if frags.next_if(|&&f| f == key).is_some() && !take(id, *a, *p) {
                    return;
                }
            }
        }
    }

    fn meta_at(&self, arrival: u64) -> Option<BundleMeta> {
        self.entries.get(&arrival).map(|e| e.meta.clone())
    }

    /// Arrivals to evict so `need` bytes come free, or the bytes that could be freed if not enough.
    fn eviction_plan(&self, need: u64, priority: Priority, now: DtnTime) -> std::result::Result<Vec<u64>, u64> {
        let mut plan = Vec::new();
        let mut freed = 0u64;
        let size_at = |a: u64| self.entries.get(&a).map(|e| e.meta.size);
        // Expired bundles first, then replicas in eviction order, each once (an expired replica is in both;
        // each index lists an arrival once).
        for a in self.by_expiry.range(..=(now, u64::MAX)).map(|&(_, a)| a) {
            if freed >= need {
                break;
            }
            if let Some(size) = size_at(a) {
                freed += size;
                plan.push(a);
            }
        }
        let mut expired = plan.clone();
        expired.sort_unstable();
        for a in self.evictable.range(..=(priority, DtnTime(u64::MAX), u64::MAX)).map(|&(_, _, a)| a) {
            if freed >= need {
                break;
            }
            if expired.binary_search(&a).is_ok() {
                continue;
            }
            if let Some(size) = size_at(a) {
                freed += size;
                plan.push(a);
            }
        }
        if freed >= need { Ok(plan) } else { Err(freed) }
    }

    fn make_room(
        &mut self,
        size: u64,
        priority: Priority,
        now: DtnTime,
        undo: &mut Vec<Undo>,
        report: &mut CommitReport,
    ) -> Result<()> {
        let need = (self.used + size).saturating_sub(self.quota);
        if need == 0 {
            return Ok(());
        }
        let plan = self.eviction_plan(need, priority, now).map_err(|evictable| StoreError::Full {
            needed: size,
            used: self.used,
            evictable,
            quota: self.quota,
        })?;
        for a in plan {
            if let Some(e) = self.take_at(a) {
                report.evicted.push(e.meta.clone());
                undo.push(Undo::Reinsert(Box::new(e)));
            }
        }
        Ok(())
    }

    fn apply(
        &mut self,
        op: WriteOp,
        now: DtnTime,
        staging: &mut Staging,
        undo: &mut Vec<Undo>,
        report: &mut CommitReport,
    ) -> Result<()> {
        match op {
            WriteOp::Insert { mut meta, payload } => {
                if self.bundles.contains_key(&meta.id) {
                    return Err(StoreError::Duplicate(meta.id));
                }
                let bytes = match payload {
                    Payload::Bytes(b) => {
                        check_size(&meta, b.len() as u64)?;
                        Bytes::Data(b.into())
                    }
                    Payload::SizeOnly => Bytes::SizeOnly,
                    Payload::Staged(sid) => {
                        let b = staging
                            .data
                            .get(&sid)
                            .ok_or_else(|| StoreError::Invalid(format!("no staged data {}", sid.0)))?;
                        check_size(&meta, b.len() as u64)?;
                        // A completed partial transfer becomes the bundle.
                        let partial = self.partials.iter().find(|(_, p)| p.staged == sid).map(|(id, _)| id.clone());
                        if let Some(pid) = partial {
                            let old = self.set_partial(&pid, None);
                            undo.push(Undo::Partial(pid, old));
                        }
                        let b = staging.data.remove(&sid).unwrap_or_default();
                        undo.push(Undo::Staged(sid, b.clone()));
                        Bytes::Data(b.into())
                    }
                };
                self.make_room(meta.size, meta.priority, now, undo, report)?;
                meta.arrival = self.next_arrival;
                self.next_arrival += 1;
                undo.push(Undo::Uninsert(meta.id.clone()));
                self.put_entry(Entry { meta, bytes });
            }
            WriteOp::Update(mut meta) => {
                let Some(old) = self.get(&meta.id).map(|e| e.meta.clone()) else {
                    return Err(StoreError::NotFound(meta.id));
                };
                if meta.size != old.size {
                    return Err(StoreError::Invalid(format!("update of {} changes its size", meta.id)));
                }
                meta.arrival = old.arrival;
                self.unindex(&old);
                self.held.remove(&old.id, old.seq_mode);
                self.index(&meta);
                self.held.insert(&meta.id, meta.seq_mode);
                if let Some(e) = self.get_mut(&meta.id) {
                    e.meta = meta;
                }
                undo.push(Undo::Meta(Box::new(old)));
            }
            WriteOp::Remove { id, tombstone } => {
                let e = self.take_entry(&id).ok_or_else(|| StoreError::NotFound(id.clone()))?;
                if let Some(reason) = tombstone {
                    let t = Tombstone { reason, expires_at: e.meta.expires_at, seq_mode: e.meta.seq_mode };
                    let old = self.set_tomb(&id, Some(t));
                    undo.push(Undo::Tomb(id, old));
                }
                undo.push(Undo::Reinsert(Box::new(e)));
            }
            WriteOp::Tombstone { id, tombstone } => {
                if let Some(e) = self.take_entry(&id) {
                    undo.push(Undo::Reinsert(Box::new(e)));
                }
                let old = self.set_tomb(&id, Some(tombstone));
                undo.push(Undo::Tomb(id, old));
            }
            WriteOp::PutState { key, value } => {
                let old = match value {
                    Some(v) => self.state.insert(key.clone(), v),
                    None => self.state.remove(&key),
                };
                undo.push(Undo::State(key, old));
            }
            WriteOp::PutPeer { peer, summary } => {
                let old = match summary {
                    Some(s) => self.peers.insert(peer.clone(), s),
                    None => self.peers.remove(&peer),
                };
                undo.push(Undo::Peer(peer, old));
            }
            WriteOp::PutPartial(p) => {
                let have = staging.data.get(&p.staged).map(|b| b.len() as u64);
                if have.is_none_or(|n| n < p.durable_len) || p.durable_len > p.total_len {
                    return Err(StoreError::Invalid(format!(
                        "partial {} claims {} durable bytes of {}, staged {:?}",
                        p.id, p.durable_len, p.total_len, have
                    )));
                }
                let id = p.id.clone();
                let prev = self.partials.get(&id).map(|o| o.total_len).unwrap_or(0);
                if p.total_len > prev {
                    self.make_room(p.total_len - prev, Priority(u8::MAX), now, undo, report)?;
                }
                let old = self.set_partial(&id, Some(p));
                undo.push(Undo::Partial(id, old));
            }
            WriteOp::RemovePartial(id) => {
                let old = self.set_partial(&id, None).ok_or_else(|| StoreError::NotFound(id.clone()))?;
                if let Some(b) = staging.data.remove(&old.staged) {
                    undo.push(Undo::Staged(old.staged, b));
                }
                undo.push(Undo::Partial(id, Some(old)));
            }
            WriteOp::Sweep => {
                let expired: Vec<u64> = self.by_expiry.range(..=(now, u64::MAX)).map(|&(_, a)| a).collect();
                for a in expired {
                    if let Some(e) = self.take_at(a) {
                        report.expired.push(e.meta.clone());
                        undo.push(Undo::Reinsert(Box::new(e)));
                    }
                }
                let dead: Vec<BundleId> =
                    self.tomb_expiry.iter().take_while(|(t, _)| *t <= now).map(|(_, id)| id.clone()).collect();
                for id in dead {
                    let old = self.set_tomb(&id, None);
                    report.tombstones_pruned += 1;
                    undo.push(Undo::Tomb(id, old));
                }
                let gone: Vec<BundleId> =
                    self.partials.iter().filter(|(_, p)| p.expires_at <= now).map(|(id, _)| id.clone()).collect();
                for id in gone {
                    if let Some(old) = self.set_partial(&id, None) {
                        if let Some(b) = staging.data.remove(&old.staged) {
                            undo.push(Undo::Staged(old.staged, b));
                        }
                        undo.push(Undo::Partial(id, Some(old)));
                    }
                }
            }
        }
        Ok(())
    }

    fn rollback(&mut self, undo: Vec<Undo>, staging: &mut Staging) {
        for u in undo.into_iter().rev() {
            match u {
                Undo::Uninsert(id) => {
                    self.take_entry(&id);
                }
                Undo::Reinsert(e) => self.put_entry(*e),
                Undo::Meta(old) => {
                    if let Some(cur) = self.get(&old.id).map(|e| e.meta.clone()) {
                        self.unindex(&cur);
                        self.held.remove(&cur.id, cur.seq_mode);
                        self.index(&old);
                        self.held.insert(&old.id, old.seq_mode);
                        if let Some(e) = self.get_mut(&old.id) {
                            e.meta = *old;
                        }
                    }
                }
                Undo::Tomb(id, t) => {
                    self.set_tomb(&id, t);
                }
                Undo::State(k, v) => {
                    match v {
                        Some(v) => self.state.insert(k, v),
                        None => self.state.remove(&k),
                    };
                }
                Undo::Peer(p, s) => {
                    match s {
                        Some(s) => self.peers.insert(p, s),
                        None => self.peers.remove(&p),
                    };
                }
                Undo::Partial(id, p) => {
                    self.set_partial(&id, p);
                }
                Undo::Staged(sid, b) => {
                    staging.data.insert(sid, b);
                }
            }
        }
    }
}

fn check_size(meta: &BundleMeta, actual: u64) -> Result<()> {
    if actual != meta.size {
        return Err(StoreError::Invalid(format!(
            "bundle {} is {} bytes but its record says {}",
            meta.id, actual, meta.size
        )));
    }
    Ok(())
}

fn take<I: Iterator<Item = u64>>(inner: &Inner, arrivals: I, limit: usize) -> Vec<BundleMeta> {
    arrivals.filter_map(|a| inner.meta_at(a)).take(limit).collect()
}

impl BundleStore for MemStore {
    fn meta(&self, id: &BundleId) -> Result<Option<BundleMeta>> {
        Ok(lock(&self.inner).get(id).map(|e| e.meta.clone()))
    }

    fn meta_seen_at(&self, id: &BundleId, arrival: u64) -> Result<Option<BundleMeta>> {
        let inner = lock(&self.inner);
        // Arrivals are never reused, so the record there is this bundle's if its ID matches; otherwise the
        // bundle left (and may have come back under another arrival).
        match inner.entries.get(&arrival) {
            Some(e) if e.meta.id == *id => Ok(Some(e.meta.clone())),
            _ => Ok(inner.get(id).map(|e| e.meta.clone())),
        }
    }

    fn read_bundle(&self, id: &BundleId) -> Result<BundleReader> {
        let inner = lock(&self.inner);
        match inner.get(id).map(|e| &e.bytes) {
            None => Err(StoreError::NotFound(id.clone())),
            Some(Bytes::SizeOnly) => Err(StoreError::Invalid(format!("bundle {id} is stored by size only"))),
            Some(Bytes::Data(d)) => Ok(Box::new(Cursor::new(ArcBytes(d.clone())))),
        }
    }

    fn bundle_bytes(&self, id: &BundleId) -> Result<StoredBytes> {
        let inner = lock(&self.inner);
        match inner.get(id).map(|e| &e.bytes) {
            None => Err(StoreError::NotFound(id.clone())),
            Some(Bytes::SizeOnly) => Err(StoreError::Invalid(format!("bundle {id} is stored by size only"))),
            Some(Bytes::Data(d)) => Ok(StoredBytes::Shared(d.clone())),
        }
    }

    fn tombstone(&self, id: &BundleId) -> Result<Option<Tombstone>> {
        Ok(lock(&self.inner).tombstones.get(id).copied())
    }

    fn by_destination(&self, destination: &Eid, after: Option<u64>, limit: usize) -> Result<Vec<BundleMeta>> {
        let inner = lock(&self.inner);
        let from = after.map_or(0, |a| a.saturating_add(1));
        let it = inner.by_dest.range((destination.clone(), from)..=(destination.clone(), u64::MAX)).map(|(_, a)| *a);
        Ok(take(&inner, it, limit))
    }

    fn expiring(&self, until: DtnTime, limit: usize) -> Result<Vec<BundleMeta>> {
        let inner = lock(&self.inner);
        let it = inner.by_expiry.range(..=(until, u64::MAX)).map(|&(_, a)| a);
        Ok(take(&inner, it, limit))
    }

    fn by_priority(&self, after: Option<(Priority, u64)>, limit: usize) -> Result<Vec<BundleMeta>> {
        let inner = lock(&self.inner);
        let it: Box<dyn Iterator<Item = u64>> = match after {
            None => Box::new(inner.by_prio.iter().map(|&(_, a)| a)),
            Some((p, a)) => Box::new(
                inner
                    .by_prio
                    .range((std::ops::Bound::Excluded((Reverse(p), a)), std::ops::Bound::Unbounded))
                    .map(|&(_, a)| a),
            ),
        };
        Ok(take(&inner, it, limit))
    }

    fn custody_due(&self, until: DtnTime, limit: usize) -> Result<Vec<BundleMeta>> {
        let inner = lock(&self.inner);
        let it = inner.custody_due.range(..=(until, u64::MAX)).map(|&(_, a)| a);
        Ok(take(&inner, it, limit))
    }

    fn select(&self, want: &Summary, limit: usize) -> Result<Vec<BundleMeta>> {
        let inner = lock(&self.inner);
        let mut out = Vec::new();
        inner.select_in(want, limit, |_, a, _| {
            if let Some(e) = inner.entries.get(&a) {
                out.push(e.meta.clone());
            }
        });
        Ok(out)
    }

    fn select_keys(&self, want: &Summary) -> Result<Vec<(Priority, u64, BundleId)>> {
        let inner = lock(&self.inner);
        // Every run and fragment listed is at least one bundle (if stored): room for that many at once.
        let mut out = Vec::with_capacity(want.run_count().min(inner.entries.len()));
        inner.select_in(want, usize::MAX, |id, a, p| out.push((p, a, id.clone())));
        Ok(out)
    }

    fn summary(&self) -> Summary {
        lock(&self.inner).held.clone()
    }

    fn delivered_summary(&self) -> Summary {
        lock(&self.inner).delivered.clone()
    }

    fn with_summaries(&self, f: &mut dyn FnMut(&Summary, &Summary)) {
        let inner = lock(&self.inner);
        f(&inner.held, &inner.delivered)
    }

    fn state(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(lock(&self.inner).state.get(key).cloned())
    }

    fn peer(&self, peer: &Eid) -> Result<Option<Summary>> {
        Ok(lock(&self.inner).peers.get(peer).cloned())
    }

    fn partials(&self) -> Result<Vec<PartialBundle>> {
        Ok(lock(&self.inner).partials.values().cloned().collect())
    }

    fn read_partial(&self, id: &BundleId) -> Result<BundleReader> {
        let p = lock(&self.inner).partials.get(id).cloned().ok_or_else(|| StoreError::NotFound(id.clone()))?;
        let s = lock(&self.staged);
        let mut b = s.data.get(&p.staged).cloned().unwrap_or_default();
        b.truncate(p.durable_len as usize);
        Ok(Box::new(Cursor::new(b)))
    }

    fn usage(&self) -> Usage {
        let inner = lock(&self.inner);
        Usage {
            bundles: inner.bundles.len() as u64,
            bytes: inner.used,
            quota: inner.quota,
            tombstones: inner.tombstones.len() as u64,
        }
    }

    fn check_room(&self, size: u64, priority: Priority, now: DtnTime) -> Result<()> {
        let inner = lock(&self.inner);
        let need = (inner.used + size).saturating_sub(inner.quota);
        if need == 0 {
            return Ok(());
        }
        inner.eviction_plan(need, priority, now).map(|_| ()).map_err(|evictable| StoreError::Full {
            needed: size,
            used: inner.used,
            evictable,
            quota: inner.quota,
        })
    }

    fn commit(&self, batch: WriteBatch) -> Result<CommitReport> {
        let mut inner = lock(&self.inner);
        let mut staging = lock(&self.staged);
        let mut undo = Vec::new();
        let mut report = CommitReport::default();
        for op in batch.ops {
            if let Err(e) = inner.apply(op, batch.now, &mut staging, &mut undo, &mut report) {
                inner.rollback(undo, &mut staging);
                return Err(e);
            }
        }
        Ok(report)
    }
}

/// Shares stored bytes with readers without copying.
struct ArcBytes(Arc<[u8]>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testkit::Harness;

    struct Mem;

    impl Harness for Mem {
        type Store = MemStore;
        fn open(&mut self, quota: u64) -> MemStore {
            MemStore::new(quota)
        }
        fn reopen(&mut self, store: MemStore) -> MemStore {
            store
        }
        fn stage(&mut self, store: &MemStore, bytes: &[u8]) -> StagedId {
            let mut w = store.stage();
            w.write_all(bytes).unwrap();
            w.finish().unwrap()
        }
        fn resume(&mut self, store: &MemStore, id: StagedId, keep: u64, rest: &[u8]) -> StagedId {
            let mut w = store.resume(id, keep).unwrap();
            w.write_all(rest).unwrap();
            w.finish().unwrap()
        }
    }

    crate::store_conformance_tests!(Mem);
}
