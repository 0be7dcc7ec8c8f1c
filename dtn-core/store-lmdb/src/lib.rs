//! Durable bundle store on LMDB, implementing [`dtn_core::store::BundleStore`].
//!
//! * Metadata and small bundles live in one LMDB environment (tables below); bundles larger than
//!   [`Options::inline_max`] live in payload files beside it, written and read as streams.
//! * All writes go through one committer thread that groups the batches waiting for it into a single write
//!   transaction with one durable sync ([`LmdbStore::submit`] returns a [`Ticket`]; the callback form of
//!   [`LmdbStore::submit_with`] is the "now durable" signal custody and acknowledgements wait for). One
//!   failing batch does not fail the others in its group: a group in which a batch fails is written again
//!   with each batch in a nested transaction of its own.
//! * A store killed at any moment reopens without a repair step: LMDB commits are atomic, payload files are
//!   synced (and their directory) before the commit that refers to them, and files no record refers to are
//!   removed at open.
//! * Nothing per bundle is kept in memory: summaries (runs of sequence numbers) and counters only.
//!
//! Tables (keys big-endian so byte order is numeric order; `A` is a bundle's arrival number, `P` its
//! priority, and every index entry gives both, which is the record's key):
//! `meta` (255 − P) ‖ A → record (then the bundle's bytes, if inline) · `data` A → bytes (format-1 records
//! only) · `ids` id → A, mode, P · `dest` eid ‖ A → P · `expiry` t ‖ A → size, P (bundles in custody) ·
//! `evict` P ‖ t ‖ A → size (replicas: their expiry too) · `custody` t ‖ A → P · `useq` source ‖ seq → A, P, time ·
//! `tombs` id → tombstone · `tomb_exp` t ‖ id · `state` · `peers` eid → summary · `partials` id → record ·
//! `files` n → () (payload files referenced) · `info` counters and the format version.

mod check;
mod keys;
mod payload;
mod record;
mod writer;

use std::fs;
use std::io::{Cursor, Read};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use dtn_core::bpv7::{BundleId, CreationTimestamp, DtnTime, Eid};
use dtn_core::store::{
    BundleMeta, BundleReader, BundleStore, CommitReport, PartialBundle, Priority, Result, SeqMode, StagedId,
    StoreError, Summary, Tombstone, TombstoneReason, Usage, WriteBatch,
};
use heed::types::Bytes;
use heed::{Database, Env, EnvOpenOptions, RoTxn};

pub use check::CheckReport;
pub use payload::PayloadWriter;
pub use writer::Ticket;

use keys::{Rec, be64, cat, eid_key, id_key, tail64};
use record::Location;

type Db = Database<Bytes, Bytes>;

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct Options {
    /// Byte quota for bundles (and partial bundles).
    pub quota: u64,
    /// Bundles up to this size are kept inside LMDB; larger ones in payload files.
    pub inline_max: u64,
    /// Initial LMDB map size. The map grows (doubling) before it fills, up to `max_map_size`.
    pub map_size: u64,
    /// Largest the map may grow; a commit that needs more fails with a clear error.
    pub max_map_size: u64,
    /// Most batches committed in one transaction.
    pub max_group: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { quota: 64 << 30, inline_max: 2 << 20, map_size: 1 << 30, max_map_size: 1 << 40, max_group: 4096 }
    }
}

impl Options {
    /// Defaults with the given quota.
    pub fn with_quota(quota: u64) -> Self {
        Options { quota, ..Default::default() }
    }
}

pub(crate) struct Dbs {
    meta: Db,
    data: Db,
    ids: Db,
    dest: Db,
    expiry: Db,
    prio: Db,
    evict: Db,
    custody: Db,
    useq: Db,
    tombs: Db,
    tomb_exp: Db,
    state: Db,
    peers: Db,
    partials: Db,
    files: Db,
    info: Db,
}

/// Counters kept in the `info` table and mirrored in memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    next_arrival: u64,
    used: u64,
    bundles: u64,
    tombstones: u64,
}

pub(crate) struct Shared {
    env: Env,
    dbs: Dbs,
    payload_dir: PathBuf,
    opts: Options,
    /// Held shared by every transaction; taken exclusively only to grow the map, which LMDB allows only
    /// with no transaction open in the process.
    txn_gate: RwLock<()>,
    held: RwLock<Summary>,
    delivered: RwLock<Summary>,
    counters: Mutex<Counters>,
    next_file: AtomicU64,
}

/// A durable bundle store in a directory.
pub struct LmdbStore {
    shared: Arc<Shared>,
    writer: Option<writer::Handle>,
}

const FORMAT_KEY: &[u8] = b"format";
const COUNTERS_KEY: &[u8] = b"counters";

fn db_err(context: &'static str) -> impl Fn(heed::Error) -> StoreError {
    move |e| match e {
        heed::Error::Io(io) => StoreError::io(context, io),
        other => StoreError::Backend { context: context.into(), detail: other.to_string() },
    }
}

