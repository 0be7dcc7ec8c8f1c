//! The primary block (RFC 9171 §4.3.1) and the bundle processing control flags (§4.2.3).

use std::ops::{BitOr, BitOrAssign};

use super::Limits;
use super::cbor::{MAJOR_ARRAY, MAJOR_UINT, Reader, Result, head_len, write_head};
use super::crc::{self, CrcType};
use super::eid::Eid;
use super::error::{DecodeError, ErrorKind};
use super::time::{CreationTimestamp, DtnTime};

/// Bundle processing control flags (RFC 9171 §4.2.3). Unknown bits are kept as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BundleFlags(pub u64);

impl BundleFlags {
    /// The bundle is a fragment.
    pub const IS_FRAGMENT: Self = Self(0x0001);
    /// The payload is an administrative record.
    pub const ADMIN_RECORD: Self = Self(0x0002);
    /// The bundle must not be fragmented.
    pub const MUST_NOT_FRAGMENT: Self = Self(0x0004);
    /// The destination application should acknowledge receipt.
    pub const APP_ACK_REQUESTED: Self = Self(0x0020);
    /// Status reports should carry the time of the reported event.
    pub const STATUS_TIME_REQUESTED: Self = Self(0x0040);
    /// Report bundle reception.
    pub const REPORT_RECEPTION: Self = Self(0x4000);
    /// Report bundle forwarding.
    pub const REPORT_FORWARDING: Self = Self(0x1_0000);
    /// Report bundle delivery.
    pub const REPORT_DELIVERY: Self = Self(0x2_0000);
    /// Report bundle deletion.
    pub const REPORT_DELETION: Self = Self(0x4_0000);
    /// All four status-report request flags.
    pub const ALL_REPORTS: Self = Self(0x4000 | 0x1_0000 | 0x2_0000 | 0x4_0000);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }
    /// Names of the set flags, for display.
    pub fn names(self) -> Vec<&'static str> {
        flag_names(
            self.0,
            &[
                (0x0001, "is_fragment"),
                (0x0002, "admin_record"),
                (0x0004, "must_not_fragment"),
                (0x0020, "app_ack_requested"),
                (0x0040, "status_time_requested"),
                (0x4000, "report_reception"),
                (0x1_0000, "report_forwarding"),
                (0x2_0000, "report_delivery"),
                (0x4_0000, "report_deletion"),
            ],
        )
    }
}

