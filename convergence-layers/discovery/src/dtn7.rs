//! dtn7-rs 0.21's IPND beacon, byte for byte.
//!
//! dtn7 serializes its `Beacon` (src/ipnd/beacon.rs, services.rs) with serde_cbor: a definite-length array
//!
//! ```text
//! [version = 7, flags, eid, sequence number, ? service block, ? period in seconds]
//! service block = [] / [[* [cla name, port / null]], {* tag => [* byte as uint]}]
//! ```
//!
//! with the service block present when it holds anything and the period present when announced. The EID is
//! bp7's encoding, which is RFC 9171's (`[1, "//node/"]`, `[2, [node, service]]`). serde_cbor writes
//! shortest-form integers and definite lengths only. dtn7's decoder takes 4 elements as "neither", 5 as
//! "service block if the flag says so, else period", 6 as both, and rejects trailing array elements and
//! trailing bytes; this decoder accepts exactly that, within the bounds below, and rejects indefinite
//! lengths (dtn7's decoder panics on them).
//!
//! The mapping to a [`Beacon`]: CLA `"tcp"` is dtn7's TCPCLv4 (draft 24, wire-compatible with RFC 9174) at
//! the beacon's source address; our extension `"tcpcl@<ip>"` names an explicit address. dtn7 ignores CLA
//! names it does not have, silently, so the extension costs dtn7 nothing.

use std::net::IpAddr;
use std::time::Duration;

use dtn_core::bpv7::Eid;

use crate::beacon::{Beacon, BeaconError, BeaconFormat, MAX_DATAGRAM_LEN, MAX_ENDPOINTS, TcpclEndpoint, check_node_id};

/// dtn7's IPND version (it calls the draft's 0x04 with CBOR and BPv7 "0x07").
pub const IPND_VERSION: u8 = 0x07;
/// Flag: the source EID is present (dtn7 always sets it).
pub const FLAG_SOURCE_EID: u8 = 0b001;
/// Flag: a service block is present.
pub const FLAG_SERVICE_BLOCK: u8 = 0b010;
/// Flag: a beacon period is present.
pub const FLAG_PERIOD: u8 = 0b100;
/// dtn7's name for its TCPCLv4 convergence layer.
pub const TCP_CLA: &str = "tcp";
/// Our extension: a CLA entry `tcpcl@<ip>` with a port is a TCPCL endpoint at that address rather than at
/// the beacon's source address.
pub const EXPLICIT_TCPCL_PREFIX: &str = "tcpcl@";
/// Port assumed for a `"tcp"` entry without a port. dtn7 reads that as "the receiver's own TCP CLA port"
/// (and never sends it); we use the IANA TCPCL port instead, the receiver's port not being known here.
pub const DEFAULT_TCPCL_PORT: u16 = 4556;
/// Most CLA entries and most services we accept in one beacon.
pub const MAX_CLAS: usize = 16;
/// Most custom services we accept in one beacon.
pub const MAX_SERVICES: usize = 16;
/// Longest CLA name (bytes).
pub const MAX_CLA_NAME: usize = 64;
/// Longest service payload (bytes). dtn7's own builder caps its longest (a custom string) at 64.
pub const MAX_SERVICE_LEN: usize = 256;

/// A dtn7 beacon with every field dtn7 puts on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dtn7Beacon {
    /// IPND version; always [`IPND_VERSION`] once decoded.
    pub version: u8,
    /// Flag bits as sent; dtn7 does not check them and neither do we, beyond using
    /// [`FLAG_SERVICE_BLOCK`] to tell a 5-element beacon's last field apart, as dtn7 does.
    pub flags: u8,
    /// Sender EID (as sent; [`Dtn7Beacon::to_beacon`] cuts it to the node ID).
    pub eid: Eid,
    /// Beacon sequence number.
    pub seq: u32,
    /// CLA list: name and optional port.
    pub clas: Vec<(String, Option<u16>)>,
    /// Custom services: tag and payload, in wire order (dtn7 keeps them in a `HashMap`).
    pub services: Vec<(u8, Vec<u8>)>,
    /// Beacon period in whole seconds, if announced.
    pub period_secs: Option<u64>,
}

