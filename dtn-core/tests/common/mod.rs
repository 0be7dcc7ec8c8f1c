//! Shared generators for the property tests (`proptest_roundtrip`) and the differential tests against the
//! `bp7` crate (`differential_bp7`).
//!
//! * [`Spec`] models a bundle field by field, and [`check_decoded`] compares a decoded bundle with it.
//! * The strategies ([`wire_spec`], [`builder_spec`], and their restricted variants) only produce bundles that
//!   RFC 9171 and the codec's own rules accept, so a failure to decode one is always a bug somewhere.
//! * [`Cbor`] is a reference encoder written independently of `dtn_core`'s encoder (its own CBOR heads; CRCs
//!   from the `crc` and `crc32c` crates directly). It can also emit longer-than-needed CBOR heads, which gives
//!   valid but non-canonical encodings for the byte-preservation properties.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use dtn_core::bpv7::{
    BlockData, BlockFlags, BlockType, Bundle, BundleBuilder, BundleFlags, BundleHeader, CrcType, CreationTimestamp,
    DecodeError, Eid, ErrorKind, FragmentInfo, HopCount, IpnEid, IpnForm, Limits, PrimaryBlock, StreamDecoder,
    StreamError,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{Index, select};

// ---------------------------------------------------------------------------------------------------------
// Reference encoder
// ---------------------------------------------------------------------------------------------------------

/// CRC-16/X-25 as RFC 9171 §4.2.1 specifies it (the catalogue name is CRC-16/IBM-SDLC).
const X25: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_IBM_SDLC);

/// A CBOR writer for exactly the items a bundle needs.
///
/// With `widths` empty every head takes its shortest form (RFC 8949 preferred serialization, which is what RFC
/// 9171 §4.1 asks senders for). Otherwise each head consumes the next byte of `widths` (cycling): an even byte
/// keeps the shortest form, an odd one picks one of the longer forms. Both are valid CBOR for the same value.
pub struct Cbor<'w> {
    /// Bytes written so far.
    pub out: Vec<u8>,
    widths: &'w [u8],
    next: usize,
}

impl Cbor<'static> {
    /// A writer that always uses the shortest heads.
    pub fn canonical() -> Self {
        Cbor { out: Vec::new(), widths: &[], next: 0 }
    }
}

impl<'w> Cbor<'w> {
    /// A writer that lengthens heads as `widths` says.
    pub fn widened(widths: &'w [u8]) -> Self {
        Cbor { out: Vec::new(), widths, next: 0 }
    }

    /// A head: major type and argument. Forms: 0 = in the initial byte, 1..=4 = 1, 2, 4 or 8 following bytes.
    pub fn head(&mut self, major: u8, arg: u64) {
        let m = major << 5;
        let shortest = match arg {
            0..=23 => 0,
            24..=0xff => 1,
            0x100..=0xffff => 2,
            0x1_0000..=0xffff_ffff => 3,
            _ => 4,
        };
        let mut form = shortest;
        if !self.widths.is_empty() {
            let w = self.widths[self.next % self.widths.len()];
            self.next += 1;
            if w & 1 == 1 && shortest < 4 {
                form = shortest + 1 + usize::from(w >> 1) % (4 - shortest);
            }
        }
        match form {
            0 => self.out.push(m | arg as u8),
            1 => self.out.extend([m | 24, arg as u8]),
            2 => {
                self.out.push(m | 25);
                self.out.extend((arg as u16).to_be_bytes());
            }
            3 => {
                self.out.push(m | 26);
                self.out.extend((arg as u32).to_be_bytes());
            }
            _ => {
                self.out.push(m | 27);
                self.out.extend(arg.to_be_bytes());
            }
        }
    }

    pub fn uint(&mut self, v: u64) {
        self.head(0, v);
    }

    pub fn array(&mut self, n: u64) {
        self.head(4, n);
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.head(2, b.len() as u64);
        self.out.extend_from_slice(b);
    }

