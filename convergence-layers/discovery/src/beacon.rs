//! What a beacon says, independent of its wire format, and our own wire format ("DTNB" version 1).
//!
//! The layout is documented byte for byte in the crate README; the constants below are its limits. Every
//! field has a fixed size or a one-byte length, so a decoder never allocates by an untrusted length beyond
//! 255 bytes and a whole beacon is at most [`MAX_OURS_LEN`] bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use dtn_core::bpv7::{DecodeError, Eid, EidError};
use thiserror::Error;

/// First four bytes of our beacons. As CBOR, 0x44 starts a 4-byte byte string, which can never begin a
/// dtn7 beacon (always an array), so one look at the first byte tells the formats apart.
pub const MAGIC: [u8; 4] = *b"DTNB";
/// Version of our format this code writes and the only one it reads.
pub const VERSION: u8 = 1;
/// Longest node ID, in bytes of its text form (a one-byte length field).
pub const MAX_NODE_ID_LEN: usize = 255;
/// Most TCPCL endpoints in one beacon.
pub const MAX_ENDPOINTS: usize = 8;
/// Shortest beacon period we announce or accept (ms). Shorter is a flood, not discovery.
pub const MIN_PERIOD_MS: u32 = 100;
/// Longest beacon period we announce or accept (ms): one hour.
pub const MAX_PERIOD_MS: u32 = 3_600_000;
/// Largest beacon of our format: header, longest node ID, most endpoints (all IPv6).
pub const MAX_OURS_LEN: usize = 14 + MAX_NODE_ID_LEN + 1 + MAX_ENDPOINTS * 19;
/// Largest datagram either decoder looks at. dtn7 beacons have no fixed bound, but a real one is well under
/// 200 bytes; anything over this is garbage and is rejected before parsing.
pub const MAX_DATAGRAM_LEN: usize = 4096;

const KIND_SENDER: u8 = 0;
const KIND_V4: u8 = 4;
const KIND_V6: u8 = 6;

/// Which wire format a beacon arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BeaconFormat {
    /// Our format ("DTNB", see the README).
    Ours,
    /// dtn7-rs 0.21's IPND beacon (CBOR), whether sent by dtn7-rs or by us in its format.
    Dtn7,
}

/// Where a neighbour accepts TCPCL sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpclEndpoint {
    /// The address, or `None` for "the source address of the beacon" (the usual case: it needs no
    /// configuration and stays right when DHCP changes the address).
    pub addr: Option<IpAddr>,
    /// TCP port, never 0.
    pub port: u16,
}

impl TcpclEndpoint {
    /// The socket address to connect to, given where the beacon came from. An IPv6 link-local source keeps
    /// its scope (interface), without which it could not be reached.
    pub fn resolve(&self, sender: SocketAddr) -> SocketAddr {
        match (self.addr, sender) {
            (Some(ip), _) => SocketAddr::new(ip, self.port),
            (None, SocketAddr::V6(s)) => SocketAddr::V6(SocketAddrV6::new(*s.ip(), self.port, 0, s.scope_id())),
            (None, SocketAddr::V4(s)) => SocketAddr::new(IpAddr::V4(*s.ip()), self.port),
        }
    }
}

/// The content of a beacon, whichever format carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beacon {
    /// The sender's node ID (`dtn://name/` or `ipn:N.0`).
    pub node_id: Eid,
    /// Incremented by one per beacon interval, wrapping; informational (logs), never used for decisions,
    /// because a restarted sender starts again from 0.
    pub seq: u32,
    /// The sender's beacon period, if it announced one.
    pub period: Option<Duration>,
    /// TCPCL endpoints in the sender's order of preference. May be empty in a dtn7 beacon (a dtn7 node
    /// without a TCP CLA); ours always has at least one.
    pub endpoints: Vec<TcpclEndpoint>,
}

