//! TCPCLv4 wire format (RFC 9174 §4.2, §4.5–§6.1): the contact header, every message type, extension items,
//! their encoders and an incremental decoder.
//!
//! The decoder works on a `BytesMut` that the caller fills from the socket. It never consumes a partial
//! message, reports how many bytes the message at the front needs ([`Decoded::NeedMore`]) so that the caller
//! reserves exactly that, and checks every length field against [`Limits`] *before* asking for the bytes, so
//! an untrusted length can never make us allocate more than the configured maximum.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, ExtensionError};

/// The four octets that open every contact header: "dtn!".
pub const MAGIC: [u8; 4] = *b"dtn!";
/// The only protocol version we speak.
pub const VERSION: u8 = 4;

/// Contact header flag: the sender can do TLS (RFC 9174 §4.2, Table 1).
pub const CH_CAN_TLS: u8 = 0x01;
/// Extension item flag: the receiver must understand the item (Tables 3 and 7).
pub const EXT_CRITICAL: u8 = 0x01;
/// XFER_SEGMENT / XFER_ACK flag: last segment of the transfer (Table 5).
pub const XFER_END: u8 = 0x01;
/// XFER_SEGMENT / XFER_ACK flag: first segment of the transfer (Table 5).
pub const XFER_START: u8 = 0x02;
/// SESS_TERM flag: this message acknowledges an earlier SESS_TERM (Table 8).
pub const TERM_REPLY: u8 = 0x01;
/// Transfer extension type of the Transfer Length extension (§5.2.5.1).
pub const EXT_TRANSFER_LENGTH: u16 = 0x0001;

/// Message type codes (RFC 9174 Table 2).
pub mod msg_type {
    pub const XFER_SEGMENT: u8 = 0x01;
    pub const XFER_ACK: u8 = 0x02;
    pub const XFER_REFUSE: u8 = 0x03;
    pub const KEEPALIVE: u8 = 0x04;
    pub const SESS_TERM: u8 = 0x05;
    pub const MSG_REJECT: u8 = 0x06;
    pub const SESS_INIT: u8 = 0x07;
}

/// Declares a reason-code enum that keeps unknown codes, so that a message we did not understand can still be
/// reported (and re-encoded) exactly; the RFC asks receivers to treat unknown codes as "Unknown".
macro_rules! reason_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $code:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $var,)*
            /// A code this implementation does not know.
            Other(u8),
        }
        impl $name {
            /// The code as sent on the wire.
            pub fn code(self) -> u8 {
                match self { $($name::$var => $code,)* $name::Other(c) => c }
            }
        }
        impl From<u8> for $name {
            fn from(c: u8) -> Self {
                match c { $($code => $name::$var,)* c => $name::Other(c) }
            }
        }
    };
}

reason_enum!(
    /// SESS_TERM reason codes (RFC 9174 Table 9).
    TermReason {
        Unknown = 0x00,
        IdleTimeout = 0x01,
        VersionMismatch = 0x02,
        Busy = 0x03,
        ContactFailure = 0x04,
        ResourceExhaustion = 0x05,
    }
);

reason_enum!(
    /// XFER_REFUSE reason codes (RFC 9174 Table 6).
    RefuseReason {
        Unknown = 0x00,
        Completed = 0x01,
        NoResources = 0x02,
        Retransmit = 0x03,
        NotAcceptable = 0x04,
        ExtensionFailure = 0x05,
        SessionTerminating = 0x06,
    }
);

reason_enum!(
    /// MSG_REJECT reason codes (RFC 9174 Table 4).
    RejectReason {
        TypeUnknown = 0x01,
        Unsupported = 0x02,
        Unexpected = 0x03,
    }
);

/// The contact header each side sends first (RFC 9174 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactHeader {
    pub version: u8,
    pub flags: u8,
}

impl ContactHeader {
    /// Encoded length: magic, version, flags.
    pub const LEN: usize = 6;

    /// Our header: version 4, no TLS (TLS is not implemented, so we must not advertise CAN_TLS).
    pub fn ours() -> Self {
        ContactHeader { version: VERSION, flags: 0 }
    }