    pub fn text(&mut self, s: &str) {
        self.head(3, s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
    }

    /// An endpoint ID (RFC 9171 §4.2.5.1, RFC 9758 for the three-element ipn form).
    pub fn eid(&mut self, e: &Eid) {
        self.array(2);
        match e {
            Eid::Null => {
                self.uint(1);
                self.uint(0);
            }
            Eid::Dtn(d) => {
                self.uint(1);
                self.text(d.ssp());
            }
            Eid::Ipn(i) => {
                self.uint(2);
                match i.form {
                    IpnForm::TwoElement => {
                        self.array(2);
                        self.uint(i.fqnn);
                    }
                    IpnForm::ThreeElement => {
                        self.array(3);
                        self.uint(u64::from(i.allocator()));
                        self.uint(u64::from(i.node()));
                    }
                }
                self.uint(i.service);
            }
            Eid::Unknown(u) => {
                self.uint(u.scheme);
                self.out.extend_from_slice(&u.ssp);
            }
        }
    }

    /// Appends the CRC field of the block that starts at `start` and fills in its value, computed over the
    /// whole block with the value bytes zeroed (RFC 9171 §4.3.1, §4.3.2). The field's byte-string head is never
    /// widened: RFC 9171 §4.2.2 fixes its additional information to exactly 2 or 4.
    pub fn crc(&mut self, ty: CrcType, start: usize) {
        match ty {
            CrcType::None => {}
            CrcType::Crc16 => {
                self.out.extend([0x42, 0, 0]);
                let v = X25.checksum(&self.out[start..]);
                let n = self.out.len();
                self.out[n - 2..].copy_from_slice(&v.to_be_bytes());
            }
            CrcType::Crc32c => {
                self.out.extend([0x44, 0, 0, 0, 0]);
                let v = crc32c::crc32c(&self.out[start..]);
                let n = self.out.len();
                self.out[n - 4..].copy_from_slice(&v.to_be_bytes());
            }
        }
    }

    /// A canonical block (RFC 9171 §4.3.2).
    pub fn block(&mut self, ty: u64, number: u64, flags: u64, crc: CrcType, data: &[u8]) {
        let start = self.out.len();
        self.array(if crc == CrcType::None { 5 } else { 6 });
        self.uint(ty);
        self.uint(number);
        self.uint(flags);
        self.uint(u64::from(crc.code()));
        self.bytes(data);
        self.crc(crc, start);
    }
}

/// The shortest encoding of everything in the payload block before its data: what a codec that re-creates the
/// block (rather than keeping the received bytes) writes.
pub fn canonical_payload_head(flags: u64, crc: CrcType, len: usize) -> Vec<u8> {
    let mut c = Cbor::canonical();
    c.array(if crc == CrcType::None { 5 } else { 6 });
    c.uint(1);
    c.uint(1);
    c.uint(flags);
    c.uint(u64::from(crc.code()));
    c.head(2, len as u64);
    c.out
}

// ---------------------------------------------------------------------------------------------------------
// The bundle model
// ---------------------------------------------------------------------------------------------------------

/// What an extension block carries.
#[derive(Debug, Clone)]
pub enum Kind {
    PreviousNode(Eid),
    BundleAge(u64),
    HopCount(HopCount),
    /// Unknown to the codec (including BIBs): kept as bytes.
    Opaque,
}

/// One extension block.
#[derive(Debug, Clone)]
pub struct Ext {
    pub ty: u64,
    pub number: u64,
    pub flags: u64,
    pub crc: CrcType,
    pub kind: Kind,
    /// The block-type-specific data exactly as encoded.
    pub data: Vec<u8>,
}

impl Ext {
    /// A block whose data is `kind` written by `c` (or `data` for opaque blocks).
    fn new(ty: u64, flags: u64, crc: CrcType, kind: Kind, data: Vec<u8>) -> Ext {
        let mut ext = Ext { ty, number: 0, flags, crc, kind, data };
        ext.encode_data(&mut Cbor::canonical());
        ext
    }

    /// Re-encodes the data of known block types with `c`; opaque data stays as it is.
    pub fn encode_data(&mut self, c: &mut Cbor<'_>) {
        c.out.clear();
        match &self.kind {
            Kind::PreviousNode(e) => c.eid(e),
            Kind::BundleAge(a) => c.uint(*a),
            Kind::HopCount(h) => {
                c.array(2);
                c.uint(h.limit);
                c.uint(h.count);
            }
            Kind::Opaque => return,
        }
        self.data = std::mem::take(&mut c.out);
    }
}

/// A bundle, field by field.
#[derive(Debug, Clone)]
pub struct Spec {
    pub flags: u64,
    pub crc: CrcType,
    pub destination: Eid,
    pub source: Eid,
    pub report_to: Eid,
    pub time: u64,
    pub sequence: u64,
    pub lifetime: u64,
    pub fragment: Option<FragmentInfo>,
    /// Extension blocks in wire order.
    pub ext: Vec<Ext>,
    /// For [`Spec::build`]: how many of the last `ext` blocks are added with `Bundle::add_extension_block` after
    /// the builder ran (these may have their own CRC type); the others go through the builder.
    pub added_after_build: usize,
    pub payload_flags: u64,
    pub payload_crc: CrcType,
    pub payload: Vec<u8>,
}

impl Spec {
    /// The primary block a decoder must produce.
    pub fn primary(&self) -> PrimaryBlock {
        PrimaryBlock {
            flags: BundleFlags(self.flags),
            crc_type: self.crc,
            destination: self.destination.clone(),
            source: self.source.clone(),
            report_to: self.report_to.clone(),
            creation: CreationTimestamp::new(self.time, self.sequence),
            lifetime_ms: self.lifetime,
            fragment: self.fragment,
        }
    }