/// Why a datagram is not a beacon.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BeaconError {
    /// Longer than [`MAX_DATAGRAM_LEN`].
    #[error("datagram of {0} bytes or more exceeds the limit")]
    TooLong(usize),
    /// Ended in the middle of a field.
    #[error("truncated at byte {0}")]
    Truncated(usize),
    /// Neither our magic nor a CBOR array.
    #[error("not a beacon (first byte {0:#04x})")]
    UnknownFormat(u8),
    /// A version this code does not speak (ours: 1; dtn7: 7).
    #[error("unsupported {format:?} beacon version {version}")]
    UnsupportedVersion { format: BeaconFormat, version: u64 },
    /// Bytes after a complete beacon.
    #[error("{0} trailing bytes after the beacon")]
    TrailingBytes(usize),
    /// The node ID text does not parse as an EID.
    #[error("bad node ID: {0}")]
    NodeIdText(#[from] EidError),
    /// The node ID's CBOR (dtn7 format) does not decode as an EID.
    #[error("bad node ID: {0}")]
    NodeIdCbor(#[from] DecodeError),
    /// An EID that cannot name a node: `dtn:none`, an unknown scheme, RFC 9758 LocalNode, or (our format) an
    /// endpoint with a demux/service part.
    #[error("not a node ID: {0}")]
    NotANodeId(String),
    /// Node ID text is not UTF-8 or is empty or too long.
    #[error("node ID text is not valid: {0}")]
    NodeIdEncoding(&'static str),
    /// Period outside 100 ms ..= 1 h (0 means "not announced").
    #[error("beacon period {0} ms out of range")]
    PeriodOutOfRange(u64),
    /// Endpoint count outside 1..=8.
    #[error("{0} TCPCL endpoints, expected 1..=8")]
    EndpointCount(usize),
    /// Address kind other than 0, 4, 6.
    #[error("unknown endpoint address kind {0}")]
    AddressKind(u8),
    /// A TCPCL port of 0.
    #[error("TCPCL port 0")]
    ZeroPort,
    /// A CBOR item of the wrong type or shape (dtn7 format).
    #[error("at byte {at}: expected {expected}")]
    Cbor { at: usize, expected: &'static str },
    /// Indefinite-length CBOR: dtn7's decoder cannot take it (it panics), serde_cbor never writes it.
    #[error("at byte {0}: indefinite-length item")]
    Indefinite(usize),
    /// An array with a length the format does not allow.
    #[error("at byte {at}: {what} has {len} elements")]
    ArrayLength { at: usize, what: &'static str, len: u64 },
    /// More items or bytes than our bounds allow.
    #[error("at byte {at}: {what} exceeds the limit of {max}")]
    TooMany { at: usize, what: &'static str, max: usize },
    /// An integer too large for its field.
    #[error("at byte {at}: {field} value {value} out of range")]
    IntRange { at: usize, field: &'static str, value: u64 },
}

/// Checks that `eid` can name a node and returns its node ID. `exact` rejects EIDs with a demux or service
/// part (our format); otherwise they are cut down to the node ID (dtn7 format, as dtn7 itself does).
pub(crate) fn check_node_id(eid: Eid, exact: bool) -> Result<Eid, BeaconError> {
    let bad = matches!(eid, Eid::Null | Eid::Unknown(_)) || eid.is_null() || eid.is_local_node();
    let node = eid.node_id();
    if bad || (exact && node != eid) {
        return Err(BeaconError::NotANodeId(eid.to_string().chars().take(80).collect()));
    }
    if node.to_string().len() > MAX_NODE_ID_LEN {
        return Err(BeaconError::NodeIdEncoding("longer than 255 bytes"));
    }
    Ok(node)
}

/// Decodes a datagram of either format.
pub fn decode_any(bytes: &[u8]) -> Result<(Beacon, BeaconFormat), BeaconError> {
    if bytes.len() > MAX_DATAGRAM_LEN {
        return Err(BeaconError::TooLong(bytes.len()));
    }
    match bytes.first() {
        None => Err(BeaconError::Truncated(0)),
        Some(&b) if b == MAGIC[0] => Beacon::decode(bytes).map(|b| (b, BeaconFormat::Ours)),
        // A CBOR array head (major type 4): dtn7's format.
        Some(&b) if b >> 5 == 4 => crate::dtn7::Dtn7Beacon::decode(bytes)?.to_beacon().map(|b| (b, BeaconFormat::Dtn7)),
        Some(&b) => Err(BeaconError::UnknownFormat(b)),
    }
}

impl Beacon {
    /// Encodes in our format. Fails if the beacon breaks the format's limits.
    pub fn encode(&self) -> Result<Vec<u8>, BeaconError> {
        let node_id = check_node_id(self.node_id.clone(), true)?.to_string();
        let period_ms = match self.period {
            None => 0,
            Some(p) => {
                let ms = u64::try_from(p.as_millis()).unwrap_or(u64::MAX);
                if !(u64::from(MIN_PERIOD_MS)..=u64::from(MAX_PERIOD_MS)).contains(&ms) {
                    return Err(BeaconError::PeriodOutOfRange(ms));
                }
                ms as u32
            }
        };
        if self.endpoints.is_empty() || self.endpoints.len() > MAX_ENDPOINTS {
            return Err(BeaconError::EndpointCount(self.endpoints.len()));
        }
        let mut out = Vec::with_capacity(MAX_OURS_LEN);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&period_ms.to_be_bytes());
        out.push(node_id.len() as u8); // check_node_id bounds it to 255
        out.extend_from_slice(node_id.as_bytes());
        out.push(self.endpoints.len() as u8);
        for e in &self.endpoints {
            if e.port == 0 {
                return Err(BeaconError::ZeroPort);
            }
            match e.addr {
                None => out.push(KIND_SENDER),
                Some(IpAddr::V4(_)) => out.push(KIND_V4),
                Some(IpAddr::V6(_)) => out.push(KIND_V6),
            }
            out.extend_from_slice(&e.port.to_be_bytes());
            match e.addr {
                None => {}
                Some(IpAddr::V4(a)) => out.extend_from_slice(&a.octets()),
                Some(IpAddr::V6(a)) => out.extend_from_slice(&a.octets()),
            }
        }
        Ok(out)
    }

    /// Decodes exactly one beacon of our format from `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Beacon, BeaconError> {
        if bytes.len() > MAX_OURS_LEN {
            return Err(BeaconError::TooLong(bytes.len()));
        }
        let mut r = Bytes { buf: bytes, pos: 0 };
        if r.take(4)? != MAGIC {
            return Err(BeaconError::UnknownFormat(bytes[0]));
        }
        let version = r.u8()?;
        if version != VERSION {
            return Err(BeaconError::UnsupportedVersion { format: BeaconFormat::Ours, version: version.into() });
        }
        let seq = u32::from_be_bytes(r.array()?);
        let period_ms = u32::from_be_bytes(r.array()?);
        let period = match period_ms {
            0 => None,
            MIN_PERIOD_MS..=MAX_PERIOD_MS => Some(Duration::from_millis(period_ms.into())),
            _ => return Err(BeaconError::PeriodOutOfRange(period_ms.into())),
        };
        let id_len = usize::from(r.u8()?);
        if id_len == 0 {
            return Err(BeaconError::NodeIdEncoding("empty"));
        }
        let text = std::str::from_utf8(r.take(id_len)?).map_err(|_| BeaconError::NodeIdEncoding("not UTF-8"))?;
        let node_id = check_node_id(text.parse::<Eid>()?, true)?;
        let count = usize::from(r.u8()?);
        if count == 0 || count > MAX_ENDPOINTS {
            return Err(BeaconError::EndpointCount(count));
        }
        let mut endpoints = Vec::with_capacity(count);
        for _ in 0..count {
            let kind = r.u8()?;
            let port = u16::from_be_bytes(r.array()?);
            let addr = match kind {
                KIND_SENDER => None,
                KIND_V4 => Some(IpAddr::V4(Ipv4Addr::from(r.array::<4>()?))),
                KIND_V6 => Some(IpAddr::V6(Ipv6Addr::from(r.array::<16>()?))),
                other => return Err(BeaconError::AddressKind(other)),
            };
            if port == 0 {
                return Err(BeaconError::ZeroPort);
            }
            endpoints.push(TcpclEndpoint { addr, port });
        }
        if r.pos != bytes.len() {
            return Err(BeaconError::TrailingBytes(bytes.len() - r.pos));
        }
        Ok(Beacon { node_id, seq, period, endpoints })
    }
}

/// A bounds-checked cursor; every read either succeeds or reports where the input ended.
struct Bytes<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BeaconError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(BeaconError::Truncated(self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], BeaconError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, BeaconError> {
        Ok(self.take(1)?[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eid(s: &str) -> Eid {
        s.parse().expect("test EID")
    }

    fn sample() -> Beacon {
        Beacon {
            node_id: eid("dtn://station-1/"),
            seq: 0x0102_0304,
            period: Some(Duration::from_secs(2)),
            endpoints: vec![
                TcpclEndpoint { addr: None, port: 4556 },
                TcpclEndpoint { addr: Some("192.0.2.7".parse().unwrap()), port: 4557 },
                TcpclEndpoint { addr: Some("2001:db8::1".parse().unwrap()), port: 4558 },
            ],
        }
    }

    #[test]
    fn exact_bytes_match_the_readme() {
        let b = Beacon {
            node_id: eid("ipn:7.0"),
            seq: 5,
            period: Some(Duration::from_millis(2000)),
            endpoints: vec![TcpclEndpoint { addr: None, port: 4556 }],
        };
        let expected: &[u8] = &[
            b'D', b'T', b'N', b'B', // magic
            0x01, // version
            0, 0, 0, 5, // sequence number
            0, 0, 0x07, 0xd0, // period 2000 ms
            7, b'i', b'p', b'n', b':', b'7', b'.', b'0', // node ID
            1,    // one endpoint
            0, 0x11, 0xcc, // sender's address, port 4556
        ];
        assert_eq!(b.encode().unwrap(), expected);
        assert_eq!(Beacon::decode(expected).unwrap(), b);
        assert_eq!(decode_any(expected).unwrap(), (b, BeaconFormat::Ours));
    }

    #[test]
    fn round_trips() {
        let b = sample();
        let bytes = b.encode().unwrap();
        assert_eq!(Beacon::decode(&bytes).unwrap(), b);
        let no_period = Beacon { period: None, ..sample() };
        assert_eq!(Beacon::decode(&no_period.encode().unwrap()).unwrap(), no_period);
        let max = Beacon {
            node_id: eid(&format!("dtn://{}/", "n".repeat(MAX_NODE_ID_LEN - 7))),
            endpoints: vec![TcpclEndpoint { addr: Some("::1".parse().unwrap()), port: 1 }; MAX_ENDPOINTS],
            ..sample()
        };
        let bytes = max.encode().unwrap();
        assert_eq!(bytes.len(), MAX_OURS_LEN);
        assert_eq!(Beacon::decode(&bytes).unwrap(), max);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = sample().encode().unwrap();
        for n in 0..bytes.len() {
            assert!(Beacon::decode(&bytes[..n]).is_err(), "prefix of {n} bytes accepted");
            assert!(decode_any(&bytes[..n]).is_err());
        }
    }

    #[test]
    fn typed_errors() {
        let good = sample().encode().unwrap();
        let with = |i: usize, v: u8| {
            let mut b = good.clone();
            b[i] = v;
            Beacon::decode(&b)
        };
        assert_eq!(with(4, 2), Err(BeaconError::UnsupportedVersion { format: BeaconFormat::Ours, version: 2 }));
        assert_eq!(with(1, b'X'), Err(BeaconError::UnknownFormat(b'D')));
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(Beacon::decode(&trailing), Err(BeaconError::TrailingBytes(1)));
        // Period 50 ms.
        let mut short = good.clone();
        short[9..13].copy_from_slice(&50u32.to_be_bytes());
        assert_eq!(Beacon::decode(&short), Err(BeaconError::PeriodOutOfRange(50)));
        // Node ID length 0.
        assert_eq!(with(13, 0), Err(BeaconError::NodeIdEncoding("empty")));
        let count_at = 14 + "dtn://station-1/".len();
        assert_eq!(with(count_at, 0), Err(BeaconError::EndpointCount(0)));
        assert_eq!(with(count_at, 9), Err(BeaconError::EndpointCount(9)));
        assert_eq!(with(count_at + 1, 5), Err(BeaconError::AddressKind(5)));
        let mut zero_port = good.clone();
        zero_port[count_at + 2..count_at + 4].copy_from_slice(&[0, 0]);
        assert_eq!(Beacon::decode(&zero_port), Err(BeaconError::ZeroPort));
        assert!(matches!(with(14, 0xff), Err(BeaconError::NodeIdEncoding("not UTF-8"))));
        assert_eq!(decode_any(&[0x01]), Err(BeaconError::UnknownFormat(0x01)));
        assert_eq!(decode_any(&vec![0x44; MAX_DATAGRAM_LEN + 1]), Err(BeaconError::TooLong(MAX_DATAGRAM_LEN + 1)));
    }

    #[test]
    fn only_node_ids_are_accepted() {
        for bad in ["dtn://station-1/incoming", "ipn:7.1", "dtn:none"] {
            let b = Beacon { node_id: eid(bad), ..sample() };
            assert!(matches!(b.encode(), Err(BeaconError::NotANodeId(_))), "{bad}");
            // The same text smuggled past the encoder is rejected by the decoder.
            let mut bytes = b"DTNB\x01\0\0\0\0\0\0\0\0".to_vec();
            bytes.push(bad.len() as u8);
            bytes.extend_from_slice(bad.as_bytes());
            bytes.extend_from_slice(&[1, 0, 0x11, 0xcc]);
            assert!(matches!(Beacon::decode(&bytes), Err(BeaconError::NotANodeId(_))), "{bad}");
        }
        let mut bytes = b"DTNB\x01\0\0\0\0\0\0\0\0\x05hello\x01\0\x11\xcc".to_vec();
        assert!(matches!(Beacon::decode(&bytes), Err(BeaconError::NodeIdText(_))));
        bytes[0] = b'E';
        assert!(Beacon::decode(&bytes).is_err());
    }

    #[test]
    fn encoder_enforces_limits() {
        let too_fast = Beacon { period: Some(Duration::from_millis(10)), ..sample() };
        assert_eq!(too_fast.encode(), Err(BeaconError::PeriodOutOfRange(10)));
        let none = Beacon { endpoints: vec![], ..sample() };
        assert_eq!(none.encode(), Err(BeaconError::EndpointCount(0)));
        let zero = Beacon { endpoints: vec![TcpclEndpoint { addr: None, port: 0 }], ..sample() };
        assert_eq!(zero.encode(), Err(BeaconError::ZeroPort));
    }

    #[test]
    fn resolve_uses_the_sender_address_and_keeps_the_ipv6_scope() {
        let e = TcpclEndpoint { addr: None, port: 4556 };
        let from: SocketAddr = "[fe80::1%3]:3003".parse().unwrap();
        let SocketAddr::V6(r) = e.resolve(from) else { panic!("not v6") };
        assert_eq!((r.port(), r.scope_id()), (4556, 3));
        assert_eq!(e.resolve("192.0.2.9:3003".parse().unwrap()), "192.0.2.9:4556".parse().unwrap());
        let fixed = TcpclEndpoint { addr: Some("192.0.2.7".parse().unwrap()), port: 1 };
        assert_eq!(fixed.resolve(from), "192.0.2.7:1".parse().unwrap());
    }
}
