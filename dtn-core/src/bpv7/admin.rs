//! Administrative records (RFC 9171 §6.1): the bundle status report, and room for other record types
//! (our custody signals use the private range that RFC 9713 set aside).
//!
//! An administrative record is the payload of a bundle whose "ADU is an administrative record" flag is set:
//! a CBOR array `[record type, record content]`.

use super::Limits;
use super::cbor::{MAJOR_ARRAY, MAJOR_UINT, Reader, head_len, write_head};
use super::eid::Eid;
use super::error::{DecodeError, ErrorKind};
use super::time::{CreationTimestamp, DtnTime};

/// Record type code of the bundle status report.
pub const STATUS_REPORT: u64 = 1;

/// Status report reason codes (RFC 9171 §6.1.1, IANA "Bundle Status Report Reason Codes").
pub mod reason {
    /// No additional information.
    pub const NO_INFO: u64 = 0;
    /// Lifetime expired.
    pub const LIFETIME_EXPIRED: u64 = 1;
    /// Forwarded over unidirectional link.
    pub const UNIDIRECTIONAL_LINK: u64 = 2;
    /// Transmission canceled.
    pub const TRANSMISSION_CANCELED: u64 = 3;
    /// Depleted storage.
    pub const DEPLETED_STORAGE: u64 = 4;
    /// Destination endpoint ID unavailable.
    pub const DESTINATION_UNAVAILABLE: u64 = 5;
    /// No known route to destination from here.
    pub const NO_ROUTE: u64 = 6;
    /// No timely contact with next node on route.
    pub const NO_TIMELY_CONTACT: u64 = 7;
    /// Block unintelligible.
    pub const BLOCK_UNINTELLIGIBLE: u64 = 8;
    /// Hop limit exceeded.
    pub const HOP_LIMIT_EXCEEDED: u64 = 9;
    /// Traffic pared (e.g. status reports).
    pub const TRAFFIC_PARED: u64 = 10;
    /// Block unsupported.
    pub const BLOCK_UNSUPPORTED: u64 = 11;
    /// Missing security operation (RFC 9172 §11.2).
    pub const MISSING_SECURITY_OPERATION: u64 = 12;
    /// Unknown security operation (RFC 9172).
    pub const UNKNOWN_SECURITY_OPERATION: u64 = 13;
    /// Unexpected security operation (RFC 9172).
    pub const UNEXPECTED_SECURITY_OPERATION: u64 = 14;
    /// Failed security operation (RFC 9172).
    pub const FAILED_SECURITY_OPERATION: u64 = 15;
    /// Conflicting security operation (RFC 9172).
    pub const CONFLICTING_SECURITY_OPERATION: u64 = 16;

    /// A short name for a reason code.
    pub fn name(code: u64) -> &'static str {
        match code {
            NO_INFO => "no additional information",
            LIFETIME_EXPIRED => "lifetime expired",
            UNIDIRECTIONAL_LINK => "forwarded over unidirectional link",
            TRANSMISSION_CANCELED => "transmission canceled",
            DEPLETED_STORAGE => "depleted storage",
            DESTINATION_UNAVAILABLE => "destination endpoint ID unavailable",
            NO_ROUTE => "no known route to destination from here",
            NO_TIMELY_CONTACT => "no timely contact with next node on route",
            BLOCK_UNINTELLIGIBLE => "block unintelligible",
            HOP_LIMIT_EXCEEDED => "hop limit exceeded",
            TRAFFIC_PARED => "traffic pared",
            BLOCK_UNSUPPORTED => "block unsupported",
            MISSING_SECURITY_OPERATION => "missing security operation",
            UNKNOWN_SECURITY_OPERATION => "unknown security operation",
            UNEXPECTED_SECURITY_OPERATION => "unexpected security operation",
            FAILED_SECURITY_OPERATION => "failed security operation",
            CONFLICTING_SECURITY_OPERATION => "conflicting security operation",
            _ => "unassigned",
        }
    }
}

/// One status assertion: whether the event happened and, if the bundle asked for it, when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusAssertion {
    /// Whether the event is asserted.
    pub asserted: bool,
    /// Time of the event, present only when asserted and the bundle requested status times.
    pub time: Option<DtnTime>,
}

