//! Typed decode and validation errors.
//!
//! Every rule of RFC 9171 that a receiver can check has its own variant, so callers (the router, the CLI,
//! the convergence layers) can react precisely and tests can assert the exact rule. A [`DecodeError`] also
//! carries the byte offset, relative to the start of the bundle, at which the problem was found.

use thiserror::Error;

/// A decode failure: which rule was broken and where.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("byte {offset}: {kind}")]
pub struct DecodeError {
    /// Offset from the first byte of the bundle.
    pub offset: usize,
    /// The rule that was broken.
    pub kind: ErrorKind,
}

impl DecodeError {
    pub(crate) fn new(offset: usize, kind: ErrorKind) -> Self {
        DecodeError { offset, kind }
    }

    /// True when more input could turn this failure into a success (the streaming decoder waits).
    pub fn is_truncated(&self) -> bool {
        matches!(self.kind, ErrorKind::Truncated)
    }
}

/// Errors in endpoint identifiers, from CBOR or from text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EidError {
    /// Scheme code 0, which is reserved.
    #[error("EID scheme code {0} is reserved (RFC 9171 §9.6)")]
    UnknownScheme(u64),
    /// Text EID with a scheme other than `dtn:` or `ipn:`.
    #[error("unsupported EID scheme in {0:?} (expected dtn: or ipn:)")]
    UnknownTextScheme(String),
    /// dtn scheme SSP encoded as an integer other than 0.
    #[error("dtn EID with integer SSP {0}: only 0 (dtn:none) is allowed")]
    BadDtnNone(u64),
    /// dtn scheme SSP that is not `//node/demux`.
    #[error("dtn EID SSP {0:?} is not of the form //node-name/demux (RFC 9171 §4.2.5.1.1)")]
    BadDtnSsp(String),
    /// ipn SSP that is not an array of 2 or 3 unsigned integers.
    #[error("ipn EID must be an array of 2 or 3 unsigned integers (RFC 9171 §4.2.5.1.2, RFC 9758)")]
    BadIpnShape,
    /// ipn three-element form with allocator or node number beyond 32 bits.
    #[error("ipn EID three-element form needs allocator and node numbers below 2^32 (RFC 9758)")]
    IpnComponentTooLarge,
    /// Text ipn EID that does not parse.
    #[error("ipn EID {0:?} is not ipn:node.service or ipn:allocator.node.service")]
    BadIpnText(String),
    /// EID is longer than the configured limit.
    #[error("EID longer than {0} bytes")]
    TooLong(usize),
    /// The EID array did not have two items.
    #[error("EID must be a CBOR array of 2 items [scheme, SSP]")]
    BadShape,
}

