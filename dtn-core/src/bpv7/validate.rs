//! Cross-block and whole-bundle rules of RFC 9171, shared by the slice decoder, the streaming decoder and
//! the builder.

use super::Limits;
use super::block::{Block, BlockData, BlockFlags, BlockType, bib_targets_primary};
use super::cbor::Result;
use super::crc::CrcType;
use super::eid::Eid;
use super::error::{DecodeError, EidError, ErrorKind};
use super::primary::{BundleFlags, PrimaryBlock};

/// Rules about one canonical block (extension or payload) given the blocks before it.
pub(crate) fn check_block(
    primary: &PrimaryBlock,
    prev: &[Block<'_>],
    block_type: BlockType,
    number: u64,
    flags: BlockFlags,
    limits: &Limits,
    at: usize,
) -> Result<()> {
    if prev.len() >= limits.max_blocks {
        return Err(DecodeError::new(at, ErrorKind::TooManyBlocks(limits.max_blocks)));
    }
    if prev.iter().any(|b| b.number() == number) {
        return Err(DecodeError::new(at, ErrorKind::DuplicateBlockNumber(number)));
    }
    if matches!(block_type, BlockType::PREVIOUS_NODE | BlockType::BUNDLE_AGE | BlockType::HOP_COUNT)
        && prev.iter().any(|b| b.block_type() == block_type)
    {
        return Err(DecodeError::new(at, ErrorKind::DuplicateExtensionBlock(block_type.name())));
    }
    if flags.contains(BlockFlags::REPORT_IF_UNPROCESSABLE) {
        if primary.flags.contains(BundleFlags::ADMIN_RECORD) {
            return Err(DecodeError::new(at, ErrorKind::AdminRecordBlockReportFlag(number)));
        }
        // RFC 9171 §4.2.4: nor may any block of an anonymous bundle (source dtn:none) ask for reports.
        if primary.source.is_null() {
            return Err(DecodeError::new(at, ErrorKind::AnonymousSourceRules));
        }
    }
    Ok(())
}

/// Every rule, for a bundle assembled in memory (built, changed, or joined from a streamed header): the
/// extension blocks in order, then a payload block with these flags and this length.
pub(crate) fn check_all(
    primary: &PrimaryBlock,
    ext: &[Block<'_>],
    payload_flags: BlockFlags,
    payload_len: u64,
    limits: &Limits,
) -> Result<()> {
    for (i, b) in ext.iter().enumerate() {
        if b.block_type() == BlockType::PAYLOAD {
            return Err(DecodeError::new(0, ErrorKind::PayloadNotLast));
        }
        check_block(primary, &ext[..i], b.block_type(), b.number(), b.flags(), limits, 0)?;
    }
    check_block(primary, ext, BlockType::PAYLOAD, 1, payload_flags, limits, 0)?;
    check_bundle(primary, ext, payload_len, limits)
}

/// Rules about the bundle as a whole, once every block before the payload data is known.
pub(crate) fn check_bundle(primary: &PrimaryBlock, ext: &[Block<'_>], payload_len: u64, limits: &Limits) -> Result<()> {
    // The decoders check EID lengths as they read; this catches built and modified bundles, which would
    // otherwise be sent only to be rejected by the next node.
    let eids = [
        ("destination EID", &primary.destination),
        ("source node ID", &primary.source),
        ("report-to EID", &primary.report_to),
    ];
    for (field, eid) in eids {
        if eid_len(eid) > limits.max_eid_len {
            return Err(DecodeError::new(0, ErrorKind::Eid { field, source: EidError::TooLong(limits.max_eid_len) }));
        }
    }
    let flags = primary.flags;
    if flags.contains(BundleFlags::ADMIN_RECORD) && flags.intersects(BundleFlags::ALL_REPORTS) {
        return Err(DecodeError::new(0, ErrorKind::AdminRecordRequestsReports));
    }
    if primary.source.is_null()
        && (!flags.contains(BundleFlags::MUST_NOT_FRAGMENT) || flags.intersects(BundleFlags::ALL_REPORTS))
    {
        return Err(DecodeError::new(0, ErrorKind::AnonymousSourceRules));
    }
    if primary.source.is_local_node() {
        return Err(DecodeError::new(0, ErrorKind::LocalNodeEid("source")));
    }
    if primary.destination.is_local_node() {
        return Err(DecodeError::new(0, ErrorKind::LocalNodeEid("destination")));
    }
    if primary.creation.time.0 == 0 && !ext.iter().any(|b| matches!(b.typed(), BlockData::BundleAge(_))) {
        return Err(DecodeError::new(0, ErrorKind::MissingBundleAge));
    }
    if limits.require_primary_crc
        && primary.crc_type == CrcType::None
        && !ext.iter().any(|b| b.block_type() == BlockType::BIB && bib_targets_primary(b.data()))
    {
        return Err(DecodeError::new(0, ErrorKind::PrimaryCrcMissing));
    }
    if let Some(f) = primary.fragment
        && f.offset.checked_add(payload_len).is_none_or(|end| end > f.total_adu_len)
    {
        return Err(DecodeError::new(
            0,
            ErrorKind::FragmentBeyondAdu { offset: f.offset, len: payload_len, total: f.total_adu_len },
        ));
    }
    Ok(())
}

/// The length the decoders compare with [`Limits::max_eid_len`]: the SSP of a dtn or unknown-scheme EID.
fn eid_len(eid: &Eid) -> usize {
    match eid {
        Eid::Dtn(d) => d.ssp().len(),
        Eid::Unknown(u) => u.ssp.len(),
        Eid::Null | Eid::Ipn(_) => 0,
    }
}
