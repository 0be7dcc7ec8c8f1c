//! On-disk records: a format-version byte, then postcard.
//!
//! Each record type has one frozen struct per format version. Reading dispatches on the version byte and
//! converts older versions to the current one, so a store written by an older build opens without a
//! migration pass; writing always uses the current version. To change a record: copy the current struct to
//! a new `…V{n+1}`, bump [`CURRENT`], add the arm in `decode` with a conversion from the old struct, and keep
//! the old struct unchanged forever (see docs/store.md).

use dtn_core::bpv7::{BundleId, CreationTimestamp, DtnTime, Eid};
use dtn_core::store::{
    BundleMeta, Custody, Delivery, PartialBundle, Priority, SeqMode, StagedId, Tombstone, TombstoneReason,
};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Newest record format this build writes and reads.
pub const CURRENT: u8 = 1;

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_extend(value, vec![CURRENT]).map_err(|e| StoreError::Invalid(format!("record cannot be encoded: {e}")))
}

fn decode<'a, T: Deserialize<'a>>(what: &str, bytes: &'a [u8]) -> Result<T, StoreError> {
    match bytes.first() {
        Some(&CURRENT) => postcard::from_bytes(&bytes[1..])
            .map_err(|e| StoreError::Corrupt { what: what.into(), detail: e.to_string() }),
        Some(&v) if v > CURRENT => Err(StoreError::UnsupportedFormat { found: v, supported: CURRENT }),
        Some(&v) => Err(StoreError::Corrupt { what: what.into(), detail: format!("unknown record version {v}") }),
        None => Err(StoreError::Corrupt { what: what.into(), detail: "empty record".into() }),
    }
}

/// Where a bundle's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Location {
    /// In the `data` table under the bundle's arrival number.
    Inline,
    /// In payload file number n.
    File(u64),
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
    location: Location,
}

/// Encodes a bundle's record.
pub fn encode_meta(m: &BundleMeta, loc: Location) -> Result<Vec<u8>, StoreError> {
    let (custody, custody_deadline, custody_attempts) = match m.custody {
        Custody::None => (0, 0, 0),
        Custody::Held => (1, 0, 0),
        Custody::Transferring { deadline, attempts } => (2, deadline.0, attempts),
    };
    encode(&MetaV1 {
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
    })
}

fn eid(what: &str, b: &[u8]) -> Result<Eid, StoreError> {
    Eid::from_cbor(b).map_err(|e| StoreError::Corrupt { what: what.into(), detail: e.to_string() })
}

/// Decodes a bundle's record.
pub fn decode_meta(bytes: &[u8]) -> Result<(BundleMeta, Location), StoreError> {
    let r: MetaV1 = decode("bundle record", bytes)?;
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
    Ok((meta, r.location))
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
    encode(&TombV1 {
        reason: match t.reason {
            TombstoneReason::Delivered => 256,
            TombstoneReason::Forwarded => 257,
            TombstoneReason::Deleted(c) => u16::from(c),
        },
        expires_at: t.expires_at.0,
        unique_seq: t.seq_mode == SeqMode::Unique,
    })
}

/// Decodes a tombstone.
pub fn decode_tomb(bytes: &[u8]) -> Result<Tombstone, StoreError> {
    let r: TombV1 = decode("tombstone", bytes)?;
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
    encode(&PartialV1 {
        source: p.id.source.to_cbor(),
        time: p.id.creation.time.0,
        seq: p.id.creation.sequence,
        fragment: p.id.fragment,
        file: p.staged.0,
        total_len: p.total_len,
        durable_len: p.durable_len,
        expires_at: p.expires_at.0,
        from: p.from.as_ref().map(Eid::to_cbor),
    })
}

/// Decodes a partial bundle's record.
pub fn decode_partial(bytes: &[u8]) -> Result<PartialBundle, StoreError> {
    let r: PartialV1 = decode("partial bundle", bytes)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_and_garbage_records_are_clear_errors() {
        assert!(matches!(decode_meta(&[9, 1, 2]), Err(StoreError::UnsupportedFormat { found: 9, supported: 1 })));
        assert!(matches!(decode_meta(&[1, 0xff]), Err(StoreError::Corrupt { .. })));
        assert!(matches!(decode_tomb(&[]), Err(StoreError::Corrupt { .. })));
        assert!(matches!(decode_partial(&[0]), Err(StoreError::Corrupt { .. })));
    }
}
