//! Fragmentation and reassembly (RFC 9171 §5.8, §5.9), proactive (cutting a bundle to fit a contact) and
//! reactive (keeping what arrived of a transfer that was cut).
//!
//! A fragment is made by editing the encoding of the bundle it is cut from rather than re-creating it: the
//! primary block keeps its received bytes except the fragment flag, the item count, the fragment fields and the
//! CRC; extension blocks are copied as they are; the payload block keeps its head and gets a new data-length
//! head and CRC. Reassembly undoes exactly these edits, so reassembling a whole bundle's fragments gives back
//! its encoding byte for byte, non-canonical CBOR included (the one exception is a data-length head that was
//! longer than needed: fragments and reassembled bundles are given the shortest one).

use std::borrow::Cow;

use thiserror::Error;

use super::Limits;
use super::block::{Block, BlockFlags, BlockType, bib_targets_primary};
use super::bundle::{Bundle, decode_header};
use super::cbor::{MAJOR_ARRAY, MAJOR_BYTES, MAJOR_UINT, Reader, write_head};
use super::crc::{self, CrcType};
use super::error::{DecodeError, ErrorKind};
use super::primary::{BundleFlags, FragmentInfo, PrimaryBlock};

/// Why a bundle could not be fragmented or fragments could not be reassembled.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FragmentError {
    /// The bundle's "must not be fragmented" flag is set (RFC 9171 §4.2.3), and it does not fit whole.
    #[error("the bundle must not be fragmented")]
    MustNotFragment,
    /// The requested ADU range is empty or reaches outside the payload the bundle carries.
    #[error(
        "ADU range {start}..{end} is empty or outside the bundle's payload, ADU bytes {payload_start}..{payload_end}"
    )]
    BadRange {
        /// First ADU byte requested.
        start: u64,
        /// End (exclusive) of the requested range.
        end: u64,
        /// ADU offset of the bundle's first payload byte (its fragment offset, or 0).
        payload_start: u64,
        /// ADU offset just past the bundle's last payload byte.
        payload_end: u64,
    },
    /// A maximum fragment payload of 0 bytes would never make progress.
    #[error("the maximum fragment payload must be at least one byte")]
    ZeroMaxPayload,
    /// Reassembly was asked for with no fragments at all.
    #[error("no fragments to reassemble")]
    NoFragments,
    /// The fragments are not all of one bundle (source, creation timestamp, destination or total ADU length
    /// differ), or they disagree about the content of ADU bytes they both carry.
    #[error("fragments do not belong together: {0}")]
    Mismatch(String),
    /// The fragments' payloads leave part of the ADU uncovered.
    #[error("{missing} of {total} ADU bytes are not covered by the fragments")]
    Incomplete {
        /// ADU bytes no fragment carries.
        missing: u64,
        /// Total ADU length.
        total: u64,
    },
    /// The input is not a valid bundle (or the start of one).
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Limits for re-checking pieces made from bundles that were already validated: only the structural rules
/// matter then, and a bundle admitted under a caller's relaxed limits must not be refused when it is cut.
const LENIENT: Limits = Limits {
    max_bundle_len: u64::MAX,
    max_header_len: usize::MAX,
    max_blocks: usize::MAX,
    max_eid_len: usize::MAX,
    require_primary_crc: false,
};