    /// Shortest-form encoding by the reference encoder.
    pub fn encode(&self) -> Vec<u8> {
        let mut c = Cbor::canonical();
        self.encode_with(&mut c);
        c.out
    }

    /// A non-canonical encoding: heads lengthened as `widths` says, in the blocks' headers and inside the data of
    /// known extension blocks. Returns the spec with the data bytes as now encoded, and the bundle.
    pub fn widen(&self, widths: &[u8]) -> (Spec, Vec<u8>) {
        let mut spec = self.clone();
        let mut c = Cbor::widened(widths);
        for e in &mut spec.ext {
            e.encode_data(&mut c);
        }
        c.out.clear();
        spec.encode_with(&mut c);
        (spec, c.out)
    }

    fn encode_with(&self, c: &mut Cbor<'_>) {
        c.out.push(0x9f);
        let start = c.out.len();
        let items = 8 + if self.fragment.is_some() { 2 } else { 0 } + u64::from(self.crc != CrcType::None);
        c.array(items);
        c.uint(7);
        c.uint(self.flags);
        c.uint(u64::from(self.crc.code()));
        c.eid(&self.destination);
        c.eid(&self.source);
        c.eid(&self.report_to);
        c.array(2);
        c.uint(self.time);
        c.uint(self.sequence);
        c.uint(self.lifetime);
        if let Some(f) = self.fragment {
            c.uint(f.offset);
            c.uint(f.total_adu_len);
        }
        c.crc(self.crc, start);
        for e in &self.ext {
            c.block(e.ty, e.number, e.flags, e.crc, &e.data);
        }
        c.block(1, 1, self.payload_flags, self.payload_crc, &self.payload);
        c.out.push(0xff);
    }

    /// The crate's `BundleBuilder` set up with every field and every block but the last `added_after_build`.
    /// Only meaningful for specs from [`builder_spec`], whose numbering, block order and CRC types are the ones
    /// the builder produces.
    pub fn builder(&self) -> BundleBuilder {
        let through_builder = self.ext.len() - self.added_after_build;
        let mut b = BundleBuilder::new(self.source.clone(), self.destination.clone())
            .report_to(self.report_to.clone())
            .creation(CreationTimestamp::new(self.time, self.sequence))
            .lifetime_ms(self.lifetime)
            .flags(BundleFlags(self.flags))
            .primary_crc_type(self.crc)
            .block_crc_type(self.payload_crc)
            .payload_flags(BlockFlags(self.payload_flags))
            .payload(self.payload.clone());
        if let Some(f) = self.fragment {
            b = b.fragment(f.offset, f.total_adu_len);
        }
        for e in &self.ext[..through_builder] {
            b = match &e.kind {
                Kind::PreviousNode(n) => b.previous_node(n.clone()),
                Kind::BundleAge(a) => b.bundle_age_ms(*a),
                // builder_spec only makes limits in 1..=255, which is what the builder's u8 argument admits.
                Kind::HopCount(h) => b.hop_limit(h.limit as u8),
                Kind::Opaque => b.extension_block(BlockType(e.ty), BlockFlags(e.flags), e.data.clone()),
            };
        }
        b
    }

    /// Makes the bundle with [`Spec::builder`], then adds the last `added_after_build` blocks with
    /// `Bundle::add_extension_block` (which lets them have their own CRC types).
    pub fn build(&self) -> Result<Bundle<'static>, DecodeError> {
        let mut bundle = self.builder().build()?;
        for e in &self.ext[self.ext.len() - self.added_after_build..] {
            bundle.add_extension_block(BlockType(e.ty), BlockFlags(e.flags), e.crc, &e.data)?;
        }
        Ok(bundle)
    }

