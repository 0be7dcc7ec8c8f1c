//! The endpoint record a node publishes as its BEP 44 mutable item: where it can be reached now.
//!
//! CBOR (minicbor), as a positional array so that a typical record stays around a hundred bytes, far below
//! BEP 44's 1000-byte limit on `v`:
//!
//! ```text
//! record   = [ version: 1, published_at: uint (Unix seconds, 0 = no clock), nat: uint,
//!              endpoints: [* endpoint], relays: [* bstr .size 32] ]
//! endpoint = [ kind: uint (0 public mapping from STUN, 1 LAN address), ip: bstr .size (4 / 16), port: uint ]
//! nat      = 0 unknown, 1 public (no NAT), 2 cone (endpoint-independent mapping), 3 symmetric
//! ```
//!
//! `relays` names, by identity key, the relay nodes through which this node can currently be reached when
//! a direct path is impossible. Decoding ignores array elements after the ones it knows and endpoints of
//! kinds it does not know, so later versions can add to the record without breaking older readers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use minicbor::{Decode, Encode};

use crate::selection::MappingBehaviour;

/// BEP 44: "v" must be at most 1000 bytes.
pub const MAX_VALUE_LEN: usize = 1000;
pub const MAX_ENDPOINTS: usize = 16;
pub const MAX_RELAYS: usize = 4;
pub const RECORD_VERSION: u8 = 1;

/// What a node knows about the NAT in front of it, as published for its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatClass {
    Unknown,
    /// Its socket is reachable as it is.
    Public,
    /// One public mapping for every destination: hole punching works.
    Cone,
    /// A different mapping per destination: hole punching will not work.
    Symmetric,
}

impl NatClass {
    fn to_u8(self) -> u8 {
        match self {
            NatClass::Unknown => 0,
            NatClass::Public => 1,
            NatClass::Cone => 2,
            NatClass::Symmetric => 3,
        }
    }

    fn from_u8(v: u8) -> NatClass {
        match v {
            1 => NatClass::Public,
            2 => NatClass::Cone,
            3 => NatClass::Symmetric,
            _ => NatClass::Unknown,
        }
    }
}