/// Fragment of `bundle` carrying ADU bytes `start..end`.
///
/// Offsets are ADU offsets, so a bundle that is itself a fragment is cut within its own range
/// (`offset..offset + payload length`). The range that is the bundle's whole payload gives back the bundle
/// unchanged: there is nothing to cut, and a fragment that claims the whole ADU helps nobody.
///
/// The piece that starts where `bundle` starts keeps all its extension blocks (RFC 9171 §5.8 requires that of
/// the fragment at offset 0); the others keep only the blocks flagged "replicate in every fragment", plus the
/// bundle-age block when the creation time is 0, because §4.4.2 makes that block mandatory then. A primary
/// block without CRC that relied on a BIB the piece does not keep is given a CRC-32C (§4.3.1 requires one or
/// the other); otherwise the primary keeps its CRC type.
pub fn fragment_range(bundle: &Bundle<'_>, start: u64, end: u64) -> Result<Bundle<'static>, FragmentError> {
    let len = bundle.payload().len() as u64;
    let (own, total) = own_range(bundle.primary(), len);
    let own_end = own.saturating_add(len);
    if (start, end) == (own, own_end) {
        return Ok(bundle.clone().into_owned());
    }
    if start < own || start >= end || end > own_end {
        return Err(FragmentError::BadRange { start, end, payload_start: own, payload_end: own_end });
    }
    if bundle.primary().flags.contains(BundleFlags::MUST_NOT_FRAGMENT) {
        return Err(FragmentError::MustNotFragment);
    }
    let data = &bundle.payload()[to_index(start - own)?..to_index(end - own)?];
    let piece = Some(FragmentInfo { offset: start, total_adu_len: total });
    Template::of_bundle(bundle)?.piece(piece, start == own, &[data])
}

/// Splits `bundle` into fragments of at most `max_payload` payload bytes each, in ADU order.
///
/// A bundle whose payload already fits is returned alone and unchanged, even if it must not be fragmented:
/// only an actual cut is refused. `max_payload` counts payload bytes only; the caller sizing fragments for a
/// contact subtracts the header (primary and replicated blocks), which differs between the first fragment and
/// the others.
pub fn fragment(bundle: &Bundle<'_>, max_payload: u64) -> Result<Vec<Bundle<'static>>, FragmentError> {
    if max_payload == 0 {
        return Err(FragmentError::ZeroMaxPayload);
    }
    let payload = bundle.payload();
    if payload.len() as u64 <= max_payload {
        return Ok(vec![bundle.clone().into_owned()]);
    }
    if bundle.primary().flags.contains(BundleFlags::MUST_NOT_FRAGMENT) {
        return Err(FragmentError::MustNotFragment);
    }
    let (own, total) = own_range(bundle.primary(), payload.len() as u64);
    let template = Template::of_bundle(bundle)?;
    // The payload is longer than `max_payload`, so the step fits in usize.
    let step = usize::try_from(max_payload).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(payload.len().div_ceil(step));
    let mut offset = own;
    for (i, chunk) in payload.chunks(step).enumerate() {
        out.push(template.piece(Some(FragmentInfo { offset, total_adu_len: total }), i == 0, &[chunk])?);
        offset += chunk.len() as u64;
    }
    Ok(out)
}

/// Number of payload bytes of the encoded bundle `encoded` that lie within its first `durable` bytes: what the
/// receiver of a transfer cut after `durable` bytes holds of the payload (reactive fragmentation).
///
/// This is a count, not an ADU offset: when the bundle is itself a fragment, the part still to be sent is
/// `fragment_range(bundle, offset + n, offset + payload length)`. Only the bytes up to the payload data are read
/// (a sender streaming the payload from disk may pass just those), so a header that is incomplete or invalid is
/// an error, whatever `durable` is.
pub fn payload_bytes_within(encoded: &[u8], durable: u64) -> Result<u64, FragmentError> {
    let (h, _) = decode_header(encoded, &LENIENT)?;
    Ok(durable.saturating_sub(h.payload.data_start as u64).min(h.payload.data_len))
}

/// Reactive fragmentation at the receiver: turns the durable prefix of a bundle whose transfer was cut into the
/// fragment holding the payload bytes that arrived, so they need not be sent again.
///
/// The fragment starts where the cut bundle starts (its ADU offset, when it was itself a fragment) and keeps all
/// its extension blocks; it is byte for byte what the sender makes with [`fragment_range`] for the same bytes.
/// Returns `None` when nothing can be kept: the prefix ends before the first payload byte (an incomplete but
/// so-far valid header included), or the bundle must not be fragmented and its payload did not arrive whole.
/// When the whole payload arrived but the CRC or closing bytes did not, the bundle is rebuilt whole (its CRC
/// recomputed); when the whole bundle arrived it is decoded and checked like any other, so bytes beyond it are
/// an error. The header is checked against `limits` like [`Bundle::decode_with`] checks it.
pub fn fragment_from_prefix(prefix: &[u8], limits: &Limits) -> Result<Option<Bundle<'static>>, FragmentError> {
    let h = match decode_header(prefix, limits) {
        Ok((h, _)) => h,
        Err(e) if e.is_truncated() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if prefix.len() as u64 >= h.end {
        return Ok(Some(Bundle::decode_with(prefix, limits)?.into_owned()));
    }
    let data_start = h.payload.data_start;
    let data_len = h.payload.data_len;
    // The header parsed, so the prefix reaches the payload data; it ends before the bundle does.
    let available = prefix.len().saturating_sub(data_start);
    let received = to_index((available as u64).min(data_len))?;
    let data = prefix.get(data_start..data_start + received).unwrap_or_default();
    let whole = received as u64 == data_len;
    if !whole && (received == 0 || h.primary.flags.contains(BundleFlags::MUST_NOT_FRAGMENT)) {
        return Ok(None);
    }
    let (own, total) = own_range(&h.primary, data_len);
    let piece = if whole { h.primary.fragment } else { Some(FragmentInfo { offset: own, total_adu_len: total }) };
    let head = prefix.get(h.payload_at..data_start).unwrap_or_default();
    let template = Template::new(&h.primary, h.primary_encoded, &h.blocks, head)?;
    template.piece(piece, true, &[data]).map(Some)
}

/// Where a bundle's payload data lies, from the first bytes of its encoding: `(data_start, data_len,
/// must_not_fragment)`, or `None` while those bytes do not reach the payload data yet.
pub fn payload_span(prefix: &[u8], limits: &Limits) -> Result<Option<(u64, u64, bool)>, FragmentError> {
    match decode_header(prefix, limits) {
        Ok((h, _)) => Ok(Some((
            h.payload.data_start as u64,
            h.payload.data_len,
            h.primary.flags.contains(BundleFlags::MUST_NOT_FRAGMENT),
        ))),
        Err(e) if e.is_truncated() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Reactive fragmentation of a transfer kept piece by piece while it arrives: `piece` is the bundle's
/// encoding up to its payload data, followed by the payload bytes from `skip` on (as many as arrived; bytes
/// past the payload, its block's CRC and the bundle's end, are ignored). Returns the fragment holding those
/// payload bytes, at ADU offset `skip` past the bundle's own, or `None` if no payload byte follows. With
/// `skip` 0 this is [`fragment_from_prefix`]. The payload block's CRC covers the whole payload and cannot be
/// checked on a piece; pieces get CRCs of their own.
pub fn fragment_from_piece(piece: &[u8], skip: u64, limits: &Limits) -> Result<Option<Bundle<'static>>, FragmentError> {
    if skip == 0 {
        return fragment_from_prefix(piece, limits);
    }
    let h = match decode_header(piece, limits) {
        Ok((h, _)) => h,
        Err(e) if e.is_truncated() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if h.primary.flags.contains(BundleFlags::MUST_NOT_FRAGMENT) {
        return Err(FragmentError::MustNotFragment);
    }
    let data_start = h.payload.data_start;
    let left = h.payload.data_len.saturating_sub(skip);
    let available = (piece.len().saturating_sub(data_start) as u64).min(left);
    if available == 0 {
        return Ok(None);
    }
    let data = piece.get(data_start..data_start + to_index(available)?).unwrap_or_default();
    let (own, total) = own_range(&h.primary, h.payload.data_len);
    let head = piece.get(h.payload_at..data_start).unwrap_or_default();
    let template = Template::new(&h.primary, h.primary_encoded, &h.blocks, head)?;
    template.piece(Some(FragmentInfo { offset: own + skip, total_adu_len: total }), false, &[data]).map(Some)
}

/// Reassembles a bundle from its fragments (RFC 9171 §5.9), given in any order, with duplicates and overlaps.
///
/// The result has the primary block of the fragment at offset 0 without fragment flag and fields (CRC
/// recomputed), that fragment's extension blocks, and the whole ADU as payload. Fragments must agree on source,
/// creation timestamp, destination and total ADU length, and overlapping fragments on the bytes they share: a
/// disagreement means two bundles share an ID or one was damaged, and neither version can be trusted. A bundle
/// that is not a fragment counts as covering its whole ADU.
pub fn reassemble(fragments: &[Bundle<'_>]) -> Result<Bundle<'static>, FragmentError> {
    let Some(first) = fragments.first() else {
        return Err(FragmentError::NoFragments);
    };
    let span = |b: &Bundle<'_>| {
        let len = b.payload().len() as u64;
        let (offset, total) = own_range(b.primary(), len);
        (offset, len, total)
    };
    let (_, _, total) = span(first);
    let p0 = first.primary();
    for (i, f) in fragments.iter().enumerate().skip(1) {
        let p = f.primary();
        let differs = if p.source != p0.source {
            Some(format!("source {} vs {}", p.source, p0.source))
        } else if p.creation != p0.creation {
            Some(format!(
                "creation timestamp {}/{} vs {}/{}",
                p.creation.time.0, p.creation.sequence, p0.creation.time.0, p0.creation.sequence
            ))
        } else if p.destination != p0.destination {
            Some(format!("destination {} vs {}", p.destination, p0.destination))
        } else if span(f).2 != total {
            Some(format!("total ADU length {} vs {total}", span(f).2))
        } else {
            None
        };
        if let Some(d) = differs {
            return Err(FragmentError::Mismatch(format!("fragment {i} differs from fragment 0: {d}")));
        }
    }
    let ranges: Vec<(u64, u64)> = fragments
        .iter()
        .map(|f| {
            let (offset, len, _) = span(f);
            (offset, len)
        })
        .collect();
    let missing = missing_bytes(&ranges, total);
    if missing > 0 {
        return Err(FragmentError::Incomplete { missing, total });
    }
    // Complete coverage of a non-empty ADU needs a fragment at offset 0; an empty ADU has only such fragments.
    let base = fragments.iter().find(|f| span(f).0 == 0).ok_or(FragmentError::Incomplete { missing: total, total })?;
    // Walk the fragments in ADU order, taking from each the bytes beyond what the earlier ones covered; the
    // ADU is then copied once, into the payload block.
    let mut order: Vec<usize> = (0..fragments.len()).collect();
    order.sort_by_key(|&i| ranges[i].0);
    let mut parts: Vec<&[u8]> = Vec::with_capacity(order.len());
    let mut starts: Vec<u64> = Vec::with_capacity(order.len());
    let mut have = 0u64;
    for i in order {
        let (offset, len) = ranges[i];
        let data = fragments[i].payload();
        if offset > have {
            return Err(FragmentError::Incomplete { missing, total });
        }
        let overlap = to_index((have - offset).min(len))?;
        if !same_bytes(&parts, &starts, offset, data.get(..overlap).unwrap_or_default()) {
            return Err(FragmentError::Mismatch(format!(
                "fragment {i} disagrees with an earlier one about ADU bytes from offset {offset}"
            )));
        }
        let fresh = data.get(overlap..).unwrap_or_default();
        if !fresh.is_empty() {
            parts.push(fresh);
            starts.push(have);
            have += fresh.len() as u64;
        }
    }
    Template::of_bundle(base)?.piece(None, true, &parts)
}

/// Whether `bytes` equals the ADU bytes from `offset` on, as already collected: `parts` are consecutive slices
/// of the ADU and `starts` their ADU offsets.
fn same_bytes(parts: &[&[u8]], starts: &[u64], offset: u64, bytes: &[u8]) -> bool {
    let first = starts.partition_point(|&s| s <= offset).saturating_sub(1);
    let mut skip = offset.saturating_sub(starts.get(first).copied().unwrap_or(0));
    let mut rest = bytes;
    for part in parts.iter().skip(first) {
        if rest.is_empty() {
            break;
        }
        let part = usize::try_from(skip).ok().and_then(|k| part.get(k..)).unwrap_or_default();
        skip = 0;
        let n = part.len().min(rest.len());
        if part[..n] != rest[..n] {
            return false;
        }
        rest = &rest[n..];
    }
    rest.is_empty()
}

/// Whether the ranges `(offset, length)` together cover every byte of `0..total`, as a reassembler asks before
/// it goes to the trouble of concatenating payloads.
pub fn covers(ranges: &[(u64, u64)], total: u64) -> bool {
    missing_bytes(ranges, total) == 0
}

/// Bytes of `0..total` that no range covers.
fn missing_bytes(ranges: &[(u64, u64)], total: u64) -> u64 {
    let mut sorted: Vec<(u64, u64)> = ranges.iter().copied().filter(|&(_, len)| len > 0).collect();
    sorted.sort_unstable();
    let mut covered_to = 0u64;
    let mut missing = 0u64;
    for (offset, len) in sorted {
        let start = offset.min(total);
        let end = offset.saturating_add(len).min(total);
        if start > covered_to {
            missing += start - covered_to;
        }
        covered_to = covered_to.max(end);
    }
    missing + (total - covered_to)
}

/// The ADU offset of a bundle's first payload byte and the total ADU length; a bundle that is not a fragment
/// is the whole ADU.
fn own_range(primary: &PrimaryBlock, payload_len: u64) -> (u64, u64) {
    primary.fragment.map_or((0, payload_len), |f| (f.offset, f.total_adu_len))
}

/// An in-memory position from an offset or length bounded by a buffer's length, so it cannot fail; the error
/// keeps the conversion free of panics all the same.
fn to_index(v: u64) -> Result<usize, FragmentError> {
    usize::try_from(v).map_err(|_| FragmentError::Decode(DecodeError::new(0, ErrorKind::Truncated)))
}

/// What every piece cut from one bundle shares: its encodings, from which pieces are made by editing.
struct Template<'s, 'b> {
    primary: &'s PrimaryBlock,
    primary_encoded: &'s [u8],
    ext: &'s [Block<'b>],
    /// The payload block's encoding up to (not including) its data-length head.
    payload_head: &'s [u8],
    payload_crc: CrcType,
    /// The payload block is an indefinite-length array: a break follows its CRC field.
    payload_indefinite: bool,
}

impl<'s, 'b> Template<'s, 'b> {
    fn of_bundle(b: &'s Bundle<'b>) -> Result<Self, DecodeError> {
        Self::new(b.primary(), b.primary_encoded(), b.extension_blocks(), b.payload_block().encoded())
    }

    /// `payload_block` is the payload block's encoding from its start through at least its data-length head.
    fn new(
        primary: &'s PrimaryBlock,
        primary_encoded: &'s [u8],
        ext: &'s [Block<'b>],
        payload_block: &'s [u8],
    ) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload_block);
        let items = r.array("the payload block")?;
        r.u64("the block type code")?;
        r.u64("the block number")?;
        r.u64("the block processing control flags")?;
        let crc_at = r.pos();
        let crc_type = CrcType::from_code(r.u64("the CRC type")?).map_err(|k| DecodeError::new(crc_at, k))?;
        let head_end = r.pos();
        Ok(Template {
            primary,
            primary_encoded,
            ext,
            payload_head: &payload_block[..head_end],
            payload_crc: crc_type,
            payload_indefinite: items.is_none(),
        })
    }

    /// A bundle whose payload is the concatenation of `data`: a fragment at `fragment`, or the whole bundle when
    /// `None`. `keep_all` keeps every extension block; otherwise only those every fragment must carry.
    fn piece(
        &self,
        fragment: Option<FragmentInfo>,
        keep_all: bool,
        data: &[&[u8]],
    ) -> Result<Bundle<'static>, FragmentError> {
        let clockless = self.primary.creation.time.0 == 0;
        let mut blocks: Vec<Block<'static>> = self
            .ext
            .iter()
            .filter(|b| {
                keep_all
                    || b.flags().contains(BlockFlags::REPLICATE_IN_FRAGMENTS)
                    || (clockless && b.block_type() == BlockType::BUNDLE_AGE)
            })
            .map(|b| b.clone().into_owned())
            .collect();
        let covered_by_bib = |blocks: &[Block<'_>]| {
            blocks.iter().any(|b| b.block_type() == BlockType::BIB && bib_targets_primary(b.data()))
        };
        let mut crc_type = self.primary.crc_type;
        if crc_type == CrcType::None && covered_by_bib(self.ext) && !covered_by_bib(&blocks) {
            crc_type = CrcType::Crc32c;
        }
        let flags = match fragment {
            Some(_) => self.primary.flags | BundleFlags::IS_FRAGMENT,
            None => BundleFlags(self.primary.flags.0 & !BundleFlags::IS_FRAGMENT.0),
        };
        let primary_encoded = edit_primary(self.primary_encoded, flags, crc_type, fragment)?;
        let (primary, range) = PrimaryBlock::decode(&mut Reader::new(&primary_encoded), &LENIENT)?;
        if range.end != primary_encoded.len() {
            return Err(DecodeError::new(range.end, ErrorKind::TrailingBytes(primary_encoded.len() - range.end)).into());
        }
        let len: usize = data.iter().map(|d| d.len()).sum();
        let mut payload = Vec::with_capacity(self.payload_head.len() + 9 + len + 6);
        payload.extend_from_slice(self.payload_head);
        write_head(&mut payload, MAJOR_BYTES, len as u64);
        for d in data {
            payload.extend_from_slice(d);
        }
        crc::seal_block(self.payload_crc, &mut payload, self.payload_indefinite);
        blocks.push(Block::from_encoding(payload, &LENIENT)?);
        Ok(Bundle::from_parts(primary, Cow::Owned(primary_encoded), blocks, &LENIENT)?)
    }
}

