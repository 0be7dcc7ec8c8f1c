//! What goes into the engine and what comes out.

use crate::bpv7::{BundleId, Eid};
use crate::proto::Refusal;
use crate::routing::LinkInfo;
use crate::store::{BundleMeta, Priority, WriteOp};

/// Identifies one transmission the engine asked for, so the shell can report how it ended.
pub type TransferId = u64;

/// Identifies one [`Action::Persist`], so the shell can report that it is durable.
pub type BatchId = u64;

/// A bundle an application hands to the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The application's handle for this submission, echoed in [`Action::Accepted`] or [`Action::Rejected`].
    pub token: u64,
    /// Source endpoint: this node's ID or an endpoint registered here; `None` means the node ID.
    pub source: Option<Eid>,
    /// Destination endpoint.
    pub destination: Eid,
    /// Application data.
    pub payload: Vec<u8>,
    /// Lifetime in milliseconds; `None` uses the node's default.
    pub lifetime_ms: Option<u64>,
    /// Transmission and eviction priority.
    pub priority: Priority,
    /// Status reports wanted (RFC 9171 report flags), sent to `report_to`.
    pub reports: crate::bpv7::BundleFlags,
    /// Where status reports go; `None` means the source.
    pub report_to: Option<Eid>,
    /// Forbid fragmentation.
    pub must_not_fragment: bool,
    /// This payload is one part of a larger application data unit, submitted part by part so that an
    /// application can stream a payload of any size: each part becomes a fragment of the same bundle.
    pub part: Option<AduPart>,
}

/// Where a submitted part sits in its application data unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AduPart {
    /// Length of the whole application data unit.
    pub total_len: u64,
    /// Offset of this part in it.
    pub offset: u64,
    /// The bundle's creation timestamp: `None` for the first part submitted (the engine assigns one and
    /// returns it in the fragment IDs of [`Action::Accepted`]), that timestamp for every later part.
    pub creation: Option<crate::bpv7::CreationTimestamp>,
}

/// One stretch of a payload delivered in pieces: `len` payload bytes of stored fragment `id`, after
/// skipping its first `skip` payload bytes (fragments may overlap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The stored fragment.
    pub id: BundleId,
    /// Payload bytes of it to skip.
    pub skip: u64,
    /// Payload bytes of it to take.
    pub len: u64,
}

impl Submission {
    /// A submission with defaults: normal priority, default lifetime, no reports.
    pub fn new(token: u64, destination: Eid, payload: Vec<u8>) -> Self {
        Submission {
            token,
            source: None,
            destination,
            payload,
            lifetime_ms: None,
            priority: Priority::NORMAL,
            reports: crate::bpv7::BundleFlags::default(),
            report_to: None,
            must_not_fragment: false,
            part: None,
        }
    }
}

/// Why a commit failed, as the shell reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersistFailure {
    /// No room (quota or disk): refusals carry "store full".
    Full,
    /// Anything else; the text goes to the log.
    Other(String),
}

impl From<&crate::store::StoreError> for PersistFailure {
    /// What a shell reports for a commit that failed with `e`.
    fn from(e: &crate::store::StoreError) -> Self {
        if e.is_full() { PersistFailure::Full } else { PersistFailure::Other(e.to_string()) }
    }
}

