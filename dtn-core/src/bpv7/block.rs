//! Canonical blocks (RFC 9171 §4.3.2) and the extension blocks this codec understands (§4.4).
//!
//! A block always holds its own encoding: a decoded block borrows the exact received bytes (so re-encoding
//! is byte-identical even for non-canonical CBOR from other implementations), and a block that is built or
//! changed is encoded once, at that moment. Encoding a bundle is then a concatenation.

use std::borrow::Cow;
use std::ops::Range;

use super::Limits;
use super::cbor::{MAJOR_ARRAY, MAJOR_BYTES, MAJOR_UINT, Reader, Result, head_len, write_head};
use super::crc::{self, CrcType};
use super::eid::Eid;
use super::error::{DecodeError, ErrorKind};
use super::primary::{check_crc, read_crc_field};

/// Block type codes (RFC 9171 §9.1 and RFC 9172).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockType(pub u64);

impl BlockType {
    /// Bundle payload block.
    pub const PAYLOAD: Self = Self(1);
    /// Previous node block.
    pub const PREVIOUS_NODE: Self = Self(6);
    /// Bundle age block.
    pub const BUNDLE_AGE: Self = Self(7);
    /// Hop count block.
    pub const HOP_COUNT: Self = Self(10);
    /// Block integrity block (RFC 9172).
    pub const BIB: Self = Self(11);
    /// Block confidentiality block (RFC 9172).
    pub const BCB: Self = Self(12);

    /// Human-readable name.
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "payload",
            6 => "previous-node",
            7 => "bundle-age",
            10 => "hop-count",
            11 => "block-integrity",
            12 => "block-confidentiality",
            192..=255 => "private/experimental",
            _ => "unknown",
        }
    }
}

/// Block processing control flags (RFC 9171 §4.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BlockFlags(pub u64);

impl BlockFlags {
    /// Replicate this block in every fragment.
    pub const REPLICATE_IN_FRAGMENTS: Self = Self(0x01);
    /// Send a status report if the block cannot be processed.
    pub const REPORT_IF_UNPROCESSABLE: Self = Self(0x02);
    /// Delete the bundle if the block cannot be processed.
    pub const DELETE_BUNDLE_IF_UNPROCESSABLE: Self = Self(0x04);
    /// Discard the block if it cannot be processed.
    pub const DISCARD_IF_UNPROCESSABLE: Self = Self(0x10);

    /// Whether every bit of `o` is set.
    pub const fn contains(self, o: Self) -> bool {
        self.0 & o.0 == o.0
    }

    /// Names of the set flags, for display.
    pub fn names(self) -> Vec<&'static str> {
        super::primary::flag_names(
            self.0,
            &[
                (0x01, "replicate_in_fragments"),
                (0x02, "report_if_unprocessable"),
                (0x04, "delete_bundle_if_unprocessable"),
                (0x10, "discard_if_unprocessable"),
            ],
        )
    }
}

impl std::ops::BitOr for BlockFlags {
    type Output = Self;
    fn bitor(self, o: Self) -> Self {
        Self(self.0 | o.0)
    }
}

/// Hop limit and hop count (RFC 9171 §4.4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HopCount {
    /// Maximum hops (1..=255).
    pub limit: u64,
    /// Hops so far.
    pub count: u64,
}

impl HopCount {
    /// Whether the bundle has travelled more hops than allowed (the router deletes it then).
    pub fn exceeded(&self) -> bool {
        self.count > self.limit
    }
}

/// The typed content of a block this codec understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockData {
    /// Payload: raw application data.
    Payload,
    /// Node ID of the node that forwarded the bundle here.
    PreviousNode(Eid),
    /// Milliseconds since creation.
    BundleAge(u64),
    /// Hop limit and count.
    HopCount(HopCount),
    /// Any other type: kept as bytes and re-emitted unchanged.
    Opaque,
}

/// A canonical block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block<'a> {
    block_type: BlockType,
    number: u64,
    flags: BlockFlags,
    crc_type: CrcType,
    data: BlockData,
    /// The complete encoding of the block, CRC included.
    encoded: Cow<'a, [u8]>,
    /// Where the block-type-specific data sits within `encoded`.
    data_range: Range<usize>,
}

/// The fields of a canonical block up to (and including) the header of its data byte string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockHead {
    pub block_type: BlockType,
    pub number: u64,
    pub flags: BlockFlags,
    pub crc_type: CrcType,
    /// The block is an indefinite-length array: a break follows its last item.
    pub indefinite: bool,
    /// Offset (in the reader's input) where the data starts.
    pub data_start: usize,
    pub data_len: u64,
}

