//! The committer thread: group commit of write batches, and the application of each operation to the
//! tables.

use std::fs;
use std::io::Write;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use dtn_core::bpv7::{BundleId, DtnTime};
use dtn_core::store::{
    BundleMeta, CommitReport, Custody, PartialBundle, Payload, Priority, Result, SeqMode, StoreError, Tombstone,
    TombstoneReason, WriteBatch, WriteOp,
};
use heed::{MdbError, PutFlags, RoTxn, RwTxn};

use crate::keys::{MAX_EID_KEY, Rec, be64, cat, eid_key, id_key, tail64};
use crate::record::{self, Location};
use crate::{COUNTERS_KEY, Counters, Db, Dbs, Shared, db_err, payload, round_map};

type Done = Box<dyn FnOnce(Result<CommitReport>) + Send>;

struct Job {
    batch: WriteBatch,
    done: Done,
}

/// Resolves when a submitted batch is durable, or failed.
pub struct Ticket {
    rx: Option<Receiver<Result<CommitReport>>>,
}

impl Ticket {
    pub(crate) fn failed() -> Ticket {
        Ticket { rx: None }
    }

    /// Blocks until the batch is durable (or failed).
    pub fn wait(self) -> Result<CommitReport> {
        match self.rx {
            Some(rx) => rx.recv().unwrap_or(Err(StoreError::Closed)),
            None => Err(StoreError::Closed),
        }
    }
}

pub(crate) struct Handle {
    tx: Sender<Job>,
    thread: JoinHandle<()>,
}

