//! Streaming decode and encode: bundles that arrive or leave in segments (TCPCL transfers, files on disk)
//! without ever holding the payload in memory.
//!
//! Only the blocks before the payload data are buffered (bounded by [`Limits::max_header_len`]); the payload
//! flows to a [`PayloadSink`] as it arrives, and its CRC is computed on the way through. Every rule that
//! [`Bundle::decode`](super::Bundle::decode) checks is checked here too, and the header is validated *before*
//! the first payload byte reaches the sink, so a store can refuse a bundle early.

use std::borrow::Cow;
use std::io;
use std::ops::Range;

use thiserror::Error;

use super::Limits;
use super::block::{Block, BlockFlags, BlockHead, BlockType};
use super::bundle::{Bundle, EncodeError};
use super::cbor::{MAJOR_ARRAY, MAJOR_BYTES, MAJOR_UINT, Reader, write_head};
use super::crc::{self, CrcState, CrcType};
use super::error::{DecodeError, ErrorKind};
use super::id::BundleId;
use super::primary::PrimaryBlock;
use super::validate::{check_block, check_bundle};

/// Receives a bundle's header and then its payload bytes.
pub trait PayloadSink {
    /// Called once the header is complete and valid, before any payload byte. Return an error to refuse.
    fn on_header(&mut self, _header: &BundleHeader) -> io::Result<()> {
        Ok(())
    }
    /// Called with consecutive payload bytes.
    fn on_payload(&mut self, chunk: &[u8]) -> io::Result<()>;
}

impl PayloadSink for Vec<u8> {
    fn on_payload(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.extend_from_slice(chunk);
        Ok(())
    }
}

/// Errors from the streaming decoder.
#[derive(Debug, Error)]
pub enum StreamError {
    /// The bundle broke a rule.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The sink refused the bundle or failed to take bytes.
    #[error("payload sink: {0}")]
    Sink(#[source] io::Error),
}

/// Everything about a bundle except its payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleHeader {
    primary: PrimaryBlock,
    primary_encoded: Vec<u8>,
    blocks: Vec<Block<'static>>,
    /// The payload block's fields; `data_start` is the length of `payload_head`.
    payload: BlockHead,
    /// The payload block's encoding up to its data, as received (canonical for built bundles), so that a
    /// streamed re-encoding is byte-identical like the in-memory one.
    payload_head: Vec<u8>,
}

/// The shortest encoding of a payload block's head.
fn canonical_payload_head(flags: BlockFlags, crc_type: CrcType, len: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    write_head(&mut v, MAJOR_ARRAY, 5 + u64::from(crc_type != CrcType::None));
    write_head(&mut v, MAJOR_UINT, BlockType::PAYLOAD.0);
    write_head(&mut v, MAJOR_UINT, 1);
    write_head(&mut v, MAJOR_UINT, flags.0);
    write_head(&mut v, MAJOR_UINT, u64::from(crc_type.code()));
    write_head(&mut v, MAJOR_BYTES, len);
    v
}

impl BundleHeader {
    fn new(
        primary: PrimaryBlock,
        primary_encoded: Vec<u8>,
        blocks: Vec<Block<'static>>,
        payload: BlockHead,
        payload_head: Vec<u8>,
    ) -> Self {
        let payload = BlockHead { data_start: payload_head.len(), ..payload };
        BundleHeader { primary, primary_encoded, blocks, payload, payload_head }
    }

    /// A header for a bundle being built: canonical payload block head.
    pub(crate) fn from_parts(
        primary: PrimaryBlock,
        primary_encoded: Vec<u8>,
        blocks: Vec<Block<'static>>,
        payload_flags: BlockFlags,
        payload_crc_type: CrcType,
        payload_len: u64,
    ) -> Self {
        let head = canonical_payload_head(payload_flags, payload_crc_type, payload_len);
        let payload = BlockHead {
            block_type: BlockType::PAYLOAD,
            number: 1,
            flags: payload_flags,
            crc_type: payload_crc_type,
            indefinite: false,
            data_start: 0,
            data_len: payload_len,
        };
        BundleHeader::new(primary, primary_encoded, blocks, payload, head)
    }