/// The primary block `encoded` with other flags, CRC type and fragment fields, and its CRC recomputed. Every
/// other byte is kept, and the fields that change keep the width of their received heads where the new value
/// fits (fragment fields being added are written in the shortest form): the primary block is
/// immutable in transit (RFC 9171 §4.3.1), so a fragment changes nothing §5.8 does not ask for, and reassembly
/// can restore the original exactly.
fn edit_primary(
    encoded: &[u8],
    flags: BundleFlags,
    crc_type: CrcType,
    fragment: Option<FragmentInfo>,
) -> Result<Vec<u8>, DecodeError> {
    let mut r = Reader::new(encoded);
    let items = r.array("the primary block")?;
    let count_width = r.pos();
    let version_at = r.pos();
    r.u64("the version number")?;
    let flags_at = r.pos();
    let had_fragment = BundleFlags(r.u64("the bundle processing control flags")?).contains(BundleFlags::IS_FRAGMENT);
    let flags_width = r.pos() - flags_at;
    let crc_at = r.pos();
    r.u64("the CRC type")?;
    let crc_width = r.pos() - crc_at;
    let body_at = r.pos();
    for what in ["the destination EID", "the source node ID", "the report-to EID", "the creation timestamp"] {
        r.skip(what)?;
    }
    r.u64("the lifetime")?;
    let body_end = r.pos();
    // Widths of the fragment fields a fragment already has (1 = shortest for whatever new value).
    let mut field_widths = [1, 1];
    if had_fragment {
        for w in &mut field_widths {
            let at = r.pos();
            r.u64("a fragment field")?;
            *w = r.pos() - at;
        }
    }

    let mut out = Vec::with_capacity(encoded.len() + 2 * 9 + crc_type.field_len());
    match items {
        Some(_) => {
            let n = 8 + if fragment.is_some() { 2 } else { 0 } + u64::from(crc_type != CrcType::None);
            write_head_as(&mut out, MAJOR_ARRAY, n, count_width);
        }
        None => out.push(0x9f),
    }
    out.extend_from_slice(&encoded[version_at..flags_at]);
    write_head_as(&mut out, MAJOR_UINT, flags.0, flags_width);
    write_head_as(&mut out, MAJOR_UINT, u64::from(crc_type.code()), crc_width);
    out.extend_from_slice(&encoded[body_at..body_end]);
    if let Some(f) = fragment {
        write_head_as(&mut out, MAJOR_UINT, f.offset, field_widths[0]);
        write_head_as(&mut out, MAJOR_UINT, f.total_adu_len, field_widths[1]);
    }
    crc::seal_block(crc_type, &mut out, items.is_none());
    Ok(out)
}