impl Dtn7Beacon {
    /// The dtn7 beacon that says what `b` says: endpoints at the source address become `"tcp"` entries
    /// (which dtn7 can use), explicit ones `"tcpcl@<ip>"` (which only we use). A period is rounded up to
    /// whole seconds and at least 1: dtn7 drops a peer 2 × period after its last beacon, so announcing 0
    /// would make it drop us at once.
    pub fn from_beacon(b: &Beacon) -> Dtn7Beacon {
        let clas: Vec<(String, Option<u16>)> = b
            .endpoints
            .iter()
            .map(|e| match e.addr {
                None => (TCP_CLA.to_owned(), Some(e.port)),
                Some(ip) => (format!("{EXPLICIT_TCPCL_PREFIX}{ip}"), Some(e.port)),
            })
            .collect();
        let period_secs = b.period.map(|p| (p.as_secs() + u64::from(p.subsec_nanos() > 0)).max(1));
        let mut flags = FLAG_SOURCE_EID;
        if !clas.is_empty() {
            flags |= FLAG_SERVICE_BLOCK;
        }
        if period_secs.is_some() {
            flags |= FLAG_PERIOD;
        }
        Dtn7Beacon {
            version: IPND_VERSION,
            flags,
            eid: b.node_id.clone(),
            seq: b.seq,
            clas,
            services: vec![],
            period_secs,
        }
    }

    /// What the beacon says, in our terms. CLA entries other than `"tcp"` and `"tcpcl@<ip>"` are ignored
    /// (dtn7's `"mtcp"`, `"http"` and others are not TCPCL), as are services; at most
    /// [`MAX_ENDPOINTS`] endpoints are kept. The list may end up empty.
    pub fn to_beacon(&self) -> Result<Beacon, BeaconError> {
        let node_id = check_node_id(self.eid.clone(), false)?;
        let endpoints = self
            .clas
            .iter()
            .filter_map(|(name, port)| {
                if name == TCP_CLA {
                    let port = port.unwrap_or(DEFAULT_TCPCL_PORT);
                    return (port != 0).then_some(TcpclEndpoint { addr: None, port });
                }
                let ip: IpAddr = name.strip_prefix(EXPLICIT_TCPCL_PREFIX)?.parse().ok()?;
                port.filter(|&p| p != 0).map(|port| TcpclEndpoint { addr: Some(ip), port })
            })
            .take(MAX_ENDPOINTS)
            .collect();
        let period = self.period_secs.filter(|&s| s > 0).map(Duration::from_secs);
        Ok(Beacon { node_id, seq: self.seq, period, endpoints })
    }

    /// Encodes exactly as dtn7 0.21 (serde_cbor) would encode a beacon with these fields.
    pub fn encode(&self) -> Vec<u8> {
        let has_sb = !(self.clas.is_empty() && self.services.is_empty());
        let n = 4 + u64::from(has_sb) + u64::from(self.period_secs.is_some());
        let mut out = Vec::with_capacity(64);
        head(&mut out, ARRAY, n);
        head(&mut out, UINT, self.version.into());
        head(&mut out, UINT, self.flags.into());
        self.eid.encode(&mut out);
        head(&mut out, UINT, self.seq.into());
        if has_sb {
            head(&mut out, ARRAY, 2);
            head(&mut out, ARRAY, self.clas.len() as u64);
            for (name, port) in &self.clas {
                head(&mut out, ARRAY, 2);
                head(&mut out, TEXT, name.len() as u64);
                out.extend_from_slice(name.as_bytes());
                match port {
                    Some(p) => head(&mut out, UINT, (*p).into()),
                    None => out.push(NULL),
                }
            }
            head(&mut out, MAP, self.services.len() as u64);
            for (tag, payload) in &self.services {
                head(&mut out, UINT, (*tag).into());
                // serde writes a Vec<u8> as an array of integers, not a byte string.
                head(&mut out, ARRAY, payload.len() as u64);
                for &b in payload {
                    head(&mut out, UINT, b.into());
                }
            }
        }
        if let Some(p) = self.period_secs {
            head(&mut out, UINT, p);
        }
        out
    }