/// Everything that can happen to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The node (re)started: the engine reloads its state from the store. Send it first.
    Start,
    /// An application registered an endpoint; bundles waiting for it are delivered.
    Register(Eid),
    /// An application went away from an endpoint; bundles for it wait in the store.
    Unregister(Eid),
    /// An application submitted a bundle.
    Submit(Submission),
    /// An application submitted many bundles at once (a batch of small readings): they are stored in one
    /// write, all or none, and each is answered on its own token.
    SubmitBatch(Vec<Submission>),
    /// The operator deletes a stored bundle (RFC 9171 reason "no additional information"). Answered with
    /// [`Action::Accepted`] once the deletion is durable, or [`Action::Rejected`] if it is not stored.
    Delete {
        /// The bundle.
        id: BundleId,
        /// The request's handle, echoed in the answer.
        token: u64,
    },
    /// The application took a delivered bundle: it will never be delivered again.
    DeliveryAcked {
        /// The bundle delivered.
        id: BundleId,
    },
    /// A whole bundle arrived from a peer.
    Received {
        /// The peer's node ID, as its convergence layer identified it.
        peer: Eid,
        /// The encoded bundle.
        bytes: Vec<u8>,
    },
    /// A transfer from a peer was cut; these are the bytes durably received (reactive fragmentation). Also
    /// used while a long transfer is still arriving, to keep what arrived so far in pieces (the convergence
    /// layer acknowledges each once durable, so a cut resumes from there, and holds only the bytes since the
    /// last piece).
    ReceivedPartial {
        /// The peer's node ID.
        peer: Eid,
        /// With `skip` 0, a prefix of the encoded bundle. Otherwise the encoding up to the payload data
        /// followed by payload bytes from `skip` on ([`crate::bpv7::fragment_from_piece`]).
        bytes: Vec<u8>,
        /// Payload bytes earlier pieces of the transfer kept.
        skip: u64,
    },
    /// A bundle handed out with [`Action::DeliverDirect`] could not be delivered after all (no reader, the
    /// application gave it back or is too slow): it is stored and delivered the usual way.
    DirectReturned {
        /// The bundle.
        id: BundleId,
        /// Its encoding, as handed out.
        bytes: Vec<u8>,
    },
    /// A contact came up.
    ContactUp {
        /// The peer's node ID.
        peer: Eid,
        /// What is known about the link.
        link: LinkInfo,
    },
    /// A contact went down.
    ContactDown {
        /// The peer's node ID.
        peer: Eid,
    },
    /// What is left of a live contact's volume changed (a daily byte budget started a new day): from now on
    /// the contact may carry `volume` more bytes (`None`: no limit), and what waited for room goes.
    ContactVolume {
        /// The peer's node ID.
        peer: Eid,
        /// Bytes the contact may still carry.
        volume: Option<u64>,
    },
    /// A transmission completed: the peer acknowledged every byte.
    TransferFinished {
        /// The transfer.
        transfer: TransferId,
    },
    /// A transmission failed before any byte was acknowledged, or the peer refused it.
    TransferFailed {
        /// The transfer.
        transfer: TransferId,
    },
    /// A transmission was cut after the peer durably received `durable` bytes.
    TransferCut {
        /// The transfer.
        transfer: TransferId,
        /// Bytes the peer acknowledged.
        durable: u64,
    },
    /// These batches are durable.
    Persisted(Vec<BatchId>),
    /// This batch could not be committed; none of it applied.
    PersistFailed {
        /// The batch.
        batch: BatchId,
        /// Why.
        failure: PersistFailure,
    },
    /// The store evicted these bundles during a commit (its commit report lists them): replicas, to make
    /// room, or bundles whose lifetime had ended. They are gone; the engine reports and forgets them.
    Evicted(Vec<BundleMeta>),
    /// The time asked for in [`Action::SetTimer`] has come (or passed).
    Timer,
}