    pub fn can_tls(&self) -> bool {
        self.flags & CH_CAN_TLS != 0
    }

    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_slice(&MAGIC);
        dst.put_u8(self.version);
        dst.put_u8(self.flags);
    }

    /// Decodes a contact header from the front of `buf` without consuming it. The magic is checked byte by
    /// byte as it arrives, so a peer speaking another protocol is rejected on its first wrong byte.
    pub fn decode(buf: &[u8]) -> Result<Option<ContactHeader>, DecodeError> {
        let n = buf.len().min(MAGIC.len());
        if buf[..n] != MAGIC[..n] {
            return Err(DecodeError::BadMagic);
        }
        if buf.len() < Self::LEN {
            return Ok(None);
        }
        Ok(Some(ContactHeader { version: buf[4], flags: buf[5] }))
    }
}

/// One extension item (RFC 9174 §4.8 and §5.2.5): flags, type and an opaque value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionItem {
    pub flags: u8,
    pub item_type: u16,
    pub value: Bytes,
}

impl ExtensionItem {
    pub fn is_critical(&self) -> bool {
        self.flags & EXT_CRITICAL != 0
    }

    /// The Transfer Length extension announcing a transfer of `len` bytes. It is not critical: a receiver
    /// that does not know it loses nothing but the early refusal.
    pub fn transfer_length(len: u64) -> Self {
        ExtensionItem { flags: 0, item_type: EXT_TRANSFER_LENGTH, value: Bytes::copy_from_slice(&len.to_be_bytes()) }
    }
}

/// An encoded list of extension items, kept as received so that decoding never fails on the item contents:
/// a malformed list in a XFER_SEGMENT must refuse that transfer, not desynchronise the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions(Bytes);

impl Extensions {
    pub fn empty() -> Self {
        Extensions(Bytes::new())
    }

    /// Encodes `items`. Panics if an item value is longer than 65535 bytes (the Item Length field is 16
    /// bits); items are built by us, never from input.
    pub fn from_items(items: &[ExtensionItem]) -> Self {
        let mut b = BytesMut::new();
        for it in items {
            let len = u16::try_from(it.value.len()).expect("extension item value longer than 65535 bytes");
            b.put_u8(it.flags);
            b.put_u16(it.item_type);
            b.put_u16(len);
            b.put_slice(&it.value);
        }
        Extensions(b.freeze())
    }

    /// Wraps already-encoded items (e.g. deliberately malformed ones in tests).
    pub fn from_raw(raw: Bytes) -> Self {
        Extensions(raw)
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses the items; fails if an item claims more octets than the list holds (§4.6, §5.2.2).
    pub fn items(&self) -> Result<Vec<ExtensionItem>, ExtensionError> {
        let mut out = Vec::new();
        let mut rest = self.0.clone();
        while !rest.is_empty() {
            let at = self.0.len() - rest.len();
            if rest.len() < 5 {
                return Err(ExtensionError::Truncated { at });
            }
            let flags = rest.get_u8();
            let item_type = rest.get_u16();
            let len = usize::from(rest.get_u16());
            if rest.len() < len {
                return Err(ExtensionError::Truncated { at });
            }
            out.push(ExtensionItem { flags, item_type, value: rest.split_to(len) });
        }
        Ok(out)
    }

    /// Validates a session extension list: we know no session extension type, so any critical item ends the
    /// session (§4.8) and non-critical items are ignored.
    pub fn check_session(&self) -> Result<(), ExtensionError> {
        match self.items()?.into_iter().find(ExtensionItem::is_critical) {
            Some(it) => Err(ExtensionError::UnknownCritical { item_type: it.item_type }),
            None => Ok(()),
        }
    }

    /// Validates a transfer extension list and returns the announced Transfer Length, if any (§5.2.5).
    pub fn check_transfer(&self) -> Result<Option<u64>, ExtensionError> {
        let mut total = None;
        for it in self.items()? {
            if it.item_type == EXT_TRANSFER_LENGTH {
                let v: [u8; 8] =
                    it.value[..].try_into().map_err(|_| ExtensionError::BadTransferLength { len: it.value.len() })?;
                if total.replace(u64::from_be_bytes(v)).is_some() {
                    return Err(ExtensionError::DuplicateTransferLength);
                }
            } else if it.is_critical() {
                return Err(ExtensionError::UnknownCritical { item_type: it.item_type });
            }
        }
        Ok(total)
    }
}

/// SESS_INIT (RFC 9174 §4.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessInit {
    /// Seconds; 0 disables keepalives.
    pub keepalive: u16,
    pub segment_mru: u64,
    pub transfer_mru: u64,
    /// Empty means "no node ID given".
    pub node_id: String,
    pub extensions: Extensions,
}

