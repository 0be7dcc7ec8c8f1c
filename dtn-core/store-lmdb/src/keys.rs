//! Binary keys for the LMDB tables. Big-endian numbers so that byte order is numeric order, and a
//! self-delimiting EID form so that a source's bundles sit together under one prefix.

use dtn_core::bpv7::{BundleId, CreationTimestamp, DtnEid, Eid, IpnEid, IpnForm, UnknownEid};

/// LMDB refuses keys over 511 bytes; this leaves room for the numbers that follow an EID.
pub const MAX_EID_KEY: usize = 400;

/// Appends the key form of an EID: equal EIDs (by meaning) give equal keys.
pub fn put_eid(out: &mut Vec<u8>, eid: &Eid) {
    match eid {
        Eid::Null => out.push(0),
        Eid::Ipn(i) if i.fqnn == 0 => out.push(0),
        Eid::Dtn(d) => {
            out.push(1);
            // A dtn SSP is visible ASCII, so a zero byte cannot occur in it and ends it unambiguously.
            out.extend_from_slice(d.ssp().as_bytes());
            out.push(0);
        }
        Eid::Ipn(i) => {
            out.push(2);
            out.extend_from_slice(&i.fqnn.to_be_bytes());
            out.extend_from_slice(&i.service.to_be_bytes());
        }
        Eid::Unknown(u) => {
            out.push(3);
            out.extend_from_slice(&u.scheme.to_be_bytes());
            out.extend_from_slice(&(u.ssp.len() as u32).to_be_bytes());
            out.extend_from_slice(&u.ssp);
        }
    }
}

/// The key form of an EID alone.
pub fn eid_key(eid: &Eid) -> Vec<u8> {
    let mut v = Vec::with_capacity(24);
    put_eid(&mut v, eid);
    v
}

/// Reads an EID key from the start of `b`; returns it and the bytes used.
pub fn take_eid(b: &[u8]) -> Option<(Eid, usize)> {
    match *b.first()? {
        0 => Some((Eid::Null, 1)),
        1 => {
            let end = b[1..].iter().position(|&c| c == 0)? + 1;
            let ssp = std::str::from_utf8(&b[1..end]).ok()?;
            Some((Eid::Dtn(DtnEid::from_ssp(ssp).ok()?), end + 1))
        }
        2 => {
            let fqnn = be64(b.get(1..9)?);
            let service = be64(b.get(9..17)?);
            let form = if fqnn >> 32 == 0 { IpnForm::TwoElement } else { IpnForm::ThreeElement };
            Some((Eid::Ipn(IpnEid { fqnn, service, form }), 17))
        }
        3 => {
            let scheme = be64(b.get(1..9)?);
            let len = u32::from_be_bytes(b.get(9..13)?.try_into().ok()?) as usize;
            let ssp = b.get(13..13 + len)?;
            Some((Eid::Unknown(UnknownEid { scheme, ssp: ssp.into() }), 13 + len))
        }
        _ => None,
    }
}

/// `source ‖ time ‖ sequence ‖ 0` or `… ‖ 1 ‖ offset ‖ length` for fragments.
pub fn id_key(id: &BundleId) -> Vec<u8> {
    let mut v = Vec::with_capacity(48);
    put_eid(&mut v, &id.source);
    v.extend_from_slice(&id.creation.time.0.to_be_bytes());
    v.extend_from_slice(&id.creation.sequence.to_be_bytes());
    match id.fragment {
        None => v.push(0),
        Some((off, len)) => {
            v.push(1);
            v.extend_from_slice(&off.to_be_bytes());
            v.extend_from_slice(&len.to_be_bytes());
        }
    }
    v
}

/// Inverse of [`id_key`].
pub fn parse_id_key(b: &[u8]) -> Option<BundleId> {
    let (source, n) = take_eid(b)?;
    let rest = &b[n..];
    let time = be64(rest.get(0..8)?);
    let seq = be64(rest.get(8..16)?);
    let fragment = match *rest.get(16)? {
        0 if rest.len() == 17 => None,
        1 if rest.len() == 33 => Some((be64(&rest[17..25]), be64(&rest[25..33]))),
        _ => return None,
    };
    Some(BundleId { source, creation: CreationTimestamp::new(time, seq), fragment })
}

