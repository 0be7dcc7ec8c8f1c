//! Endpoint identifiers: `dtn:none`, `dtn://node/demux`, `ipn:node.service` and RFC 9758's
//! `ipn:allocator.node.service`, plus EIDs of schemes we do not know, kept as received.
//!
//! An EID remembers the form it arrived in (two- or three-element ipn) so that re-encoding it reproduces the
//! received bytes; equality, ordering and hashing compare meaning, not form. In particular every spelling of
//! the null endpoint (`dtn:none`, `ipn:0.0`, and ipn with allocator and node 0, RFC 9758 §3.4.1 and §5.2)
//! is the same EID.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use smol_str::SmolStr;

use super::cbor::{MAJOR_ARRAY, MAJOR_TEXT, MAJOR_UINT, Reader, Result, head_len, write_head};
use super::error::{DecodeError, EidError, ErrorKind};

/// Scheme code of `dtn:` (RFC 9171 §9.6).
pub const SCHEME_DTN: u64 = 1;
/// Scheme code of `ipn:` (RFC 9171 §9.6).
pub const SCHEME_IPN: u64 = 2;
/// The ipn node number that means "this node" (RFC 9758 §5.4), written `!` in text.
pub const IPN_LOCAL_NODE: u64 = 0xffff_ffff;

/// An endpoint identifier.
#[derive(Clone)]
pub enum Eid {
    /// `dtn:none`, the null endpoint.
    Null,
    /// `dtn://node/demux`.
    Dtn(DtnEid),
    /// `ipn:node.service` or `ipn:allocator.node.service`.
    Ipn(IpnEid),
    /// A scheme this implementation does not know (RFC 9171 §4.2.5.1 leaves the set open): carried and
    /// forwarded unchanged, never delivered locally.
    Unknown(UnknownEid),
}

/// A `dtn:` EID other than `dtn:none`; holds the scheme-specific part `//node/demux`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DtnEid {
    /// Inline for up to 23 bytes (most station names), so decoding allocates nothing; O(1) clone beyond.
    ssp: SmolStr,
    /// Index in `ssp` of the '/' that ends the node name.
    node_end: u32,
}

/// How an ipn EID was (or will be) encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum IpnForm {
    /// `[fqnn, service]` (RFC 9171, and RFC 9758's two-element form).
    #[default]
    TwoElement,
    /// `[allocator, node, service]` (RFC 9758).
    ThreeElement,
}

/// An `ipn:` EID. The fully-qualified node number (FQNN) is `allocator << 32 | node` (RFC 9758).
#[derive(Clone, Copy, Debug)]
pub struct IpnEid {
    /// Fully-qualified node number.
    pub fqnn: u64,
    /// Service number.
    pub service: u64,
    /// Wire form.
    pub form: IpnForm,
}

/// An EID of an unknown scheme: its code and the CBOR encoding of its scheme-specific part.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct UnknownEid {
    /// Scheme code.
    pub scheme: u64,
    /// The scheme-specific part, as the CBOR bytes received.
    pub ssp: Box<[u8]>,
}

impl IpnEid {
    /// Allocator identifier (upper 32 bits of the FQNN).
    pub fn allocator(&self) -> u32 {
        (self.fqnn >> 32) as u32
    }
    /// Node number within the allocator (lower 32 bits of the FQNN).
    pub fn node(&self) -> u32 {
        self.fqnn as u32
    }
}

/// What an EID means, for comparisons: all null spellings collapse, ipn forms collapse.
#[derive(PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Key<'a> {
    Null,
    Dtn(&'a str),
    Ipn(u64, u64),
    Unknown(u64, &'a [u8]),
}

impl Eid {
    fn key(&self) -> Key<'_> {
        match self {
            Eid::Null => Key::Null,
            Eid::Ipn(i) if i.fqnn == 0 => Key::Null,
            Eid::Ipn(i) => Key::Ipn(i.fqnn, i.service),
            Eid::Dtn(d) => Key::Dtn(&d.ssp),
            Eid::Unknown(u) => Key::Unknown(u.scheme, &u.ssp),
        }
    }
}

