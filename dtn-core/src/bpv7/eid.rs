//! Endpoint identifiers: `dtn:none`, `dtn://node/demux`, `ipn:node.service` and RFC 9758's
//! `ipn:allocator.node.service`.
//!
//! An EID remembers the form it arrived in (two- or three-element ipn) so that re-encoding it reproduces the
//! received bytes; equality and hashing compare meaning, not form.

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

/// An endpoint identifier.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Eid {
    /// `dtn:none`, the null endpoint.
    Null,
    /// `dtn://node/demux`.
    Dtn(DtnEid),
    /// `ipn:node.service` or `ipn:allocator.node.service`.
    Ipn(IpnEid),
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

impl PartialEq for IpnEid {
    fn eq(&self, o: &Self) -> bool {
        self.fqnn == o.fqnn && self.service == o.service
    }
}
impl Eq for IpnEid {}
impl Hash for IpnEid {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.fqnn.hash(h);
        self.service.hash(h);
    }
}
impl PartialOrd for IpnEid {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for IpnEid {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.fqnn, self.service).cmp(&(o.fqnn, o.service))
    }
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

/// Checks `//node/demux` and returns the index of the '/' ending the node name. RFC 9171 §4.2.5.1.1: the
/// node name is a URI reg-name and the demux any visible characters, so visible ASCII suffices for both (we
/// exclude '/' from node names); one pass, no UTF-8 decoding needed since every accepted byte is ASCII.
fn check_dtn_ssp(b: &[u8]) -> Option<usize> {
    let visible = |c: u8| c.wrapping_sub(0x21) < 0x5e;
    if b.len() > u32::MAX as usize || b.len() < 4 || b[0] != b'/' || b[1] != b'/' {
        return None;
    }
    let mut i = 2;
    while i < b.len() && b[i] != b'/' {
        if !visible(b[i]) {
            return None;
        }
        i += 1;
    }
    if i == 2 || i == b.len() || !b[i + 1..].iter().all(|&c| visible(c)) {
        return None;
    }
    Some(i)
}

impl DtnEid {
    /// Validates and wraps an SSP of the form `//node/demux`.
    pub fn from_ssp(ssp: &str) -> std::result::Result<Self, EidError> {
        match check_dtn_ssp(ssp.as_bytes()) {
            Some(i) => Ok(DtnEid { ssp: SmolStr::new(ssp), node_end: i as u32 }),
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
    /// `ipn:node.service` in the two-element form.
    pub fn ipn(node: u64, service: u64) -> Self {
        Eid::Ipn(IpnEid { fqnn: node, service, form: IpnForm::TwoElement })
    }

    /// `dtn://node/demux`.
    pub fn dtn(node: &str, demux: &str) -> std::result::Result<Self, EidError> {
        DtnEid::from_ssp(&format!("//{node}/{demux}")).map(Eid::Dtn)
    }

    /// True for `dtn:none`.
    pub fn is_null(&self) -> bool {
        matches!(self, Eid::Null)
    }

    /// The node ID of the node this endpoint belongs to: `dtn://node/` or `ipn:node.0`.
    pub fn node_id(&self) -> Eid {
        match self {
            Eid::Null => Eid::Null,
            Eid::Dtn(d) => Eid::Dtn(DtnEid { ssp: SmolStr::new(&d.ssp[..=d.node_end as usize]), node_end: d.node_end }),
            Eid::Ipn(i) => Eid::Ipn(IpnEid { service: 0, ..*i }),
        }
    }

    /// Exact encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        2 + match self {
            Eid::Null => 1,
            Eid::Dtn(d) => head_len(d.ssp.len() as u64) + d.ssp.len(),
            Eid::Ipn(i) => match i.form {
                IpnForm::TwoElement => 1 + head_len(i.fqnn) + head_len(i.service),
                IpnForm::ThreeElement => {
                    1 + head_len(u64::from(i.allocator())) + head_len(u64::from(i.node())) + head_len(i.service)
                }
            },
        }
    }

