//! Fixtures shared by the agents' unit tests.

use crate::bpv7::{BundleId, CreationTimestamp, DtnTime, Eid};
use crate::routing::{LinkInfo, Local, PeerView};
use crate::store::{BundleMeta, Custody, Delivery, Priority, SeqMode};

/// Parses an EID the tests spell out; a typo is a test bug.
pub(crate) fn eid(s: &str) -> Eid {
    s.parse().unwrap_or_else(|e| panic!("bad test EID {s}: {e}"))
}

/// A bundle for `dest` with everything else at neutral values.
pub(crate) fn bundle(dest: &str) -> BundleMeta {
    BundleMeta {
        id: BundleId { source: eid("dtn://source/"), creation: CreationTimestamp::new(1_000, 0), fragment: None },
        destination: eid(dest),
        seq_mode: SeqMode::Unique,
        arrival: 0,
        received_at: DtnTime(1_000),
        expires_at: DtnTime(u64::MAX),
        size: 1_000,
        priority: Priority::NORMAL,
        custody: Custody::None,
        delivery: Delivery::Forward,
        total_adu_len: None,
        copies: 1,
    }
}

/// A local view with no registered endpoints.
pub(crate) fn local(node: &Eid) -> Local<'_> {
    Local { node, endpoints: &[] }
}

/// A peer that runs our router, on `link`.
pub(crate) fn peer<'a>(node: &'a Eid, link: &'a LinkInfo) -> PeerView<'a> {
    PeerView { node, link, endpoints: &[], ours: true }
}