impl PartialEq for Eid {
    // Always inlined with the rest kept out of line: summaries and the store's indexes compare EIDs tens of
    // millions of times a simulated day, and a call per comparison cost more than the comparison.
    #[inline(always)]
    fn eq(&self, o: &Self) -> bool {
        // Two ipn node EIDs (every node of a simulation, most of a deployment): no key to build.
        if let (Eid::Ipn(a), Eid::Ipn(b)) = (self, o)
            && a.fqnn != 0
            && b.fqnn != 0
        {
            return (a.fqnn, a.service) == (b.fqnn, b.service);
        }
        self.eq_slow(o)
    }
}

impl Eid {
    #[inline(never)]
    fn eq_slow(&self, o: &Self) -> bool {
        self.key() == o.key()
    }

    #[inline(never)]
    fn cmp_slow(&self, o: &Self) -> Ordering {
        self.key().cmp(&o.key())
    }
}
impl Eq for Eid {}
impl Hash for Eid {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.key().hash(h);
    }
}
impl PartialOrd for Eid {
    #[inline(always)]
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Eid {
    // Inlined for the same reason as `eq`.
    #[inline(always)]
    fn cmp(&self, o: &Self) -> Ordering {
        // The same order as the keys', without building them for the commonest pair.
        if let (Eid::Ipn(a), Eid::Ipn(b)) = (self, o)
            && a.fqnn != 0
            && b.fqnn != 0
        {
            return (a.fqnn, a.service).cmp(&(b.fqnn, b.service));
        }
        self.cmp_slow(o)
    }
}

/// Byte classes for dtn SSPs: `REG_NAME` for RFC 3986 reg-name characters (unreserved and sub-delims),
/// `VISIBLE` for VCHAR. A table, because this check runs for every dtn EID of every bundle decoded.
const REG_NAME: u8 = 1;
const VISIBLE: u8 = 2;
static SSP_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0x21;
    while c < 0x7f {
        t[c] = VISIBLE;
        c += 1;
    }
    let reg: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=";
    let mut i = 0;
    while i < reg.len() {
        t[reg[i] as usize] |= REG_NAME;
        i += 1;
    }
    t
};

/// Checks `//node/demux` and returns the index of the '/' ending the node name. RFC 9171 §4.2.5.1.1: the node
/// name is an RFC 3986 reg-name (unreserved, sub-delims, percent-encoded octets; we require at least one
/// character), the demux any visible ASCII. One pass; every accepted byte is ASCII.
fn check_dtn_ssp(b: &[u8]) -> Option<usize> {
    if b.len() > u32::MAX as usize || b.len() < 4 || b[0] != b'/' || b[1] != b'/' {
        return None;
    }
    let mut i = 2;
    while i < b.len() && b[i] != b'/' {
        if SSP_CLASS[b[i] as usize] & REG_NAME != 0 {
            i += 1;
        } else if b[i] == b'%' && b.len() > i + 2 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() {
            i += 3;
        } else {
            return None;
        }
    }
    if i == 2 || i == b.len() || !b[i + 1..].iter().all(|&c| SSP_CLASS[c as usize] & VISIBLE != 0) {
        return None;
    }
    Some(i)
}

/// A `SmolStr` without `SmolStr::new`'s scan for its whitespace-only representation, which an SSP (visible
/// ASCII only) never uses: that scan was a tenth of decode time.
#[inline]
fn small_str(s: &str) -> SmolStr {
    if s.len() <= SmolStr::INLINE_CAP { SmolStr::new_inline(s) } else { SmolStr::new(s) }
}

impl DtnEid {
    /// Validates and wraps an SSP of the form `//node/demux`.
    pub fn from_ssp(ssp: &str) -> std::result::Result<Self, EidError> {
        match check_dtn_ssp(ssp.as_bytes()) {
            Some(i) => Ok(DtnEid { ssp: small_str(ssp), node_end: i as u32 }),
            None => Err(EidError::BadDtnSsp(ssp.chars().take(80).collect())),
        }
    }