/// Where a bundle's record is: its priority and its arrival number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rec {
    /// The bundle's priority.
    pub priority: u8,
    /// The bundle's arrival number.
    pub arrival: u64,
}

impl Rec {
    /// The record's key, `(255 − priority) ‖ arrival`: the records themselves are in transmission order.
    pub fn key(self) -> [u8; 9] {
        let mut k = [0u8; 9];
        k[0] = 255 - self.priority;
        k[1..].copy_from_slice(&self.arrival.to_be_bytes());
        k
    }

    /// Inverse of [`Rec::key`].
    pub fn from_key(k: &[u8]) -> Option<Rec> {
        match k {
            [p, a @ ..] if a.len() == 8 => Some(Rec { priority: 255 - p, arrival: be64(a) }),
            _ => None,
        }
    }

    /// The `ids` value: arrival ‖ keying mode (1 = unique sequence numbers) ‖ priority.
    pub fn id_value(self, unique: bool) -> [u8; 10] {
        let mut v = [0u8; 10];
        v[..8].copy_from_slice(&self.arrival.to_be_bytes());
        v[8] = u8::from(unique);
        v[9] = self.priority;
        v
    }

    /// The record an `ids` value names.
    pub fn from_id_value(v: &[u8]) -> Option<Rec> {
        (v.len() == 10).then(|| Rec { priority: v[9], arrival: be64(&v[..8]) })
    }

    /// The record a `useq` value names, and the bundle's creation time.
    pub fn from_seq_value(v: &[u8]) -> Option<(Rec, u64)> {
        (v.len() == 17).then(|| (Rec { priority: v[8], arrival: be64(&v[..8]) }, be64(&v[9..])))
    }

    /// The `useq` value: arrival ‖ priority ‖ creation time, so that the entry gives the whole bundle ID.
    pub fn seq_value(self, time: u64) -> [u8; 17] {
        let mut v = [0u8; 17];
        v[..8].copy_from_slice(&self.arrival.to_be_bytes());
        v[8] = self.priority;
        v[9..].copy_from_slice(&time.to_be_bytes());
        v
    }
}

/// Concatenates big-endian numbers after a prefix.
pub fn cat(prefix: &[u8], nums: &[u64]) -> Vec<u8> {
    let mut v = Vec::with_capacity(prefix.len() + nums.len() * 8);
    v.extend_from_slice(prefix);
    for n in nums {
        v.extend_from_slice(&n.to_be_bytes());
    }
    v
}

/// Big-endian u64 from exactly 8 bytes (shorter input reads as zero-padded; callers pass 8).
pub fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    let n = b.len().min(8);
    a[8 - n..].copy_from_slice(&b[..n]);
    u64::from_be_bytes(a)
}

/// The last 8 bytes of a key as a big-endian u64 (index keys end with the arrival number).
pub fn tail64(b: &[u8]) -> u64 {
    be64(&b[b.len().saturating_sub(8)..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_keys_roundtrip_and_sort_by_source_then_time() {
        let ids = [
            BundleId { source: Eid::dtn("a", "x").unwrap(), creation: CreationTimestamp::new(5, 1), fragment: None },
            BundleId { source: Eid::ipn(3, 1), creation: CreationTimestamp::new(1, 9), fragment: Some((4, 5)) },
            BundleId {
                source: Eid::Unknown(UnknownEid { scheme: 9, ssp: vec![0x41].into() }),
                creation: CreationTimestamp::new(0, 0),
                fragment: None,
            },
            BundleId { source: Eid::Null, creation: CreationTimestamp::new(0, 0), fragment: None },
        ];
        for id in &ids {
            assert_eq!(parse_id_key(&id_key(id)).as_ref(), Some(id));
        }
        let a = id_key(&BundleId { source: Eid::ipn(3, 1), creation: CreationTimestamp::new(1, 300), fragment: None });
        let b = id_key(&BundleId { source: Eid::ipn(3, 1), creation: CreationTimestamp::new(2, 0), fragment: None });
        assert!(a < b);
        assert!(parse_id_key(&[1, b'x']).is_none());
        assert!(parse_id_key(&[7]).is_none());
    }
}