    /// Whether some BIB lists the primary block (0) in its target array, the first item of its data (RFC 9172
    /// §3.6).
    pub fn has_bib_on_primary(&self) -> bool {
        self.ext.iter().any(|e| e.ty == 11 && targets_zero(&e.data))
    }
}

/// Reads one CBOR head at `at`: (major type, argument, bytes used). Only the definite forms.
fn read_head(d: &[u8], at: usize) -> Option<(u8, u64, usize)> {
    let ib = *d.get(at)?;
    let extra = match ib & 0x1f {
        n @ 0..=23 => return Some((ib >> 5, u64::from(n), 1)),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return None,
    };
    let arg = d.get(at + 1..at + 1 + extra)?.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b));
    Some((ib >> 5, arg, 1 + extra))
}

/// Whether `data` starts with an array of unsigned integers that contains 0.
fn targets_zero(data: &[u8]) -> bool {
    let Some((4, n, mut at)) = read_head(data, 0) else { return false };
    for _ in 0..n.min(data.len() as u64) {
        match read_head(data, at) {
            Some((0, 0, _)) => return true,
            Some((0, _, used)) => at += used,
            _ => return false,
        }
    }
    false
}

/// Compares a decoded (or built) bundle with the spec it was made from, field by field.
pub fn check_decoded(b: &Bundle<'_>, spec: &Spec) -> Result<(), TestCaseError> {
    let p = b.primary();
    prop_assert_eq!(p, &spec.primary());
    // Eid equality compares meaning (ipn:0.5.1 == ipn:5.1); the text also shows the ipn form.
    prop_assert_eq!(p.destination.to_string(), spec.destination.to_string());
    prop_assert_eq!(p.source.to_string(), spec.source.to_string());
    prop_assert_eq!(p.report_to.to_string(), spec.report_to.to_string());
    prop_assert_eq!(b.blocks().len(), spec.ext.len() + 1);
    for (blk, e) in b.extension_blocks().iter().zip(&spec.ext) {
        prop_assert_eq!(blk.block_type(), BlockType(e.ty));
        prop_assert_eq!(blk.number(), e.number);
        prop_assert_eq!(blk.flags(), BlockFlags(e.flags));
        prop_assert_eq!(blk.crc_type(), e.crc);
        prop_assert_eq!(blk.data(), &e.data[..], "data of block {}", e.number);
        match (&e.kind, blk.typed()) {
            (Kind::PreviousNode(want), BlockData::PreviousNode(got)) => {
                prop_assert_eq!(got.to_string(), want.to_string());
            }
            (Kind::BundleAge(want), BlockData::BundleAge(got)) => prop_assert_eq!(got, want),
            (Kind::HopCount(want), BlockData::HopCount(got)) => prop_assert_eq!(got, want),
            (Kind::Opaque, BlockData::Opaque) => {}
            (want, got) => {
                return Err(TestCaseError::fail(format!("block {}: expected {want:?}, decoded {got:?}", e.number)));
            }
        }
    }
    let pb = b.payload_block();
    prop_assert_eq!(pb.block_type(), BlockType::PAYLOAD);
    prop_assert_eq!(pb.number(), 1);
    prop_assert_eq!(pb.flags(), BlockFlags(spec.payload_flags));
    prop_assert_eq!(pb.crc_type(), spec.payload_crc);
    prop_assert!(b.payload() == &spec.payload[..], "payload differs");
    let (mut prev, mut age, mut hop) = (None, None, None);
    for e in &spec.ext {
        match &e.kind {
            Kind::PreviousNode(n) => prev = Some(n.to_string()),
            Kind::BundleAge(a) => age = Some(*a),
            Kind::HopCount(h) => hop = Some(*h),
            Kind::Opaque => {}
        }
    }
    prop_assert_eq!(b.previous_node().map(Eid::to_string), prev);
    prop_assert_eq!(b.bundle_age_ms(), age);
    prop_assert_eq!(b.hop_count(), hop);
    prop_assert_eq!(b.is_admin_record(), spec.flags & BundleFlags::ADMIN_RECORD.0 != 0);
    let id = b.id();
    prop_assert_eq!(id.fragment, spec.fragment.map(|f| (f.offset, spec.payload.len() as u64)));
    prop_assert_eq!(id.creation, CreationTimestamp::new(spec.time, spec.sequence));
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Streaming helpers
// ---------------------------------------------------------------------------------------------------------

/// A bundle as the streaming decoder delivers it.
pub struct Streamed {
    pub header: BundleHeader,
    pub payload: Vec<u8>,
}

/// Why [`stream_decode`] failed: the rule and offset when the decoder named one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFailure {
    pub kind: Option<ErrorKind>,
    pub offset: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for StreamFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stream decoder: {}", self.message)
    }
}