    /// The node name (between `//` and the next `/`).
    pub fn node_name(&self) -> &str {
        &self.ssp[2..self.node_end as usize]
    }
    /// The demux part (after the node name's `/`), possibly empty.
    pub fn demux(&self) -> &str {
        &self.ssp[self.node_end as usize + 1..]
    }
    /// The whole scheme-specific part, `//node/demux`.
    pub fn ssp(&self) -> &str {
        &self.ssp
    }
}

impl Eid {
    /// `ipn:node.service` in the two-element form; `node` is the fully-qualified node number.
    pub fn ipn(node: u64, service: u64) -> Self {
        Eid::Ipn(IpnEid { fqnn: node, service, form: IpnForm::TwoElement })
    }

    /// `dtn://node/demux`.
    pub fn dtn(node: &str, demux: &str) -> std::result::Result<Self, EidError> {
        DtnEid::from_ssp(&format!("//{node}/{demux}")).map(Eid::Dtn)
    }

    /// True for the null endpoint in any spelling: `dtn:none`, or ipn with allocator and node 0 (RFC 9758
    /// §3.4.1 makes a non-zero service number there mean null as well).
    pub fn is_null(&self) -> bool {
        matches!(self.key(), Key::Null)
    }

    /// True for RFC 9758's LocalNode (`ipn:!.service`), which must never appear in a bundle received from
    /// elsewhere.
    pub fn is_local_node(&self) -> bool {
        matches!(self, Eid::Ipn(i) if i.fqnn == IPN_LOCAL_NODE)
    }

    /// The node ID of the node this endpoint belongs to: `dtn://node/` or `ipn:node.0`.
    pub fn node_id(&self) -> Eid {
        match self {
            Eid::Null | Eid::Unknown(_) => self.clone(),
            Eid::Dtn(d) => Eid::Dtn(DtnEid { ssp: SmolStr::new(&d.ssp[..=d.node_end as usize]), node_end: d.node_end }),
            Eid::Ipn(i) => Eid::Ipn(IpnEid { service: 0, ..*i }),
        }
    }