impl LmdbStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<LmdbStore> {
        let dir = dir.as_ref();
        let payload_dir = dir.join("payloads");
        fs::create_dir_all(&payload_dir)
            .map_err(|e| StoreError::io(format!("creating store directory {}", payload_dir.display()), e))?;
        let existing = fs::metadata(dir.join("data.mdb")).map(|m| m.len()).unwrap_or(0);
        // Never open with a map smaller than the file: LMDB would refuse or truncate the view.
        let map_size = round_map(opts.map_size.max(existing.saturating_add(existing / 4)).min(opts.max_map_size));
        // SAFETY: heed requires that the same environment is not opened twice in one process with
        // different options and that the file is not modified by other means; the store owns its
        // directory and opens it once (a second open in the same process returns heed's error).
        let env = unsafe { EnvOpenOptions::new().map_size(map_size as usize).max_dbs(20).open(dir) }
            .map_err(db_err("opening LMDB environment"))?;
        let mut wtxn = env.write_txn().map_err(db_err("opening tables"))?;
        let mut mk = |name: &str| env.create_database::<Bytes, Bytes>(&mut wtxn, Some(name));
        let dbs = (|| -> heed::Result<Dbs> {
            Ok(Dbs {
                meta: mk("meta")?,
                data: mk("data")?,
                ids: mk("ids")?,
                dest: mk("dest")?,
                expiry: mk("expiry")?,
                prio: mk("prio")?,
                evict: mk("evict")?,
                custody: mk("custody")?,
                useq: mk("useq")?,
                tombs: mk("tombs")?,
                tomb_exp: mk("tomb_exp")?,
                state: mk("state")?,
                peers: mk("peers")?,
                partials: mk("partials")?,
                files: mk("files")?,
                info: mk("info")?,
            })
        })()
        .map_err(db_err("opening tables"))?;
        let format = match dbs.info.get(&wtxn, FORMAT_KEY).map_err(db_err("reading format"))? {
            None => None,
            Some(&[v]) if v > record::FORMAT => {
                return Err(StoreError::UnsupportedFormat { found: v, supported: record::FORMAT });
            }
            Some(&[v]) if v >= 1 => Some(v),
            Some(_) => return Err(StoreError::Corrupt { what: "format".into(), detail: "bad value".into() }),
        };
        if format == Some(1) {
            wtxn.commit().map_err(db_err("creating tables"))?;
            // Pages freed by a transaction are reused only after it commits, so rewriting every record and
            // index in one takes up to twice the data again.
            let want = round_map(existing.saturating_mul(3).min(opts.max_map_size));
            if want > map_size {
                // SAFETY: no transaction is open on this environment, which nothing else uses yet.
                unsafe { env.resize(want as usize) }.map_err(db_err("growing the LMDB map"))?;
            }
            wtxn = env.write_txn().map_err(db_err("moving to store format 2"))?;
            migrate_from_1(&dbs, &mut wtxn)?;
        }
        if format != Some(record::FORMAT) {
            dbs.info.put(&mut wtxn, FORMAT_KEY, &[record::FORMAT]).map_err(db_err("writing format"))?;
        }
        wtxn.commit().map_err(db_err("creating tables"))?;

        let rtxn = env.read_txn().map_err(db_err("reading"))?;
        let counters = match dbs.info.get(&rtxn, COUNTERS_KEY).map_err(db_err("reading counters"))? {
            Some(b) if b.len() == 32 => Counters {
                next_arrival: be64(&b[0..8]),
                used: be64(&b[8..16]),
                bundles: be64(&b[16..24]),
                tombstones: be64(&b[24..32]),
            },
            Some(_) => return Err(StoreError::Corrupt { what: "counters".into(), detail: "bad length".into() }),
            None => Counters::default(),
        };
        let (held, delivered) = rebuild_summaries(&dbs, &rtxn)?;
        let next_file = remove_orphan_files(&dbs, &rtxn, &payload_dir)?;
        drop(rtxn);

        let shared = Arc::new(Shared {
            env,
            dbs,
            payload_dir,
            opts,
            txn_gate: RwLock::new(()),
            held: RwLock::new(held),
            delivered: RwLock::new(delivered),
            counters: Mutex::new(counters),
            next_file: AtomicU64::new(next_file),
        });
        let writer = writer::Handle::start(shared.clone())?;
        Ok(LmdbStore { shared, writer: Some(writer) })
    }

    /// Queues a batch for the next group commit; the ticket resolves when it is durable (or failed).
    pub fn submit(&self, batch: WriteBatch) -> Ticket {
        match &self.writer {
            Some(w) => w.submit(batch),
            None => Ticket::failed(),
        }
    }

    /// Queues a batch; `done` runs on the committer thread the moment the batch is durable (or failed).
    /// Keep it short: send on a channel.
    pub fn submit_with(&self, batch: WriteBatch, done: impl FnOnce(Result<CommitReport>) + Send + 'static) {
        match &self.writer {
            Some(w) => w.submit_with(batch, Box::new(done)),
            None => done(Err(StoreError::Closed)),
        }
    }

    /// Starts writing a payload to a new file (large bundles, incoming transfers).
    pub fn stage(&self) -> Result<PayloadWriter> {
        let n = self.shared.next_file.fetch_add(1, Ordering::Relaxed);
        PayloadWriter::create(&self.shared.payload_dir, n)
    }

    /// Continues a staged payload (a partial bundle being resumed) from its first `keep` bytes.
    pub fn resume(&self, id: StagedId, keep: u64) -> Result<PayloadWriter> {
        PayloadWriter::resume(&self.shared.payload_dir, id.0, keep)
    }

    /// Verifies every record and index against each other, the counters and the payload files, and
    /// (with `verify_bundles`) decodes every stored bundle, checking its CRCs.
    pub fn check(&self, verify_bundles: bool) -> Result<CheckReport> {
        let _g = self.shared.gate();
        let rtxn = self.shared.read()?;
        check::run(&self.shared, &rtxn, verify_bundles)
    }

    /// Current LMDB map size in bytes.
    pub fn map_size(&self) -> u64 {
        self.shared.env.info().map_size as u64
    }

    /// Closes the store, waiting for queued commits.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(w) = self.writer.take() {
            w.stop();
        }
    }
}