/// A bundle status report (RFC 9171 §6.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// Reporting node received the bundle.
    pub received: StatusAssertion,
    /// Reporting node forwarded the bundle.
    pub forwarded: StatusAssertion,
    /// Reporting node delivered the bundle.
    pub delivered: StatusAssertion,
    /// Reporting node deleted the bundle.
    pub deleted: StatusAssertion,
    /// Reason code (see [`reason`]).
    pub reason: u64,
    /// Source node ID of the subject bundle.
    pub source: Eid,
    /// Creation timestamp of the subject bundle.
    pub creation: CreationTimestamp,
    /// For a fragment: (fragment offset, payload length) of the subject bundle.
    pub fragment: Option<(u64, u64)>,
}

/// An administrative record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRecord {
    /// Bundle status report.
    StatusReport(StatusReport),
    /// Any other record type: its content is kept as the raw CBOR item.
    Other {
        /// Record type code.
        record_type: u64,
        /// Encoded CBOR content.
        content: Vec<u8>,
    },
}

fn malformed(at: usize, expected: &'static str) -> DecodeError {
    DecodeError::new(at, ErrorKind::UnexpectedCbor { expected })
}

fn assertion(r: &mut Reader<'_>) -> Result<StatusAssertion, DecodeError> {
    let at = r.pos();
    let n = r.array("a status assertion array")?;
    if n.is_some_and(|n| n != 1 && n != 2) {
        return Err(malformed(at, "a status assertion [bool, time?]"));
    }
    let asserted = r.bool("a boolean")?;
    let time = if r.at_end(n, 1)? {
        None
    } else {
        let t = DtnTime(r.u64("a status time")?);
        r.close(n, "the end of a status assertion")?;
        Some(t)
    };
    if time.is_some() && !asserted {
        return Err(malformed(at, "no time for an unasserted status"));
    }
    Ok(StatusAssertion { asserted, time })
}

fn write_assertion(out: &mut Vec<u8>, a: &StatusAssertion) {
    match (a.asserted, a.time) {
        (true, Some(t)) => {
            write_head(out, MAJOR_ARRAY, 2);
            out.push(0xf5);
            write_head(out, MAJOR_UINT, t.0);
        }
        (asserted, _) => {
            write_head(out, MAJOR_ARRAY, 1);
            out.push(if asserted { 0xf5 } else { 0xf4 });
        }
    }
}

impl AdminRecord {
    /// Decodes an administrative record from a bundle payload. Arrays may be definite or indefinite
    /// (RFC 9171 §4.1 does not prohibit indefinite-length items).
    pub fn decode(payload: &[u8]) -> Result<AdminRecord, DecodeError> {
        let limits = Limits::default();
        let mut r = Reader::new(payload);
        let outer = r.array("an administrative record [type, content]")?;
        if outer.is_some_and(|n| n != 2) {
            return Err(malformed(0, "an administrative record [type, content]"));
        }
        let record_type = r.u64("an administrative record type")?;
        let rec = if record_type == STATUS_REPORT {
            let at = r.pos();
            let n = r.array("a status report array")?;
            if n.is_some_and(|n| n != 4 && n != 6) {
                return Err(malformed(at, "a status report of 4 or 6 items"));
            }
            // RFC 9171 §6.1.1: "at least four elements"; later ones are for future use and skipped.
            let at_info = r.pos();
            let info = r.array("the status information array")?;
            if info.is_some_and(|n| n < 4) {
                return Err(malformed(at_info, "at least 4 status assertions"));
            }
            let received = assertion(&mut r)?;
            let forwarded = assertion(&mut r)?;
            let delivered = assertion(&mut r)?;
            let deleted = assertion(&mut r)?;
            let mut read = 4;
            while !r.at_end(info, read)? {
                r.skip("a status assertion")?;
                read += 1;
            }
            let reason = r.u64("a status report reason code")?;
            let source = Eid::decode(&mut r, "status report subject source", limits.max_eid_len)?;
            let ts_at = r.pos();
            let ts = r.array("the subject creation timestamp")?;
            if ts.is_some_and(|n| n != 2) {
                return Err(DecodeError::new(ts_at, ErrorKind::BadCreationTimestamp));
            }
            let creation = CreationTimestamp::new(r.u64("a creation time")?, r.u64("a sequence number")?);
            r.close(ts, "the end of the subject creation timestamp")?;
            let fragment = if r.at_end(n, 4)? {
                None
            } else {
                let f = (r.u64("a fragment offset")?, r.u64("a fragment length")?);
                r.close(n, "the end of the status report")?;
                Some(f)
            };
            AdminRecord::StatusReport(StatusReport {
                received,
                forwarded,
                delivered,
                deleted,
                reason,
                source,
                creation,
                fragment,
            })
        } else {
            let start = r.pos();
            r.skip("the record content")?;
            AdminRecord::Other { record_type, content: payload[start..r.pos()].to_vec() }
        };
        r.close(outer, "the end of the administrative record")?;
        if r.pos() != payload.len() {
            return Err(DecodeError::new(r.pos(), ErrorKind::TrailingBytes(payload.len() - r.pos())));
        }
        Ok(rec)
    }