impl BlockHead {
    /// Reads a block head; leaves the reader at the first data byte.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<BlockHead> {
        let start = r.pos();
        let items = r.array("a canonical block (a CBOR array)")?;
        if let Some(n) = items
            && n != 5
            && n != 6
        {
            return Err(DecodeError::new(start, ErrorKind::CanonicalBlockLength(n)));
        }
        let ty_at = r.pos();
        let block_type = BlockType(r.u64("the block type code")?);
        if block_type.0 == 0 {
            return Err(DecodeError::new(ty_at, ErrorKind::ReservedBlockType));
        }
        let num_at = r.pos();
        let number = r.u64("the block number")?;
        if number == 0 {
            return Err(DecodeError::new(num_at, ErrorKind::BlockNumberZero));
        }
        if block_type == BlockType::PAYLOAD && number != 1 {
            return Err(DecodeError::new(num_at, ErrorKind::PayloadBlockNumber(number)));
        }
        if block_type != BlockType::PAYLOAD && number == 1 {
            return Err(DecodeError::new(num_at, ErrorKind::NumberOneNotPayload(block_type.0)));
        }
        let flags = BlockFlags(r.u64("the block processing control flags")?);
        let crc_at = r.pos();
        let crc_type = CrcType::from_code(r.u64("the CRC type")?).map_err(|k| DecodeError::new(crc_at, k))?;
        if let Some(items) = items
            && items != 5 + u64::from(crc_type != CrcType::None)
        {
            let kind = ErrorKind::CanonicalFieldsMismatch { block: number, items, crc_type: crc_type.code() };
            return Err(DecodeError::new(start, kind));
        }
        let data_len = r.bytes_header("the block-type-specific data (a definite-length byte string)")?;
        let indefinite = items.is_none();
        Ok(BlockHead { block_type, number, flags, crc_type, indefinite, data_start: r.pos(), data_len })
    }

    /// Size of the whole block given where it started. Saturates: `data_len` is untrusted (up to `u64::MAX`),
    /// and callers compare the result with a limit.
    pub(crate) fn total_len(&self, start: usize) -> u64 {
        let framing = (self.data_start - start) as u64 + self.crc_type.field_len() as u64 + u64::from(self.indefinite);
        framing.saturating_add(self.data_len)
    }
}

impl<'a> Block<'a> {
    /// Builds and encodes a block. The data of known types is parsed so that the typed accessors work.
    pub fn new(
        block_type: BlockType,
        number: u64,
        flags: BlockFlags,
        crc_type: CrcType,
        data: &[u8],
    ) -> std::result::Result<Block<'static>, DecodeError> {
        let mut out = Vec::with_capacity(8 + head_len(number) + head_len(flags.0) + 9 + data.len() + 5);
        write_head(&mut out, MAJOR_ARRAY, 5 + u64::from(crc_type != CrcType::None));
        write_head(&mut out, MAJOR_UINT, block_type.0);
        write_head(&mut out, MAJOR_UINT, number);
        write_head(&mut out, MAJOR_UINT, flags.0);
        write_head(&mut out, MAJOR_UINT, u64::from(crc_type.code()));
        write_head(&mut out, MAJOR_BYTES, data.len() as u64);
        let data_start = out.len();
        out.extend_from_slice(data);
        let data_range = data_start..out.len();
        crc::seal_block(crc_type, &mut out, false);
        let typed = parse_data(block_type, number, data, &Limits::default())
            .map_err(|kind| DecodeError::new(data_start, kind))?;
        Ok(Block { block_type, number, flags, crc_type, data: typed, encoded: Cow::Owned(out), data_range })
    }

    /// Decodes one block at the reader's position, checking its CRC and the format of known types.
    pub(crate) fn decode(r: &mut Reader<'a>, limits: &Limits) -> Result<Block<'a>> {
        let start = r.pos();
        let head = BlockHead::decode(r)?;
        Self::decode_body(r, start, head, limits)
    }

    /// Decodes the rest of a block whose head (starting at `start`) has been read.
    pub(crate) fn decode_body(r: &mut Reader<'a>, start: usize, head: BlockHead, limits: &Limits) -> Result<Block<'a>> {
        let input: &'a [u8] = r.input();
        let data_end = usize::try_from(head.data_len)
            .ok()
            .and_then(|l| head.data_start.checked_add(l))
            .filter(|&e| e <= input.len())
            .ok_or_else(|| DecodeError::new(input.len(), ErrorKind::Truncated))?;
        r.set_pos(data_end);
        if head.crc_type != CrcType::None {
            read_crc_field(r, head.crc_type, head.number)?;
        }
        if head.indefinite && !r.try_break()? {
            let kind =
                ErrorKind::CanonicalFieldsMismatch { block: head.number, items: 7, crc_type: head.crc_type.code() };
            return Err(DecodeError::new(r.pos(), kind));
        }
        let end = r.pos();
        let encoded = &input[start..end];
        if head.crc_type != CrcType::None {
            check_crc(head.crc_type, encoded, data_end + 1 - start, head.number, start)?;
        }
        let data = parse_data(head.block_type, head.number, &input[head.data_start..data_end], limits)
            .map_err(|k| DecodeError::new(head.data_start, k))?;
        Ok(Block {
            block_type: head.block_type,
            number: head.number,
            flags: head.flags,
            crc_type: head.crc_type,
            data,
            encoded: Cow::Borrowed(encoded),
            data_range: head.data_start - start..data_end - start,
        })
    }

    /// Decodes a block from an encoding made in this crate, keeping the buffer rather than copying it: the
    /// payload of a reassembled bundle may be gigabytes.
    pub(crate) fn from_encoding(encoded: Vec<u8>, limits: &Limits) -> Result<Block<'static>> {
        let (block_type, number, flags, crc_type, data, data_range) = {
            let mut r = Reader::new(&encoded);
            let b = Block::decode(&mut r, limits)?;
            if r.pos() != encoded.len() {
                return Err(DecodeError::new(r.pos(), ErrorKind::TrailingBytes(encoded.len() - r.pos())));
            }
            (b.block_type, b.number, b.flags, b.crc_type, b.data, b.data_range)
        };
        Ok(Block { block_type, number, flags, crc_type, data, encoded: Cow::Owned(encoded), data_range })
    }

    /// Block type.
    pub fn block_type(&self) -> BlockType {
        self.block_type
    }
    /// Block number (unique in the bundle; 1 is the payload).
    pub fn number(&self) -> u64 {
        self.number
    }
    /// Block processing control flags.
    pub fn flags(&self) -> BlockFlags {
        self.flags
    }
    /// CRC type.
    pub fn crc_type(&self) -> CrcType {
        self.crc_type
    }
    /// Typed content, for known block types.
    pub fn typed(&self) -> &BlockData {
        &self.data
    }
    /// Block-type-specific data bytes (the payload, for the payload block).
    pub fn data(&self) -> &[u8] {
        &self.encoded[self.data_range.clone()]
    }
    /// Where the block-type-specific data starts within the block's encoding.
    pub(crate) fn data_offset(&self) -> usize {
        self.data_range.start
    }
    /// The block's complete encoding.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }
    /// Detaches the block from the input buffer.
    pub fn into_owned(self) -> Block<'static> {
        Block { encoded: Cow::Owned(self.encoded.into_owned()), ..self }
    }
    /// Same block with other data, re-encoded (used when a forwarder updates age or hop count).
    pub fn with_data(&self, data: &[u8]) -> std::result::Result<Block<'static>, DecodeError> {
        Block::new(self.block_type, self.number, self.flags, self.crc_type, data)
    }
}