impl Drop for LmdbStore {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Format 1 keyed a bundle's record by its arrival number alone, kept a `prio` index of (priority,
/// arrival), kept every bundle's expiry in `expiry`, and its index entries gave only the arrival number.
/// Format 2 keys records by (255 − priority) ‖ arrival, so the records themselves are in transmission order
/// and `prio` is not needed; every index entry names the priority with the arrival number, so that it leads
/// to the record; and a replica's expiry is in `evict` alone. Moving re-keys the records and rebuilds the
/// indexes, in one transaction; the records' contents stay as they are and are read as they are met.
fn migrate_from_1(dbs: &Dbs, wtxn: &mut heed::RwTxn) -> Result<()> {
    let e = db_err("moving to store format 2");
    let old: Vec<u64> =
        dbs.meta.iter(wtxn).map_err(&e)?.map(|r| r.map(|(k, _)| be64(k))).collect::<heed::Result<_>>().map_err(&e)?;
    for a in old {
        let k = a.to_be_bytes();
        let v = dbs.meta.get(wtxn, &k).map_err(&e)?.map(<[u8]>::to_vec).unwrap_or_default();
        let (m, _, _) = record::decode_meta(&v)?;
        dbs.meta.delete(wtxn, &k).map_err(&e)?;
        dbs.meta.put(wtxn, &Rec { priority: m.priority.0, arrival: a }.key(), &v).map_err(&e)?;
    }
    for db in [dbs.ids, dbs.dest, dbs.expiry, dbs.prio, dbs.evict, dbs.custody, dbs.useq] {
        db.clear(wtxn).map_err(&e)?;
    }
    // In slices, so that only a slice of the records is in memory at a time.
    let mut after: Option<Vec<u8>> = None;
    loop {
        let range = match &after {
            Some(k) => (Bound::Excluded(&k[..]), Bound::Unbounded),
            None => (Bound::Unbounded, Bound::Unbounded),
        };
        let mut slice = Vec::new();
        for item in dbs.meta.range(wtxn, &range).map_err(&e)?.take(4096) {
            let (k, v) = item.map_err(&e)?;
            let rec =
                Rec::from_key(k).ok_or_else(|| StoreError::Corrupt { what: "record key".into(), detail: hex(k) })?;
            let (mut m, _, _) = record::decode_meta(v)?;
            m.arrival = rec.arrival;
            slice.push((rec, m));
        }
        let Some((last, _)) = slice.last() else { return Ok(()) };
        after = Some(last.key().to_vec());
        for (rec, m) in &slice {
            let idv = rec.id_value(m.seq_mode == SeqMode::Unique);
            dbs.ids.put(wtxn, &id_key(&m.id), &idv).map_err(&e)?;
            writer::put_indexes(dbs, wtxn, m)?;
        }
    }
}

/// Rounds a map size up to a multiple of 1 MiB (a multiple of any page size).
fn round_map(n: u64) -> u64 {
    n.div_ceil(1 << 20).max(1) << 20
}

fn rebuild_summaries(dbs: &Dbs, rtxn: &RoTxn) -> Result<(Summary, Summary)> {
    let mut held = Summary::new();
    for item in dbs.ids.iter(rtxn).map_err(db_err("reading ids"))? {
        let (k, v) = item.map_err(db_err("reading ids"))?;
        let id = keys::parse_id_key(k).ok_or_else(|| StoreError::Corrupt { what: "id key".into(), detail: hex(k) })?;
        held.insert(&id, mode_byte(v));
    }
    let mut delivered = Summary::new();
    for item in dbs.tombs.iter(rtxn).map_err(db_err("reading tombstones"))? {
        let (k, v) = item.map_err(db_err("reading tombstones"))?;
        let t = record::decode_tomb(v)?;
        if t.reason == TombstoneReason::Delivered {
            let id =
                keys::parse_id_key(k).ok_or_else(|| StoreError::Corrupt { what: "id key".into(), detail: hex(k) })?;
            delivered.insert(&id, t.seq_mode);
        }
    }
    Ok((held, delivered))
}

/// Removes payload files that no committed record refers to (written by a transfer or ingest that was cut
/// off before its commit) and returns the next free file number.
fn remove_orphan_files(dbs: &Dbs, rtxn: &RoTxn, dir: &Path) -> Result<u64> {
    let mut next = match dbs.files.last(rtxn).map_err(db_err("reading files"))? {
        Some((k, _)) => be64(k) + 1,
        None => 0,
    };
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io(format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(n) = name.to_str().and_then(payload::parse_name) else { continue };
        next = next.max(n + 1);
        if dbs.files.get(rtxn, &n.to_be_bytes()).map_err(db_err("reading files"))?.is_none() {
            fs::remove_file(entry.path())
                .map_err(|e| StoreError::io(format!("removing orphan {}", entry.path().display()), e))?;
        }
    }
    Ok(next)
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().take(64).map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn mode_byte(v: &[u8]) -> SeqMode {
    if v.get(8) == Some(&1) { SeqMode::Unique } else { SeqMode::PerTime }
}

impl Shared {
    pub(crate) fn gate(&self) -> RwLockReadGuard<'_, ()> {
        self.txn_gate.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn read(&self) -> Result<RoTxn<'_, heed::WithTls>> {
        self.env.read_txn().map_err(db_err("starting a read"))
    }

    fn meta_at(&self, rtxn: &RoTxn, r: Rec) -> Result<Option<BundleMeta>> {
        Ok(self.record_at(rtxn, r)?.map(|(m, _, _)| m))
    }

    fn record_at<'t>(&self, rtxn: &'t RoTxn, r: Rec) -> Result<Option<(BundleMeta, Location, &'t [u8])>> {
        match self.dbs.meta.get(rtxn, &r.key()).map_err(db_err("reading a bundle record"))? {
            Some(b) => record::decode_meta(b).map(Some),
            None => Ok(None),
        }
    }

