//! On-disk records: a format-version byte, then postcard (and, for a bundle kept inline, its bytes).
//!
//! Each record type has one frozen struct per format version. Reading dispatches on the version byte and
//! converts older versions to the current one, so a store written by an older build opens without a
//! migration pass; writing always uses the current version. To change a record: copy its current struct to
//! a new `…V{n+1}`, bump its version constant (and [`FORMAT`]), add the arm in its decoder with a conversion
//! from the old struct, and keep the old struct unchanged forever (see docs/store.md).

use dtn_core::bpv7::{BundleId, CreationTimestamp, DtnTime, Eid};
use dtn_core::store::{
    BundleMeta, Custody, Delivery, PartialBundle, Priority, SeqMode, StagedId, Tombstone, TombstoneReason,
};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Newest store format this build writes and reads (the `format` value in the `info` table). Format 2
/// keys records by priority and arrival, keeps inline bundles in their record, names the priority in every
/// index entry, and keeps the expiry of replicas only in the eviction index (see `migrate_from_1`).
pub const FORMAT: u8 = 2;

/// Newest version of each record.
const META: u8 = 2;
const TOMB: u8 = 1;
const PARTIAL: u8 = 1;

fn encode<T: Serialize>(version: u8, value: &T, out: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    let mut out = out;
    out.push(version);
    postcard::to_extend(value, out).map_err(|e| StoreError::Invalid(format!("record cannot be encoded: {e}")))
}

/// The record's version byte, checked against the newest this build reads, and the bytes after it.
fn version<'a>(what: &str, bytes: &'a [u8], newest: u8) -> Result<(u8, &'a [u8]), StoreError> {
    match bytes.split_first() {
        Some((&v, _)) if v > newest => Err(StoreError::UnsupportedFormat { found: v, supported: newest }),
        Some((&v, rest)) if v >= 1 => Ok((v, rest)),
        Some((&v, _)) => Err(StoreError::Corrupt { what: what.into(), detail: format!("unknown record version {v}") }),
        None => Err(StoreError::Corrupt { what: what.into(), detail: "empty record".into() }),
    }
}

fn decode<'a, T: Deserialize<'a>>(what: &str, bytes: &'a [u8], newest: u8) -> Result<T, StoreError> {
    let (_, rest) = version(what, bytes, newest)?;
    postcard::from_bytes(rest).map_err(|e| StoreError::Corrupt { what: what.into(), detail: e.to_string() })
}

/// Where a bundle's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Location {
    /// In the `data` table under the bundle's arrival number (format 1 records).
    Inline,
    /// In payload file number n.
    File(u64),
    /// In the record itself, after the metadata.
    Here,
}

/// Where a format-1 record's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum LocationV1 {
    Inline,
    File(u64),
}

/// Bundle metadata, format 2: format 1 with the bundle's bytes after the record when `location` is
/// [`Location::Here`].
#[derive(Debug, Serialize, Deserialize)]
struct MetaV2 {
    source: Vec<u8>,
    time: u64,
    seq: u64,
    fragment: Option<(u64, u64)>,
    destination: Vec<u8>,
    unique_seq: bool,
    arrival: u64,
    received_at: u64,
    expires_at: u64,
    size: u64,
    priority: u8,
    /// 0 none, 1 held, 2 transferring.
    custody: u8,
    custody_deadline: u64,
    custody_attempts: u32,
    /// 0 forward, 1 local pending, 2 delivered.
    delivery: u8,
    total_adu_len: Option<u64>,
    copies: u32,
    location: Location,
}

impl From<MetaV1> for MetaV2 {
    fn from(r: MetaV1) -> Self {
        MetaV2 {
            source: r.source,
            time: r.time,
            seq: r.seq,
            fragment: r.fragment,
            destination: r.destination,
            unique_seq: r.unique_seq,
            arrival: r.arrival,
            received_at: r.received_at,
            expires_at: r.expires_at,
            size: r.size,
            priority: r.priority,
            custody: r.custody,
            custody_deadline: r.custody_deadline,
            custody_attempts: r.custody_attempts,
            delivery: r.delivery,
            total_adu_len: r.total_adu_len,
            copies: r.copies,
            location: match r.location {
                LocationV1::Inline => Location::Inline,
                LocationV1::File(n) => Location::File(n),
            },
        }
    }
}

