//! STUN (RFC 8489) messages as bytes: the demultiplexer, Binding requests and responses.
//!
//! Encoding and decoding go through `stun-rs`; [`is_stun`] is our own few comparisons because it runs on
//! every datagram of the tunnel's socket and must be cheap.

use std::net::SocketAddr;

use stun_rs::attributes::stun::{ErrorCode, Fingerprint, UnknownAttributes, XorMappedAddress};
use stun_rs::methods::BINDING;
use stun_rs::{
    MessageClass, MessageDecoderBuilder, MessageEncoderBuilder, StunMessage, StunMessageBuilder, TransactionId,
};

/// The fixed value of bytes 4..8 of every RFC 5389/8489 STUN message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// STUN header length.
pub const HEADER_LEN: usize = 20;
/// Type of the FINGERPRINT attribute.
const FINGERPRINT_TYPE: u16 = 0x8028;
/// XOR-ed into the CRC-32 of a FINGERPRINT (RFC 8489 §14.7), so that a STUN message carried inside another
/// protocol that also uses CRC-32 cannot be mistaken for it.
const FINGERPRINT_XOR: u32 = 0x5354_554E;
/// DTN-IDENTITY, our own comprehension-optional attribute (from the expert-review range 0xC000–0xFFFF of
/// RFC 8489 §18.3, unregistered): in a Binding request, 32 zero bytes asking "are you a relay, and whose
/// key do you hold?"; in the success response of a relay, its 32-byte Ed25519 identity key. Servers that
/// do not know it ignore it (RFC 8489 §15: comprehension-optional), so the question costs nothing to ask
/// of an ordinary STUN server. The answer's attribute is exactly as large as the question's.
pub const DTN_IDENTITY: u16 = 0xFD7E;
/// Length of DTN-IDENTITY's value.
pub const IDENTITY_LEN: usize = 32;
/// Large enough for any Binding message we produce (header, XOR-MAPPED-ADDRESS for IPv6, FINGERPRINT, or an
/// error response with a short reason and a few unknown attribute types).
pub const MAX_MESSAGE_LEN: usize = 256;

const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Is this datagram a STUN message? True when the first two bits are zero, bytes 4..8 are the magic cookie,
/// the length field matches the datagram (a multiple of 4), and the message ends with a FINGERPRINT whose
/// CRC-32 is right.
///
/// The first two bits alone do not separate STUN from WireGuard: WireGuard's message types 1..=4 also start
/// with `00`. The cookie sits where WireGuard carries a random sender index, so it alone would misroute one
/// WireGuard packet in 2^32; the length and the CRC make that negligible. Messages without FINGERPRINT are
/// not claimed: on a shared socket we cannot tell them from noise, so our requests always carry one and
/// answers from servers that honour RFC 8489 §14.7 (coturn does) carry one too.
pub fn is_stun(datagram: &[u8]) -> bool {
    let len = datagram.len();
    if len < HEADER_LEN + 8 || datagram[0] & 0xC0 != 0 {
        return false;
    }
    if u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]) != MAGIC_COOKIE {
        return false;
    }
    let body = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    if !body.is_multiple_of(4) || HEADER_LEN + body != len {
        return false;
    }
    let fp = &datagram[len - 8..];
    if u16::from_be_bytes([fp[0], fp[1]]) != FINGERPRINT_TYPE || u16::from_be_bytes([fp[2], fp[3]]) != 4 {
        return false;
    }
    let want = u32::from_be_bytes([fp[4], fp[5], fp[6], fp[7]]) ^ FINGERPRINT_XOR;
    CRC32.checksum(&datagram[..len - 8]) == want
}

/// A fresh, cryptographically random 96-bit transaction ID (RFC 8489 §5).
pub fn new_transaction_id() -> [u8; 12] {
    *TransactionId::default().as_bytes()
}

/// A Binding request with FINGERPRINT and no other attribute (no credentials: Binding for learning a
/// mapping needs none, RFC 8489 §13).
pub fn binding_request(transaction_id: [u8; 12]) -> Vec<u8> {
    let msg = StunMessageBuilder::new(BINDING, MessageClass::Request)
        .with_transaction_id(TransactionId::from(transaction_id))
        .with_attribute(Fingerprint::default())
        .build();
    encode(&msg)
}