    fn rec_of(&self, rtxn: &RoTxn, id: &BundleId) -> Result<Option<Rec>> {
        match self.dbs.ids.get(rtxn, &id_key(id)).map_err(db_err("reading ids"))? {
            Some(v) => Rec::from_id_value(v)
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt { what: "ids entry".into(), detail: hex(v) }),
            None => Ok(None),
        }
    }

    /// Metadata for the entries of an index that ends its keys with the arrival number and holds the
    /// priority as its value's last byte, up to `limit`.
    fn metas<'t>(
        &self,
        rtxn: &'t RoTxn,
        keys: impl Iterator<Item = heed::Result<(&'t [u8], &'t [u8])>>,
        limit: usize,
    ) -> Result<Vec<BundleMeta>> {
        let mut out = Vec::new();
        for item in keys {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(db_err("reading an index"))?;
            let r = Rec { priority: v.last().copied().unwrap_or(0), arrival: tail64(k) };
            if let Some(m) = self.meta_at(rtxn, r)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Bundles in a `time ‖ arrival` index with time at or before `until`, soonest first.
    fn due(&self, index: impl Fn(&Dbs) -> Db, until: DtnTime, limit: usize) -> Result<Vec<BundleMeta>> {
        let _g = self.gate();
        let rtxn = self.read()?;
        let hi = cat(&[], &[until.0, u64::MAX]);
        let range = (Bound::Unbounded, Bound::Included(&hi[..]));
        let it = index(&self.dbs).range(&rtxn, &range).map_err(db_err("reading a time index"))?;
        self.metas(&rtxn, it, limit)
    }

    /// Calls `f` with the record and ID of every stored bundle whose ID is in `want`, in ID order per
    /// source (uniquely numbered ones, then the rest by creation time, then fragments), until it returns false.
    fn each_selected(
        &self,
        rtxn: &RoTxn,
        want: &Summary,
        mut f: impl FnMut(Rec, BundleId) -> Result<bool>,
    ) -> Result<()> {
        let corrupt = |what: &str, v: &[u8]| StoreError::Corrupt { what: what.into(), detail: hex(v) };
        for (src, sum) in want.sources() {
            let prefix = eid_key(src);
            let id = |t, q| BundleId { source: src.clone(), creation: CreationTimestamp::new(t, q), fragment: None };
            for r in sum.unique_seq.runs() {
                let (lo, hi) = (cat(&prefix, &[*r.start()]), cat(&prefix, &[*r.end()]));
                let range = (Bound::Included(&lo[..]), Bound::Included(&hi[..]));
                for item in self.dbs.useq.range(rtxn, &range).map_err(db_err("reading sequence index"))? {
                    let (k, v) = item.map_err(db_err("reading sequence index"))?;
                    let (rec, time) = Rec::from_seq_value(v).ok_or_else(|| corrupt("useq entry", v))?;
                    if !f(rec, id(time, tail64(k)))? {
                        return Ok(());
                    }
                }
            }
            for (t, set) in &sum.by_time {
                for r in set.runs() {
                    let (lo, hi) = (id_key(&id(*t, *r.start())), id_key(&id(*t, *r.end())));
                    let range = (Bound::Included(&lo[..]), Bound::Included(&hi[..]));
                    for item in self.dbs.ids.range(rtxn, &range).map_err(db_err("reading ids"))? {
                        let (k, v) = item.map_err(db_err("reading ids"))?;
                        // Skip fragments and uniquely-numbered bundles that fall inside the key range.
                        if k.last() != Some(&0) || k.len() != prefix.len() + 17 || mode_byte(v) != SeqMode::PerTime {
                            continue;
                        }
                        let rec = Rec::from_id_value(v).ok_or_else(|| corrupt("ids entry", v))?;
                        let seq = be64(&k[prefix.len() + 8..prefix.len() + 16]);
                        if !f(rec, id(*t, seq))? {
                            return Ok(());
                        }
                    }
                }
            }
            for frag in sum.fragment_ids(src) {
                if let Some(rec) = self.rec_of(rtxn, &frag)?
                    && !f(rec, frag)?
                {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn usage(&self) -> Usage {
        let c = *self.counters.lock().unwrap_or_else(|e| e.into_inner());
        Usage { bundles: c.bundles, bytes: c.used, quota: self.opts.quota, tombstones: c.tombstones }
    }
}

impl BundleStore for LmdbStore {
    fn meta(&self, id: &BundleId) -> Result<Option<BundleMeta>> {
        let s = &self.shared;
        let _g = s.gate();
        let rtxn = s.read()?;
        match s.rec_of(&rtxn, id)? {
            Some(r) => s.meta_at(&rtxn, r),
            None => Ok(None),
        }
    }

    fn contains(&self, id: &BundleId) -> Result<bool> {
        let s = &self.shared;
        let _g = s.gate();
        let rtxn = s.read()?;
        Ok(s.rec_of(&rtxn, id)?.is_some())
    }

    fn read_bundle(&self, id: &BundleId) -> Result<BundleReader> {
        let s = &self.shared;
        let _g = s.gate();
        let rtxn = s.read()?;
        let r = s.rec_of(&rtxn, id)?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
        let (m, loc, here) = s.record_at(&rtxn, r)?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
        let a = r.arrival;
        match loc {
            Location::Here => Ok(Box::new(Cursor::new(here.to_vec()))),
            Location::Inline => {
                let b = s.dbs.data.get(&rtxn, &a.to_be_bytes()).map_err(db_err("reading bundle bytes"))?;
                let b =
                    b.ok_or_else(|| StoreError::Corrupt { what: format!("bytes of {id}"), detail: "missing".into() })?;
                Ok(Box::new(Cursor::new(b.to_vec())))
            }
            Location::File(n) => Ok(Box::new(payload::open_read(&s.payload_dir, n, m.size)?)),
        }
    }

    fn tombstone(&self, id: &BundleId) -> Result<Option<Tombstone>> {
        let s = &self.shared;
        let _g = s.gate();
        let rtxn = s.read()?;
        match s.dbs.tombs.get(&rtxn, &id_key(id)).map_err(db_err("reading tombstones"))? {
            Some(b) => record::decode_tomb(b).map(Some),
            None => Ok(None),
        }
    }

    fn by_destination(&self, destination: &Eid, after: Option<u64>, limit: usize) -> Result<Vec<BundleMeta>> {
        let s = &self.shared;
        let _g = s.gate();
        let rtxn = s.read()?;
        let prefix = eid_key(destination);
        let lo = cat(&prefix, &[after.map_or(0, |a| a.saturating_add(1))]);
        let hi = cat(&prefix, &[u64::MAX]);
        let range = (Bound::Included(&lo[..]), Bound::Included(&hi[..]));
        let it = s.dbs.dest.range(&rtxn, &range).map_err(db_err("reading destinations"))?;
        s.metas(&rtxn, it, limit)
    }

    fn expiring(&self, until: DtnTime, limit: usize) -> Result<Vec<BundleMeta>> {
        let s = &self.shared;
        let _g = s.gate();
        let rtxn = s.read()?;
        let mut out = Vec::new();
        writer::each_expired(&s.dbs, &rtxn, until, |_, r, _| {
            if out.len() >= limit {
                return Ok(false);
            }
            if let Some(m) = s.meta_at(&rtxn, r)? {
                out.push(m);
            }
            Ok(true)
        })?;
        Ok(out)
    }

    fn by_priority(&self, after: Option<(Priority, u64)>, limit: usize) -> Result<Vec<BundleMeta>> {
        let s = &self.shared;
        let _g = s.gate();
        let rtxn = s.read()?;
        // The records are kept in transmission order.
        let lo = after.map(|(p, a)| Rec { priority: p.0, arrival: a }.key());
        let range = match &lo {
            Some(lo) => (Bound::Excluded(&lo[..]), Bound::Unbounded),
            None => (Bound::Unbounded, Bound::Unbounded),
        };
        let mut out = Vec::new();
        for item in s.dbs.meta.range(&rtxn, &range).map_err(db_err("reading bundle records"))?.take(limit) {
            let (_, v) = item.map_err(db_err("reading bundle records"))?;
            out.push(record::decode_meta(v)?.0);
        }
        Ok(out)
    }

    fn custody_due(&self, until: DtnTime, limit: usize) -> Result<Vec<BundleMeta>> {
        self.shared.due(|d| d.custody, until, limit)
    }

    fn select(&self, want: &Summary, limit: usize) -> Result<Vec<BundleMeta>> {
        let s = &self.shared;
        let _g = s.gate();
        let rtxn = s.read()?;
        let mut out = Vec::new();
        s.each_selected(&rtxn, want, |r, _| {
            if out.len() >= limit {
                return Ok(false);
            }
            if let Some(m) = s.meta_at(&rtxn, r)? {
                out.push(m);
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// From the indexes alone: their entries give each record's priority and arrival number, and the
    /// bundle's ID.
    fn select_keys(&self, want: &Summary) -> Result<Vec<(Priority, u64, BundleId)>> {
        let s = &self.shared;
        let _g = s.gate();
        let rtxn = s.read()?;
        let mut out = Vec::new();
        s.each_selected(&rtxn, want, |r, id| {
            out.push((Priority(r.priority), r.arrival, id));
            Ok(true)
        })?;
        Ok(out)
    }

    fn summary(&self) -> Summary {
        self.shared.held.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn delivered_summary(&self) -> Summary {
        self.shared.delivered.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn with_summaries(&self, f: &mut dyn FnMut(&Summary, &Summary)) {
        let held = self.shared.held.read().unwrap_or_else(|e| e.into_inner());
        let delivered = self.shared.delivered.read().unwrap_or_else(|e| e.into_inner());
        f(&held, &delivered)
    }

    fn state(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let s = &self.shared;
        let _g = s.gate();
        let rtxn = s.read()?;
        Ok(s.dbs.state.get(&rtxn, key).map_err(db_err("reading state"))?.map(<[u8]>::to_vec))
    }

    fn peer(&self, peer: &Eid) -> Result<Option<Summary>> {
        let s = &self.shared;
        let _g = s.gate();
        let rtxn = s.read()?;
        match s.dbs.peers.get(&rtxn, &eid_key(peer)).map_err(db_err("reading peers"))? {
            Some(b) => Summary::decode(b)
                .map(Some)
                .map_err(|e| StoreError::Corrupt { what: format!("summary of peer {peer}"), detail: e.to_string() }),
            None => Ok(None),
        }
    }

    fn partials(&self) -> Result<Vec<PartialBundle>> {
        let s = &self.shared;
        let _g = s.gate();
        let rtxn = s.read()?;
        let mut out = Vec::new();
        for item in s.dbs.partials.iter(&rtxn).map_err(db_err("reading partials"))? {
            let (_, v) = item.map_err(db_err("reading partials"))?;
            out.push(record::decode_partial(v)?);
        }
        Ok(out)
    }

    fn read_partial(&self, id: &BundleId) -> Result<BundleReader> {
        let s = &self.shared;
        let p = {
            let _g = s.gate();
            let rtxn = s.read()?;
            let b = s.dbs.partials.get(&rtxn, &id_key(id)).map_err(db_err("reading partials"))?;
            record::decode_partial(b.ok_or_else(|| StoreError::NotFound(id.clone()))?)?
        };
        Ok(Box::new(payload::open_read(&s.payload_dir, p.staged.0, p.durable_len)?))
    }

    fn usage(&self) -> Usage {
        self.shared.usage()
    }

    fn check_room(&self, size: u64, priority: Priority, now: DtnTime) -> Result<()> {
        let s = &self.shared;
        let _g = s.gate();
        let rtxn = s.read()?;
        let c = *s.counters.lock().unwrap_or_else(|e| e.into_inner());
        writer::room_for(&s.dbs, &rtxn, (c.used, s.opts.quota), size, priority, now).map(|_| ())
    }

    fn commit(&self, batch: WriteBatch) -> Result<CommitReport> {
        self.submit(batch).wait()
    }
}

/// Reads a whole stream (tests and tools).
pub fn read_to_vec(mut r: impl Read) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    r.read_to_end(&mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use dtn_core::store::testkit::{bundle, meta_for};
    use dtn_core::store::{Custody, Payload, WriteOp};

    use super::*;

    fn format(s: &LmdbStore) -> Vec<u8> {
        let rtxn = s.shared.read().unwrap();
        s.shared.dbs.info.get(&rtxn, FORMAT_KEY).unwrap().unwrap().to_vec()
    }

    /// `select_keys` answers from the indexes alone, and names the same bundles as `select`, in its order:
    /// uniquely numbered bundles with a clock (whose IDs the sequence index has to give in full), the rest
    /// by creation time, and fragments.
    #[test]
    fn select_keys_from_the_indexes_match_select() {
        let dir = tempfile::tempdir().unwrap();
        let s = LmdbStore::open(dir.path(), Options::default()).unwrap();
        let dst = Eid::ipn(9, 1);
        let mut ops = Vec::new();
        for (src, unique) in [(Eid::ipn(5, 0), true), (Eid::ipn(6, 0), false)] {
            for seq in 0..30u64 {
                let time = 815_000_000_000 + seq * 1000 + u64::from(seq % 3 == 0) * 7;
                let bytes = bundle(&src, time, seq, 30, &dst);
                let mut m = meta_for(&src, time, seq, &bytes, &dst);
                m.priority = Priority((seq % 4) as u8);
                if unique {
                    m.seq_mode = SeqMode::Unique;
                }
                if seq % 10 == 9 {
                    m.id.fragment = Some((0, 1000));
                    m.total_adu_len = Some(2000);
                }
                ops.push(WriteOp::Insert { meta: m, payload: Payload::Bytes(bytes) });
            }
        }
        s.commit(WriteBatch { now: DtnTime(0), ops }).unwrap();
        let want = s.summary();
        let got = s.select(&want, usize::MAX).unwrap();
        assert_eq!(got.len(), 60);
        let from_metas: Vec<_> = got.iter().map(|m| (m.priority, m.arrival, m.id.clone())).collect();
        assert_eq!(s.select_keys(&want).unwrap(), from_metas);
    }

    /// Rewrites the store as format 1 wrote these bundles (bytes given: in `data`; none: left where they
    /// are, in their record, which format 1 never did but costs nothing to read for a test of the indexes).
    fn write_format_1<'a>(s: &LmdbStore, bundles: impl Iterator<Item = (&'a BundleMeta, Option<&'a [u8]>)>) {
        let sh = &s.shared;
        let d = &sh.dbs;
        {
            // Rewriting everything in one transaction needs room for a second copy.
            let _excl = sh.txn_gate.write().unwrap();
            let size = sh.env.info().map_size;
            // SAFETY: no transaction is open in this process while the gate is held exclusively.
            unsafe { sh.env.resize(size * 3) }.unwrap();
        }
        let _g = sh.gate();
        let mut w = sh.env.write_txn().unwrap();
        for db in [d.ids, d.dest, d.expiry, d.prio, d.evict, d.custody, d.useq] {
            db.clear(&mut w).unwrap();
        }
        for (m, bytes) in bundles {
            let a = m.arrival;
            let ab = a.to_be_bytes();
            let size = m.size.to_be_bytes();
            let rec = Rec { priority: m.priority.0, arrival: a }.key();
            match bytes {
                Some(b) => {
                    d.meta.delete(&mut w, &rec).unwrap();
                    d.meta.put(&mut w, &ab, &record::encode_meta_v1(m, None)).unwrap();
                    d.data.put(&mut w, &ab, b).unwrap();
                }
                None => {
                    let v = d.meta.get(&w, &rec).unwrap().unwrap().to_vec();
                    d.meta.delete(&mut w, &rec).unwrap();
                    d.meta.put(&mut w, &ab, &v).unwrap();
                }
            }
            let idv = [&ab[..], &[u8::from(m.seq_mode == SeqMode::Unique)]].concat();
            d.ids.put(&mut w, &id_key(&m.id), &idv).unwrap();
            d.dest.put(&mut w, &cat(&eid_key(&m.destination), &[a]), &[]).unwrap();
            d.expiry.put(&mut w, &cat(&[], &[m.expires_at.0, a]), &size).unwrap();
            d.prio.put(&mut w, &cat(&[255 - m.priority.0], &[a]), &[]).unwrap();
            match m.custody {
                Custody::None => d.evict.put(&mut w, &cat(&[m.priority.0], &[m.expires_at.0, a]), &size).unwrap(),
                Custody::Transferring { deadline, .. } => {
                    d.custody.put(&mut w, &cat(&[], &[deadline.0, a]), &[]).unwrap()
                }
                Custody::Held => {}
            }
            if m.seq_mode == SeqMode::Unique && m.id.fragment.is_none() {
                d.useq.put(&mut w, &cat(&eid_key(&m.id.source), &[m.id.creation.sequence]), &ab).unwrap();
            }
        }
        d.info.put(&mut w, FORMAT_KEY, &[1]).unwrap();
        w.commit().unwrap();
    }

    /// A million bundles in format 1 move to format 2 at open, within the map's limits, and pass the check.
    /// About a minute in a release build: `cargo test --release -p dtn-store-lmdb --lib -- --ignored`.
    #[test]
    #[ignore]
    fn a_million_bundles_move_to_format_2() {
        let dir = tempfile::tempdir_in(".").unwrap();
        let dst = Eid::ipn(9, 1);
        let s = LmdbStore::open(dir.path(), Options::default()).unwrap();
        let mut metas = Vec::new();
        for chunk in 0..1000u64 {
            let mut ops = Vec::new();
            for k in 0..1000u64 {
                let (src, seq) = (Eid::ipn(1 + k % 100, 0), chunk * 10 + k / 100);
                let bytes = bundle(&src, 0, seq, 120, &dst);
                let mut m = meta_for(&src, 0, seq, &bytes, &dst);
                m.seq_mode = if k % 2 == 0 { SeqMode::Unique } else { SeqMode::PerTime };
                ops.push(WriteOp::Insert { meta: m, payload: Payload::Bytes(bytes) });
            }
            s.commit(WriteBatch { now: DtnTime(0), ops }).unwrap();
        }
        for item in s.select(&s.summary(), usize::MAX).unwrap() {
            metas.push(item);
        }
        write_format_1(&s, metas.iter().map(|m| (m, None)));
        s.close();
        let size = fs::metadata(dir.path().join("data.mdb")).unwrap().len();
        let t = std::time::Instant::now();
        let s = LmdbStore::open(dir.path(), Options { map_size: 1 << 20, ..Options::default() }).unwrap();
        eprintln!(
            "moved {} bundles ({} MB) to format 2 in {:.2} s",
            metas.len(),
            size >> 20,
            t.elapsed().as_secs_f64()
        );
        assert_eq!(format(&s), vec![2]);
        assert_eq!(s.usage().bundles, 1_000_000);
        let r = s.check(false).unwrap();
        assert!(r.ok(), "{:?}", &r.problems[..r.problems.len().min(5)]);
    }

    /// A store written in format 1 (records keyed by arrival alone, bundle bytes in `data`, a `prio`
    /// index, every expiry in `expiry`, index entries without the priority) opens, moves to format 2,
    /// passes the integrity check, answers every query as before, and its old records are read, updated and
    /// removed as met.
    #[test]
    fn a_format_1_store_opens_as_format_2() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (Eid::ipn(3, 0), Eid::ipn(4, 1));
        let mut all = Vec::new();
        let s = LmdbStore::open(dir.path(), Options::default()).unwrap();
        for seq in 0..24 {
            let bytes = bundle(&src, 0, seq, 50 + seq as usize, &dst);
            let mut m = meta_for(&src, 0, seq, &bytes, &dst);
            m.priority = Priority([0, 1, 2][seq as usize % 3]);
            m.seq_mode = if seq % 2 == 0 { SeqMode::Unique } else { SeqMode::PerTime };
            m.custody = match seq % 4 {
                1 => Custody::Held,
                2 => Custody::Transferring { deadline: DtnTime(1000 + seq), attempts: 1 },
                _ => Custody::None,
            };
            let ops = vec![WriteOp::Insert { meta: m.clone(), payload: Payload::Bytes(bytes.clone()) }];
            s.commit(WriteBatch { now: DtnTime(0), ops }).unwrap();
            all.push((s.meta(&m.id).unwrap().unwrap(), bytes));
        }
        write_format_1(&s, all.iter().map(|(m, b)| (m, Some(&b[..]))));
        assert!(!s.check(false).unwrap().ok(), "a format-1 layout should not pass as format 2");
        s.close();

        let s = LmdbStore::open(dir.path(), Options::default()).unwrap();
        assert_eq!(format(&s), vec![2]);
        let r = s.check(true).unwrap();
        assert!(r.ok(), "{:?}", r.problems);
        let arrivals = |v: Vec<BundleMeta>| v.iter().map(|m| m.arrival).collect::<Vec<_>>();
        for (m, bytes) in &all {
            assert_eq!(s.meta(&m.id).unwrap().as_ref(), Some(m));
            assert_eq!(read_to_vec(s.read_bundle(&m.id).unwrap()).unwrap(), *bytes);
        }
        let in_order = all.iter().map(|(m, _)| m.arrival).collect::<Vec<_>>();
        assert_eq!(arrivals(s.expiring(DtnTime(u64::MAX), 100).unwrap()), in_order);
        assert_eq!(arrivals(s.by_destination(&dst, None, 100).unwrap()), in_order);
        let mut by_prio: Vec<(u8, u64)> = all.iter().map(|(m, _)| (m.priority.0, m.arrival)).collect();
        by_prio.sort_by_key(|&(p, a)| (255 - p, a));
        let got = s.by_priority(None, 100).unwrap();
        assert_eq!(got.iter().map(|m| (m.priority.0, m.arrival)).collect::<Vec<_>>(), by_prio);
        let timers: Vec<u64> =
            all.iter().filter(|(m, _)| m.id.creation.sequence % 4 == 2).map(|(m, _)| m.arrival).collect();
        assert_eq!(arrivals(s.custody_due(DtnTime(u64::MAX), 100).unwrap()), timers);
        assert_eq!(s.select(&s.summary(), 100).unwrap().len(), all.len());

        // An old record moved to another priority keeps its bytes where they were; others are removed.
        let mut m = all[0].0.clone();
        m.priority = Priority(7);
        m.custody = Custody::Held;
        let mut ops = vec![WriteOp::Update(m.clone())];
        ops.extend(all[1..10].iter().map(|(m, _)| WriteOp::Remove { id: m.id.clone(), tombstone: None }));
        s.commit(WriteBatch { now: DtnTime(0), ops }).unwrap();
        s.close();
        let s = LmdbStore::open(dir.path(), Options::default()).unwrap();
        let r = s.check(true).unwrap();
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(s.usage().bundles, 15);
        assert_eq!(s.meta(&m.id).unwrap(), Some(m.clone()));
        assert_eq!(s.by_priority(None, 1).unwrap(), vec![m.clone()]);
        assert_eq!(read_to_vec(s.read_bundle(&m.id).unwrap()).unwrap(), all[0].1);
        let used: u64 = all.iter().filter(|(b, _)| b.arrival == 0 || b.arrival >= 10).map(|(b, _)| b.size).sum();
        assert_eq!(s.usage().bytes, used);
    }
}
