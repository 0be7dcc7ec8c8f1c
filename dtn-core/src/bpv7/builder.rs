//! Making new bundles.

use std::borrow::Cow;

use super::Limits;
use super::block::{Block, BlockFlags, BlockType, HopCount, bundle_age_data, hop_count_data};
use super::bundle::Bundle;
use super::crc::CrcType;
use super::eid::Eid;
use super::error::{DecodeError, ErrorKind};
use super::primary::{BundleFlags, FragmentInfo, PrimaryBlock};
use super::stream::BundleHeader;
use super::time::CreationTimestamp;
use super::validate::check_all;

/// Builds a valid bundle. Block numbers are assigned in order: extension blocks from 2, payload 1.
///
/// ```
/// use dtn_core::bpv7::{BundleBuilder, CreationTimestamp, Eid};
/// let b = BundleBuilder::new("dtn://station-1/".parse()?, "dtn://collector/~data".parse()?)
///     .creation(CreationTimestamp::new(815_000_000_000, 0))
///     .lifetime_ms(86_400_000)
///     .hop_limit(32)
///     .payload(b"pressure=1013.2hPa".to_vec())
///     .build()?;
/// assert_eq!(b.payload(), b"pressure=1013.2hPa");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// For a payload too large for memory, [`build_header`](Self::build_header) gives the header to stream it
/// with [`StreamEncoder`](super::StreamEncoder).
#[derive(Debug, Clone)]
pub struct BundleBuilder {
    primary: PrimaryBlock,
    block_crc: CrcType,
    previous_node: Option<Eid>,
    bundle_age_ms: Option<u64>,
    hop_limit: Option<u8>,
    extensions: Vec<(BlockType, BlockFlags, Vec<u8>)>,
    payload_flags: BlockFlags,
    payload: Vec<u8>,
}

impl BundleBuilder {
    /// A bundle from `source` to `destination`, reports to `source`, CRC-32C everywhere, lifetime one day,
    /// creation time 0 (no clock) until [`creation`](Self::creation) is called.
    pub fn new(source: Eid, destination: Eid) -> Self {
        let flags = if source.is_null() { BundleFlags::MUST_NOT_FRAGMENT } else { BundleFlags::default() };
        BundleBuilder {
            primary: PrimaryBlock {
                flags,
                crc_type: CrcType::Crc32c,
                destination,
                report_to: source.clone(),
                source,
                creation: CreationTimestamp::default(),
                lifetime_ms: 86_400_000,
                fragment: None,
            },
            block_crc: CrcType::Crc32c,
            previous_node: None,
            bundle_age_ms: None,
            hop_limit: None,
            extensions: Vec::new(),
            payload_flags: BlockFlags::default(),
            payload: Vec::new(),
        }
    }

    /// Report-to endpoint.
    pub fn report_to(mut self, eid: Eid) -> Self {
        self.primary.report_to = eid;
        self
    }
    /// Creation timestamp. With time 0 the builder adds a bundle-age block (0 ms unless set).
    pub fn creation(mut self, ts: CreationTimestamp) -> Self {
        self.primary.creation = ts;
        self
    }
    /// Lifetime in milliseconds.
    pub fn lifetime_ms(mut self, ms: u64) -> Self {
        self.primary.lifetime_ms = ms;
        self
    }
    /// Bundle processing control flags (the fragment flag follows [`fragment`](Self::fragment)).
    pub fn flags(mut self, flags: BundleFlags) -> Self {
        let frag = self.primary.flags.0 & BundleFlags::IS_FRAGMENT.0;
        self.primary.flags = BundleFlags((flags.0 & !BundleFlags::IS_FRAGMENT.0) | frag);
        self
    }
    /// CRC type of the primary block and of every block the builder makes.
    pub fn crc_type(mut self, ty: CrcType) -> Self {
        self.primary.crc_type = ty;
        self.block_crc = ty;
        self
    }
    /// CRC type of the primary block only.
    pub fn primary_crc_type(mut self, ty: CrcType) -> Self {
        self.primary.crc_type = ty;
        self
    }
    /// CRC type of the canonical blocks only.
    pub fn block_crc_type(mut self, ty: CrcType) -> Self {
        self.block_crc = ty;
        self
    }
    /// Makes the bundle a fragment.
    pub fn fragment(mut self, offset: u64, total_adu_len: u64) -> Self {
        self.primary.fragment = Some(FragmentInfo { offset, total_adu_len });
        self.primary.flags |= BundleFlags::IS_FRAGMENT;
        self
    }
    /// Adds a previous-node block.
    pub fn previous_node(mut self, node: Eid) -> Self {
        self.previous_node = Some(node);
        self
    }
    /// Adds a bundle-age block.
    pub fn bundle_age_ms(mut self, ms: u64) -> Self {
        self.bundle_age_ms = Some(ms);
        self
    }
    /// Adds a hop-count block with this limit and count 0.
    pub fn hop_limit(mut self, limit: u8) -> Self {
        self.hop_limit = Some(limit);
        self
    }
    /// Adds an extension block of any type (its data is stored as given).
    pub fn extension_block(mut self, ty: BlockType, flags: BlockFlags, data: Vec<u8>) -> Self {
        self.extensions.push((ty, flags, data));
        self
    }
    /// Payload block flags.
    pub fn payload_flags(mut self, flags: BlockFlags) -> Self {
        self.payload_flags = flags;
        self
    }
    /// The application data.
    pub fn payload(mut self, data: Vec<u8>) -> Self {
        self.payload = data;
        self
    }