/// Names of the bits of `bits` found in `table`, plus "unassigned_bits" if any other bit is set.
pub(crate) fn flag_names(bits: u64, table: &[(u64, &'static str)]) -> Vec<&'static str> {
    let mut v: Vec<&str> = table.iter().filter(|(b, _)| bits & b != 0).map(|(_, n)| *n).collect();
    if bits & !table.iter().fold(0, |a, (b, _)| a | b) != 0 {
        v.push("unassigned_bits");
    }
    v
}

impl BitOr for BundleFlags {
    type Output = Self;
    fn bitor(self, o: Self) -> Self {
        Self(self.0 | o.0)
    }
}
impl BitOrAssign for BundleFlags {
    fn bitor_assign(&mut self, o: Self) {
        self.0 |= o.0;
    }
}

/// Fragment position: offset of this fragment's payload in the original ADU, and the ADU's total length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentInfo {
    /// Offset of the payload within the original application data unit.
    pub offset: u64,
    /// Length of the original application data unit.
    pub total_adu_len: u64,
}

/// The primary block, decoded. The protocol version is always 7: other versions are rejected on decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryBlock {
    /// Bundle processing control flags.
    pub flags: BundleFlags,
    /// CRC carried by the primary block.
    pub crc_type: CrcType,
    /// Destination endpoint.
    pub destination: Eid,
    /// Source node (the bundle's creator).
    pub source: Eid,
    /// Where status reports go.
    pub report_to: Eid,
    /// Creation timestamp.
    pub creation: CreationTimestamp,
    /// Lifetime in milliseconds after creation.
    pub lifetime_ms: u64,
    /// Present exactly when the bundle is a fragment.
    pub fragment: Option<FragmentInfo>,
}

impl PrimaryBlock {
    fn items(&self) -> u64 {
        8 + if self.fragment.is_some() { 2 } else { 0 } + u64::from(self.crc_type != CrcType::None)
    }

    /// Exact encoded size.
    pub fn encoded_len(&self) -> usize {
        let mut n = 1 + 1 + head_len(self.flags.0) + 1;
        n += self.destination.encoded_len() + self.source.encoded_len() + self.report_to.encoded_len();
        n += 1 + head_len(self.creation.time.0) + head_len(self.creation.sequence) + head_len(self.lifetime_ms);
        if let Some(f) = self.fragment {
            n += head_len(f.offset) + head_len(f.total_adu_len);
        }
        n + self.crc_type.field_len()
    }

    /// Encodes the block in canonical form, computing its CRC.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        write_head(&mut out, MAJOR_ARRAY, self.items());
        write_head(&mut out, MAJOR_UINT, 7);
        write_head(&mut out, MAJOR_UINT, self.flags.0);
        write_head(&mut out, MAJOR_UINT, u64::from(self.crc_type.code()));
        self.destination.encode(&mut out);
        self.source.encode(&mut out);
        self.report_to.encode(&mut out);
        write_head(&mut out, MAJOR_ARRAY, 2);
        write_head(&mut out, MAJOR_UINT, self.creation.time.0);
        write_head(&mut out, MAJOR_UINT, self.creation.sequence);
        write_head(&mut out, MAJOR_UINT, self.lifetime_ms);
        if let Some(f) = self.fragment {
            write_head(&mut out, MAJOR_UINT, f.offset);
            write_head(&mut out, MAJOR_UINT, f.total_adu_len);
        }
        crc::seal_block(self.crc_type, &mut out, false);
        out
    }

    /// Decodes the primary block at the reader's position; returns it with the byte range it occupied.
    pub(crate) fn decode(r: &mut Reader<'_>, limits: &Limits) -> Result<(PrimaryBlock, std::ops::Range<usize>)> {
        let start = r.pos();
        let items = r.array("the primary block (a CBOR array)")?;
        if let Some(n) = items
            && !(8..=11).contains(&n)
        {
            return Err(DecodeError::new(start, ErrorKind::PrimaryBlockLength(n)));
        }
        let ver_at = r.pos();
        let version = r.u64("the version number")?;
        if version != 7 {
            return Err(DecodeError::new(ver_at, ErrorKind::UnsupportedVersion(version)));
        }
        let flags = BundleFlags(r.u64("the bundle processing control flags")?);
        let crc_at = r.pos();
        let crc_type = CrcType::from_code(r.u64("the CRC type")?).map_err(|k| DecodeError::new(crc_at, k))?;
        let fragment = flags.contains(BundleFlags::IS_FRAGMENT);
        let expected = 8 + if fragment { 2 } else { 0 } + u64::from(crc_type != CrcType::None);
        let mismatch = |items| ErrorKind::PrimaryFieldsMismatch { items, fragment, crc_type: crc_type.code() };
        if let Some(n) = items
            && n != expected
        {
            return Err(DecodeError::new(start, mismatch(n)));
        }
        let destination = Eid::decode(r, "destination EID", limits.max_eid_len)?;
        let source = Eid::decode(r, "source node ID", limits.max_eid_len)?;
        let report_to = Eid::decode(r, "report-to EID", limits.max_eid_len)?;
        let ts_at = r.pos();
        let bad_ts = |e: DecodeError| not_truncated(e, ts_at, ErrorKind::BadCreationTimestamp);
        let n = r.array("the creation timestamp array").map_err(bad_ts)?;
        if n.is_some_and(|n| n != 2) {
            return Err(DecodeError::new(ts_at, ErrorKind::BadCreationTimestamp));
        }
        let time = r.u64("the creation time").map_err(bad_ts)?;
        let sequence = r.u64("the sequence number").map_err(bad_ts)?;
        r.close(n, "the end of the creation timestamp").map_err(bad_ts)?;
        let lifetime_ms = r.u64("the lifetime")?;
        let fragment = if fragment {
            let offset = r.u64("the fragment offset")?;
            let total_adu_len = r.u64("the total application data unit length")?;
            Some(FragmentInfo { offset, total_adu_len })
        } else {
            None
        };
        let value_at = r.pos() + 1;
        if crc_type != CrcType::None {
            read_crc_field(r, crc_type, 0)?;
        }
        if items.is_none() && !r.try_break()? {
            return Err(DecodeError::new(r.pos(), mismatch(expected + 1)));
        }
        let end = r.pos();
        if crc_type != CrcType::None {
            check_crc(crc_type, &r.input()[start..end], value_at - start, 0, start)?;
        }
        Ok((
            PrimaryBlock {
                flags,
                crc_type,
                destination,
                source,
                report_to,
                creation: CreationTimestamp { time: DtnTime(time), sequence },
                lifetime_ms,
                fragment,
            },
            start..end,
        ))
    }
}

fn not_truncated(e: DecodeError, at: usize, kind: ErrorKind) -> DecodeError {
    if e.is_truncated() { e } else { DecodeError::new(at, kind) }
}

/// Reads a CRC field, which must be exactly a 2- or 4-byte byte string.
pub(crate) fn read_crc_field(r: &mut Reader<'_>, ty: CrcType, block: u64) -> Result<()> {
    let at = r.pos();
    let input = r.input();
    let need = ty.field_len();
    let Some(field) = input.get(at..at + need) else {
        if input.len() > at && input[at] != ty.field_header() {
            return Err(DecodeError::new(at, ErrorKind::CrcFieldMalformed { block, len: ty.value_len() }));
        }
        return Err(DecodeError::new(input.len(), ErrorKind::Truncated));
    };
    if field[0] != ty.field_header() {
        return Err(DecodeError::new(at, ErrorKind::CrcFieldMalformed { block, len: ty.value_len() }));
    }
    r.set_pos(at + need);
    Ok(())
}

/// Checks the CRC of an encoded block (starting at input offset `start`) whose CRC value sits at `value_at`
/// within it.
pub(crate) fn check_crc(ty: CrcType, encoded: &[u8], value_at: usize, block: u64, start: usize) -> Result<()> {
    let computed = crc::block_crc(ty, encoded, value_at);
    let carried = crc::read_crc_value(ty, encoded, value_at);
    if computed != carried {
        return Err(DecodeError::new(start + value_at, ErrorKind::CrcMismatch { block, carried, computed }));
    }
    Ok(())
}