impl From<MappingBehaviour> for NatClass {
    fn from(m: MappingBehaviour) -> Self {
        match m {
            MappingBehaviour::Unknown | MappingBehaviour::Unconfirmed(_) => NatClass::Unknown,
            MappingBehaviour::Public(_) => NatClass::Public,
            MappingBehaviour::EndpointIndependent(_) => NatClass::Cone,
            MappingBehaviour::EndpointDependent => NatClass::Symmetric,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointKind {
    /// The public mapping STUN servers reported for the tunnel's socket.
    Public,
    /// An address on a local network, for peers on the same LAN (or behind the same NAT).
    Lan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub kind: EndpointKind,
    pub addr: SocketAddr,
}

/// Where a node can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRecord {
    /// When the record was made (Unix seconds), 0 on a node without a clock.
    pub published_at: u64,
    pub nat: NatClass,
    pub endpoints: Vec<Endpoint>,
    /// Identity keys of relay nodes that carry bundles for this node.
    pub relays: Vec<[u8; 32]>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("{0} endpoints; at most {MAX_ENDPOINTS}")]
    TooManyEndpoints(usize),
    #[error("{0} relays; at most {MAX_RELAYS}")]
    TooManyRelays(usize),
    #[error("encoded record is {0} bytes; BEP 44 allows {MAX_VALUE_LEN}")]
    TooLarge(usize),
    #[error("record version {0} is not understood")]
    UnsupportedVersion(u8),
    #[error("malformed record: {0}")]
    Malformed(String),
}

#[derive(Encode, Decode)]
#[cbor(array)]
struct WireRecord {
    #[n(0)]
    version: u8,
    #[n(1)]
    published_at: u64,
    #[n(2)]
    nat: u8,
    #[n(3)]
    endpoints: Vec<WireEndpoint>,
    #[n(4)]
    relays: Vec<minicbor::bytes::ByteArray<32>>,
}

#[derive(Encode, Decode)]
#[cbor(array)]
struct WireEndpoint {
    #[n(0)]
    kind: u8,
    #[n(1)]
    #[cbor(with = "minicbor::bytes")]
    ip: Vec<u8>,
    #[n(2)]
    port: u16,
}

impl EndpointRecord {
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        if self.endpoints.len() > MAX_ENDPOINTS {
            return Err(RecordError::TooManyEndpoints(self.endpoints.len()));
        }
        if self.relays.len() > MAX_RELAYS {
            return Err(RecordError::TooManyRelays(self.relays.len()));
        }
        let wire = WireRecord {
            version: RECORD_VERSION,
            published_at: self.published_at,
            nat: self.nat.to_u8(),
            endpoints: self
                .endpoints
                .iter()
                .map(|e| WireEndpoint {
                    kind: match e.kind {
                        EndpointKind::Public => 0,
                        EndpointKind::Lan => 1,
                    },
                    ip: match e.addr.ip().to_canonical() {
                        IpAddr::V4(v4) => v4.octets().to_vec(),
                        IpAddr::V6(v6) => v6.octets().to_vec(),
                    },
                    port: e.addr.port(),
                })
                .collect(),
            relays: self.relays.iter().map(|r| minicbor::bytes::ByteArray::from(*r)).collect(),
        };
        let bytes = minicbor::to_vec(&wire).map_err(|e| RecordError::Malformed(e.to_string()))?;
        if bytes.len() > MAX_VALUE_LEN {
            return Err(RecordError::TooLarge(bytes.len()));
        }
        Ok(bytes)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.len() > MAX_VALUE_LEN {
            return Err(RecordError::TooLarge(bytes.len()));
        }
        // The version comes first so that a future layout is reported as such, not as garbage.
        let mut d = minicbor::Decoder::new(bytes);
        let version = d.array().and_then(|_| d.u8()).map_err(|e| RecordError::Malformed(e.to_string()))?;
        if version != RECORD_VERSION {
            return Err(RecordError::UnsupportedVersion(version));
        }
        let wire: WireRecord = minicbor::decode(bytes).map_err(|e| RecordError::Malformed(e.to_string()))?;
        if wire.endpoints.len() > MAX_ENDPOINTS {
            return Err(RecordError::TooManyEndpoints(wire.endpoints.len()));
        }
        if wire.relays.len() > MAX_RELAYS {
            return Err(RecordError::TooManyRelays(wire.relays.len()));
        }
        let mut endpoints = Vec::with_capacity(wire.endpoints.len());
        for e in wire.endpoints {
            let ip = match e.ip.len() {
                4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&e.ip[..]).map_err(|_| bad_ip())?)),
                16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&e.ip[..]).map_err(|_| bad_ip())?)),
                _ => return Err(bad_ip()),
            };
            let kind = match e.kind {
                0 => EndpointKind::Public,
                1 => EndpointKind::Lan,
                _ => continue,
            };
            endpoints.push(Endpoint { kind, addr: SocketAddr::new(ip, e.port) });
        }
        Ok(EndpointRecord {
            published_at: wire.published_at,
            nat: NatClass::from_u8(wire.nat),
            endpoints,
            relays: wire.relays.into_iter().map(|r| *r).collect(),
        })
    }

    /// Same endpoints, NAT class and relays (the time of publication aside): a change worth publishing.
    pub fn same_reachability(&self, other: &EndpointRecord) -> bool {
        let mut a = self.endpoints.clone();
        let mut b = other.endpoints.clone();
        a.sort();
        b.sort();
        a == b && self.nat == other.nat && self.relays == other.relays
    }
}