    /// Encodes the record as a bundle payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        write_head(&mut out, MAJOR_ARRAY, 2);
        match self {
            AdminRecord::StatusReport(s) => {
                write_head(&mut out, MAJOR_UINT, STATUS_REPORT);
                write_head(&mut out, MAJOR_ARRAY, if s.fragment.is_some() { 6 } else { 4 });
                write_head(&mut out, MAJOR_ARRAY, 4);
                for a in [&s.received, &s.forwarded, &s.delivered, &s.deleted] {
                    write_assertion(&mut out, a);
                }
                write_head(&mut out, MAJOR_UINT, s.reason);
                s.source.encode(&mut out);
                write_head(&mut out, MAJOR_ARRAY, 2);
                write_head(&mut out, MAJOR_UINT, s.creation.time.0);
                write_head(&mut out, MAJOR_UINT, s.creation.sequence);
                if let Some((o, l)) = s.fragment {
                    write_head(&mut out, MAJOR_UINT, o);
                    write_head(&mut out, MAJOR_UINT, l);
                }
            }
            AdminRecord::Other { record_type, content } => {
                out.reserve(head_len(*record_type) + content.len());
                write_head(&mut out, MAJOR_UINT, *record_type);
                out.extend_from_slice(content);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_report_roundtrip() {
        let rep = AdminRecord::StatusReport(StatusReport {
            received: StatusAssertion { asserted: true, time: Some(DtnTime(5)) },
            forwarded: StatusAssertion::default(),
            delivered: StatusAssertion { asserted: true, time: None },
            deleted: StatusAssertion::default(),
            reason: reason::NO_INFO,
            source: "ipn:3.0".parse().unwrap(),
            creation: CreationTimestamp::new(700, 2),
            fragment: Some((10, 20)),
        });
        let bytes = rep.encode();
        assert_eq!(AdminRecord::decode(&bytes).unwrap(), rep);
    }

    #[test]
    fn other_records_are_kept_raw() {
        let rec = AdminRecord::Other { record_type: 0x1_0001, content: vec![0x82, 0x01, 0x02] };
        let bytes = rec.encode();
        assert_eq!(AdminRecord::decode(&bytes).unwrap(), rec);
    }

    #[test]
    fn indefinite_arrays_and_extra_status_items_decode() {
        // [_ 1, [_ [_ [_ true], [false], [false], [false], [false]], 0, [2, [3, 0]], [_ 7, 1]]]
        let b = [
            0x9f, 0x01, 0x9f, 0x9f, 0x9f, 0xf5, 0xff, 0x81, 0xf4, 0x81, 0xf4, 0x81, 0xf4, 0x81, 0xf4, 0xff, 0x00, 0x82,
            0x02, 0x82, 0x03, 0x00, 0x9f, 0x07, 0x01, 0xff, 0xff, 0xff,
        ];
        let AdminRecord::StatusReport(r) = AdminRecord::decode(&b).unwrap() else { panic!("not a report") };
        assert!(r.received.asserted && !r.deleted.asserted);
        assert_eq!(
            (r.source.to_string(), r.creation, r.fragment),
            ("ipn:3.0".into(), CreationTimestamp::new(7, 1), None)
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        // [5, <lone break>] and [5, [<lone break>]]: malformed CBOR, not a record to carry on.
        for bad in [
            &[][..],
            &[0x82, 0x01],
            &[0x82, 0x01, 0x84, 0x84, 0x81, 0xf5],
            &[0xff; 8],
            &[0x82, 0x05, 0xff],
            &[0x82, 0x05, 0x81, 0xff],
        ] {
            assert!(AdminRecord::decode(bad).is_err());
        }
    }
}