/// SESS_TERM (RFC 9174 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessTerm {
    pub flags: u8,
    pub reason: TermReason,
}

impl SessTerm {
    pub fn is_reply(&self) -> bool {
        self.flags & TERM_REPLY != 0
    }
}

/// XFER_SEGMENT (RFC 9174 §5.2.2). `extensions` is only encoded, and only decoded, when START is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XferSegment {
    pub flags: u8,
    pub transfer_id: u64,
    pub extensions: Extensions,
    pub data: Bytes,
}

impl XferSegment {
    pub fn is_start(&self) -> bool {
        self.flags & XFER_START != 0
    }
    pub fn is_end(&self) -> bool {
        self.flags & XFER_END != 0
    }

    /// Encodes everything but the data, so that a large payload can be written without being copied.
    pub fn encode_header(&self, dst: &mut BytesMut) {
        dst.put_u8(msg_type::XFER_SEGMENT);
        dst.put_u8(self.flags);
        dst.put_u64(self.transfer_id);
        if self.is_start() {
            let ext = self.extensions.as_bytes();
            dst.put_u32(u32::try_from(ext.len()).expect("transfer extensions longer than 4 GiB"));
            dst.put_slice(ext);
        }
        dst.put_u64(self.data.len() as u64);
    }
}

/// XFER_ACK (RFC 9174 §5.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XferAck {
    pub flags: u8,
    pub transfer_id: u64,
    /// Total octets of the transfer acknowledged so far.
    pub length: u64,
}

/// XFER_REFUSE (RFC 9174 §5.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XferRefuse {
    pub reason: RefuseReason,
    pub transfer_id: u64,
}

/// MSG_REJECT (RFC 9174 §5.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgReject {
    pub reason: RejectReason,
    /// The message header (type code) being rejected.
    pub rejected_type: u8,
}

/// Any TCPCLv4 message after the contact header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    SessInit(SessInit),
    SessTerm(SessTerm),
    XferSegment(XferSegment),
    XferAck(XferAck),
    XferRefuse(XferRefuse),
    Keepalive,
    MsgReject(MsgReject),
}

impl Message {
    pub fn type_code(&self) -> u8 {
        match self {
            Message::SessInit(_) => msg_type::SESS_INIT,
            Message::SessTerm(_) => msg_type::SESS_TERM,
            Message::XferSegment(_) => msg_type::XFER_SEGMENT,
            Message::XferAck(_) => msg_type::XFER_ACK,
            Message::XferRefuse(_) => msg_type::XFER_REFUSE,
            Message::Keepalive => msg_type::KEEPALIVE,
            Message::MsgReject(_) => msg_type::MSG_REJECT,
        }
    }