fn bad_ip() -> RecordError {
    RecordError::Malformed("endpoint address is neither 4 nor 16 bytes".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> EndpointRecord {
        EndpointRecord {
            published_at: 1_790_000_000,
            nat: NatClass::Cone,
            endpoints: vec![
                Endpoint { kind: EndpointKind::Public, addr: "203.0.113.9:40001".parse().unwrap() },
                Endpoint { kind: EndpointKind::Lan, addr: "192.168.1.20:51820".parse().unwrap() },
                Endpoint { kind: EndpointKind::Lan, addr: "[2001:db8::20]:51820".parse().unwrap() },
            ],
            relays: vec![[7; 32]],
        }
    }

    #[test]
    fn round_trip_and_size() {
        let r = sample();
        let bytes = r.encode().unwrap();
        assert!(bytes.len() < 120, "a typical record is small: {} bytes", bytes.len());
        assert_eq!(EndpointRecord::decode(&bytes).unwrap(), r);
    }

    #[test]
    fn the_largest_record_fits_bep44() {
        let r = EndpointRecord {
            published_at: u64::MAX,
            nat: NatClass::Symmetric,
            endpoints: (0..MAX_ENDPOINTS as u16)
                .map(|i| Endpoint {
                    kind: EndpointKind::Lan,
                    addr: SocketAddr::new("2001:db8::1".parse().unwrap(), 65535 - i),
                })
                .collect(),
            relays: vec![[0xFF; 32]; MAX_RELAYS],
        };
        let bytes = r.encode().unwrap();
        assert!(bytes.len() <= MAX_VALUE_LEN, "{}", bytes.len());
        let mut too_many = r.clone();
        too_many.endpoints.push(too_many.endpoints[0]);
        assert_eq!(too_many.encode(), Err(RecordError::TooManyEndpoints(MAX_ENDPOINTS + 1)));
    }

    #[test]
    fn unknown_kinds_and_trailing_fields_are_skipped() {
        // Version 1 record with an endpoint of kind 9 and an extra trailing element.
        let mut e = minicbor::Encoder::new(Vec::new());
        e.array(6).unwrap().u8(1).unwrap().u64(5).unwrap().u8(2).unwrap();
        e.array(2).unwrap();
        e.array(3).unwrap().u8(9).unwrap().bytes(&[1, 2, 3, 4]).unwrap().u16(1).unwrap();
        e.array(3).unwrap().u8(0).unwrap().bytes(&[1, 2, 3, 4]).unwrap().u16(2).unwrap();
        e.array(0).unwrap();
        e.str("future").unwrap();
        let r = EndpointRecord::decode(e.writer()).unwrap();
        assert_eq!(r.endpoints, vec![Endpoint { kind: EndpointKind::Public, addr: "1.2.3.4:2".parse().unwrap() }]);
        assert_eq!(r.nat, NatClass::Cone);
    }

    #[test]
    fn bad_records_are_rejected() {
        assert!(matches!(EndpointRecord::decode(b"not cbor at all"), Err(RecordError::Malformed(_))));
        let mut e = minicbor::Encoder::new(Vec::new());
        e.array(5).unwrap().u8(2).unwrap();
        assert_eq!(EndpointRecord::decode(e.writer()), Err(RecordError::UnsupportedVersion(2)));
        let mut e = minicbor::Encoder::new(Vec::new());
        e.array(5).unwrap().u8(1).unwrap().u64(0).unwrap().u8(0).unwrap();
        e.array(1).unwrap().array(3).unwrap().u8(0).unwrap().bytes(&[1, 2, 3]).unwrap().u16(1).unwrap();
        e.array(0).unwrap();
        assert!(matches!(EndpointRecord::decode(e.writer()), Err(RecordError::Malformed(_))));
        assert_eq!(EndpointRecord::decode(&[0u8; 1001]), Err(RecordError::TooLarge(1001)));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..1100)) {
            let _ = EndpointRecord::decode(&data);
        }
    }
}