impl std::error::Error for StreamFailure {}

impl StreamFailure {
    fn decode(e: &DecodeError) -> Self {
        StreamFailure { kind: Some(e.kind.clone()), offset: Some(e.offset), message: e.to_string() }
    }
}

/// Feeds `bytes` to a fresh `StreamDecoder` in segments of the sizes in `chunks` (cycled). Succeeds only when the
/// decoder took every byte, finished exactly at the end and `finish` agrees: the same notion of success as
/// `Bundle::decode_with` on the whole input. Bytes after the end of the bundle are reported as the slice
/// decoder reports them, `TrailingBytes`.
pub fn stream_decode(bytes: &[u8], chunks: &[usize], limits: Limits) -> Result<Streamed, StreamFailure> {
    let mut dec = StreamDecoder::new(limits);
    let mut payload = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < bytes.len() {
        let n = chunks.get(i % chunks.len().max(1)).copied().unwrap_or(1).clamp(1, bytes.len() - at);
        i += 1;
        let feed = dec.feed(&bytes[at..at + n], &mut payload).map_err(|e| match e {
            StreamError::Decode(e) => StreamFailure::decode(&e),
            other => StreamFailure { kind: None, offset: None, message: other.to_string() },
        })?;
        if feed.consumed != n {
            let end = at + feed.consumed;
            let kind = ErrorKind::TrailingBytes(bytes.len() - end);
            return Err(StreamFailure::decode(&DecodeError { offset: end, kind }));
        }
        at += n;
    }
    dec.finish().map_err(|e| StreamFailure::decode(&e))?;
    let header = dec.take_header().ok_or_else(|| StreamFailure {
        kind: None,
        offset: None,
        message: "no header after a complete bundle".into(),
    })?;
    Ok(Streamed { header, payload })
}

// ---------------------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------------------

/// Assigned bundle processing control flags other than "is a fragment" (RFC 9171 §4.2.3).
pub const ASSIGNED_BUNDLE_FLAGS: u64 = 0x02 | 0x04 | 0x20 | 0x40 | 0x4000 | 0x1_0000 | 0x2_0000 | 0x4_0000;
/// Assigned block processing control flags (RFC 9171 §4.2.4).
pub const ASSIGNED_BLOCK_FLAGS: u64 = 0x01 | 0x02 | 0x04 | 0x10;
const REPORT_IF_UNPROCESSABLE: u64 = 0x02;

/// Unsigned integers spread over every CBOR head length (0, 1, 2, 4 and 8 extra bytes).
pub fn num() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![0..24u64, 24..=0xffu64, 0x100..=0xffffu64, 0x1_0000..=0xffff_ffffu64, any::<u64>()]
}

fn num32() -> impl Strategy<Value = u32> + Clone {
    prop_oneof![0..24u32, 24..=0xffu32, 0x100..=0xffffu32, any::<u32>()]
}

/// `dtn://node/demux`: the node name a reg-name, the demux anything visible
/// (RFC 9171 §4.2.5.1.1); now and then long enough for 1- and 2-byte text-string heads.
pub fn dtn_eid() -> impl Strategy<Value = Eid> + Clone {
    // RFC 3986 reg-name characters (unreserved and sub-delims), as RFC 9171 §4.2.5.1.1 requires.
    let node = prop_oneof![4 => "[A-Za-z0-9._~!$&'()*+,;=-]{1,12}", 1 => "[A-Za-z0-9._~!$&'()*+,;=-]{13,64}"];
    let demux = prop_oneof![4 => "[!-~]{0,16}", 1 => "[!-~]{17,300}"];
    (node, demux).prop_map(|(n, d)| Eid::dtn(&n, &d).expect("the patterns only produce valid dtn names"))
}

/// Node numbers with a meaning of their own are generated elsewhere or not at all: allocator and node 0 is
/// the null endpoint (RFC 9758 §3.4.1), node 2^32-1 under allocator 0 is LocalNode (§5.4), which no bundle
/// on the wire may name.
fn ordinary_fqnn(f: u64) -> u64 {
    match f {
        0 => 1,
        0xffff_ffff => 0xffff_fffe,
        f => f,
    }
}

