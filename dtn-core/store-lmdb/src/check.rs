//! Integrity check: every record decodes, every index entry matches a record and vice versa, counters
//! equal what is stored, payload files exist with the recorded size, and (optionally) every bundle decodes
//! with valid CRCs.

use std::fs;
use std::io::Read;

use dtn_core::bpv7::{Bundle, Limits, StreamDecoder};
use dtn_core::store::{Custody, SeqMode};
use heed::RoTxn;

use crate::keys::{Rec, cat, eid_key, id_key};
use crate::record::{self, Location};
use crate::writer::tomb_exp_key;
use crate::{Db, Result, Shared, db_err, payload};

/// What [`crate::LmdbStore::check`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Bundles checked.
    pub bundles: u64,
    /// Bytes of bundles checked.
    pub bytes: u64,
    /// Every inconsistency found; empty for a sound store.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// Whether the store is sound.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn count(db: &Db, rtxn: &RoTxn) -> Result<u64> {
    db.len(rtxn).map_err(db_err("counting"))
}

fn has(db: &Db, rtxn: &RoTxn, k: &[u8]) -> Result<bool> {
    Ok(db.get(rtxn, k).map_err(db_err("checking an index"))?.is_some())
}

/// Whether `db` holds `k` with exactly the value `v`.
fn holds(db: &Db, rtxn: &RoTxn, k: &[u8], v: &[u8]) -> Result<bool> {
    Ok(db.get(rtxn, k).map_err(db_err("checking an index"))? == Some(v))
}