    /// Exact encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Eid::Null => 3,
            Eid::Dtn(d) => 2 + head_len(d.ssp.len() as u64) + d.ssp.len(),
            Eid::Ipn(i) => {
                2 + match i.form {
                    IpnForm::TwoElement => 1 + head_len(i.fqnn) + head_len(i.service),
                    IpnForm::ThreeElement => {
                        1 + head_len(u64::from(i.allocator())) + head_len(u64::from(i.node())) + head_len(i.service)
                    }
                }
            }
            Eid::Unknown(u) => 1 + head_len(u.scheme) + u.ssp.len(),
        }
    }

    /// Appends the CBOR encoding (definite-length, shortest form).
    pub fn encode(&self, out: &mut Vec<u8>) {
        // The commonest EID, written in one piece: every summary lists its sources this way.
        if let Eid::Ipn(i) = self
            && i.form == IpnForm::TwoElement
        {
            let mut buf = [0x82, SCHEME_IPN as u8, 0x82, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            let mut n = 3;
            n += put_uint(&mut buf[n..], i.fqnn);
            n += put_uint(&mut buf[n..], i.service);
            out.extend_from_slice(&buf[..n]);
            return;
        }
        write_head(out, MAJOR_ARRAY, 2);
        match self {
            Eid::Null => {
                write_head(out, MAJOR_UINT, SCHEME_DTN);
                write_head(out, MAJOR_UINT, 0);
            }
            Eid::Dtn(d) => {
                write_head(out, MAJOR_UINT, SCHEME_DTN);
                write_head(out, MAJOR_TEXT, d.ssp.len() as u64);
                out.extend_from_slice(d.ssp.as_bytes());
            }
            Eid::Ipn(i) => {
                write_head(out, MAJOR_UINT, SCHEME_IPN);
                match i.form {
                    IpnForm::TwoElement => {
                        write_head(out, MAJOR_ARRAY, 2);
                        write_head(out, MAJOR_UINT, i.fqnn);
                    }
                    IpnForm::ThreeElement => {
                        write_head(out, MAJOR_ARRAY, 3);
                        write_head(out, MAJOR_UINT, u64::from(i.allocator()));
                        write_head(out, MAJOR_UINT, u64::from(i.node()));
                    }
                }
                write_head(out, MAJOR_UINT, i.service);
            }
            Eid::Unknown(u) => {
                write_head(out, MAJOR_UINT, u.scheme);
                out.extend_from_slice(&u.ssp);
            }
        }
    }

    /// Encodes into a fresh vector.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode(&mut v);
        v
    }

    /// Decodes an EID from exactly `bytes` (its CBOR encoding, as [`Eid::to_cbor`] writes it).
    pub fn from_cbor(bytes: &[u8]) -> Result<Eid> {
        let (eid, used) = Eid::decode_prefix(bytes)?;
        if used != bytes.len() {
            return Err(DecodeError::new(used, ErrorKind::TrailingBytes(bytes.len() - used)));
        }
        Ok(eid)
    }

    /// Decodes the CBOR EID at the start of `bytes`; returns it and the number of bytes it took.
    pub fn decode_prefix(bytes: &[u8]) -> Result<(Eid, usize)> {
        let mut r = Reader::new(bytes);
        let eid = Eid::decode(&mut r, "EID", usize::MAX)?;
        Ok((eid, r.pos()))
    }

    /// Decodes one EID from the reader. `field` names the EID in errors.
    pub(crate) fn decode(r: &mut Reader<'_>, field: &'static str, max_len: usize) -> Result<Eid> {
        let start = r.pos();
        // Nearly every EID a node reads (sources in every summary, every bundle's EIDs) is a two-element ipn
        // one: read it without the general path's dispatch. Anything else, malformed input included, takes
        // the general path, which reads these the same way.
        if let Some((eid, len)) = ipn_two_element(&r.input()[start..]) {
            r.set_pos(start + len);
            return Ok(eid);
        }
        let eid_err = |at: usize, source: EidError| DecodeError::new(at, ErrorKind::Eid { field, source });
        // Structural errors below keep truncation as truncation (more input may fix it), anything else
        // becomes an error about this EID.
        let shape = |e: DecodeError, source: EidError| {
            if e.is_truncated() { e } else { DecodeError::new(e.offset, ErrorKind::Eid { field, source }) }
        };
        let n = r.array("an EID array [scheme, SSP]")?;
        if n.is_some_and(|n| n != 2) {
            return Err(eid_err(start, EidError::BadShape));
        }
        let scheme_at = r.pos();
        let scheme = r.u64("an EID scheme code")?;
        let eid = match scheme {
            SCHEME_DTN => {
                let at = r.pos();
                if r.peek_major()? == MAJOR_TEXT {
                    let b = r.text_bytes("a dtn SSP text string", max_len)?;
                    if b.len() > max_len {
                        return Err(eid_err(at, EidError::TooLong(max_len)));
                    }
                    let text = std::str::from_utf8(&b).map_err(|_| DecodeError::new(at, ErrorKind::InvalidUtf8))?;
                    match check_dtn_ssp(&b) {
                        Some(i) => Eid::Dtn(DtnEid { ssp: small_str(text), node_end: i as u32 }),
                        None => return Err(eid_err(at, EidError::BadDtnSsp(text.chars().take(80).collect()))),
                    }
                } else {
                    let v = r.u64("a dtn SSP (text, or 0 for dtn:none)")?;
                    if v != 0 {
                        return Err(eid_err(at, EidError::BadDtnNone(v)));
                    }
                    Eid::Null
                }
            }
            SCHEME_IPN => {
                let at = r.pos();
                let bad = |e| shape(e, EidError::BadIpnShape);
                let len = r.array("an ipn SSP array").map_err(bad)?;
                let a = r.u64("an ipn number").map_err(bad)?;
                let b = r.u64("an ipn number").map_err(bad)?;
                let three = match len {
                    Some(2) => false,
                    Some(3) => true,
                    Some(_) => return Err(eid_err(at, EidError::BadIpnShape)),
                    None => !r.try_break()?,
                };
                if three {
                    let service = r.u64("an ipn service number").map_err(bad)?;
                    if len.is_none() {
                        r.close(len, "the end of an ipn SSP").map_err(bad)?;
                    }
                    if a > u64::from(u32::MAX) || b > u64::from(u32::MAX) {
                        return Err(eid_err(at, EidError::IpnComponentTooLarge));
                    }
                    Eid::Ipn(IpnEid { fqnn: (a << 32) | b, service, form: IpnForm::ThreeElement })
                } else {
                    Eid::Ipn(IpnEid { fqnn: a, service: b, form: IpnForm::TwoElement })
                }
            }
            other => {
                let at = r.pos();
                r.skip("the scheme-specific part")?;
                if r.pos() - at > max_len {
                    return Err(eid_err(at, EidError::TooLong(max_len)));
                }
                if other == 0 {
                    // Scheme code 0 is reserved (RFC 9171 §9.6): not a scheme anyone can use.
                    return Err(eid_err(scheme_at, EidError::UnknownScheme(0)));
                }
                Eid::Unknown(UnknownEid { scheme: other, ssp: r.input()[at..r.pos()].into() })
            }
        };
        r.close(n, "the end of an EID array").map_err(|e| shape(e, EidError::BadShape))?;
        Ok(eid)
    }
}