    /// Appends the CBOR encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
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
        }
    }

    /// Encodes into a fresh vector.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode(&mut v);
        v
    }

    /// Decodes one EID from the reader. `field` names the EID in errors.
    pub(crate) fn decode(r: &mut Reader<'_>, field: &'static str, max_len: usize) -> Result<Eid> {
        let start = r.pos();
        let eid_err = |at: usize, source: EidError| DecodeError::new(at, ErrorKind::Eid { field, source });
        let n = r.array("an EID array [scheme, SSP]")?;
        if n != 2 {
            return Err(eid_err(start, EidError::BadShape));
        }
        let scheme_at = r.pos();
        let scheme = r.u64("an EID scheme code")?;
        match scheme {
            SCHEME_DTN => {
                let at = r.pos();
                if r.peek_major()? == MAJOR_TEXT {
                    let b = r.text_bytes("a dtn SSP text string")?;
                    if b.len() > max_len {
                        return Err(eid_err(at, EidError::TooLong(max_len)));
                    }
                    let text = std::str::from_utf8(b).map_err(|_| DecodeError::new(at, ErrorKind::InvalidUtf8))?;
                    match check_dtn_ssp(b) {
                        Some(i) => Ok(Eid::Dtn(DtnEid { ssp: SmolStr::new(text), node_end: i as u32 })),
                        None => Err(eid_err(at, EidError::BadDtnSsp(text.chars().take(80).collect()))),
                    }
                } else {
                    let v = r.u64("a dtn SSP (text, or 0 for dtn:none)")?;
                    if v == 0 { Ok(Eid::Null) } else { Err(eid_err(at, EidError::BadDtnNone(v))) }
                }
            }
            SCHEME_IPN => {
                let at = r.pos();
                let n = r
                    .array("an ipn SSP array")
                    .map_err(|e| if e.is_truncated() { e } else { eid_err(at, EidError::BadIpnShape) })?;
                let mut num = || {
                    r.u64("an ipn number")
                        .map_err(|e| if e.is_truncated() { e } else { eid_err(at, EidError::BadIpnShape) })
                };
                match n {
                    2 => {
                        let fqnn = num()?;
                        let service = num()?;
                        Ok(Eid::Ipn(IpnEid { fqnn, service, form: IpnForm::TwoElement }))
                    }
                    3 => {
                        let a = num()?;
                        let nn = num()?;
                        let service = num()?;
                        if a > u64::from(u32::MAX) || nn > u64::from(u32::MAX) {
                            return Err(eid_err(at, EidError::IpnComponentTooLarge));
                        }
                        Ok(Eid::Ipn(IpnEid { fqnn: (a << 32) | nn, service, form: IpnForm::ThreeElement }))
                    }
                    _ => Err(eid_err(at, EidError::BadIpnShape)),
                }
            }
            other => Err(eid_err(scheme_at, EidError::UnknownScheme(other))),
        }
    }
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
            let parts: Vec<&str> = ssp.split('.').collect();
            return match parts.as_slice() {
                [n, svc] => Ok(Eid::ipn(parse_num(n).ok_or_else(bad)?, parse_num(svc).ok_or_else(bad)?)),
                [a, n, svc] => {
                    let (a, n, svc) =
                        (parse_num(a).ok_or_else(bad)?, parse_num(n).ok_or_else(bad)?, parse_num(svc).ok_or_else(bad)?);
                    if a > u64::from(u32::MAX) || n > u64::from(u32::MAX) {
                        return Err(EidError::IpnComponentTooLarge);
                    }
                    Ok(Eid::Ipn(IpnEid { fqnn: (a << 32) | n, service: svc, form: IpnForm::ThreeElement }))
                }
                _ => Err(bad()),
            };
        }
        Err(EidError::UnknownTextScheme(s.chars().take(80).collect()))
    }
}

impl fmt::Display for Eid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Eid::Null => f.write_str("dtn:none"),
            Eid::Dtn(d) => write!(f, "dtn:{}", d.ssp),
            Eid::Ipn(i) => match i.form {
                IpnForm::TwoElement => write!(f, "ipn:{}.{}", i.fqnn, i.service),
                IpnForm::ThreeElement => {
                    write!(f, "ipn:{}.{}.{}", i.allocator(), i.node(), i.service)
                }
            },
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

    fn roundtrip(text: &str) -> Eid {
        let e: Eid = text.parse().unwrap();
        assert_eq!(e.to_string(), text);
        let bytes = e.to_cbor();
        assert_eq!(bytes.len(), e.encoded_len());
        let mut r = Reader::new(&bytes);
        let back = Eid::decode(&mut r, "test", 1024).unwrap();
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
        roundtrip("ipn:977.1");
        let e = roundtrip("ipn:4294967295.7.12");
        let Eid::Ipn(i) = e else { panic!() };
        assert_eq!((i.allocator(), i.node(), i.service), (u32::MAX, 7, 12));
    }

    #[test]
    fn forms_compare_by_meaning() {
        let two: Eid = "ipn:5.1".parse().unwrap();
        let three: Eid = "ipn:0.5.1".parse().unwrap();
        assert_eq!(two, three);
        assert_ne!(two.to_cbor(), three.to_cbor());
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
            "ipn:1",
            "ipn:01.2",
            "ipn:1.2.3.4",
            "ipn:a.b",
            "ipn:-1.2",
            "http://x",
            "ipn:4294967296.1.1",
            "",
        ] {
            assert!(bad.parse::<Eid>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn node_id_strips_demux() {
        let e: Eid = "dtn://cam2/frames".parse().unwrap();
        assert_eq!(e.node_id().to_string(), "dtn://cam2/");
        let e: Eid = "ipn:9.3".parse().unwrap();
        assert_eq!(e.node_id().to_string(), "ipn:9.0");
    }
}