/// Bundle metadata, format 1.
#[derive(Debug, Serialize, Deserialize)]
struct MetaV1 {
    source: Vec<u8>,
    time: u64,
    seq: u64,
    fragment: Option<(u64, u64)>,
    destination: Vec<u8>,
    unique_seq: bool,
    arrival: u64,
    received_at: u64,
    expires_at: u64,
    size: u64,
    priority: u8,
    /// 0 none, 1 held, 2 transferring.
    custody: u8,
    custody_deadline: u64,
    custody_attempts: u32,
    /// 0 forward, 1 local pending, 2 delivered.
    delivery: u8,
    total_adu_len: Option<u64>,
    copies: u32,
    location: LocationV1,
}

/// Encodes a bundle's record after `out` (which it returns); for [`Location::Here`] the caller appends the
/// bundle's bytes.
pub fn encode_meta(m: &BundleMeta, loc: Location, out: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    let (custody, custody_deadline, custody_attempts) = match m.custody {
        Custody::None => (0, 0, 0),
        Custody::Held => (1, 0, 0),
        Custody::Transferring { deadline, attempts } => (2, deadline.0, attempts),
    };
    let record = MetaV2 {
        source: m.id.source.to_cbor(),
        time: m.id.creation.time.0,
        seq: m.id.creation.sequence,
        fragment: m.id.fragment,
        destination: m.destination.to_cbor(),
        unique_seq: m.seq_mode == SeqMode::Unique,
        arrival: m.arrival,
        received_at: m.received_at.0,
        expires_at: m.expires_at.0,
        size: m.size,
        priority: m.priority.0,
        custody,
        custody_deadline,
        custody_attempts,
        delivery: match m.delivery {
            Delivery::Forward => 0,
            Delivery::LocalPending => 1,
            Delivery::Delivered => 2,
        },
        total_adu_len: m.total_adu_len,
        copies: m.copies,
        location: loc,
    };
    encode(META, &record, out)
}

fn eid(what: &str, b: &[u8]) -> Result<Eid, StoreError> {
    Eid::from_cbor(b).map_err(|e| StoreError::Corrupt { what: what.into(), detail: e.to_string() })
}

/// Decodes a bundle's record; the bytes after it are the bundle's when its location is [`Location::Here`].
pub fn decode_meta(bytes: &[u8]) -> Result<(BundleMeta, Location, &[u8]), StoreError> {
    let what = "bundle record";
    let corrupt = |e: postcard::Error| StoreError::Corrupt { what: what.into(), detail: e.to_string() };
    let (r, rest): (MetaV2, &[u8]) = match version(what, bytes, META)? {
        (1, b) => (postcard::from_bytes::<MetaV1>(b).map_err(corrupt)?.into(), &[]),
        (_, b) => postcard::take_from_bytes(b).map_err(corrupt)?,
    };
    let meta = BundleMeta {
        id: BundleId {
            source: eid("bundle source", &r.source)?,
            creation: CreationTimestamp::new(r.time, r.seq),
            fragment: r.fragment,
        },
        destination: eid("bundle destination", &r.destination)?,
        seq_mode: if r.unique_seq { SeqMode::Unique } else { SeqMode::PerTime },
        arrival: r.arrival,
        received_at: DtnTime(r.received_at),
        expires_at: DtnTime(r.expires_at),
        size: r.size,
        priority: Priority(r.priority),
        custody: match r.custody {
            0 => Custody::None,
            1 => Custody::Held,
            _ => Custody::Transferring { deadline: DtnTime(r.custody_deadline), attempts: r.custody_attempts },
        },
        delivery: match r.delivery {
            0 => Delivery::Forward,
            1 => Delivery::LocalPending,
            _ => Delivery::Delivered,
        },
        total_adu_len: r.total_adu_len,
        copies: r.copies,
    };
    Ok((meta, r.location, rest))
}

/// Tombstone, format 1.
#[derive(Debug, Serialize, Deserialize)]
struct TombV1 {
    /// 256 for delivered, 257 for forwarded, else the deletion reason code.
    reason: u16,
    expires_at: u64,
    unique_seq: bool,
}