fn exact<T>(data: &[u8], f: impl FnOnce(&mut Reader<'_>) -> Result<T>) -> Option<T> {
    let mut r = Reader::new(data);
    let v = f(&mut r).ok()?;
    (r.pos() == data.len()).then_some(v)
}

/// Parses the data of the block types we understand; anything else is opaque.
fn parse_data(ty: BlockType, number: u64, data: &[u8], limits: &Limits) -> std::result::Result<BlockData, ErrorKind> {
    let malformed = || ErrorKind::MalformedExtensionData { block: number, what: ty.name() };
    match ty {
        BlockType::PAYLOAD => Ok(BlockData::Payload),
        BlockType::PREVIOUS_NODE => exact(data, |r| Eid::decode(r, "previous node", limits.max_eid_len))
            .map(BlockData::PreviousNode)
            .ok_or_else(malformed),
        BlockType::BUNDLE_AGE => exact(data, |r| r.u64("bundle age")).map(BlockData::BundleAge).ok_or_else(malformed),
        BlockType::HOP_COUNT => {
            let hc = exact(data, |r| {
                let at = r.pos();
                let n = r.array("hop count array")?;
                if n.is_some_and(|n| n != 2) {
                    return Err(DecodeError::new(at, ErrorKind::Truncated));
                }
                let hc = HopCount { limit: r.u64("hop limit")?, count: r.u64("hop count")? };
                r.close(n, "the end of the hop count array")?;
                Ok(hc)
            })
            .ok_or_else(malformed)?;
            if !(1..=255).contains(&hc.limit) {
                return Err(ErrorKind::HopLimitOutOfRange(hc.limit));
            }
            Ok(BlockData::HopCount(hc))
        }
        _ => Ok(BlockData::Opaque),
    }
}

/// Encodes a bundle-age block's data.
pub fn bundle_age_data(ms: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(9);
    write_head(&mut v, MAJOR_UINT, ms);
    v
}

/// Encodes a hop-count block's data.
pub fn hop_count_data(hc: HopCount) -> Vec<u8> {
    let mut v = Vec::with_capacity(12);
    write_head(&mut v, MAJOR_ARRAY, 2);
    write_head(&mut v, MAJOR_UINT, hc.limit);
    write_head(&mut v, MAJOR_UINT, hc.count);
    v
}

/// Whether a BIB's security-target list includes block 0 (the primary block). The abstract security block
/// (RFC 9172 §3.6) starts with the target array, so only that first item is read.
pub(crate) fn bib_targets_primary(data: &[u8]) -> bool {
    let mut r = Reader::new(data);
    let Ok(n) = r.array("security targets") else {
        return false;
    };
    // Bounded by the data: every target takes at least one byte.
    for read in 0..=data.len() as u64 {
        if r.at_end(n, read).unwrap_or(true) {
            return false;
        }
        match r.u64("security target") {
            Ok(0) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}