    /// The primary block.
    pub fn primary(&self) -> &PrimaryBlock {
        &self.primary
    }
    /// Extension blocks in wire order.
    pub fn extension_blocks(&self) -> &[Block<'static>] {
        &self.blocks
    }
    /// Payload block flags.
    pub fn payload_flags(&self) -> BlockFlags {
        self.payload.flags
    }
    /// Payload block CRC type.
    pub fn payload_crc_type(&self) -> CrcType {
        self.payload.crc_type
    }
    /// Payload length in bytes.
    pub fn payload_len(&self) -> u64 {
        self.payload.data_len
    }
    /// The bundle's identity.
    pub fn id(&self) -> BundleId {
        BundleId {
            source: self.primary.source.clone(),
            creation: self.primary.creation,
            fragment: self.primary.fragment.map(|f| (f.offset, self.payload.data_len)),
        }
    }

    /// Total encoded size of the bundle.
    pub fn encoded_len(&self) -> u64 {
        let head = 1 + self.primary_encoded.len() + self.blocks.iter().map(|b| b.encoded().len()).sum::<usize>();
        let p = &self.payload;
        // Everything but the payload data: blocks, payload head, CRC field, break(s).
        let framing = (head + self.payload_head.len() + p.crc_type.field_len() + usize::from(p.indefinite) + 1) as u64;
        // Saturates: a header built for a stream may announce any payload length.
        framing.saturating_add(self.payload.data_len)
    }

    /// Joins the header with its payload into a whole bundle.
    pub fn into_bundle(self, payload: &[u8], limits: &Limits) -> Result<Bundle<'static>, DecodeError> {
        if payload.len() as u64 != self.payload.data_len {
            return Err(DecodeError::new(0, ErrorKind::Truncated));
        }
        let mut encoded = self.payload_head;
        encoded.extend_from_slice(payload);
        crc::seal_block(self.payload.crc_type, &mut encoded, self.payload.indefinite);
        let mut blocks = self.blocks;
        blocks.push(Block::decode(&mut Reader::new(&encoded), limits)?.into_owned());
        Bundle::from_parts(self.primary, Cow::Owned(self.primary_encoded), blocks, limits)
    }
}

impl Bundle<'_> {
    /// The bundle's header (everything but the payload bytes), for streaming it out.
    pub fn header(&self) -> BundleHeader {
        let p = self.payload_block();
        let head = BlockHead {
            block_type: BlockType::PAYLOAD,
            number: 1,
            flags: p.flags(),
            crc_type: p.crc_type(),
            indefinite: p.encoded().first() == Some(&0x9f),
            data_start: 0,
            data_len: p.data().len() as u64,
        };
        BundleHeader::new(
            self.primary().clone(),
            self.primary_encoded().to_vec(),
            self.extension_blocks().iter().cloned().map(Block::into_owned).collect(),
            head,
            p.encoded()[..p.data_offset()].to_vec(),
        )
    }
}

enum State {
    Header,
    Payload { remaining: u64, crc: CrcState, crc_type: CrcType, indefinite: bool },
    Trailer { crc: CrcState, crc_type: CrcType, indefinite: bool, buf: [u8; 7], have: usize },
    Done,
}

/// Progress report of one [`StreamDecoder::feed`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feed {
    /// Bytes of the input that belonged to this bundle. Any rest belongs to whatever follows it.
    pub consumed: usize,
    /// The bundle is complete; [`StreamDecoder::take_header`] returns its header.
    pub done: bool,
}

/// Incremental bundle decoder. Feed it segments in order; it hands the payload to a sink.
pub struct StreamDecoder {
    limits: Limits,
    state: State,
    buf: Vec<u8>,
    primary: Option<(PrimaryBlock, Range<usize>)>,
    blocks: Vec<Block<'static>>,
    resume: usize,
    need: usize,
    header: Option<BundleHeader>,
    /// Bytes of the current bundle consumed so far.
    pos: u64,
}

/// Bytes copied into the header buffer per parse attempt, so a large first segment is not copied whole.
const HEADER_STEP: usize = 4096;