    /// Encodes every block and validates the result against RFC 9171.
    pub fn build(self) -> Result<Bundle<'static>, DecodeError> {
        self.build_with(&Limits::default())
    }

    /// As [`build`](Self::build), with explicit limits.
    pub fn build_with(self, limits: &Limits) -> Result<Bundle<'static>, DecodeError> {
        let mut blocks = self.extension_blocks()?;
        blocks.push(Block::new(BlockType::PAYLOAD, 1, self.payload_flags, self.block_crc, &self.payload)?);
        let encoded = self.primary.encode();
        Bundle::from_parts(self.primary, Cow::Owned(encoded), blocks, limits)
    }

    /// Builds only the header of a bundle whose payload of `payload_len` bytes will be streamed (from a file,
    /// say) through [`StreamEncoder`](super::StreamEncoder); any payload set on the builder is ignored.
    pub fn build_header(self, payload_len: u64, limits: &Limits) -> Result<BundleHeader, DecodeError> {
        let blocks = self.extension_blocks()?;
        check_all(&self.primary, &blocks, self.payload_flags, payload_len, limits)?;
        let encoded = self.primary.encode();
        let header =
            BundleHeader::from_parts(self.primary, encoded, blocks, self.payload_flags, self.block_crc, payload_len);
        // The decoders refuse a bundle over the limit before its payload arrives; refuse to start sending one.
        let size = header.encoded_len();
        if size > limits.max_bundle_len {
            return Err(DecodeError::new(0, ErrorKind::BundleTooLarge { size, limit: limits.max_bundle_len }));
        }
        Ok(header)
    }

    fn extension_blocks(&self) -> Result<Vec<Block<'static>>, DecodeError> {
        let crc = self.block_crc;
        let mut blocks = Vec::with_capacity(4 + self.extensions.len());
        let mut number = 2;
        let mut push = |blocks: &mut Vec<Block<'static>>, ty, flags, data: &[u8]| -> Result<(), DecodeError> {
            blocks.push(Block::new(ty, number, flags, crc, data)?);
            number += 1;
            Ok(())
        };
        if let Some(p) = &self.previous_node {
            push(&mut blocks, BlockType::PREVIOUS_NODE, BlockFlags::default(), &p.to_cbor())?;
        }
        let age = self.bundle_age_ms.or((self.primary.creation.time.0 == 0).then_some(0));
        if let Some(a) = age {
            push(&mut blocks, BlockType::BUNDLE_AGE, BlockFlags::default(), &bundle_age_data(a))?;
        }
        if let Some(l) = self.hop_limit {
            let hc = HopCount { limit: u64::from(l), count: 0 };
            push(&mut blocks, BlockType::HOP_COUNT, BlockFlags::default(), &hop_count_data(hc))?;
        }
        for (ty, flags, data) in &self.extensions {
            push(&mut blocks, *ty, *flags, data)?;
        }
        Ok(blocks)
    }
}