/// A Binding request with DTN-IDENTITY (32 zero bytes) and FINGERPRINT.
pub fn binding_request_with_identity(transaction_id: [u8; 12]) -> Vec<u8> {
    with_attribute(&binding_request(transaction_id), DTN_IDENTITY, &[0u8; IDENTITY_LEN])
}

/// `msg` (a message we encoded, ending in FINGERPRINT) with one more attribute before the FINGERPRINT,
/// which is recomputed. stun-rs builds only the attributes it knows, so ours is spliced in by hand.
fn with_attribute(msg: &[u8], ty: u16, value: &[u8]) -> Vec<u8> {
    if msg.len() < HEADER_LEN + 8 || !value.len().is_multiple_of(4) {
        return msg.to_vec();
    }
    let mut out = msg[..msg.len() - 8].to_vec();
    out.extend_from_slice(&ty.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    // The length covers everything after the header, the FINGERPRINT included (RFC 8489 §14.7).
    let body = (out.len() + 8 - HEADER_LEN) as u16;
    out[2..4].copy_from_slice(&body.to_be_bytes());
    let crc = CRC32.checksum(&out) ^ FINGERPRINT_XOR;
    out.extend_from_slice(&FINGERPRINT_TYPE.to_be_bytes());
    out.extend_from_slice(&4u16.to_be_bytes());
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// The value of the first attribute of type `ty` in a well-formed message, walking the attributes
/// ourselves (stun-rs does not hand out the value of attributes it does not know). `None` if absent or if
/// the attribute list is malformed.
fn attribute(msg: &[u8], ty: u16) -> Option<&[u8]> {
    let mut rest = msg.get(HEADER_LEN..)?;
    while rest.len() >= 4 {
        let t = u16::from_be_bytes([rest[0], rest[1]]);
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let value = rest.get(4..4 + len)?;
        if t == ty {
            return Some(value);
        }
        // Values are padded to a multiple of 4 bytes.
        rest = rest.get(4 + len.next_multiple_of(4)..)?;
    }
    None
}

/// The identity key in a DTN-IDENTITY attribute of exactly 32 bytes; any other size is not ours.
fn identity_of(msg: &[u8]) -> Option<[u8; IDENTITY_LEN]> {
    attribute(msg, DTN_IDENTITY).and_then(|v| v.try_into().ok())
}

/// What a Binding response said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingOutcome {
    /// Success: the server saw us at this address (XOR-MAPPED-ADDRESS).
    Mapped(SocketAddr),
    /// An error response with its code (e.g. 400, 420, 500).
    Error(u16),
}

/// A decoded Binding response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingResponse {
    pub transaction_id: [u8; 12],
    pub outcome: BindingOutcome,
    /// The responder's identity key, if it is a relay that was asked (DTN-IDENTITY). A claim only: it
    /// proves nothing until a WireGuard handshake with that key completes.
    pub identity: Option<[u8; IDENTITY_LEN]>,
}

/// Why a datagram is not a usable Binding response.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResponseError {
    #[error("not a well-formed STUN message (or its FINGERPRINT is wrong)")]
    Malformed,
    #[error("a STUN message, but not a Binding response")]
    NotBindingResponse,
    #[error("Binding success without XOR-MAPPED-ADDRESS")]
    NoMappedAddress,
}

/// Checks a trailing FINGERPRINT, if any, and decodes. We carry no credentials, so MESSAGE-INTEGRITY
/// (which a server answering an unauthenticated Binding has no reason to send) is not checked.
fn decode(datagram: &[u8]) -> Option<StunMessage> {
    if has_fingerprint(datagram) && !is_stun(datagram) {
        return None;
    }
    match MessageDecoderBuilder::default().build().decode(datagram) {
        Ok((msg, used)) if used == datagram.len() => Some(msg),
        _ => None,
    }
}

