//! Bundle Protocol version 7 (RFC 9171): a strict, zero-copy, streaming-capable codec.
//!
//! * [`Bundle::decode`] parses and validates a complete bundle held in memory; the payload and every block's
//!   bytes are borrowed from the input. Re-encoding an unmodified decoded bundle reproduces the input byte
//!   for byte.
//! * [`StreamDecoder`] and [`StreamEncoder`] handle bundles that arrive or leave in segments: the blocks
//!   before the payload are parsed as they come, the payload is passed through to a sink, and CRCs are
//!   computed incrementally, so a 1 GB bundle never sits in memory.
//! * [`BundleBuilder`] makes new bundles; [`admin`] encodes and decodes administrative records.
//!
//! Every violation of RFC 9171 a receiver can check is a distinct [`ErrorKind`], reported with its byte
//! offset. The decoder never panics on input and never allocates according to an untrusted length field.

pub mod admin;
mod block;
mod builder;
mod bundle;
pub(crate) mod cbor;
mod crc;
mod eid;
mod error;
mod fragment;
mod id;
mod primary;
mod stream;
mod time;
mod validate;

pub use block::{Block, BlockData, BlockFlags, BlockType, HopCount, bundle_age_data, hop_count_data};
pub use builder::BundleBuilder;
pub use bundle::{Bundle, EncodeError, UnprocessableBlocks};
pub use cbor::write_head as write_cbor_head;
pub use crc::{CrcState, CrcType};
pub use eid::{DtnEid, Eid, IpnEid, IpnForm, SCHEME_DTN, SCHEME_IPN, UnknownEid};
pub use error::{DecodeError, EidError, ErrorKind};
pub use fragment::{
    FragmentError, covers, fragment, fragment_from_piece, fragment_from_prefix, fragment_range, payload_bytes_within,
    payload_span, reassemble,
};
pub use id::{BundleId, BundleIdError};
pub use primary::{BundleFlags, FragmentInfo, PrimaryBlock};
pub use stream::{BundleHeader, Feed, PayloadSink, StreamDecoder, StreamEncoder, StreamError};
pub use time::{CreationTimestamp, DTN_EPOCH_UNIX_MS, DtnTime, civil_from_days};

/// Size limits applied while decoding. Defaults suit a station: generous, but nothing an attacker can use to
/// make a node allocate without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest whole bundle accepted, in bytes.
    pub max_bundle_len: u64,
    /// Largest total size of everything before the payload data (primary and extension blocks, payload
    /// block header). Only this part is ever buffered by the streaming decoder.
    pub max_header_len: usize,
    /// Most canonical blocks in one bundle.
    pub max_blocks: usize,
    /// Longest EID text accepted.
    pub max_eid_len: usize,
    /// Reject bundles whose primary block has no CRC and no BIB covering it (RFC 9171 §4.3.1). On by
    /// default; a gateway facing a lax peer may turn it off.
    pub require_primary_crc: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bundle_len: 4 << 30,
            max_header_len: 64 << 10,
            max_blocks: 64,
            max_eid_len: 1024,
            require_primary_crc: true,
        }
    }
}