impl StreamDecoder {
    /// A decoder with these limits.
    pub fn new(limits: Limits) -> Self {
        StreamDecoder {
            limits,
            state: State::Header,
            buf: Vec::new(),
            primary: None,
            blocks: Vec::new(),
            resume: 0,
            need: 0,
            header: None,
            pos: 0,
        }
    }

    /// Prepares for the next bundle.
    pub fn reset(&mut self) {
        *self = StreamDecoder::new(self.limits);
    }

    /// Bytes of the current bundle consumed so far (0 before its first byte).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The header, once the payload has started (or the bundle is done).
    pub fn header(&self) -> Option<&BundleHeader> {
        self.header.as_ref()
    }

    /// Takes the header of a completed bundle.
    pub fn take_header(&mut self) -> Option<BundleHeader> {
        self.header.take()
    }

    /// Call at end of input: an error if a bundle was started but not finished.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.state {
            State::Done => Ok(()),
            _ if self.pos == 0 => Ok(()),
            _ => Err(DecodeError::new(self.pos as usize, ErrorKind::Truncated)),
        }
    }

    /// Feeds the next segment. Returns how much of it belonged to this bundle and whether it is complete.
    pub fn feed<S: PayloadSink + ?Sized>(&mut self, input: &[u8], sink: &mut S) -> Result<Feed, StreamError> {
        let mut used = 0;
        while used < input.len() {
            match &mut self.state {
                State::Done => break,
                State::Header => {
                    let room = self.limits.max_header_len.saturating_sub(self.buf.len());
                    if room == 0 {
                        return Err(DecodeError::new(
                            self.buf.len(),
                            ErrorKind::HeaderTooLarge(self.limits.max_header_len),
                        )
                        .into());
                    }
                    let want = HEADER_STEP.max(self.need.saturating_sub(self.buf.len()));
                    let take = room.min(input.len() - used).min(want);
                    let old_len = self.buf.len();
                    self.buf.extend_from_slice(&input[used..used + take]);
                    if self.buf.len() < self.need {
                        used += take;
                        self.pos = self.buf.len() as u64;
                        continue;
                    }
                    match self.parse_header(sink)? {
                        None => used += take,
                        Some(k) => {
                            // The header ends inside the bytes just appended (an earlier attempt would have
                            // found it otherwise), so exactly `k - old_len` of them were header.
                            used += k - old_len;
                            self.buf.truncate(k);
                        }
                    }
                    // Everything buffered so far (after truncation above) belongs to this bundle.
                    self.pos = self.buf.len() as u64;
                }
                State::Payload { remaining, crc, crc_type, indefinite } => {
                    let n = (*remaining).min((input.len() - used) as u64) as usize;
                    let chunk = &input[used..used + n];
                    crc.update(chunk);
                    sink.on_payload(chunk).map_err(StreamError::Sink)?;
                    *remaining -= n as u64;
                    used += n;
                    self.pos += n as u64;
                    if *remaining == 0 {
                        let (crc, crc_type, indefinite) =
                            (std::mem::replace(crc, CrcState::None), *crc_type, *indefinite);
                        self.state = State::Trailer { crc, crc_type, indefinite, buf: [0; 7], have: 0 };
                    }
                }
                State::Trailer { crc, crc_type, indefinite, buf, have } => {
                    let need = crc_type.field_len() + usize::from(*indefinite) + 1;
                    let n = (need - *have).min(input.len() - used);
                    buf[*have..*have + n].copy_from_slice(&input[used..used + n]);
                    *have += n;
                    used += n;
                    self.pos += n as u64;
                    // Reject a malformed CRC field as soon as its first byte shows, like the slice decoder,
                    // rather than waiting for bytes that may never come.
                    if *crc_type != CrcType::None && buf[0] != crc_type.field_header() {
                        let at = self.pos as usize - *have;
                        let len = crc_type.value_len();
                        return Err(DecodeError::new(at, ErrorKind::CrcFieldMalformed { block: 1, len }).into());
                    }
                    if *have == need {
                        let (crc_type, indefinite, buf) = (*crc_type, *indefinite, *buf);
                        let crc = std::mem::replace(crc, CrcState::None);
                        self.check_trailer(crc_type, indefinite, crc, &buf[..need])?;
                        self.state = State::Done;
                    }
                }
            }
        }
        Ok(Feed { consumed: used, done: matches!(self.state, State::Done) })
    }

    /// Checks what follows the payload: the CRC field, the payload block's own break if it was an
    /// indefinite-length array (covered by the CRC), and the bundle's closing break.
    fn check_trailer(&self, crc_type: CrcType, indefinite: bool, crc: CrcState, t: &[u8]) -> Result<(), DecodeError> {
        let trailer_at = (self.pos as usize).saturating_sub(t.len());
        let n = crc_type.value_len();
        let block_break_at = crc_type.field_len();
        if indefinite && t[block_break_at] != 0xff {
            let kind = ErrorKind::CanonicalFieldsMismatch { block: 1, items: 7, crc_type: crc_type.code() };
            return Err(DecodeError::new(trailer_at + block_break_at, kind));
        }
        if crc_type != CrcType::None {
            if t[0] != crc_type.field_header() {
                return Err(DecodeError::new(trailer_at, ErrorKind::CrcFieldMalformed { block: 1, len: n }));
            }
            let carried = t[1..1 + n].iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
            let computed = crc.finish_trailer(crc_type, indefinite);
            if carried != computed {
                return Err(DecodeError::new(trailer_at + 1, ErrorKind::CrcMismatch { block: 1, carried, computed }));
            }
        }
        if t[t.len() - 1] != 0xff {
            return Err(DecodeError::new(trailer_at + t.len() - 1, ErrorKind::PayloadNotLast));
        }
        Ok(())
    }

    /// Parses as much of the buffered header as possible. Returns the offset of the first payload data byte
    /// once the payload block's head has been parsed, or `None` if more bytes are needed.
    fn parse_header<S: PayloadSink + ?Sized>(&mut self, sink: &mut S) -> Result<Option<usize>, StreamError> {
        let limits = self.limits;
        if self.resume == 0 {
            match self.buf[0] {
                0x9f => self.resume = 1,
                b if b >> 5 == 4 => {
                    return Err(DecodeError::new(0, ErrorKind::NotIndefiniteArray).into());
                }
                _ => {
                    return Err(
                        DecodeError::new(0, ErrorKind::UnexpectedCbor { expected: "a bundle (CBOR array)" }).into()
                    );
                }
            }
        }
        if self.primary.is_none() {
            let mut r = Reader::new(&self.buf);
            r.set_pos(self.resume);
            match PrimaryBlock::decode(&mut r, &limits) {
                Ok(p) => {
                    self.primary = Some(p);
                    self.resume = r.pos();
                }
                Err(e) if e.is_truncated() => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        let Some((primary, prange)) = &self.primary else {
            return Ok(None);
        };
        loop {
            let mut r = Reader::new(&self.buf);
            r.set_pos(self.resume);
            match r.try_break() {
                Err(_) => return Ok(None),
                Ok(true) => {
                    let kind =
                        if self.blocks.is_empty() { ErrorKind::NoCanonicalBlocks } else { ErrorKind::MissingPayload };
                    return Err(DecodeError::new(self.resume, kind).into());
                }
                Ok(false) => {}
            }
            let head = match BlockHead::decode(&mut r) {
                Ok(h) => h,
                Err(e) if e.is_truncated() => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            check_block(primary, &self.blocks, head.block_type, head.number, head.flags, &limits, self.resume)?;
            if head.block_type == BlockType::PAYLOAD {
                check_bundle(primary, &self.blocks, head.data_len, &limits)?;
                let k = r.pos();
                let total = (k as u64)
                    .saturating_add(head.data_len)
                    .saturating_add(head.crc_type.field_len() as u64 + u64::from(head.indefinite) + 1);
                if total > limits.max_bundle_len {
                    return Err(DecodeError::new(
                        self.resume,
                        ErrorKind::BundleTooLarge { size: total, limit: limits.max_bundle_len },
                    )
                    .into());
                }
                let mut crc = CrcState::new(head.crc_type);
                crc.update(&self.buf[self.resume..k]);
                let header = BundleHeader::new(
                    primary.clone(),
                    self.buf[prange.clone()].to_vec(),
                    std::mem::take(&mut self.blocks),
                    head,
                    self.buf[self.resume..k].to_vec(),
                );
                sink.on_header(&header).map_err(StreamError::Sink)?;
                self.header = Some(header);
                self.state = if head.data_len == 0 {
                    State::Trailer { crc, crc_type: head.crc_type, indefinite: head.indefinite, buf: [0; 7], have: 0 }
                } else {
                    let indefinite = head.indefinite;
                    State::Payload { remaining: head.data_len, crc, crc_type: head.crc_type, indefinite }
                };
                return Ok(Some(k));
            }
            let end = (self.resume as u64).saturating_add(head.total_len(self.resume));
            if end > limits.max_header_len as u64 {
                return Err(DecodeError::new(self.resume, ErrorKind::HeaderTooLarge(limits.max_header_len)).into());
            }
            let end = end as usize;
            if self.buf.len() < end {
                self.need = end;
                return Ok(None);
            }
            let mut r = Reader::new(&self.buf[..end]);
            r.set_pos(self.resume);
            let block = Block::decode(&mut r, &limits)?.into_owned();
            self.blocks.push(block);
            self.resume = end;
        }
    }
}

/// Incremental bundle encoder: writes the header, passes payload chunks through while computing the payload
/// CRC, then writes the trailer.
pub struct StreamEncoder {
    crc: CrcState,
    crc_type: CrcType,
    indefinite: bool,
    announced: u64,
    got: u64,
}

impl StreamEncoder {
    /// Appends everything before the payload data to `out` and returns the encoder for the payload.
    pub fn begin(header: &BundleHeader, out: &mut Vec<u8>) -> StreamEncoder {
        out.push(0x9f);
        out.extend_from_slice(&header.primary_encoded);
        for b in &header.blocks {
            out.extend_from_slice(b.encoded());
        }
        let head = &header.payload_head;
        let mut crc = CrcState::new(header.payload.crc_type);
        crc.update(head);
        out.extend_from_slice(head);
        let p = header.payload;
        StreamEncoder { crc, crc_type: p.crc_type, indefinite: p.indefinite, announced: p.data_len, got: 0 }
    }

    /// Accounts for the next payload chunk (the caller writes the chunk itself, avoiding a copy).
    pub fn payload(&mut self, chunk: &[u8]) -> Result<(), EncodeError> {
        let got = self.got + chunk.len() as u64;
        if got > self.announced {
            return Err(EncodeError::PayloadLengthMismatch { announced: self.announced, got });
        }
        self.crc.update(chunk);
        self.got = got;
        Ok(())
    }

    /// Appends the payload CRC and the end of the bundle.
    pub fn finish(self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if self.got != self.announced {
            return Err(EncodeError::PayloadLengthMismatch { announced: self.announced, got: self.got });
        }
        if self.crc_type != CrcType::None {
            let v = self.crc.finish_trailer(self.crc_type, self.indefinite);
            out.push(self.crc_type.field_header());
            out.extend_from_slice(&v.to_be_bytes()[4 - self.crc_type.value_len()..]);
        }
        if self.indefinite {
            out.push(0xff);
        }
        out.push(0xff);
        Ok(())
    }

    /// Streams a whole bundle: header, the payload read from `payload`, trailer. Returns bytes written.
    pub fn encode<R: io::Read, W: io::Write>(header: &BundleHeader, mut payload: R, mut out: W) -> io::Result<u64> {
        let mut head = Vec::with_capacity(256);
        let mut enc = StreamEncoder::begin(header, &mut head);
        out.write_all(&head)?;
        let mut written = head.len() as u64;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = payload.read(&mut buf)?;
            if n == 0 {
                break;
            }
            enc.payload(&buf[..n]).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            out.write_all(&buf[..n])?;
            written += n as u64;
        }
        let mut tail = Vec::with_capacity(6);
        enc.finish(&mut tail).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        out.write_all(&tail)?;
        Ok(written + tail.len() as u64)
    }
}