/// `ipn:node.service` in the two-element form, with numbers of every size.
pub fn ipn2_eid() -> impl Strategy<Value = Eid> + Clone {
    (num(), num()).prop_map(|(n, s)| Eid::ipn(ordinary_fqnn(n), s))
}

/// RFC 9758 `ipn:allocator.node.service`, three-element form.
pub fn ipn3_eid() -> impl Strategy<Value = Eid> + Clone {
    (num32(), num32(), num()).prop_map(|(a, n, s)| {
        let fqnn = ordinary_fqnn((u64::from(a) << 32) | u64::from(n));
        Eid::Ipn(IpnEid { fqnn, service: s, form: IpnForm::ThreeElement })
    })
}

/// Any EID but `dtn:none`.
pub fn eid() -> impl Strategy<Value = Eid> + Clone {
    prop_oneof![dtn_eid(), ipn2_eid(), ipn3_eid()]
}

pub fn eid_or_null() -> impl Strategy<Value = Eid> + Clone {
    prop_oneof![1 => Just(Eid::Null), 4 => eid()]
}

pub fn crc_type() -> impl Strategy<Value = CrcType> + Clone {
    select(vec![CrcType::None, CrcType::Crc16, CrcType::Crc32c])
}

/// Block flags: mostly the low bits (assigned and reserved), sometimes any 64-bit value (unassigned bits must
/// be ignored and kept, RFC 9171 §4.2.4).
pub fn block_flags() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![3 => 0..0x80u64, 1 => any::<u64>()]
}

/// Bundle flags before the fix-ups of `assemble`: assigned bits, sometimes any 64-bit value. About one bundle
/// in six is an administrative record (which rules out report requests).
fn bundle_flags() -> impl Strategy<Value = u64> + Clone {
    let admin = BundleFlags::ADMIN_RECORD.0;
    let bits = prop_oneof![3 => any::<u64>().prop_map(|v| v & ASSIGNED_BUNDLE_FLAGS), 1 => any::<u64>()];
    (bits, option::weighted(0.15, Just(admin))).prop_map(move |(v, a)| (v & !admin) | a.unwrap_or(0))
}

/// Deterministic filler, so that large payloads cost one value to generate rather than one per byte.
pub fn filled(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Payloads of 0..=4096 bytes, mostly short.
pub fn payload() -> impl Strategy<Value = Vec<u8>> + Clone {
    prop_oneof![3 => vec(any::<u8>(), 0..48), 1 => (0..=4096usize, any::<u64>()).prop_map(|(n, s)| filled(n, s))]
}

/// Block types the codec does not interpret: 2..=255 except payload, previous node, bundle age and hop count.
/// Includes 11 (BIB) and 12 (BCB), whose contents the codec does not parse beyond the BIB target check.
pub fn unknown_types() -> Vec<u64> {
    (2..=255u64).filter(|t| ![6, 7, 10].contains(t)).collect()
}

/// Data of a BIB (RFC 9172 §3.6 abstract security block) whose target array lists `targets` first, followed
/// by a context id, context flags, the security source and a results array.
pub fn bib_data(targets: &[u64], source: &Eid) -> Vec<u8> {
    let mut c = Cbor::canonical();
    c.array(targets.len() as u64);
    for t in targets {
        c.uint(*t);
    }
    c.uint(1); // BIB-HMAC-SHA2 (RFC 9173)
    c.uint(0);
    c.eid(source);
    c.array(targets.len() as u64);
    for _ in targets {
        c.array(1);
        c.array(2);
        c.uint(1);
        c.bytes(&[0xa5; 32]);
    }
    c.out
}

/// Which subset of bundles a strategy produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Anything valid: arbitrary block numbers, order and per-block CRC types.
    Wire,
    /// What `BundleBuilder` (plus `add_extension_block`) makes: see [`Spec::build`].
    Builder,
}

/// Restrictions for bundles that must also be representable in another implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subset {
    /// Only two-element ipn EIDs with node numbers above 0.
    pub ipn2_only: bool,
    /// Destination is never `dtn:none`.
    pub no_null_destination: bool,
    /// Only assigned bundle flags and unassigned bits 21..=63, no reserved bits (3, 4, 7..=13, 15, 19, 20).
    pub no_reserved_bundle_flags: bool,
    /// Only assigned block flags.
    pub assigned_block_flags_only: bool,
    /// Hop counts below 256.
    pub small_hop_count: bool,
}