/// The specific rule a bundle broke.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input ended before the bundle did.
    #[error("truncated: input ended inside the bundle")]
    Truncated,
    /// Input bytes are not the CBOR item the format requires at this point.
    #[error("malformed CBOR: expected {expected}")]
    UnexpectedCbor {
        /// What the format requires here.
        expected: &'static str,
    },
    /// A text string that is not UTF-8.
    #[error("malformed CBOR: text string is not valid UTF-8")]
    InvalidUtf8,
    /// RFC 9171 §4.1: a bundle is an indefinite-length array.
    #[error("a bundle must be a CBOR indefinite-length array (RFC 9171 §4.1)")]
    NotIndefiniteArray,
    /// RFC 9171 §4.1: the indefinite array ended with fewer than two blocks.
    #[error("bundle has no canonical block after the primary block")]
    NoCanonicalBlocks,
    /// RFC 9171 §4.3.1: version must be 7.
    #[error("unsupported bundle protocol version {0} (RFC 9171 §4.3.1 requires 7)")]
    UnsupportedVersion(u64),
    /// Primary block array length outside 8..=11.
    #[error("primary block must be an array of 8 to 11 items, found {0} (RFC 9171 §4.3.1)")]
    PrimaryBlockLength(u64),
    /// The number of primary-block items does not match the fragment flag and CRC type.
    #[error(
        "primary block has {items} items but fragment flag is {fragment} and CRC type is {crc_type}: \
         fragment offset and total ADU length must be present exactly when the bundle is a fragment \
         (RFC 9171 §4.3.1)"
    )]
    PrimaryFieldsMismatch {
        /// Items found.
        items: u64,
        /// Whether the fragment flag was set.
        fragment: bool,
        /// CRC type code.
        crc_type: u8,
    },
    /// CRC type code other than 0, 1, 2.
    #[error("unknown CRC type {0} (RFC 9171 §4.2.1 allows 0, 1, 2)")]
    UnknownCrcType(u64),
    /// The CRC field is not a byte string of exactly 2 (CRC-16) or 4 (CRC-32C) bytes.
    #[error("CRC field of block {block} must be a {len}-byte CBOR byte string (RFC 9171 §4.2.1)")]
    CrcFieldMalformed {
        /// Block number (0 = primary).
        block: u64,
        /// Required value length.
        len: usize,
    },
    /// The carried CRC does not match the one computed over the block.
    #[error("CRC mismatch in block {block}: carried {carried:#x}, computed {computed:#x}")]
    CrcMismatch {
        /// Block number (0 = primary).
        block: u64,
        /// Value found on the wire.
        carried: u32,
        /// Value computed.
        computed: u32,
    },
    /// RFC 9171 §4.3.1: the primary block needs a CRC unless a BIB covers it.
    #[error("primary block has CRC type 0 and no block integrity block targets it (RFC 9171 §4.3.1)")]
    PrimaryCrcMissing,
    /// An endpoint identifier is invalid.
    #[error("invalid {field}: {source}")]
    Eid {
        /// Which field held the EID.
        field: &'static str,
        /// What was wrong with it.
        source: EidError,
    },
    /// Creation timestamp is not `[dtn-time, sequence]`.
    #[error("creation timestamp must be an array [DTN time, sequence number] (RFC 9171 §4.2.7)")]
    BadCreationTimestamp,
    /// Canonical block array length other than 5 or 6.
    #[error("canonical block must be an array of 5 or 6 items, found {0} (RFC 9171 §4.3.2)")]
    CanonicalBlockLength(u64),
    /// Item count and CRC type of a canonical block disagree.
    #[error("block {block}: {items} items but CRC type {crc_type} (RFC 9171 §4.3.2)")]
    CanonicalFieldsMismatch {
        /// Block number.
        block: u64,
        /// Items found.
        items: u64,
        /// CRC type code.
        crc_type: u8,
    },
    /// Block type code 0 is reserved.
    #[error("block type 0 is reserved (RFC 9171 §9.1)")]
    ReservedBlockType,
    /// Block number 0 belongs to the primary block.
    #[error("canonical block with block number 0, which is the primary block's (RFC 9171 §4.3.2)")]
    BlockNumberZero,
    /// Two blocks share a number.
    #[error("duplicate block number {0} (RFC 9171 §4.3.2)")]
    DuplicateBlockNumber(u64),
    /// The payload block must be number 1.
    #[error("payload block has block number {0}, must be 1 (RFC 9171 §4.3.3)")]
    PayloadBlockNumber(u64),
    /// Block number 1 is reserved for the payload block.
    #[error("block of type {0} uses block number 1, which is reserved for the payload (RFC 9171 §4.3.3)")]
    NumberOneNotPayload(u64),
    /// No payload block.
    #[error("bundle has no payload block (RFC 9171 §4.1)")]
    MissingPayload,
    /// A block follows the payload block.
    #[error("payload block is not the last block (RFC 9171 §4.1)")]
    PayloadNotLast,
    /// More than one of a block type that may occur once.
    #[error("more than one {0} block (RFC 9171 §4.4)")]
    DuplicateExtensionBlock(&'static str),
    /// Hop limit outside 1..=255.
    #[error("hop limit {0} outside 1..=255 (RFC 9171 §4.4.3)")]
    HopLimitOutOfRange(u64),
    /// Creation time 0 needs a bundle-age block.
    #[error("creation time is 0 (no clock) but there is no bundle-age block (RFC 9171 §4.4.2)")]
    MissingBundleAge,
    /// Administrative records must not request status reports.
    #[error("administrative record requests status reports (RFC 9171 §4.2.3)")]
    AdminRecordRequestsReports,
    /// Administrative records must not ask for reports about unprocessable blocks.
    #[error("administrative record has block {0} with the 'report if unprocessable' flag (RFC 9171 §4.2.4)")]
    AdminRecordBlockReportFlag(u64),
    /// Anonymous bundles must not be fragmented nor request reports.
    #[error(
        "source is dtn:none, which requires the must-not-fragment flag and no status report requests \
         (RFC 9171 §4.2.3)"
    )]
    AnonymousSourceRules,
    /// RFC 9758 §5.4: a received bundle's source or destination must not be LocalNode (`ipn:!.n`).
    #[error("{0} is a LocalNode EID (ipn:!.n), which no received bundle may carry (RFC 9758 §5.4)")]
    LocalNodeEid(&'static str),
    /// Fragment offset plus payload length beyond the total ADU length.
    #[error("fragment offset {offset} + payload length {len} exceeds total ADU length {total}")]
    FragmentBeyondAdu {
        /// Fragment offset.
        offset: u64,
        /// Payload length of this fragment.
        len: u64,
        /// Total ADU length.
        total: u64,
    },
    /// Extension block data does not match its type's format.
    #[error("block {block} ({what}) has malformed block-type-specific data")]
    MalformedExtensionData {
        /// Block number.
        block: u64,
        /// Block type name.
        what: &'static str,
    },
    /// Bytes after the end of the bundle.
    #[error("{0} trailing bytes after the end of the bundle")]
    TrailingBytes(usize),
    /// The bundle is larger than the configured limit.
    #[error("bundle of {size} bytes exceeds the configured limit of {limit} bytes")]
    BundleTooLarge {
        /// Size found (or announced).
        size: u64,
        /// Limit configured.
        limit: u64,
    },
    /// The blocks before the payload are larger than the configured limit.
    #[error("bundle header (blocks before the payload data) exceeds the configured limit of {0} bytes")]
    HeaderTooLarge(usize),
    /// Too many blocks.
    #[error("bundle has more than the configured limit of {0} blocks")]
    TooManyBlocks(usize),
}