/// `[2, [a, b]]` with definite lengths, as `ipn:a.b`, and the bytes it took; `None` for anything else.
#[inline]
fn ipn_two_element(b: &[u8]) -> Option<(Eid, usize)> {
    let [0x82, 0x02, 0x82, rest @ ..] = b else { return None };
    let (fqnn, n1) = small_uint(rest)?;
    let (service, n2) = small_uint(&rest[n1..])?;
    Some((Eid::Ipn(IpnEid { fqnn, service, form: IpnForm::TwoElement }), 3 + n1 + n2))
}

/// Writes `v` as a shortest CBOR unsigned integer at the start of `buf` (at least 9 bytes); returns its length.
#[inline]
fn put_uint(buf: &mut [u8], v: u64) -> usize {
    let n = head_len(v);
    if n == 1 {
        buf[0] = v as u8;
    } else {
        let (ai, w) = match n {
            2 => (24, 1),
            3 => (25, 2),
            5 => (26, 4),
            _ => (27, 8),
        };
        buf[0] = (MAJOR_UINT << 5) | ai;
        buf[1..=w].copy_from_slice(&v.to_be_bytes()[8 - w..]);
    }
    n
}

/// A CBOR unsigned integer at the start of `b` and its length.
#[inline]
fn small_uint(b: &[u8]) -> Option<(u64, usize)> {
    let &ib = b.first()?;
    if ib >> 5 != MAJOR_UINT {
        return None;
    }
    let n = match ib & 0x1f {
        v @ 0..=23 => return Some((u64::from(v), 1)),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return None,
    };
    let v = b.get(1..1 + n)?.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
    Some((v, 1 + n))
}