impl Subset {
    /// Everything the codec accepts.
    pub const ALL: Subset = Subset {
        ipn2_only: false,
        no_null_destination: false,
        no_reserved_bundle_flags: false,
        assigned_block_flags_only: false,
        small_hop_count: false,
    };
}

/// Any valid bundle.
pub fn wire_spec() -> impl Strategy<Value = Spec> {
    spec(Style::Wire, Subset::ALL)
}

/// Any valid bundle `BundleBuilder` can make.
pub fn builder_spec() -> impl Strategy<Value = Spec> {
    spec(Style::Builder, Subset::ALL)
}

/// The general strategy.
pub fn spec(style: Style, subset: Subset) -> impl Strategy<Value = Spec> {
    let an_eid = if subset.ipn2_only {
        prop_oneof![dtn_eid(), (num(), num()).prop_map(|(n, s)| Eid::ipn(ordinary_fqnn(n), s))].boxed()
    } else {
        eid().boxed()
    };
    let eid_or_null = prop_oneof![1 => Just(Eid::Null), 4 => an_eid.clone()];
    let destination = if subset.no_null_destination { an_eid.clone() } else { eid_or_null.clone().boxed() };
    let time = prop_oneof![1 => Just(0u64), 3 => num()];
    let primary = (
        bundle_flags(),
        crc_type(),
        destination,
        eid_or_null.clone(),
        eid_or_null,
        time,
        num(),
        num(),
        option::weighted(0.3, (num(), num())),
    );
    let known = (option::of(an_eid), option::of(num()), option::of((1..=255u64, num())));
    // Now and then a large block, so that the header outgrows the streaming decoder's 4 KiB parsing steps.
    let data =
        prop_oneof![8 => vec(any::<u8>(), 0..40), 1 => (0..6000usize, any::<u64>()).prop_map(|(n, s)| filled(n, s))];
    let unknown = (vec((select(unknown_types()), block_flags(), crc_type(), data), 0..4), 0..3usize);
    let payload = (block_flags(), crc_type(), payload());
    let layout = (vec(num(), 9), vec(any::<Index>(), 5), vec((block_flags(), crc_type()), 4), any::<Index>());
    (primary, known, unknown, payload, layout).prop_map(move |(p, k, u, pl, l)| assemble(style, subset, p, k, u, pl, l))
}

type PrimaryParts = (u64, CrcType, Eid, Eid, Eid, u64, u64, u64, Option<(u64, u64)>);
type KnownParts = (Option<Eid>, Option<u64>, Option<(u64, u64)>);
type UnknownParts = (Vec<(u64, u64, CrcType, Vec<u8>)>, usize);
type PayloadParts = (u64, CrcType, Vec<u8>);
type LayoutParts = (Vec<u64>, Vec<Index>, Vec<(u64, CrcType)>, Index);