impl Handle {
    pub(crate) fn start(shared: Arc<Shared>) -> Result<Handle> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("store-commit".into())
            .spawn(move || run(&shared, &rx))
            .map_err(|e| StoreError::io("starting the committer thread", e))?;
        Ok(Handle { tx, thread })
    }

    pub(crate) fn submit(&self, batch: WriteBatch) -> Ticket {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit_with(
            batch,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        Ticket { rx: Some(rx) }
    }

    pub(crate) fn submit_with(&self, batch: WriteBatch, done: Done) {
        if let Err(mpsc::SendError(job)) = self.tx.send(Job { batch, done }) {
            (job.done)(Err(StoreError::Closed));
        }
    }

    /// Lets queued batches commit, then ends the thread.
    pub(crate) fn stop(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

fn run(shared: &Shared, rx: &Receiver<Job>) {
    // Whether the last group had a batch fail: then the next one likely will too (a full store refusing
    // inserts), and is written with nested transactions straight away rather than twice.
    let mut failing = false;
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < shared.opts.max_group {
            match rx.try_recv() {
                Ok(j) => group.push(j),
                Err(_) => break,
            }
        }
        let results = commit_group(shared, &group, failing);
        failing = results.iter().any(|r| r.is_err());
        for (job, r) in group.into_iter().zip(results) {
            (job.done)(r);
        }
    }
}

/// A change to the in-memory summaries, applied once the commit is durable.
enum Delta {
    Held(BundleId, SeqMode, bool),
    Delivered(BundleId, SeqMode, bool),
}

struct GroupOutcome {
    results: Vec<Result<CommitReport>>,
    counters: Counters,
    deltas: Vec<Delta>,
    unlink: Vec<u64>,
}

fn commit_group(shared: &Shared, group: &[Job], isolate: bool) -> Vec<Result<CommitReport>> {
    let estimate: u64 = group
        .iter()
        .flat_map(|j| &j.batch.ops)
        .map(|op| match op {
            // Larger payloads go to files, not into the map.
            WriteOp::Insert { payload: Payload::Bytes(b), .. } if b.len() as u64 <= shared.opts.inline_max => {
                b.len() as u64 + 1024
            }
            _ => 1024,
        })
        .sum();
    let mut outcome = None;
    // Most groups commit every batch, so they are first written straight into the group's transaction. Only
    // when a batch fails is the group written again with each batch in a nested transaction of its own,
    // which rolls back a failed batch alone: nesting costs a copy of every page a batch touches that the
    // group has already touched, which was about a fifth of all CPU time for single-bundle batches.
    let mut isolate = isolate;
    let mut attempt = 0;
    while attempt < 3 {
        if let Err(e) = ensure_map_room(shared, estimate.saturating_mul(2 + attempt)) {
            return group.iter().map(|_| Err(copy_err(&e))).collect();
        }
        match try_group(shared, group, isolate) {
            Err(GroupErr::Isolate) => isolate = true,
            Err(GroupErr::Store(StoreError::Backend { detail, .. }))
                if detail.contains("MDB_MAP_FULL") || detail.contains("map size") =>
            {
                // The estimate was short; grow and retry the whole group (nothing of it was committed).
                let cur = shared.env.info().map_size as u64;
                if let Err(e) = grow_map(shared, cur.saturating_mul(2)) {
                    return group.iter().map(|_| Err(copy_err(&e))).collect();
                }
                attempt += 1;
            }
            Err(GroupErr::Store(e)) => {
                outcome = Some(Err(e));
                break;
            }
            Ok(o) => {
                outcome = Some(Ok(o));
                break;
            }
        }
    }
    let outcome = match outcome {
        Some(Ok(o)) => o,
        Some(Err(e)) => return group.iter().map(|_| Err(copy_err(&e))).collect(),
        None => {
            let e = StoreError::Backend { context: "committing".into(), detail: "map full after growing".into() };
            return group.iter().map(|_| Err(copy_err(&e))).collect();
        }
    };
    // Durable from here on.
    *shared.counters.lock().unwrap_or_else(|e| e.into_inner()) = outcome.counters;
    {
        let mut held = shared.held.write().unwrap_or_else(|e| e.into_inner());
        let mut delivered = shared.delivered.write().unwrap_or_else(|e| e.into_inner());
        for d in outcome.deltas {
            match d {
                Delta::Held(id, m, true) => held.insert(&id, m),
                Delta::Held(id, m, false) => held.remove(&id, m),
                Delta::Delivered(id, m, true) => delivered.insert(&id, m),
                Delta::Delivered(id, m, false) => delivered.remove(&id, m),
            };
        }
    }
    for n in outcome.unlink {
        // A file left behind by a crash here is removed at the next open.
        let _ = fs::remove_file(payload::path(&shared.payload_dir, n));
    }
    outcome.results
}

/// What applying a batch changed besides the tables, to be kept if it commits.
struct Applied {
    c: Counters,
    deltas: Vec<Delta>,
    unlink: Vec<u64>,
    created: Vec<u64>,
    report: CommitReport,
    new_files: bool,
}

fn apply_batch(shared: &Shared, txn: &mut RwTxn, counters: Counters, batch: &WriteBatch) -> (Result<()>, Applied) {
    let mut a = Apply::new(shared, txn, counters, batch.now);
    let r = batch.ops.iter().try_for_each(|op| a.op(op));
    let Apply { c, deltas, unlink, created, report, new_files, .. } = a;
    (r, Applied { c, deltas, unlink, created, report, new_files })
}

/// Why a group was not committed.
enum GroupErr {
    /// A batch failed while the group was written without nested transactions: write it again with them.
    Isolate,
    /// The whole group failed.
    Store(StoreError),
}

impl From<StoreError> for GroupErr {
    fn from(e: StoreError) -> Self {
        GroupErr::Store(e)
    }
}

fn try_group(shared: &Shared, group: &[Job], isolate: bool) -> Result<GroupOutcome, GroupErr> {
    let mut created = Vec::new();
    let r = try_group_inner(shared, group, isolate, &mut created);
    if r.is_err() {
        // Files written for batches of a group that did not commit: nothing refers to them.
        for n in created {
            let _ = fs::remove_file(payload::path(&shared.payload_dir, n));
        }
    }
    r
}

/// Writes the group in one transaction. With `isolate`, each batch runs in a nested transaction, so a
/// failed batch is rolled back alone; without, a failed batch fails the attempt with [`GroupErr::Isolate`]
/// (or, for a group of one, is that batch's result).
fn try_group_inner(
    shared: &Shared,
    group: &[Job],
    isolate: bool,
    created_ok: &mut Vec<u64>,
) -> Result<GroupOutcome, GroupErr> {
    let _g = shared.gate();
    let mut wtxn = shared.env.write_txn().map_err(db_err("starting a write"))?;
    let mut counters = *shared.counters.lock().unwrap_or_else(|e| e.into_inner());
    let mut results = Vec::with_capacity(group.len());
    let (mut deltas, mut unlink, mut sync_dir) = (Vec::new(), Vec::new(), false);
    for job in group {
        let (r, a) = if isolate {
            let mut nested = shared.env.nested_write_txn(&mut wtxn).map_err(db_err("starting a batch"))?;
            let (r, a) = apply_batch(shared, &mut nested, counters, &job.batch);
            match r {
                Ok(()) => nested.commit().map_err(db_err("committing a batch"))?,
                Err(_) => nested.abort(),
            }
            (r, a)
        } else {
            apply_batch(shared, &mut wtxn, counters, &job.batch)
        };
        let Applied { c, deltas: d, unlink: u, created, report, new_files } = a;
        match r {
            Ok(()) => {
                counters = c;
                deltas.extend(d);
                unlink.extend(u);
                created_ok.extend(created);
                sync_dir |= new_files;
                results.push(Ok(report));
            }
            Err(e) => {
                for n in created {
                    let _ = fs::remove_file(payload::path(&shared.payload_dir, n));
                }
                if is_map_full(&e) {
                    // Not this batch's fault: the caller grows the map and retries the whole group.
                    return Err(e.into());
                }
                if !isolate && group.len() > 1 {
                    // This batch's writes are mixed into the group's transaction; drop it all and start over.
                    return Err(GroupErr::Isolate);
                }
                results.push(Err(e));
            }
        }
    }
    if results.iter().all(|r| r.is_err()) {
        // Nothing to make durable (a group of one failed batch): leave the store untouched.
        wtxn.abort();
        return Ok(GroupOutcome { results, counters, deltas, unlink });
    }
    let mut cb = Vec::with_capacity(32);
    for v in [counters.next_arrival, counters.used, counters.bundles, counters.tombstones] {
        cb.extend_from_slice(&v.to_be_bytes());
    }
    shared.dbs.info.put(&mut wtxn, COUNTERS_KEY, &cb).map_err(db_err("writing counters"))?;
    if sync_dir {
        // New payload files must be findable after a crash before a record points at them.
        payload::sync_dir(&shared.payload_dir)?;
    }
    wtxn.commit().map_err(db_err("committing"))?;
    Ok(GroupOutcome { results, counters, deltas, unlink })
}

/// Grows the map when the group about to be written would take it past three quarters full. At the
/// configured maximum it lets the commit try; LMDB's "map full" then becomes a clear error.
fn ensure_map_room(shared: &Shared, upcoming: u64) -> Result<()> {
    let info = shared.env.info();
    let used = (info.last_page_number as u64 + 1) * 4096;
    let size = info.map_size as u64;
    let want = used.saturating_add(upcoming);
    if want.saturating_mul(4) > size.saturating_mul(3) && size < shared.opts.max_map_size {
        grow_map(shared, want.saturating_mul(2).max(size.saturating_mul(2)))?;
    }
    Ok(())
}

fn grow_map(shared: &Shared, to: u64) -> Result<()> {
    let cur = shared.env.info().map_size as u64;
    let max = shared.opts.max_map_size;
    if cur >= max {
        return Err(StoreError::Backend {
            context: "growing the LMDB map".into(),
            detail: format!("map is at its configured maximum of {max} bytes; raise max_map_size"),
        });
    }
    let to = round_map(to.min(max));
    let _excl = shared.txn_gate.write().unwrap_or_else(|e| e.into_inner());
    // SAFETY: LMDB allows resizing only while this process has no transaction open; every transaction in
    // this crate is opened under a shared hold of `txn_gate`, which we hold exclusively here.
    unsafe { shared.env.resize(to as usize) }.map_err(db_err("growing the LMDB map"))
}

fn is_map_full(e: &StoreError) -> bool {
    matches!(e, StoreError::Backend { detail, .. } if detail.contains("MDB_MAP_FULL"))
}

/// The same error for another waiter of a failed group.
fn copy_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::DiskFull { context } => StoreError::DiskFull { context: context.clone() },
        StoreError::Closed => StoreError::Closed,
        StoreError::Backend { context, detail } => {
            StoreError::Backend { context: context.clone(), detail: detail.clone() }
        }
        StoreError::Io { context, source } => {
            StoreError::Io { context: context.clone(), source: std::io::Error::new(source.kind(), source.to_string()) }
        }
        other => StoreError::Backend { context: "committing".into(), detail: other.to_string() },
    }
}