/// Encodes a tombstone.
pub fn encode_tomb(t: &Tombstone) -> Result<Vec<u8>, StoreError> {
    let record = TombV1 {
        reason: match t.reason {
            TombstoneReason::Delivered => 256,
            TombstoneReason::Forwarded => 257,
            TombstoneReason::Deleted(c) => u16::from(c),
        },
        expires_at: t.expires_at.0,
        unique_seq: t.seq_mode == SeqMode::Unique,
    };
    encode(TOMB, &record, Vec::with_capacity(16))
}

/// Decodes a tombstone.
pub fn decode_tomb(bytes: &[u8]) -> Result<Tombstone, StoreError> {
    let r: TombV1 = decode("tombstone", bytes, TOMB)?;
    Ok(Tombstone {
        reason: match u8::try_from(r.reason) {
            Ok(code) => TombstoneReason::Deleted(code),
            Err(_) if r.reason == 257 => TombstoneReason::Forwarded,
            Err(_) => TombstoneReason::Delivered,
        },
        expires_at: DtnTime(r.expires_at),
        seq_mode: if r.unique_seq { SeqMode::Unique } else { SeqMode::PerTime },
    })
}

/// Partial bundle, format 1.
#[derive(Debug, Serialize, Deserialize)]
struct PartialV1 {
    source: Vec<u8>,
    time: u64,
    seq: u64,
    fragment: Option<(u64, u64)>,
    file: u64,
    total_len: u64,
    durable_len: u64,
    expires_at: u64,
    from: Option<Vec<u8>>,
}

/// Encodes a partial bundle's record.
pub fn encode_partial(p: &PartialBundle) -> Result<Vec<u8>, StoreError> {
    let record = PartialV1 {
        source: p.id.source.to_cbor(),
        time: p.id.creation.time.0,
        seq: p.id.creation.sequence,
        fragment: p.id.fragment,
        file: p.staged.0,
        total_len: p.total_len,
        durable_len: p.durable_len,
        expires_at: p.expires_at.0,
        from: p.from.as_ref().map(Eid::to_cbor),
    };
    encode(PARTIAL, &record, Vec::new())
}

/// Decodes a partial bundle's record.
pub fn decode_partial(bytes: &[u8]) -> Result<PartialBundle, StoreError> {
    let r: PartialV1 = decode("partial bundle", bytes, PARTIAL)?;
    Ok(PartialBundle {
        id: BundleId {
            source: eid("partial source", &r.source)?,
            creation: CreationTimestamp::new(r.time, r.seq),
            fragment: r.fragment,
        },
        staged: StagedId(r.file),
        total_len: r.total_len,
        durable_len: r.durable_len,
        expires_at: DtnTime(r.expires_at),
        from: r.from.map(|b| eid("partial sender", &b)).transpose()?,
    })
}

/// A bundle's record as format 1 wrote it (tests of reading old stores).
#[cfg(test)]
pub(crate) fn encode_meta_v1(m: &BundleMeta, file: Option<u64>) -> Vec<u8> {
    let r = postcard::from_bytes::<MetaV2>(&encode_meta(m, Location::Here, Vec::new()).expect("encodes")[1..])
        .expect("decodes");
    let v1 = MetaV1 {
        source: r.source,
        time: r.time,
        seq: r.seq,
        fragment: r.fragment,
        destination: r.destination,
        unique_seq: r.unique_seq,
        arrival: r.arrival,
        received_at: r.received_at,
        expires_at: r.expires_at,
        size: r.size,
        priority: r.priority,
        custody: r.custody,
        custody_deadline: r.custody_deadline,
        custody_attempts: r.custody_attempts,
        delivery: r.delivery,
        total_adu_len: r.total_adu_len,
        copies: r.copies,
        location: file.map_or(LocationV1::Inline, LocationV1::File),
    };
    encode(1, &v1, Vec::new()).expect("encodes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_and_garbage_records_are_clear_errors() {
        assert!(matches!(decode_meta(&[9, 1, 2]), Err(StoreError::UnsupportedFormat { found: 9, supported: 2 })));
        assert!(matches!(decode_meta(&[1, 0xff]), Err(StoreError::Corrupt { .. })));
        assert!(matches!(decode_tomb(&[]), Err(StoreError::Corrupt { .. })));
        assert!(matches!(decode_partial(&[0]), Err(StoreError::Corrupt { .. })));
    }
}