/// Turns independently generated parts into a valid bundle by applying RFC 9171's cross-field rules.
fn assemble(
    style: Style,
    subset: Subset,
    (flags, crc, destination, source, report_to, time, sequence, lifetime, frag): PrimaryParts,
    (prev, age, hop): KnownParts,
    (unknown, added): UnknownParts,
    (payload_flags, payload_crc, payload): PayloadParts,
    (numbers, positions, known_fc, bib_target_pos): LayoutParts,
) -> Spec {
    let mut flags = flags & !BundleFlags::IS_FRAGMENT.0;
    if subset.no_reserved_bundle_flags {
        flags &= ASSIGNED_BUNDLE_FLAGS | !((1u64 << 21) - 1);
    }
    let anonymous = source.is_null();
    // §4.2.3: an anonymous bundle must not be fragmented and must not request status reports.
    if anonymous {
        flags = (flags | BundleFlags::MUST_NOT_FRAGMENT.0) & !BundleFlags::ALL_REPORTS.0;
    }
    // §4.2.3: an administrative record requests no status reports.
    let admin = flags & BundleFlags::ADMIN_RECORD.0 != 0;
    if admin {
        flags &= !BundleFlags::ALL_REPORTS.0;
    }
    // §4.2.4: neither may any of their blocks ask for a report when it cannot be processed.
    let block_flags = |f: u64| {
        let f = if subset.assigned_block_flags_only { f & ASSIGNED_BLOCK_FLAGS } else { f };
        if anonymous || admin { f & !REPORT_IF_UNPROCESSABLE } else { f }
    };
    // A fragment's payload lies within the ADU: offset + payload length <= total ADU length. Anonymous bundles
    // cannot be fragments (they must not be fragmented).
    let len = payload.len() as u64;
    let fragment = match frag {
        Some((off, extra)) if !anonymous => {
            flags |= BundleFlags::IS_FRAGMENT.0;
            let offset = off.min(u64::MAX - len);
            Some(FragmentInfo { offset, total_adu_len: offset + len + extra.min(u64::MAX - offset - len) })
        }
        _ => None,
    };
    let block_crc = payload_crc;
    let crc_of = |c: CrcType| if style == Style::Builder { block_crc } else { c };

    let mut known = Vec::new();
    if let Some(e) = prev {
        known.push((6, Kind::PreviousNode(e)));
    }
    // §4.4.2: creation time 0 requires a bundle-age block.
    let age = if time == 0 { Some(age.unwrap_or(sequence)) } else { age };
    if let Some(a) = age {
        known.push((7, Kind::BundleAge(a)));
    }
    if let Some((limit, count)) = hop {
        let count = match style {
            Style::Builder => 0,
            Style::Wire if subset.small_hop_count => count & 0xff,
            Style::Wire => count,
        };
        known.push((10, Kind::HopCount(HopCount { limit, count })));
    }
    let known: Vec<Ext> = known
        .into_iter()
        .zip(&known_fc)
        .map(|((ty, kind), (f, c))| match style {
            // The builder makes these blocks with no flags and the bundle's block CRC type.
            Style::Builder => Ext::new(ty, 0, block_crc, kind, Vec::new()),
            Style::Wire => Ext::new(ty, block_flags(*f), *c, kind, Vec::new()),
        })
        .collect();
    let mut unknown: Vec<Ext> =
        unknown.into_iter().map(|(ty, f, c, data)| Ext::new(ty, block_flags(f), c, Kind::Opaque, data)).collect();
    let added = if style == Style::Builder { added.min(unknown.len()) } else { 0 };
    let added_blocks = unknown.split_off(unknown.len() - added);
    for e in &mut unknown {
        e.crc = crc_of(e.crc);
    }
    // §4.3.1: a primary block without CRC needs a BIB that targets it.
    if crc == CrcType::None {
        let (f, c) = known_fc[3];
        let mut targets = vec![1];
        targets.insert(bib_target_pos.index(2), 0);
        unknown.push(Ext::new(11, block_flags(f), crc_of(c), Kind::Opaque, bib_data(&targets, &source)));
    }

    let mut ext = Vec::new();
    match style {
        Style::Builder => {
            // Builder order: previous node, bundle age, hop count, then the other blocks as given; numbers
            // count up from 2 in that order, and add_extension_block continues the count.
            ext.extend(known);
            ext.extend(unknown);
            ext.extend(added_blocks);
            for (i, e) in ext.iter_mut().enumerate() {
                e.number = i as u64 + 2;
            }
        }
        Style::Wire => {
            ext.extend(unknown);
            for (e, at) in known.into_iter().zip(&positions) {
                let i = at.index(ext.len() + 1);
                ext.insert(i, e);
            }
            let mut used = vec![];
            for (e, raw) in ext.iter_mut().zip(numbers.iter().cycle()) {
                let mut n = (*raw).max(2);
                while used.contains(&n) {
                    n = n.checked_add(1).unwrap_or(2);
                }
                used.push(n);
                e.number = n;
            }
        }
    }
    Spec {
        flags,
        crc,
        destination,
        source,
        report_to,
        time,
        sequence,
        lifetime,
        fragment,
        ext,
        added_after_build: added,
        payload_flags: block_flags(payload_flags),
        payload_crc,
        payload,
    }
}

/// Segment sizes for feeding the streaming decoder: mostly tiny, sometimes large.
pub fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    vec(prop_oneof![3 => 1..=8usize, 2 => 1..=64usize, 1 => 1..=5000usize], 1..12)
}

/// Choices for [`Spec::widen`]; at least one odd byte so that something is actually lengthened.
pub fn widths() -> impl Strategy<Value = Vec<u8>> {
    (vec(any::<u8>(), 1..24), any::<u8>()).prop_map(|(mut w, odd)| {
        w.push(odd | 1);
        w
    })
}