    /// Appends the encoding to `dst`. Panics only on values no decoder could have produced and no caller in
    /// this crate builds (a node ID over 65535 bytes, extension lists over 4 GiB).
    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            Message::SessInit(m) => {
                dst.put_u8(msg_type::SESS_INIT);
                dst.put_u16(m.keepalive);
                dst.put_u64(m.segment_mru);
                dst.put_u64(m.transfer_mru);
                dst.put_u16(u16::try_from(m.node_id.len()).expect("node ID longer than 65535 bytes"));
                dst.put_slice(m.node_id.as_bytes());
                let ext = m.extensions.as_bytes();
                dst.put_u32(u32::try_from(ext.len()).expect("session extensions longer than 4 GiB"));
                dst.put_slice(ext);
            }
            Message::SessTerm(m) => {
                dst.put_u8(msg_type::SESS_TERM);
                dst.put_u8(m.flags);
                dst.put_u8(m.reason.code());
            }
            Message::XferSegment(m) => {
                m.encode_header(dst);
                dst.put_slice(&m.data);
            }
            Message::XferAck(m) => {
                dst.put_u8(msg_type::XFER_ACK);
                dst.put_u8(m.flags);
                dst.put_u64(m.transfer_id);
                dst.put_u64(m.length);
            }
            Message::XferRefuse(m) => {
                dst.put_u8(msg_type::XFER_REFUSE);
                dst.put_u8(m.reason.code());
                dst.put_u64(m.transfer_id);
            }
            Message::Keepalive => dst.put_u8(msg_type::KEEPALIVE),
            Message::MsgReject(m) => {
                dst.put_u8(msg_type::MSG_REJECT);
                dst.put_u8(m.reason.code());
                dst.put_u8(m.rejected_type);
            }
        }
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::new();
        self.encode(&mut b);
        b.freeze()
    }
}

/// Bounds on what the decoder accepts; everything it may buffer is below these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Our advertised Segment MRU: a longer segment is a protocol violation.
    pub max_segment_len: u64,
    /// Longest session or transfer extension list we accept.
    pub max_extensions_len: u32,
}

/// Result of one decoding step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole message was removed from the front of the buffer.
    Message(Message),
    /// The buffer must hold at least this many bytes (in total) before the next step can make progress.
    NeedMore(usize),
}

/// Below this size a segment's data is copied out of the read buffer, so that a small segment held by a slow
/// consumer does not pin a large buffer allocation.
const COPY_BELOW: usize = 4096;

/// Reads big-endian fields from a borrowed buffer, reporting the total length needed when it runs out.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).and_then(|s| s.try_into().ok()).map(u64::from_be_bytes)
    }
}

/// Where the variable parts of a message sit, found before anything is consumed.
enum Layout {
    Fixed(Message, usize),
    SessInit { keepalive: u16, segment_mru: u64, transfer_mru: u64, node_id: (usize, usize), ext: (usize, usize) },
    Segment { flags: u8, transfer_id: u64, ext: (usize, usize), data: (usize, usize) },
}

/// Decodes one message from the front of `buf`. On [`Decoded::NeedMore`] nothing is consumed; on an error the
/// stream cannot be resynchronised and the session must end.
pub fn decode_message(buf: &mut BytesMut, limits: &Limits) -> Result<Decoded, DecodeError> {
    let layout = match layout(buf, limits)? {
        Ok(l) => l,
        Err(need) => return Ok(Decoded::NeedMore(need)),
    };
    let msg = match layout {
        Layout::Fixed(m, len) => {
            buf.advance(len);
            m
        }
        Layout::SessInit { keepalive, segment_mru, transfer_mru, node_id, ext } => {
            let mut raw = buf.split_to(ext.1).freeze();
            let node_id =
                std::str::from_utf8(&raw[node_id.0..node_id.1]).map_err(|_| DecodeError::NodeIdNotUtf8)?.to_owned();
            let extensions = Extensions(raw.split_off(ext.0));
            Message::SessInit(SessInit { keepalive, segment_mru, transfer_mru, node_id, extensions })
        }
        Layout::Segment { flags, transfer_id, ext, data } => {
            let len = data.1 - data.0;
            let (raw, data) = if len < COPY_BELOW {
                let raw = buf.split_to(data.1);
                let d = Bytes::copy_from_slice(&raw[data.0..]);
                (raw.freeze(), d)
            } else {
                let mut raw = buf.split_to(data.1).freeze();
                let d = raw.split_off(data.0);
                (raw, d)
            };
            let extensions = if ext.0 == ext.1 { Extensions::empty() } else { Extensions(raw.slice(ext.0..ext.1)) };
            Message::XferSegment(XferSegment { flags, transfer_id, extensions, data })
        }
    };
    Ok(Decoded::Message(msg))
}