fn has_fingerprint(datagram: &[u8]) -> bool {
    let len = datagram.len();
    len >= HEADER_LEN + 8 && datagram[len - 8..len - 4] == [0x80, 0x28, 0x00, 0x04]
}

fn encode(msg: &StunMessage) -> Vec<u8> {
    let mut buf = [0u8; MAX_MESSAGE_LEN];
    let encoder = MessageEncoderBuilder::default().build();
    // Our messages are built from a closed set of small attributes, so encoding cannot run out of room; an
    // empty vector (never sent as STUN: it fails `is_stun`) is the defensive answer should it ever fail.
    match encoder.encode(&mut buf, msg) {
        Ok(n) => buf[..n].to_vec(),
        Err(_) => Vec::new(),
    }
}

fn transaction_id_of(msg: &StunMessage) -> [u8; 12] {
    *msg.transaction_id().as_bytes()
}

/// Decodes a Binding success or error response.
pub fn parse_binding_response(datagram: &[u8]) -> Result<BindingResponse, ResponseError> {
    let msg = decode(datagram).ok_or(ResponseError::Malformed)?;
    if msg.method() != BINDING {
        return Err(ResponseError::NotBindingResponse);
    }
    let transaction_id = transaction_id_of(&msg);
    let outcome = match msg.class() {
        MessageClass::SuccessResponse => {
            let mapped = msg
                .get::<XorMappedAddress>()
                .and_then(|a| a.as_xor_mapped_address().ok())
                .map(|a| *a.socket_address())
                .ok_or(ResponseError::NoMappedAddress)?;
            BindingOutcome::Mapped(mapped)
        }
        MessageClass::ErrorResponse => {
            let code = msg.get::<ErrorCode>().and_then(|a| a.as_error_code().ok()).map(|e| e.error_code().error_code());
            BindingOutcome::Error(code.unwrap_or(0))
        }
        _ => return Err(ResponseError::NotBindingResponse),
    };
    let identity = match outcome {
        BindingOutcome::Mapped(_) => identity_of(datagram),
        BindingOutcome::Error(_) => None,
    };
    Ok(BindingResponse { transaction_id, outcome, identity })
}

/// The responder's answer to one datagram from `from`: a Binding success with XOR-MAPPED-ADDRESS and
/// FINGERPRINT for a Binding request; a 420 error naming them for a request carrying comprehension-required
/// attributes we do not know (RFC 8489 §6.3.1); `None` (silence) for anything else, including indications,
/// responses, other methods and garbage.
pub fn answer(datagram: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    answer_as(datagram, from, None)
}