    /// Decodes exactly one dtn7 beacon from `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Dtn7Beacon, BeaconError> {
        if bytes.len() > MAX_DATAGRAM_LEN {
            return Err(BeaconError::TooLong(bytes.len()));
        }
        let mut r = Cbor { buf: bytes, pos: 0 };
        let at = r.pos;
        let n = r.array("beacon array")?;
        if !(4..=6).contains(&n) {
            return Err(BeaconError::ArrayLength { at, what: "beacon", len: n });
        }
        let version = r.uint("version")?;
        if version != u64::from(IPND_VERSION) {
            return Err(BeaconError::UnsupportedVersion { format: BeaconFormat::Dtn7, version });
        }
        let flags = r.small::<u8>("flags")?;
        let (eid, used) = Eid::decode_prefix(&bytes[r.pos..]).map_err(|mut e| {
            e.offset += r.pos;
            BeaconError::NodeIdCbor(e)
        })?;
        r.pos += used;
        let seq = r.small::<u32>("sequence number")?;
        let (has_sb, has_period) = match n {
            4 => (false, false),
            5 => (flags & FLAG_SERVICE_BLOCK != 0, flags & FLAG_SERVICE_BLOCK == 0),
            _ => (true, true),
        };
        let (mut clas, mut services) = (Vec::new(), Vec::new());
        if has_sb {
            let at = r.pos;
            match r.array("service block")? {
                0 => {}
                2 => {
                    let at = r.pos;
                    let count = r.array("CLA list")?;
                    bounded(count, MAX_CLAS, at, "CLA list")?;
                    for _ in 0..count {
                        let at = r.pos;
                        let len = r.array("CLA entry")?;
                        if len != 2 {
                            return Err(BeaconError::ArrayLength { at, what: "CLA entry", len });
                        }
                        let name = r.text("CLA name", MAX_CLA_NAME)?.to_owned();
                        let port = if r.peek()? == NULL {
                            r.pos += 1;
                            None
                        } else {
                            Some(r.small::<u16>("CLA port")?)
                        };
                        clas.push((name, port));
                    }
                    let at = r.pos;
                    let count = r.map("services")?;
                    bounded(count, MAX_SERVICES, at, "services")?;
                    for _ in 0..count {
                        let tag = r.small::<u8>("service tag")?;
                        let at = r.pos;
                        let len = r.array("service payload")?;
                        bounded(len, MAX_SERVICE_LEN, at, "service payload")?;
                        let mut payload = Vec::with_capacity(len as usize);
                        for _ in 0..len {
                            payload.push(r.small::<u8>("service payload byte")?);
                        }
                        services.push((tag, payload));
                    }
                }
                len => return Err(BeaconError::ArrayLength { at, what: "service block", len }),
            }
        }
        let period_secs = if has_period { Some(r.uint("beacon period")?) } else { None };
        if r.pos != bytes.len() {
            return Err(BeaconError::TrailingBytes(bytes.len() - r.pos));
        }
        Ok(Dtn7Beacon { version: IPND_VERSION, flags, eid, seq, clas, services, period_secs })
    }
}

fn bounded(count: u64, max: usize, at: usize, what: &'static str) -> Result<(), BeaconError> {
    if count > max as u64 { Err(BeaconError::TooMany { at, what, max }) } else { Ok(()) }
}

const UINT: u8 = 0;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;
const NULL: u8 = 0xf6;

/// Writes a CBOR head in shortest form, as serde_cbor does.
fn head(out: &mut Vec<u8>, major: u8, arg: u64) {
    dtn_core::bpv7::write_cbor_head(out, major, arg);
}

/// The few CBOR items a dtn7 beacon uses. Lengths are only ever compared with bounds, never used to
/// allocate before the bound check. Non-shortest integer forms are accepted, as serde_cbor accepts them.
struct Cbor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cbor<'a> {
    fn peek(&self) -> Result<u8, BeaconError> {
        self.buf.get(self.pos).copied().ok_or(BeaconError::Truncated(self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], BeaconError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(BeaconError::Truncated(self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Reads a head of major type `major`; returns its argument.
    fn head(&mut self, major: u8, expected: &'static str) -> Result<u64, BeaconError> {
        let at = self.pos;
        let b = self.peek()?;
        if b >> 5 != major {
            return Err(BeaconError::Cbor { at, expected });
        }
        self.pos += 1;
        let arg = match b & 0x1f {
            n @ 0..=23 => u64::from(n),
            24 => u64::from(self.take(1)?[0]),
            25 => u64::from(u16::from_be_bytes(self.fixed()?)),
            26 => u64::from(u32::from_be_bytes(self.fixed()?)),
            27 => u64::from_be_bytes(self.fixed()?),
            31 => return Err(BeaconError::Indefinite(at)),
            _ => return Err(BeaconError::Cbor { at, expected }),
        };
        Ok(arg)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], BeaconError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn uint(&mut self, field: &'static str) -> Result<u64, BeaconError> {
        self.head(UINT, field)
    }

    /// An unsigned integer that must fit `T` (serde rejects out-of-range values too).
    fn small<T: TryFrom<u64>>(&mut self, field: &'static str) -> Result<T, BeaconError> {
        let at = self.pos;
        let v = self.uint(field)?;
        T::try_from(v).map_err(|_| BeaconError::IntRange { at, field, value: v })
    }

    fn array(&mut self, what: &'static str) -> Result<u64, BeaconError> {
        self.head(ARRAY, what)
    }

    fn map(&mut self, what: &'static str) -> Result<u64, BeaconError> {
        self.head(MAP, what)
    }

    fn text(&mut self, what: &'static str, max: usize) -> Result<&'a str, BeaconError> {
        let at = self.pos;
        let len = self.head(TEXT, what)?;
        bounded(len, max, at, what)?;
        let bytes = self.take(len as usize)?;
        std::str::from_utf8(bytes).map_err(|_| BeaconError::Cbor { at, expected: "UTF-8 text" })
    }
}

#[cfg(test)]
#[path = "dtn7_tests.rs"]
mod tests;