pub(crate) fn run(s: &Shared, rtxn: &RoTxn, verify_bundles: bool) -> Result<CheckReport> {
    let d = &s.dbs;
    let mut r = CheckReport::default();
    let (mut replicas, mut transferring, mut unique, mut files) = (0u64, 0u64, 0u64, 0u64);
    let mut inline_here = 0u64;
    let mut used = 0u64;
    let mut last_arrival = None;
    for item in d.meta.iter(rtxn).map_err(db_err("reading records"))? {
        let (k, v) = item.map_err(db_err("reading records"))?;
        let Some(rec) = Rec::from_key(k) else {
            r.problems.push(format!("record key {}", crate::hex(k)));
            continue;
        };
        let a = rec.arrival;
        last_arrival = last_arrival.max(Some(a));
        let (m, loc, here) = match record::decode_meta(v) {
            Ok(x) => x,
            Err(e) => {
                r.problems.push(format!("record {a}: {e}"));
                continue;
            }
        };
        r.bundles += 1;
        r.bytes += m.size;
        used += m.size;
        let mut need = |ok: bool, what: &str| {
            if !ok {
                r.problems.push(format!("bundle {} (arrival {a}): {what}", m.id));
            }
        };
        need(m.arrival == a, "arrival number differs from its key");
        need(m.priority.0 == rec.priority, "priority differs from its key");
        let p = [rec.priority];
        let idv = rec.id_value(m.seq_mode == SeqMode::Unique);
        need(holds(&d.ids, rtxn, &id_key(&m.id), &idv)?, "id index");
        need(holds(&d.dest, rtxn, &cat(&eid_key(&m.destination), &[a]), &p)?, "destination index");
        let expiry = cat(&[], &[m.expires_at.0, a]);
        let size_p = [&m.size.to_be_bytes()[..], &p].concat();
        match m.custody {
            Custody::None => {
                // A replica's expiry is in the eviction index alone.
                replicas += 1;
                let k = cat(&p, &[m.expires_at.0, a]);
                need(holds(&d.evict, rtxn, &k, &m.size.to_be_bytes())?, "eviction index");
                need(!has(&d.expiry, rtxn, &expiry)?, "a replica in the expiry index");
            }
            Custody::Transferring { deadline, .. } => {
                transferring += 1;
                need(holds(&d.custody, rtxn, &cat(&[], &[deadline.0, a]), &p)?, "custody timer index");
                need(holds(&d.expiry, rtxn, &expiry, &size_p)?, "expiry index");
            }
            Custody::Held => need(holds(&d.expiry, rtxn, &expiry, &size_p)?, "expiry index"),
        }
        if m.id.fragment.is_none() && m.seq_mode == SeqMode::Unique {
            unique += 1;
            let k = cat(&eid_key(&m.id.source), &[m.id.creation.sequence]);
            need(holds(&d.useq, rtxn, &k, &rec.seq_value(m.id.creation.time.0))?, "sequence index");
        }
        let mut check_bytes = |b: &[u8]| {
            need(b.len() as u64 == m.size, "stored bytes differ in length from the record");
            if verify_bundles {
                let lim = Limits { require_primary_crc: false, ..Limits::default() };
                match Bundle::decode_with(b, &lim) {
                    Ok(bd) => need(bd.id() == m.id, "bundle bytes carry another ID"),
                    Err(e) => need(false, &format!("bundle bytes do not decode: {e}")),
                }
            }
        };
        match loc {
            Location::Here => {
                inline_here += 1;
                check_bytes(here)
            }
            Location::Inline => match d.data.get(rtxn, &a.to_be_bytes()).map_err(db_err("reading bytes"))? {
                None => need(false, "bytes missing"),
                Some(b) => check_bytes(b),
            },
            Location::File(n) => {
                files += 1;
                need(has(&d.files, rtxn, &n.to_be_bytes())?, "payload file not registered");
                let p = payload::path(&s.payload_dir, n);
                match fs::metadata(&p) {
                    Err(e) => need(false, &format!("payload file {}: {e}", p.display())),
                    Ok(md) => {
                        need(md.len() == m.size, "payload file length differs from the record");
                        if verify_bundles {
                            match verify_stream(&p) {
                                Ok(id) => need(id == m.id, "payload file carries another ID"),
                                Err(e) => need(false, &format!("payload file does not decode: {e}")),
                            }
                        }
                    }
                }
            }
        }
    }
    let mut partial_files = 0;
    for item in d.partials.iter(rtxn).map_err(db_err("reading partials"))? {
        let (_, v) = item.map_err(db_err("reading partials"))?;
        match record::decode_partial(v) {
            Ok(p) => {
                used += p.total_len;
                partial_files += 1;
                let len = fs::metadata(payload::path(&s.payload_dir, p.staged.0)).map(|m| m.len()).unwrap_or(0);
                if len < p.durable_len {
                    r.problems.push(format!("partial {}: file holds {len} of {} durable bytes", p.id, p.durable_len));
                }
            }
            Err(e) => r.problems.push(format!("partial record: {e}")),
        }
    }
    let mut tombs = 0;
    for item in d.tombs.iter(rtxn).map_err(db_err("reading tombstones"))? {
        let (k, v) = item.map_err(db_err("reading tombstones"))?;
        tombs += 1;
        match record::decode_tomb(v) {
            Ok(t) if !has(&d.tomb_exp, rtxn, &tomb_exp_key(t.expires_at, k))? => {
                r.problems.push(format!("tombstone {}: no expiry index entry", crate::hex(k)));
            }
            Ok(_) => {}
            Err(e) => r.problems.push(format!("tombstone {}: {e}", crate::hex(k))),
        }
    }
    let n = r.bundles;
    let c = *s.counters.lock().unwrap_or_else(|e| e.into_inner());
    let expect = [
        ("ids", count(&d.ids, rtxn)?, n),
        ("dest", count(&d.dest, rtxn)?, n),
        ("expiry", count(&d.expiry, rtxn)?, n - replicas),
        ("prio (format 1 only)", count(&d.prio, rtxn)?, 0),
        ("evict", count(&d.evict, rtxn)?, replicas),
        ("custody", count(&d.custody, rtxn)?, transferring),
        ("useq", count(&d.useq, rtxn)?, unique),
        ("data", count(&d.data, rtxn)?, n - files - inline_here),
        ("files", count(&d.files, rtxn)?, files + partial_files),
        ("tomb_exp", count(&d.tomb_exp, rtxn)?, tombs),
        ("bundle counter", c.bundles, n),
        ("byte counter", c.used, used),
        ("tombstone counter", c.tombstones, tombs),
    ];
    for (what, got, want) in expect {
        if got != want {
            r.problems.push(format!("{what}: {got} entries, expected {want}"));
        }
    }
    if last_arrival.is_some_and(|a| a >= c.next_arrival) {
        r.problems.push("arrival counter behind the records".into());
    }
    Ok(r)
}

/// Stream-decodes a payload file, checking every CRC, without reading it into memory.
fn verify_stream(path: &std::path::Path) -> std::result::Result<dtn_core::bpv7::BundleId, String> {
    struct Discard;
    impl dtn_core::bpv7::PayloadSink for Discard {
        fn on_payload(&mut self, _: &[u8]) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut f = fs::File::open(path).map_err(|e| e.to_string())?;
    let lim = Limits { require_primary_crc: false, ..Limits::default() };
    let mut dec = StreamDecoder::new(lim);
    let mut sink = Discard;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        let mut off = 0;
        while off < n {
            let fed = dec.feed(&buf[off..n], &mut sink).map_err(|e| e.to_string())?;
            off += fed.consumed;
            if fed.done && off < n {
                return Err("bytes after the end of the bundle".into());
            }
        }
    }
    dec.finish().map_err(|e| e.to_string())?;
    let header = dec.take_header().ok_or("no bundle")?;
    Ok(header.id())
}