/// Finds the message layout, or `Err(n)` when `n` bytes are needed to go on. Length fields are checked
/// against `limits` as soon as they are readable, before any byte they describe is waited for.
fn layout(buf: &[u8], limits: &Limits) -> Result<Result<Layout, usize>, DecodeError> {
    let mut c = Cursor { buf, pos: 0 };
    // Each `need!(expr)` yields the field or returns "need this many bytes" (the length of the field end).
    macro_rules! need {
        ($e:expr, $n:expr) => {
            match $e {
                Some(v) => v,
                None => return Ok(Err(c.pos + $n)),
            }
        };
    }
    let ty = need!(c.u8(), 1);
    let l = match ty {
        msg_type::KEEPALIVE => Layout::Fixed(Message::Keepalive, 1),
        msg_type::SESS_TERM => {
            let flags = need!(c.u8(), 1);
            let reason = TermReason::from(need!(c.u8(), 1));
            Layout::Fixed(Message::SessTerm(SessTerm { flags, reason }), c.pos)
        }
        msg_type::MSG_REJECT => {
            let reason = RejectReason::from(need!(c.u8(), 1));
            let rejected_type = need!(c.u8(), 1);
            Layout::Fixed(Message::MsgReject(MsgReject { reason, rejected_type }), c.pos)
        }
        msg_type::XFER_REFUSE => {
            let reason = RefuseReason::from(need!(c.u8(), 1));
            let transfer_id = need!(c.u64(), 8);
            Layout::Fixed(Message::XferRefuse(XferRefuse { reason, transfer_id }), c.pos)
        }
        msg_type::XFER_ACK => {
            let flags = need!(c.u8(), 1);
            let transfer_id = need!(c.u64(), 8);
            let length = need!(c.u64(), 8);
            Layout::Fixed(Message::XferAck(XferAck { flags, transfer_id, length }), c.pos)
        }
        msg_type::SESS_INIT => {
            let keepalive = need!(c.u16(), 2);
            let segment_mru = need!(c.u64(), 8);
            let transfer_mru = need!(c.u64(), 8);
            let id_len = usize::from(need!(c.u16(), 2));
            let id_start = c.pos;
            need!(c.take(id_len), id_len);
            let ext_len = need!(c.u32(), 4);
            if ext_len > limits.max_extensions_len {
                return Err(DecodeError::ExtensionsTooLong { len: ext_len, max: limits.max_extensions_len });
            }
            let ext_start = c.pos;
            need!(c.take(ext_len as usize), ext_len as usize);
            Layout::SessInit {
                keepalive,
                segment_mru,
                transfer_mru,
                node_id: (id_start, id_start + id_len),
                ext: (ext_start, c.pos),
            }
        }
        msg_type::XFER_SEGMENT => {
            let flags = need!(c.u8(), 1);
            let transfer_id = need!(c.u64(), 8);
            let mut ext = (c.pos, c.pos);
            if flags & XFER_START != 0 {
                let ext_len = need!(c.u32(), 4);
                if ext_len > limits.max_extensions_len {
                    return Err(DecodeError::ExtensionsTooLong { len: ext_len, max: limits.max_extensions_len });
                }
                let start = c.pos;
                need!(c.take(ext_len as usize), ext_len as usize);
                ext = (start, c.pos);
            }
            let data_len = need!(c.u64(), 8);
            if data_len > limits.max_segment_len {
                return Err(DecodeError::SegmentTooLong { len: data_len, max: limits.max_segment_len });
            }
            // Fits in usize: bounded by the limit, which the session derives from a usize-sized buffer.
            let data_len = usize::try_from(data_len)
                .map_err(|_| DecodeError::SegmentTooLong { len: data_len, max: limits.max_segment_len })?;
            let start = c.pos;
            need!(c.take(data_len), data_len);
            Layout::Segment { flags, transfer_id, ext, data: (start, c.pos) }
        }
        other => return Err(DecodeError::UnknownMessageType(other)),
    };
    Ok(Ok(l))
}