/// Parses a decimal number strictly: digits only, no sign, no leading zeros.
fn parse_num(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl FromStr for Eid {
    type Err = EidError;

    fn from_str(s: &str) -> std::result::Result<Self, EidError> {
        if let Some(ssp) = s.strip_prefix("dtn:") {
            if ssp == "none" {
                return Ok(Eid::Null);
            }
            return DtnEid::from_ssp(ssp).map(Eid::Dtn);
        }
        if let Some(ssp) = s.strip_prefix("ipn:") {
            let bad = || EidError::BadIpnText(s.chars().take(80).collect());
            let node = |n: &str| if n == "!" { Some(IPN_LOCAL_NODE) } else { parse_num(n) };
            let parts: Vec<&str> = ssp.split('.').collect();
            let (alloc, node, service) = match parts.as_slice() {
                [n, svc] => (0, node(n).ok_or_else(bad)?, parse_num(svc).ok_or_else(bad)?),
                [a, n, svc] => {
                    (parse_num(a).ok_or_else(bad)?, node(n).ok_or_else(bad)?, parse_num(svc).ok_or_else(bad)?)
                }
                _ => return Err(bad()),
            };
            if alloc > u64::from(u32::MAX) || node > u64::from(u32::MAX) {
                return Err(EidError::IpnComponentTooLarge);
            }
            if alloc != 0 && node == IPN_LOCAL_NODE {
                return Err(bad());
            }
            // RFC 9758 §3.4.1: allocator 0, node 0 and a non-zero service "MUST NOT be composed".
            if alloc == 0 && node == 0 && service != 0 {
                return Err(bad());
            }
            // RFC 9758 §6.1.2 recommends the two-element encoding for the default allocator.
            let form = if alloc == 0 { IpnForm::TwoElement } else { IpnForm::ThreeElement };
            return Ok(Eid::Ipn(IpnEid { fqnn: (alloc << 32) | node, service, form }));
        }
        Err(EidError::UnknownTextScheme(s.chars().take(80).collect()))
    }
}

impl fmt::Display for Eid {
    /// The text form. The ipn wire form does not show: a non-zero allocator is always written out
    /// (RFC 9758 §4), LocalNode is written `!`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Eid::Null => f.write_str("dtn:none"),
            Eid::Dtn(d) => write!(f, "dtn:{}", d.ssp),
            Eid::Ipn(i) if i.fqnn == IPN_LOCAL_NODE => write!(f, "ipn:!.{}", i.service),
            Eid::Ipn(i) if i.allocator() != 0 => write!(f, "ipn:{}.{}.{}", i.allocator(), i.node(), i.service),
            Eid::Ipn(i) => write!(f, "ipn:{}.{}", i.node(), i.service),
            Eid::Unknown(u) => {
                write!(f, "scheme-{}:", u.scheme)?;
                u.ssp.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

impl fmt::Debug for Eid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Eid({self})")
    }
}

impl fmt::Debug for DtnEid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dtn:{}", self.ssp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> std::result::Result<Eid, DecodeError> {
        Eid::decode(&mut Reader::new(bytes), "test", 1024)
    }

    fn roundtrip(text: &str) -> Eid {
        let e: Eid = text.parse().unwrap();
        assert_eq!(e.to_string(), text);
        let bytes = e.to_cbor();
        assert_eq!(bytes.len(), e.encoded_len());
        let back = decode(&bytes).unwrap();
        assert_eq!(back.to_cbor(), bytes);
        assert_eq!(back, e);
        e
    }

    #[test]
    fn text_forms_roundtrip() {
        assert!(roundtrip("dtn:none").is_null());
        let d = roundtrip("dtn://station-3/~telemetry/baro");
        let Eid::Dtn(d) = d else { panic!() };
        assert_eq!(d.node_name(), "station-3");
        assert_eq!(d.demux(), "~telemetry/baro");
        roundtrip("dtn://node/");
        roundtrip("dtn://a%2Fb.c_d~e!$&'()*+,;=/x");
        roundtrip("ipn:977.1");
        let e = roundtrip("ipn:4294967295.7.12");
        let Eid::Ipn(i) = e else { panic!() };
        assert_eq!((i.allocator(), i.node(), i.service, i.form), (u32::MAX, 7, 12, IpnForm::ThreeElement));
        assert!(roundtrip("ipn:!.7").is_local_node());
        assert!(roundtrip("ipn:0.0").is_null());
    }

    #[test]
    fn forms_compare_by_meaning() {
        let two = Eid::ipn(5, 1);
        let three = Eid::Ipn(IpnEid { fqnn: 5, service: 1, form: IpnForm::ThreeElement });
        assert_eq!(two, three);
        assert_ne!(two.to_cbor(), three.to_cbor());
        // Allocator 0 written out still picks the recommended two-element encoding.
        assert_eq!("ipn:0.5.1".parse::<Eid>().unwrap().to_cbor(), two.to_cbor());
        // A non-zero allocator received in the two-element form prints its components (RFC 9758 §4).
        assert_eq!(Eid::ipn((977_000 << 32) | 100, 1).to_string(), "ipn:977000.100.1");
    }

    #[test]
    fn every_null_spelling_is_null() {
        let spellings = [Eid::Null, Eid::ipn(0, 0), Eid::ipn(0, 9), "ipn:0.0".parse().unwrap()];
        for a in &spellings {
            assert!(a.is_null());
            for b in &spellings {
                assert_eq!(a, b);
            }
        }
        // ... but a composed ipn:0.N is refused (RFC 9758 §3.4.1).
        assert!("ipn:0.5".parse::<Eid>().is_err());
        assert!("ipn:0.0.5".parse::<Eid>().is_err());
    }

    #[test]
    fn bad_text_is_rejected() {
        for bad in [
            "dtn:",
            "dtn://",
            "dtn:///x",
            "dtn://node",
            "dtn:node/x",
            "dtn://no de/x",
            "dtn://a:b@c/x",
            "dtn://a?b/",
            "dtn://[x]/",
            "dtn://a%zz/",
            "ipn:1",
            "ipn:01.2",
            "ipn:1.2.3.4",
            "ipn:a.b",
            "ipn:-1.2",
            "ipn:4294967296.1",
            "ipn:1.!.2",
            "http://x",
            "ipn:4294967296.1.1",
            "",
        ] {
            assert!(bad.parse::<Eid>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn indefinite_arrays_and_chunked_text_decode() {
        // [_ 1, (_ "//a", "/x")]
        let b = [0x9f, 0x01, 0x7f, 0x63, b'/', b'/', b'a', 0x62, b'/', b'x', 0xff, 0xff];
        assert_eq!(decode(&b).unwrap().to_string(), "dtn://a/x");
        // [_ 2, [_ 3, 4]] and [2, [_ 1, 2, 3]]
        assert_eq!(decode(&[0x9f, 0x02, 0x9f, 0x03, 0x04, 0xff, 0xff]).unwrap().to_string(), "ipn:3.4");
        assert_eq!(decode(&[0x82, 0x02, 0x9f, 0x01, 0x02, 0x03, 0xff]).unwrap().to_string(), "ipn:1.2.3");
        // Too many items in an indefinite EID array.
        assert!(decode(&[0x9f, 0x02, 0x82, 0x03, 0x04, 0x00, 0xff]).is_err());
    }

    #[test]
    fn unknown_schemes_are_kept_as_received() {
        let b = [0x82, 0x19, 0x01, 0x00, 0x43, 1, 2, 3];
        let e = decode(&b).unwrap();
        assert_eq!(e.to_cbor(), b);
        assert_eq!(e.to_string(), "scheme-256:43010203");
        assert!(decode(&[0x82, 0x00, 0x00]).is_err());
        // An unknown scheme's SSP must still be one well-formed CBOR item: a lone break is not.
        assert!(decode(&[0x82, 0x03, 0xff]).is_err());
        assert!(decode(&[0x82, 0x03, 0x81, 0xff]).is_err());
    }

    #[test]
    fn node_id_strips_demux() {
        let e: Eid = "dtn://cam2/frames".parse().unwrap();
        assert_eq!(e.node_id().to_string(), "dtn://cam2/");
        let e: Eid = "ipn:9.3".parse().unwrap();
        assert_eq!(e.node_id().to_string(), "ipn:9.0");
    }
}