/// What must be evicted (arrival numbers) for a bundle of `size` bytes and `priority` to fit: nothing if
/// it fits as things are; else expired bundles first, then replicas of priority at most `priority`; and
/// [`StoreError::Full`] if even that is not enough.
pub(crate) fn room_for(
    dbs: &Dbs,
    txn: &RoTxn,
    (used, quota): (u64, u64),
    size: u64,
    priority: Priority,
    now: DtnTime,
) -> Result<Vec<Rec>> {
    let need = used.saturating_add(size).saturating_sub(quota);
    let mut plan = Vec::new();
    if need == 0 {
        return Ok(plan);
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut freed = 0u64;
    each_expired(dbs, txn, now, |_, r, size| {
        seen.insert(r);
        freed = freed.saturating_add(size);
        plan.push(r);
        Ok(freed < need)
    })?;
    if freed >= need {
        return Ok(plan);
    }
    let replica_hi = cat(&[priority.0], &[u64::MAX, u64::MAX]);
    let range = (Bound::Unbounded, Bound::Included(&replica_hi[..]));
    for item in dbs.evict.range(txn, &range).map_err(db_err("planning eviction"))? {
        let (k, v) = item.map_err(db_err("planning eviction"))?;
        // An expired replica was counted above.
        let r = Rec { priority: k.first().copied().unwrap_or(0), arrival: tail64(k) };
        if seen.insert(r) {
            freed = freed.saturating_add(be64(v));
            plan.push(r);
            if freed >= need {
                return Ok(plan);
            }
        }
    }
    Err(StoreError::Full { needed: size, used, evictable: freed, quota })
}

/// Calls `f(expiry, record, size)` for every bundle whose lifetime ends at or before `until`, soonest first
/// (then in arrival order), for as long as `f` returns true. Bundles in custody are in `expiry`; replicas
/// only in `evict`, which orders them by expiry within each priority, so the runs of `expiry` and of each
/// priority present are merged (at most 257 of them, and rarely more than a few).
pub(crate) fn each_expired(
    dbs: &Dbs,
    txn: &RoTxn,
    until: DtnTime,
    mut f: impl FnMut(u64, Rec, u64) -> Result<bool>,
) -> Result<()> {
    let e = db_err("reading expiry");
    let hi = cat(&[], &[until.0, u64::MAX]);
    // (offset of the expiry time in the keys, entries in order)
    let mut runs = vec![(0, dbs.expiry.range(txn, &(Bound::Unbounded, Bound::Included(&hi[..]))).map_err(&e)?)];
    let mut p = 0u16;
    while p <= 255 {
        let lo = [p as u8];
        let Some(first) = dbs.evict.range(txn, &(Bound::Included(&lo[..]), Bound::Unbounded)).map_err(&e)?.next()
        else {
            break;
        };
        let q = first.map_err(&e)?.0.first().copied().unwrap_or(0);
        let (lo, hi) = ([q], cat(&[q], &[until.0, u64::MAX]));
        runs.push((1, dbs.evict.range(txn, &(Bound::Included(&lo[..]), Bound::Included(&hi[..]))).map_err(&e)?));
        p = u16::from(q) + 1;
    }
    // `expiry`: t ‖ A → size ‖ priority; `evict`: priority ‖ t ‖ A → size.
    let head = |off: usize, it: &mut heed::RoRange<'_, heed::types::Bytes, heed::types::Bytes>| {
        it.next().transpose().map(|o| {
            o.map(|(k, v)| {
                let priority = if off == 0 { v.get(8) } else { k.first() };
                let r = Rec { priority: priority.copied().unwrap_or(0), arrival: tail64(k) };
                (be64(k.get(off..off + 8).unwrap_or_default()), r, be64(v.get(..8).unwrap_or_default()))
            })
        })
    };
    let mut heads = Vec::with_capacity(runs.len());
    for (off, it) in &mut runs {
        heads.push(head(*off, it).map_err(&e)?);
    }
    loop {
        let Some((i, (t, a, size))) = heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.map(|h| (i, h)))
            .min_by_key(|(_, (t, r, _))| (*t, r.arrival))
        else {
            return Ok(());
        };
        if !f(t, a, size)? {
            return Ok(());
        }
        let (off, it) = &mut runs[i];
        heads[i] = head(*off, it).map_err(&e)?;
    }
}