/// What the engine asks its shell to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Commit these operations atomically, then report [`Event::Persisted`] (or
    /// [`Event::PersistFailed`]). Batches may be grouped into one commit but must be applied in order.
    Persist {
        /// Batch handle.
        batch: BatchId,
        /// The operations.
        ops: Vec<WriteOp>,
    },
    /// Send these bytes to a peer in contact, then report how it ended.
    Transmit {
        /// The peer.
        peer: Eid,
        /// Handle for the outcome.
        transfer: TransferId,
        /// The stored bundle being sent, if it is one (hellos and signals are not stored).
        id: Option<BundleId>,
        /// Priority, for the convergence layer's queue.
        priority: Priority,
        /// The encoded bundle.
        bytes: Vec<u8>,
    },
    /// Hand a stored bundle to the application registered at `endpoint`; it answers with
    /// [`Event::DeliveryAcked`].
    Deliver {
        /// The endpoint.
        endpoint: Eid,
        /// The bundle (read it from the store, unless `pieces` says otherwise).
        id: BundleId,
        /// Empty for a bundle stored whole. For a bundle that arrived in fragments, its payload is these
        /// stretches of stored fragments, in order: fragments are not copied into one bundle first, so
        /// that a payload of any size is delivered with memory and disk for one piece at a time.
        pieces: Vec<Piece>,
    },
    /// Hand a bundle that just arrived, and is not stored, to the application registered at `endpoint`
    /// (only with [`crate::engine::Config::direct_delivery`]). It answers with [`Event::DeliveryAcked`] once
    /// the application has it, or [`Event::DirectReturned`] if it cannot be handed over; until then it
    /// must not acknowledge the bundle to the peer it came from, as this node holds it only in memory.
    DeliverDirect {
        /// The endpoint.
        endpoint: Eid,
        /// The bundle.
        id: BundleId,
        /// Its encoding.
        bytes: Vec<u8>,
    },
    /// A submission is durable and will be forwarded (one ID per fragment when it was fragmented), or a
    /// [`Event::Delete`] is durable.
    Accepted {
        /// The application's token.
        token: u64,
        /// The IDs it became.
        ids: Vec<BundleId>,
    },
    /// A submission (or a deletion request) was refused.
    Rejected {
        /// The application's token.
        token: u64,
        /// Why.
        reason: String,
    },
    /// Call back with [`Event::Timer`] at this time (replaces any earlier request).
    SetTimer(crate::bpv7::DtnTime),
    /// Something worth logging or counting happened; nothing needs doing.
    Notice(Notice),
}

/// Observable outcomes, for logs, statistics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A bundle from a peer was stored.
    Stored {
        /// The bundle.
        id: BundleId,
        /// From whom.
        from: Eid,
    },
    /// A bundle arrived that this node holds or has delivered or deleted already.
    Duplicate {
        /// The bundle.
        id: BundleId,
        /// From whom.
        from: Eid,
    },
    /// A bundle was delivered to a local application (acknowledged).
    Delivered {
        /// The bundle.
        id: BundleId,
    },
    /// A transmission of a stored bundle completed.
    Forwarded {
        /// The bundle.
        id: BundleId,
        /// To whom.
        to: Eid,
    },
    /// A replica was dropped because the bundle was delivered elsewhere (a delivery receipt arrived).
    DeliveredElsewhere {
        /// The bundle.
        id: BundleId,
    },
    /// A bundle was deleted, with an RFC 9171 reason code.
    Deleted {
        /// The bundle.
        id: BundleId,
        /// Reason code.
        reason: u64,
    },
    /// This node took custody.
    CustodyAccepted {
        /// The bundle.
        id: BundleId,
    },
    /// Custody moved on: the next custodian accepted it.
    CustodyReleased {
        /// The bundle.
        id: BundleId,
    },
    /// A peer refused custody.
    CustodyRefused {
        /// The bundle.
        id: BundleId,
        /// Why.
        reason: Refusal,
    },
    /// A bundle was refused on arrival.
    Refused {
        /// The bundle.
        id: BundleId,
        /// Why.
        reason: Refusal,
    },
    /// Input from a peer that could not be used.
    Malformed {
        /// From whom.
        from: Eid,
        /// What was wrong.
        error: String,
    },
    /// A store read or commit failed.
    StoreError(String),
    /// A cut transfer left the peer holding a prefix: the rest is now its own fragment.
    SplitAfterCut {
        /// The bundle that was being sent.
        id: BundleId,
        /// Payload bytes the peer kept.
        kept: u64,
    },
    /// A status report about one of our bundles arrived.
    StatusReport {
        /// Who reported.
        from: Eid,
        /// The report.
        report: crate::bpv7::admin::StatusReport,
    },
}