/// [`answer`] for a relay holding identity key `identity`: a request carrying DTN-IDENTITY (32 bytes) gets
/// the key in the same attribute of the success response. With `None`, DTN-IDENTITY is ignored like any
/// comprehension-optional attribute.
pub fn answer_as(datagram: &[u8], from: SocketAddr, identity: Option<&[u8; IDENTITY_LEN]>) -> Option<Vec<u8>> {
    // Cheap rejections first: a responder on a public address sees a lot of noise.
    if datagram.len() < HEADER_LEN || datagram[0] & 0xC0 != 0 || datagram[4..8] != MAGIC_COOKIE.to_be_bytes() {
        return None;
    }
    let msg = decode(datagram)?;
    if msg.method() != BINDING || msg.class() != MessageClass::Request {
        return None;
    }
    let tid = TransactionId::from(transaction_id_of(&msg));
    let mut unknown = UnknownAttributes::default();
    let mut any_unknown = false;
    for attr in msg.attributes() {
        if let Ok(u) = attr.as_unknown()
            && u.attribute_type().is_comprehension_required()
        {
            unknown.add(u.attribute_type().as_u16());
            any_unknown = true;
        }
    }
    let reply = if any_unknown {
        let code = stun_rs::ErrorCode::new(420, "Unknown Attribute").ok()?;
        StunMessageBuilder::new(BINDING, MessageClass::ErrorResponse)
            .with_transaction_id(tid)
            .with_attribute(ErrorCode::from(code))
            .with_attribute(unknown)
            .with_attribute(Fingerprint::default())
            .build()
    } else {
        StunMessageBuilder::new(BINDING, MessageClass::SuccessResponse)
            .with_transaction_id(tid)
            .with_attribute(XorMappedAddress::from(from))
            .with_attribute(Fingerprint::default())
            .build()
    };
    let mut bytes = encode(&reply);
    if !any_unknown
        && let Some(key) = identity
        && identity_of(datagram).is_some()
    {
        bytes = with_attribute(&bytes, DTN_IDENTITY, key);
    }
    (!bytes.is_empty()).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn request_is_stun_and_answer_round_trips() {
        let tid = new_transaction_id();
        let req = binding_request(tid);
        assert!(is_stun(&req), "our request must pass our own demultiplexer");
        let from = addr("198.51.100.7:40000");
        let resp = answer(&req, from).expect("a Binding request is answered");
        assert!(is_stun(&resp));
        let parsed = parse_binding_response(&resp).unwrap();
        assert_eq!(
            parsed,
            BindingResponse { transaction_id: tid, outcome: BindingOutcome::Mapped(from), identity: None }
        );
        let v6 = addr("[2001:db8::1]:5");
        let parsed = parse_binding_response(&answer(&req, v6).unwrap()).unwrap();
        assert_eq!(parsed.outcome, BindingOutcome::Mapped(v6));
    }

    #[test]
    fn rfc5769_response_with_integrity_parses() {
        // RFC 5769 §2.2 sample IPv4 response: MESSAGE-INTEGRITY (ignored here, we use no credentials),
        // FINGERPRINT, mapped address 192.0.2.1:32853.
        let v: [u8; 80] = [
            0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87,
            0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20,
            0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91,
            0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7,
            0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
        ];
        assert!(is_stun(&v));
        let parsed = parse_binding_response(&v).unwrap();
        assert_eq!(parsed.outcome, BindingOutcome::Mapped(addr("192.0.2.1:32853")));
        let mut bad = v;
        bad[45] ^= 1;
        assert!(!is_stun(&bad), "a flipped bit breaks the FINGERPRINT");
        assert_eq!(parse_binding_response(&bad), Err(ResponseError::Malformed));
    }

    #[test]
    fn wireguard_shaped_packets_are_not_stun() {
        // Handshake initiation (type 1, 148 bytes) and a transport packet (type 4) whose sender/receiver
        // index happens to equal the magic cookie: still not STUN (length and CRC).
        for (ty, len) in [(1u8, 148usize), (2, 92), (3, 64), (4, 32), (4, 1452)] {
            let mut p = vec![0u8; len];
            p[0] = ty;
            p[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            assert!(!is_stun(&p), "type {ty} len {len}");
        }
    }

    #[test]
    fn answer_ignores_non_requests() {
        let tid = new_transaction_id();
        let req = binding_request(tid);
        let resp = answer(&req, addr("10.0.0.1:1")).unwrap();
        assert_eq!(answer(&resp, addr("10.0.0.1:1")), None, "responses are never answered (no reflection loops)");
        let mut indication = req.clone();
        indication[1] = 0x11; // Binding indication
        assert_eq!(answer(&indication, addr("10.0.0.1:1")), None);
        assert_eq!(answer(b"hello", addr("10.0.0.1:1")), None);
    }

    #[test]
    fn unknown_comprehension_required_attribute_gets_420() {
        // stun-rs will not build an attribute it does not know, so the request is made by hand: a Binding
        // request with attribute 0x0777 (comprehension-required, unassigned).
        let mut req = vec![0x00, 0x01, 0x00, 0x08];
        req.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        req.extend_from_slice(&new_transaction_id());
        req.extend_from_slice(&[0x07, 0x77, 0x00, 0x04, 1, 2, 3, 4]);
        let resp = answer(&req, addr("10.0.0.1:1")).expect("answered with an error");
        assert_eq!(parse_binding_response(&resp).unwrap().outcome, BindingOutcome::Error(420));
    }

    #[test]
    fn identity_is_given_by_relays_only_when_asked() {
        let key = [0xab; IDENTITY_LEN];
        let from = addr("198.51.100.7:40000");
        let tid = new_transaction_id();
        let ask = binding_request_with_identity(tid);
        assert!(is_stun(&ask), "the spliced attribute keeps the FINGERPRINT right");
        assert_eq!(ask.len(), HEADER_LEN + 4 + IDENTITY_LEN + 8);
        // A relay answers with its key, in an attribute as large as the question's.
        let resp = answer_as(&ask, from, Some(&key)).unwrap();
        assert!(is_stun(&resp));
        let parsed = parse_binding_response(&resp).unwrap();
        assert_eq!(parsed.outcome, BindingOutcome::Mapped(from));
        assert_eq!(parsed.identity, Some(key));
        assert_eq!(attribute(&resp, DTN_IDENTITY).map(<[u8]>::len), Some(IDENTITY_LEN));
        // An ordinary responder ignores the question (comprehension-optional: no 420).
        let parsed = parse_binding_response(&answer(&ask, from).unwrap()).unwrap();
        assert_eq!((parsed.outcome, parsed.identity), (BindingOutcome::Mapped(from), None));
        // A relay not asked does not volunteer its key.
        let parsed = parse_binding_response(&answer_as(&binding_request(tid), from, Some(&key)).unwrap()).unwrap();
        assert_eq!(parsed.identity, None);
    }

    #[test]
    fn oversized_or_truncated_identity_attributes_are_ignored() {
        let key = [7u8; IDENTITY_LEN];
        let from = addr("10.0.0.1:1");
        let base = binding_request(new_transaction_id());
        // 64 bytes asked: not our question, so no key comes back (and no amplification).
        let big = with_attribute(&base, DTN_IDENTITY, &[0u8; 64]);
        assert!(is_stun(&big));
        assert_eq!(parse_binding_response(&answer_as(&big, from, Some(&key)).unwrap()).unwrap().identity, None);
        let small = with_attribute(&base, DTN_IDENTITY, &[0u8; 8]);
        assert_eq!(parse_binding_response(&answer_as(&small, from, Some(&key)).unwrap()).unwrap().identity, None);
        // A response whose attribute claims more bytes than the message holds is not a key either.
        let resp = answer_as(&binding_request_with_identity(new_transaction_id()), from, Some(&key)).unwrap();
        let mut bad = resp.clone();
        let at = bad.len() - 8 - IDENTITY_LEN - 2;
        bad[at..at + 2].copy_from_slice(&200u16.to_be_bytes());
        assert_eq!(identity_of(&bad), None);
        assert!(parse_binding_response(&bad).is_err(), "the FINGERPRINT no longer matches");
    }

    proptest! {
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = is_stun(&data);
            let _ = parse_binding_response(&data);
            let _ = answer(&data, "127.0.0.1:9".parse().unwrap());
        }

        #[test]
        fn stun_shaped_garbage_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..120), ty in 0u16..0x3fff) {
            // Valid header (so the decoder goes on to parse attributes), random attribute bytes.
            let mut v = ty.to_be_bytes().to_vec();
            v.extend_from_slice(&(tail.len() as u16).to_be_bytes());
            v.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
            v.extend_from_slice(&[7; 12]);
            v.extend_from_slice(&tail);
            let _ = is_stun(&v);
            let _ = parse_binding_response(&v);
            let _ = answer(&v, "[::1]:9".parse().unwrap());
            let _ = answer_as(&v, "[::1]:9".parse().unwrap(), Some(&[1; IDENTITY_LEN]));
            let _ = identity_of(&v);
        }

        #[test]
        fn identity_attribute_garbage_never_panics(value in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut v = binding_request_with_identity(new_transaction_id());
            // Replace the value with arbitrary bytes and an arbitrary (possibly lying) length.
            v.truncate(HEADER_LEN + 2);
            v.extend_from_slice(&(value.len() as u16 ^ 0x5a).to_be_bytes());
            v.extend_from_slice(&value);
            let _ = is_stun(&v);
            let _ = parse_binding_response(&v);
            let _ = answer_as(&v, "127.0.0.1:9".parse().unwrap(), Some(&[1; IDENTITY_LEN]));
            let _ = identity_of(&v);
        }
    }
}