/// Puts a key that usually sorts after every key in `db` (arrival numbers, and the indexes that end with one
/// under a common prefix): LMDB then appends without searching and fills pages completely instead of
/// splitting them in half. A key that does not sort last is put the ordinary way.
fn put_last(db: Db, txn: &mut RwTxn, k: &[u8], v: &[u8]) -> heed::Result<()> {
    match db.put_with_flags(txn, PutFlags::APPEND, k, v) {
        Err(heed::Error::Mdb(MdbError::KeyExist)) => db.put(txn, k, v),
        r => r,
    }
}

/// Like [`put_last`] for a key that must be new: false, and nothing written, if it is there already.
fn put_new(db: Db, txn: &mut RwTxn, k: &[u8], v: &[u8]) -> heed::Result<bool> {
    let r = match db.put_with_flags(txn, PutFlags::APPEND, k, v) {
        Err(heed::Error::Mdb(MdbError::KeyExist)) => db.put_with_flags(txn, PutFlags::NO_OVERWRITE, k, v),
        r => r,
    };
    match r {
        Ok(()) => Ok(true),
        Err(heed::Error::Mdb(MdbError::KeyExist)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Applies one batch's operations inside its nested transaction.
struct Apply<'a, 't> {
    s: &'a Shared,
    txn: &'a mut RwTxn<'t>,
    c: Counters,
    now: DtnTime,
    deltas: Vec<Delta>,
    unlink: Vec<u64>,
    created: Vec<u64>,
    report: CommitReport,
    new_files: bool,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt { what: what.into(), detail: "index entry without record".into() }
}

impl<'a, 't> Apply<'a, 't> {
    fn new(s: &'a Shared, txn: &'a mut RwTxn<'t>, c: Counters, now: DtnTime) -> Self {
        Apply {
            s,
            txn,
            c,
            now,
            deltas: Vec::new(),
            unlink: Vec::new(),
            created: Vec::new(),
            report: CommitReport::default(),
            new_files: false,
        }
    }

    fn dbs(&self) -> &'a Dbs {
        &self.s.dbs
    }

    fn op(&mut self, op: &WriteOp) -> Result<()> {
        match op {
            WriteOp::Insert { meta, payload } => self.insert(meta.clone(), payload),
            WriteOp::Update(meta) => self.update(meta.clone()),
            WriteOp::Remove { id, tombstone } => {
                let r = self.rec_of(id)?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
                let m = self.remove(r)?;
                if let Some(reason) = tombstone {
                    let t = Tombstone { reason: *reason, expires_at: m.expires_at, seq_mode: m.seq_mode };
                    self.set_tomb(id, Some(t))?;
                }
                Ok(())
            }
            WriteOp::Tombstone { id, tombstone } => {
                if let Some(r) = self.rec_of(id)? {
                    self.remove(r)?;
                }
                self.set_tomb(id, Some(*tombstone))
            }
            WriteOp::PutState { key, value } => {
                let db = self.dbs().state;
                match value {
                    Some(v) => db.put(self.txn, key, v).map_err(db_err("writing state")),
                    None => db.delete(self.txn, key).map(|_| ()).map_err(db_err("deleting state")),
                }
            }
            WriteOp::PutPeer { peer, summary } => {
                let db = self.dbs().peers;
                let k = eid_key(peer);
                check_key(&k)?;
                match summary {
                    Some(s) => db.put(self.txn, &k, &s.to_bytes()).map_err(db_err("writing peer")),
                    None => db.delete(self.txn, &k).map(|_| ()).map_err(db_err("deleting peer")),
                }
            }
            WriteOp::PutPartial(p) => self.put_partial(p),
            WriteOp::RemovePartial(id) => {
                let p = self.partial(id)?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
                self.drop_partial(&p, true)
            }
            WriteOp::Sweep => self.sweep(),
        }
    }

    fn rec_of(&self, id: &BundleId) -> Result<Option<Rec>> {
        match self.dbs().ids.get(self.txn, &id_key(id)).map_err(db_err("reading ids"))? {
            Some(v) => Rec::from_id_value(v).map(Some).ok_or_else(|| corrupt_value("ids", v)),
            None => Ok(None),
        }
    }

    fn meta_at(&self, r: Rec) -> Result<Option<(BundleMeta, Location)>> {
        match self.dbs().meta.get(self.txn, &r.key()).map_err(db_err("reading a bundle record"))? {
            Some(b) => record::decode_meta(b).map(|(m, loc, _)| Some((m, loc))),
            None => Ok(None),
        }
    }

    fn put_indexes(&mut self, m: &BundleMeta) -> Result<()> {
        put_indexes(self.dbs(), self.txn, m)
    }

    fn del_indexes(&mut self, m: &BundleMeta) -> Result<()> {
        let d = self.dbs();
        let a = m.arrival;
        let e = db_err("deleting indexes");
        let t = &mut *self.txn;
        d.dest.delete(t, &cat(&eid_key(&m.destination), &[a])).map_err(&e)?;
        match m.custody {
            Custody::None => d.evict.delete(t, &cat(&[m.priority.0], &[m.expires_at.0, a])).map_err(&e)?,
            Custody::Transferring { deadline, .. } => {
                d.custody.delete(t, &cat(&[], &[deadline.0, a])).map_err(&e)?;
                d.expiry.delete(t, &cat(&[], &[m.expires_at.0, a])).map_err(&e)?
            }
            Custody::Held => d.expiry.delete(t, &cat(&[], &[m.expires_at.0, a])).map_err(&e)?,
        };
        if m.id.fragment.is_none() && m.seq_mode == SeqMode::Unique {
            d.useq.delete(t, &cat(&eid_key(&m.id.source), &[m.id.creation.sequence])).map_err(&e)?;
        }
        Ok(())
    }

    fn make_room(&mut self, size: u64, priority: Priority) -> Result<()> {
        let plan = room_for(self.dbs(), self.txn, (self.c.used, self.s.opts.quota), size, priority, self.now)?;
        for r in plan {
            let m = self.remove(r)?;
            self.report.evicted.push(m);
        }
        Ok(())
    }

    fn insert(&mut self, mut meta: BundleMeta, payload: &Payload) -> Result<()> {
        let key = id_key(&meta.id);
        check_key(&eid_key(&meta.id.source))?;
        check_key(&eid_key(&meta.destination))?;
        let size_err = |actual: u64, id: &BundleId| {
            StoreError::Invalid(format!("bundle {id} is {actual} bytes but its record says {}", meta.size))
        };
        // Check everything that can fail before evicting.
        match payload {
            Payload::Bytes(b) if b.len() as u64 != meta.size => return Err(size_err(b.len() as u64, &meta.id)),
            Payload::Staged(sid) => {
                let p = payload::path(&self.s.payload_dir, sid.0);
                let len =
                    fs::metadata(&p).map_err(|e| StoreError::io(format!("staged payload {}", p.display()), e))?.len();
                if len != meta.size {
                    return Err(size_err(len, &meta.id));
                }
            }
            Payload::SizeOnly => {
                return Err(StoreError::Invalid(
                    "a persistent store needs the bundle's bytes, not only its size".into(),
                ));
            }
            Payload::Bytes(_) => {}
        }
        meta.arrival = self.c.next_arrival;
        let rec = Rec { priority: meta.priority.0, arrival: meta.arrival };
        // The ID entry doubles as the duplicate check. Should eviction below fail, the batch fails and takes
        // this write with it.
        let idv = rec.id_value(meta.seq_mode == SeqMode::Unique);
        if !put_new(self.dbs().ids, self.txn, &key, &idv).map_err(db_err("writing ids"))? {
            return Err(StoreError::Duplicate(meta.id));
        }
        self.make_room(meta.size, meta.priority)?;
        self.c.next_arrival += 1;
        let record = match payload {
            Payload::Bytes(b) if b.len() as u64 <= self.s.opts.inline_max => {
                let mut r = record::encode_meta(&meta, Location::Here, Vec::with_capacity(b.len() + 128))?;
                r.extend_from_slice(b);
                r
            }
            Payload::Bytes(b) => {
                let n = self.s.next_file.fetch_add(1, Ordering::Relaxed);
                let mut w = payload::PayloadWriter::create(&self.s.payload_dir, n)?;
                self.created.push(n);
                w.write_all(b).map_err(|e| StoreError::io("writing payload file", e))?;
                w.finish()?;
                self.add_file(n)?;
                record::encode_meta(&meta, Location::File(n), Vec::new())?
            }
            Payload::Staged(sid) => {
                // A resumed transfer that completed: its partial record gives way to the bundle.
                if let Some(p) = self.partial_by_file(sid.0)? {
                    self.drop_partial(&p, false)?;
                }
                self.add_file(sid.0)?;
                record::encode_meta(&meta, Location::File(sid.0), Vec::new())?
            }
            Payload::SizeOnly => unreachable!("refused above"),
        };
        put_last(self.dbs().meta, self.txn, &rec.key(), &record).map_err(db_err("writing a bundle record"))?;
        self.put_indexes(&meta)?;
        self.c.used += meta.size;
        self.c.bundles += 1;
        self.deltas.push(Delta::Held(meta.id, meta.seq_mode, true));
        Ok(())
    }

    fn add_file(&mut self, n: u64) -> Result<()> {
        self.new_files = true;
        self.dbs().files.put(self.txn, &n.to_be_bytes(), &[]).map_err(db_err("recording a payload file"))
    }

    fn remove(&mut self, r: Rec) -> Result<BundleMeta> {
        let a = r.arrival;
        let (m, loc) = self.meta_at(r)?.ok_or_else(|| corrupt("bundle record"))?;
        let e = db_err("deleting a bundle");
        self.dbs().meta.delete(self.txn, &r.key()).map_err(&e)?;
        self.dbs().ids.delete(self.txn, &id_key(&m.id)).map_err(&e)?;
        self.del_indexes(&m)?;
        match loc {
            Location::Here => {}
            Location::Inline => {
                self.dbs().data.delete(self.txn, &a.to_be_bytes()).map_err(db_err("deleting bundle bytes"))?;
            }
            Location::File(n) => {
                self.dbs().files.delete(self.txn, &n.to_be_bytes()).map_err(db_err("deleting a payload file"))?;
                self.unlink.push(n);
            }
        }
        self.c.used -= m.size.min(self.c.used);
        self.c.bundles = self.c.bundles.saturating_sub(1);
        self.deltas.push(Delta::Held(m.id.clone(), m.seq_mode, false));
        Ok(m)
    }

    fn update(&mut self, mut meta: BundleMeta) -> Result<()> {
        let r = self.rec_of(&meta.id)?.ok_or_else(|| StoreError::NotFound(meta.id.clone()))?;
        let value = self.dbs().meta.get(self.txn, &r.key()).map_err(db_err("reading a bundle record"))?;
        let (old, loc, here) = record::decode_meta(value.ok_or_else(|| corrupt("bundle record"))?)?;
        if old.size != meta.size {
            return Err(StoreError::Invalid(format!("update of {} changes its size", meta.id)));
        }
        check_key(&eid_key(&meta.destination))?;
        meta.arrival = r.arrival;
        let new = Rec { priority: meta.priority.0, arrival: r.arrival };
        // The new record keeps the bytes that follow the old one.
        let mut record = record::encode_meta(&meta, loc, Vec::with_capacity(here.len() + 128))?;
        record.extend_from_slice(here);
        let e = db_err("writing a bundle record");
        if new != r {
            // A new priority moves the record.
            self.dbs().meta.delete(self.txn, &r.key()).map_err(&e)?;
        }
        self.dbs().meta.put(self.txn, &new.key(), &record).map_err(&e)?;
        self.del_indexes(&old)?;
        self.put_indexes(&meta)?;
        if new != r || old.seq_mode != meta.seq_mode {
            let idv = new.id_value(meta.seq_mode == SeqMode::Unique);
            self.dbs().ids.put(self.txn, &id_key(&meta.id), &idv).map_err(db_err("writing ids"))?;
        }
        if old.seq_mode != meta.seq_mode {
            self.deltas.push(Delta::Held(old.id.clone(), old.seq_mode, false));
            self.deltas.push(Delta::Held(meta.id, meta.seq_mode, true));
        }
        Ok(())
    }

    fn set_tomb(&mut self, id: &BundleId, t: Option<Tombstone>) -> Result<()> {
        let d = self.dbs();
        let k = id_key(id);
        let e = db_err("writing tombstones");
        if let Some(t) = &t {
            check_key(&k)?;
            // Usually the first tombstone for this ID: then there is no old one to replace.
            if put_new(d.tombs, self.txn, &k, &record::encode_tomb(t)?).map_err(&e)? {
                put_last(d.tomb_exp, self.txn, &tomb_exp_key(t.expires_at, &k), &[]).map_err(&e)?;
                self.c.tombstones += 1;
                if t.reason == TombstoneReason::Delivered {
                    self.deltas.push(Delta::Delivered(id.clone(), t.seq_mode, true));
                }
                return Ok(());
            }
        }
        if let Some(old) = d.tombs.get(self.txn, &k).map_err(&e)? {
            let old = record::decode_tomb(old)?;
            d.tomb_exp.delete(self.txn, &tomb_exp_key(old.expires_at, &k)).map_err(&e)?;
            d.tombs.delete(self.txn, &k).map_err(&e)?;
            self.c.tombstones = self.c.tombstones.saturating_sub(1);
            if old.reason == TombstoneReason::Delivered {
                self.deltas.push(Delta::Delivered(id.clone(), old.seq_mode, false));
            }
        }
        if let Some(t) = t {
            check_key(&k)?;
            d.tombs.put(self.txn, &k, &record::encode_tomb(&t)?).map_err(&e)?;
            d.tomb_exp.put(self.txn, &tomb_exp_key(t.expires_at, &k), &[]).map_err(&e)?;
            self.c.tombstones += 1;
            if t.reason == TombstoneReason::Delivered {
                self.deltas.push(Delta::Delivered(id.clone(), t.seq_mode, true));
            }
        }
        Ok(())
    }

    fn partial(&self, id: &BundleId) -> Result<Option<PartialBundle>> {
        match self.dbs().partials.get(self.txn, &id_key(id)).map_err(db_err("reading partials"))? {
            Some(b) => record::decode_partial(b).map(Some),
            None => Ok(None),
        }
    }

    fn partial_by_file(&self, n: u64) -> Result<Option<PartialBundle>> {
        for item in self.dbs().partials.iter(self.txn).map_err(db_err("reading partials"))? {
            let (_, v) = item.map_err(db_err("reading partials"))?;
            let p = record::decode_partial(v)?;
            if p.staged.0 == n {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }

    fn put_partial(&mut self, p: &PartialBundle) -> Result<()> {
        let path = payload::path(&self.s.payload_dir, p.staged.0);
        let have = fs::metadata(&path).map(|m| m.len()).ok();
        if have.is_none_or(|n| n < p.durable_len) || p.durable_len > p.total_len {
            return Err(StoreError::Invalid(format!(
                "partial {} claims {} durable bytes of {}, staged file has {:?}",
                p.id, p.durable_len, p.total_len, have
            )));
        }
        let k = id_key(&p.id);
        check_key(&k)?;
        let old = self.partial(&p.id)?;
        let prev = old.as_ref().map_or(0, |o| o.total_len);
        if p.total_len > prev {
            self.make_room(p.total_len - prev, Priority(u8::MAX))?;
        }
        self.dbs().partials.put(self.txn, &k, &record::encode_partial(p)?).map_err(db_err("writing a partial"))?;
        if old.is_none_or(|o| o.staged != p.staged) {
            self.add_file(p.staged.0)?;
        }
        self.c.used = self.c.used.saturating_sub(prev) + p.total_len;
        Ok(())
    }

    fn drop_partial(&mut self, p: &PartialBundle, delete_file: bool) -> Result<()> {
        self.dbs().partials.delete(self.txn, &id_key(&p.id)).map_err(db_err("deleting a partial"))?;
        if delete_file {
            self.dbs().files.delete(self.txn, &p.staged.0.to_be_bytes()).map_err(db_err("deleting a payload file"))?;
            self.unlink.push(p.staged.0);
        }
        self.c.used -= p.total_len.min(self.c.used);
        Ok(())
    }

    fn sweep(&mut self) -> Result<()> {
        let mut expired = Vec::new();
        each_expired(self.dbs(), self.txn, self.now, |_, r, _| {
            expired.push(r);
            Ok(true)
        })?;
        for r in expired {
            let m = self.remove(r)?;
            self.report.expired.push(m);
        }
        let hi = cat(&[], &[self.now.0 + (self.now.0 < u64::MAX) as u64]);
        let dead: Vec<Vec<u8>> = self
            .dbs()
            .tomb_exp
            .range(self.txn, &(Bound::Unbounded, Bound::Excluded(&hi[..])))
            .map_err(db_err("reading tombstones"))?
            .map(|r| r.map(|(k, _)| k.get(8..).unwrap_or_default().to_vec()))
            .collect::<heed::Result<_>>()
            .map_err(db_err("reading tombstones"))?;
        for k in dead {
            let id = crate::keys::parse_id_key(&k).ok_or_else(|| corrupt("tombstone key"))?;
            self.set_tomb(&id, None)?;
            self.report.tombstones_pruned += 1;
        }
        let mut gone = Vec::new();
        for item in self.dbs().partials.iter(self.txn).map_err(db_err("reading partials"))? {
            let (_, v) = item.map_err(db_err("reading partials"))?;
            let p = record::decode_partial(v)?;
            if p.expires_at <= self.now {
                gone.push(p);
            }
        }
        for p in gone {
            self.drop_partial(&p, true)?;
        }
        Ok(())
    }
}

/// Writes the indexes of a bundle (all but `ids`, which the caller writes with its checks).
pub(crate) fn put_indexes(d: &Dbs, t: &mut RwTxn, m: &BundleMeta) -> Result<()> {
    let a = m.arrival;
    let p = m.priority.0;
    let rec = Rec { priority: p, arrival: a };
    let e = db_err("writing indexes");
    put_last(d.dest, t, &cat(&eid_key(&m.destination), &[a]), &[p]).map_err(&e)?;
    let mut size = [0u8; 9];
    size[..8].copy_from_slice(&m.size.to_be_bytes());
    size[8] = p;
    match m.custody {
        // A replica's expiry is in `evict` alone (see `each_expired`), whose key holds the priority.
        Custody::None => put_last(d.evict, t, &cat(&[p], &[m.expires_at.0, a]), &size[..8]).map_err(&e)?,
        Custody::Transferring { deadline, .. } => {
            put_last(d.expiry, t, &cat(&[], &[m.expires_at.0, a]), &size).map_err(&e)?;
            put_last(d.custody, t, &cat(&[], &[deadline.0, a]), &[p]).map_err(&e)?;
        }
        Custody::Held => put_last(d.expiry, t, &cat(&[], &[m.expires_at.0, a]), &size).map_err(&e)?,
    }
    if m.id.fragment.is_none() && m.seq_mode == SeqMode::Unique {
        let k = cat(&eid_key(&m.id.source), &[m.id.creation.sequence]);
        put_last(d.useq, t, &k, &rec.seq_value(m.id.creation.time.0)).map_err(&e)?;
    }
    Ok(())
}

fn corrupt_value(table: &str, v: &[u8]) -> StoreError {
    StoreError::Corrupt { what: format!("{table} entry"), detail: crate::hex(v) }
}

pub(crate) fn tomb_exp_key(expires: DtnTime, id_key: &[u8]) -> Vec<u8> {
    cat(&expires.0.to_be_bytes(), &[]).into_iter().chain(id_key.iter().copied()).collect()
}

fn check_key(k: &[u8]) -> Result<()> {
    if k.len() > MAX_EID_KEY + 40 {
        return Err(StoreError::Invalid(format!(
            "endpoint ID too long for the store ({} bytes, limit {MAX_EID_KEY})",
            k.len()
        )));
    }
    Ok(())
}