/// Writes a CBOR head taking `len` bytes if `arg` fits in that form (keeping a sender's longer-than-needed
/// encoding), the shortest form otherwise.
fn write_head_as(out: &mut Vec<u8>, major: u8, arg: u64, len: usize) {
    let m = major << 5;
    match len {
        2 if arg <= 0xff => out.extend_from_slice(&[m | 24, arg as u8]),
        3 if arg <= 0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(arg as u16).to_be_bytes());
        }
        5 if arg <= 0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(arg as u32).to_be_bytes());
        }
        9 => {
            out.push(m | 27);
            out.extend_from_slice(&arg.to_be_bytes());
        }
        _ => write_head(out, major, arg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpv7::{BundleBuilder, CreationTimestamp, Eid, hop_count_data};

    const OPAQUE: BlockType = BlockType(200);
    const REPLICATED: BlockType = BlockType(201);

    fn builder(payload_len: usize) -> BundleBuilder {
        let payload: Vec<u8> = (0..payload_len).map(|i| (i * 31 % 251) as u8).collect();
        BundleBuilder::new("ipn:7.1".parse().unwrap(), "dtn://collector/~data".parse().unwrap())
            .creation(CreationTimestamp::new(815_000_000_000, 3))
            .previous_node("ipn:9.0".parse().unwrap())
            .hop_limit(30)
            .extension_block(OPAQUE, BlockFlags::default(), vec![1, 2, 3])
            .extension_block(REPLICATED, BlockFlags::REPLICATE_IN_FRAGMENTS, vec![4, 5])
            .payload(payload)
    }

    fn types(b: &Bundle<'_>) -> Vec<u64> {
        b.extension_blocks().iter().map(|b| b.block_type().0).collect()
    }

    /// Checks what every fragment of `original` must satisfy and returns the fragments' encodings.
    fn check_pieces(original: &Bundle<'_>, pieces: &[Bundle<'static>]) -> Vec<Vec<u8>> {
        let (own, total) = own_range(original.primary(), original.payload().len() as u64);
        let mut next = own;
        let mut encodings = Vec::new();
        for (i, p) in pieces.iter().enumerate() {
            let bytes = p.to_vec();
            let decoded = Bundle::decode(&bytes).expect("a fragment passes strict validation");
            let len = p.payload().len() as u64;
            assert_eq!(decoded.id().fragment, Some((next, len)));
            assert_eq!(decoded.primary().fragment.map(|f| f.total_adu_len), Some(total));
            assert!(decoded.primary().flags.contains(BundleFlags::IS_FRAGMENT));
            let at = usize::try_from(next - own).unwrap();
            assert_eq!(p.payload(), &original.payload()[at..at + p.payload().len()]);
            let clockless = original.primary().creation.time.0 == 0;
            let expected: Vec<&[u8]> = original
                .extension_blocks()
                .iter()
                .filter(|b| {
                    i == 0
                        || b.flags().contains(BlockFlags::REPLICATE_IN_FRAGMENTS)
                        || (clockless && b.block_type() == BlockType::BUNDLE_AGE)
                })
                .map(Block::encoded)
                .collect();
            let got: Vec<&[u8]> = p.extension_blocks().iter().map(Block::encoded).collect();
            assert_eq!(got, expected, "extension blocks of fragment {i}");
            next += len;
            encodings.push(bytes);
        }
        assert_eq!(next, own + original.payload().len() as u64);
        encodings
    }

    #[test]
    fn fragments_reassemble_to_the_original_bytes() {
        let original = builder(100).build().unwrap();
        let pieces = fragment(&original, 7).unwrap();
        assert_eq!(pieces.len(), 15);
        check_pieces(&original, &pieces);
        assert_eq!(types(&pieces[0]), [6, 10, 200, 201]);
        assert_eq!(types(&pieces[1]), [201]);
        let mut shuffled: Vec<Bundle<'static>> = pieces.iter().rev().cloned().collect();
        shuffled.push(pieces[3].clone());
        let whole = reassemble(&shuffled).unwrap();
        assert_eq!(whole.to_vec(), original.to_vec());
        assert_eq!(whole.id(), original.id());
    }

    #[test]
    fn a_bundle_that_fits_or_a_whole_range_comes_back_unchanged() {
        let original = builder(10).flags(BundleFlags::MUST_NOT_FRAGMENT).build().unwrap();
        let pieces = fragment(&original, 10).unwrap();
        assert_eq!(pieces, [original.clone().into_owned()]);
        assert_eq!(fragment_range(&original, 0, 10).unwrap(), original);
        assert_eq!(fragment(&original, 9), Err(FragmentError::MustNotFragment));
        assert_eq!(fragment_range(&original, 0, 9), Err(FragmentError::MustNotFragment));
        assert_eq!(fragment(&original, 0), Err(FragmentError::ZeroMaxPayload));
    }

    #[test]
    fn ranges_outside_the_payload_are_refused() {
        let original = builder(10).build().unwrap();
        let frag = fragment_range(&original, 4, 10).unwrap();
        let bad = |s, e| FragmentError::BadRange { start: s, end: e, payload_start: 4, payload_end: 10 };
        for (s, e) in [(3, 8), (5, 5), (6, 5), (5, 11), (0, u64::MAX)] {
            assert_eq!(fragment_range(&frag, s, e), Err(bad(s, e)));
        }
        let inner = fragment_range(&frag, 6, 8).unwrap();
        assert_eq!(inner.id().fragment, Some((6, 2)));
        assert_eq!(inner.payload(), &original.payload()[6..8]);
    }

    #[test]
    fn clockless_bundles_keep_their_age_block_in_every_fragment() {
        let original = builder(20).creation(CreationTimestamp::new(0, 9)).bundle_age_ms(1234).build().unwrap();
        let pieces = fragment(&original, 6).unwrap();
        check_pieces(&original, &pieces);
        for p in &pieces[1..] {
            assert_eq!(types(p), [7, 201]);
            assert_eq!(p.bundle_age_ms(), Some(1234));
        }
        assert_eq!(reassemble(&pieces).unwrap().to_vec(), original.to_vec());
    }

    #[test]
    fn fragments_of_fragments_overlaps_and_duplicates_reassemble() {
        let original = builder(50).build().unwrap();
        let a = fragment(&original, 20).unwrap();
        let b = fragment(&original, 13).unwrap();
        let mut all = Vec::new();
        for p in &a {
            let sub = fragment(p, 3).unwrap();
            check_pieces(p, &sub);
            all.extend(sub);
        }
        all.extend(b.iter().skip(1).cloned());
        all.extend(a.iter().cloned());
        all.reverse();
        assert_eq!(reassemble(&all).unwrap().to_vec(), original.to_vec());
        // A fragment of a non-first fragment starts at that fragment's offset and keeps its blocks.
        let deep = fragment_range(&a[1], 20, 25).unwrap();
        assert_eq!((deep.id().fragment, types(&deep)), (Some((20, 5)), vec![201]));
    }

    #[test]
    fn incomplete_and_inconsistent_fragments_are_refused() {
        let original = builder(30).build().unwrap();
        let pieces = fragment(&original, 10).unwrap();
        assert_eq!(reassemble(&[]), Err(FragmentError::NoFragments));
        assert_eq!(reassemble(&pieces[1..]), Err(FragmentError::Incomplete { missing: 10, total: 30 }));
        assert_eq!(
            reassemble(&[pieces[0].clone(), pieces[2].clone()]),
            Err(FragmentError::Incomplete { missing: 10, total: 30 })
        );
        let other = builder(30).creation(CreationTimestamp::new(815_000_000_000, 4)).build().unwrap();
        let other = fragment(&other, 10).unwrap();
        let mixed = [pieces[0].clone(), pieces[1].clone(), other[2].clone()];
        assert!(matches!(reassemble(&mixed), Err(FragmentError::Mismatch(m)) if m.contains("creation")));
        let longer = fragment(&builder(31).build().unwrap(), 10).unwrap();
        let mixed = [pieces[0].clone(), pieces[1].clone(), longer[2].clone()];
        assert!(matches!(reassemble(&mixed), Err(FragmentError::Mismatch(m)) if m.contains("total ADU length")));
        // Same ID, different bytes where they overlap.
        let mut payload = original.payload().to_vec();
        payload[12] ^= 0xff;
        let forged = builder(0).payload(payload).build().unwrap();
        let forged = fragment_range(&forged, 5, 15).unwrap();
        let mixed = [pieces[0].clone(), forged, pieces[1].clone(), pieces[2].clone()];
        assert!(matches!(reassemble(&mixed), Err(FragmentError::Mismatch(m)) if m.contains("disagrees")));
    }

    #[test]
    fn a_primary_without_crc_gets_one_where_its_bib_is_not_replicated() {
        // BIB data whose target list is [0, 1]; the rest of the block is opaque to the codec.
        let bib = vec![0x82, 0x00, 0x01, 0x01, 0x00, 0x82, 0x02, 0x82, 0x01, 0x00, 0x80];
        let original = builder(12)
            .primary_crc_type(CrcType::None)
            .extension_block(BlockType::BIB, BlockFlags::default(), bib)
            .build()
            .unwrap();
        let pieces = fragment(&original, 5).unwrap();
        check_pieces(&original, &pieces);
        assert_eq!(pieces[0].primary().crc_type, CrcType::None);
        assert_eq!(pieces[1].primary().crc_type, CrcType::Crc32c);
        assert_eq!(reassemble(&pieces).unwrap().to_vec(), original.to_vec());
    }

    /// A bundle whose primary block is an indefinite-length array with a two-byte flags head and whose
    /// payload block is an indefinite-length array with a two-byte flags head: valid, not canonical.
    fn non_canonical(payload: &[u8]) -> Vec<u8> {
        let mut primary = vec![0x9f, 0x07, 0x18, 0x00, 0x01];
        for eid in ["ipn:5.1", "dtn://a/b", "ipn:5.0"] {
            eid.parse::<Eid>().unwrap().encode(&mut primary);
        }
        primary.extend_from_slice(&[0x82, 0x1a, 0x01, 0x02, 0x03, 0x04, 0x00, 0x19, 0x10, 0x00]);
        crc::seal_block(CrcType::Crc16, &mut primary, true);
        let hop = Block::new(
            BlockType::HOP_COUNT,
            2,
            BlockFlags::default(),
            CrcType::None,
            &hop_count_data(crate::bpv7::HopCount { limit: 9, count: 1 }),
        )
        .unwrap();
        let mut payload_block = vec![0x9f, 0x01, 0x01, 0x18, 0x00, 0x02];
        write_head(&mut payload_block, MAJOR_BYTES, payload.len() as u64);
        payload_block.extend_from_slice(payload);
        crc::seal_block(CrcType::Crc32c, &mut payload_block, true);
        [&[0x9f][..], &primary, hop.encoded(), &payload_block, &[0xff]].concat()
    }

    #[test]
    fn non_canonical_encodings_survive_fragmentation_and_reassembly() {
        let bytes = non_canonical(b"0123456789abcdefghij");
        let original = Bundle::decode(&bytes).unwrap();
        let pieces = fragment(&original, 6).unwrap();
        check_pieces(&original, &pieces);
        let mut shuffled = pieces.clone();
        shuffled.rotate_left(2);
        assert_eq!(reassemble(&shuffled).unwrap().to_vec(), bytes);
        // Only the flags, the fragment fields and the CRC of the primary block change.
        let p = pieces[2].primary_encoded();
        assert_eq!(&p[..5], [0x9f, 0x07, 0x18, 0x01, 0x01]);
        assert_eq!(&p[p.len() - 6..p.len() - 3], [0x0c, 0x14, 0x42]);
    }

    #[test]
    fn every_cut_of_a_transfer_gives_the_fragment_the_sender_computes() {
        for original in [builder(40).build().unwrap(), fragment_range(&builder(60).build().unwrap(), 15, 55).unwrap()] {
            let bytes = original.to_vec();
            let (own, total) = own_range(original.primary(), original.payload().len() as u64);
            let len = original.payload().len() as u64;
            for k in 0..=bytes.len() {
                let received = payload_bytes_within(&bytes, k as u64).unwrap();
                let got = fragment_from_prefix(&bytes[..k], &Limits::default()).unwrap();
                if received == len {
                    assert_eq!(got.as_ref().map(Bundle::to_vec), Some(bytes.clone()), "cut at {k}");
                    continue;
                }
                if received == 0 {
                    assert_eq!(got, None, "cut at {k}");
                    continue;
                }
                let got = got.unwrap();
                assert_eq!(got.to_vec(), fragment_range(&original, own, own + received).unwrap().to_vec());
                assert_eq!(got.payload(), &original.payload()[..received as usize]);
                let rest = fragment_range(&original, own + received, own + len).unwrap();
                if own == 0 && len == total {
                    assert_eq!(reassemble(&[rest, got]).unwrap().to_vec(), bytes);
                } else {
                    assert_eq!(reassemble(&[rest, got]), Err(FragmentError::Incomplete { missing: 20, total }));
                }
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(fragment_from_prefix(&longer, &Limits::default()).is_err());
        }
    }

    #[test]
    fn must_not_fragment_prefixes_give_nothing_unless_whole() {
        let original = builder(40).flags(BundleFlags::MUST_NOT_FRAGMENT).build().unwrap();
        let bytes = original.to_vec();
        assert_eq!(fragment_from_prefix(&bytes[..bytes.len() - 10], &Limits::default()), Ok(None));
        let whole = fragment_from_prefix(&bytes[..bytes.len() - 2], &Limits::default()).unwrap();
        assert_eq!(whole.map(|b| b.to_vec()), Some(bytes));
    }

    #[test]
    fn garbage_is_an_error() {
        let bytes = builder(40).build().unwrap().to_vec();
        let mut bad_crc = bytes.clone();
        bad_crc[5] ^= 1;
        for bad in [&[0x00][..], &[0x80], &[0xff; 9], &bad_crc] {
            assert!(fragment_from_prefix(bad, &Limits::default()).is_err());
            assert!(payload_bytes_within(bad, 100).is_err());
        }
        assert!(payload_bytes_within(&bytes[..20], 10).is_err());
        let tight = Limits { max_bundle_len: 50, ..Limits::default() };
        assert!(matches!(
            fragment_from_prefix(&bytes[..bytes.len() - 20], &tight),
            Err(FragmentError::Decode(DecodeError { kind: ErrorKind::BundleTooLarge { .. }, .. }))
        ));
    }

    #[test]
    fn overlaps_are_compared_across_the_parts_they_span() {
        let parts: [&[u8]; 3] = [b"abc", b"def", b"gh"];
        let starts = [0, 3, 6];
        assert!(same_bytes(&parts, &starts, 2, b"cdefg"));
        assert!(same_bytes(&parts, &starts, 0, b"abcdefgh"));
        assert!(same_bytes(&parts, &starts, 6, b"g"));
        assert!(same_bytes(&parts, &starts, 8, b""));
        assert!(!same_bytes(&parts, &starts, 2, b"cdXfg"));
        assert!(!same_bytes(&parts, &starts, 7, b"hi"));
    }

    #[test]
    fn empty_and_unfragmented_bundles_reassemble_as_themselves() {
        let empty = builder(0).build().unwrap();
        assert_eq!(fragment(&empty, 1).unwrap(), std::slice::from_ref(&empty));
        assert_eq!(reassemble(std::slice::from_ref(&empty)).unwrap(), empty);
        let original = builder(30).build().unwrap();
        let pieces = fragment(&original, 8).unwrap();
        let mixed = [pieces[1].clone(), original.clone(), pieces[3].clone()];
        assert_eq!(reassemble(&mixed).unwrap().to_vec(), original.to_vec());
    }

    #[test]
    fn coverage() {
        assert!(covers(&[], 0));
        assert!(!covers(&[], 1));
        assert!(covers(&[(5, 5), (0, 5)], 10));
        assert!(covers(&[(0, 7), (3, 2), (6, 100)], 10));
        assert!(!covers(&[(0, 4), (5, 5)], 10));
        assert!(!covers(&[(1, 9)], 10));
        assert!(covers(&[(0, u64::MAX), (u64::MAX, u64::MAX)], u64::MAX));
        assert_eq!(missing_bytes(&[(2, 3), (8, 1), (9, 0)], 10), 6);
    }
}
