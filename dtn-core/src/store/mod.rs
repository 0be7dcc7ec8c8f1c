//! The bundle store as the router sees it: synchronous, cheap reads, and writes as atomic batches.
//!
//! The engine reads through [`BundleStore`] and never writes: every change is a [`WriteOp`] in a
//! [`WriteBatch`] that the shell commits, so the shell can group many batches into one durable commit and
//! tell the engine which bundles became durable. A batch is atomic: all of its operations apply, or none
//! and [`BundleStore::commit`] returns why.
//!
//! What the store keeps:
//! * bundles ([`BundleMeta`] plus the encoded bytes, or only a size in simulations);
//! * tombstones of bundles delivered or deleted, so a bundle is never delivered twice, pruned when the
//!   bundle's lifetime has passed;
//! * custody timers (in [`Custody::Transferring`]), routing state (free-form keys), what each peer is known
//!   to hold (a [`Summary`] per peer) and partial bundles whose transfer was cut;
//! * a [`Summary`] of the bundles held and one of the bundles known delivered, maintained on every commit.
//!
//! Quota: inserting past the configured byte limit evicts, in this order, expired bundles, then replicas
//! this node has not taken custody of with a priority no higher than the newcomer's (lowest priority, then
//! soonest expiry, then oldest first); bundles in custody are never evicted to make room. If that is not
//! enough the batch fails with [`StoreError::Full`].

mod mem;
mod summary;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

use std::io::{self, Read};

pub use mem::{MemStager, MemStore};
pub use summary::{FragmentSet, RangeSet, SeqMode, SourceSummary, Summary, SummaryError};

use crate::bpv7::{BundleId, DtnTime, Eid};

/// Transmission and eviction priority; higher is more urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Priority(pub u8);

impl Priority {
    /// Bulk data that may wait (camera video).
    pub const BULK: Priority = Priority(64);
    /// The default.
    pub const NORMAL: Priority = Priority(128);
    /// Ahead of normal traffic (alarms, control).
    pub const EXPEDITED: Priority = Priority(192);
}

impl Default for Priority {
    fn default() -> Self {
        Priority::NORMAL
    }
}

/// This node's custody of a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Custody {
    /// A replica: this node made no promise and may evict it.
    #[default]
    None,
    /// This node accepted custody and keeps the bundle until custody moves on or the lifetime ends.
    Held,
    /// This node holds custody and has forwarded the bundle; it retransmits at `deadline` unless a custody
    /// signal arrives first.
    Transferring {
        /// When to retransmit.
        deadline: DtnTime,
        /// Transmissions so far.
        attempts: u32,
    },
}

impl Custody {
    /// Whether this node holds custody (and so must not evict the bundle).
    pub fn is_custodian(self) -> bool {
        !matches!(self, Custody::None)
    }
}

/// Where a bundle stands with respect to local delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// Not for a local endpoint, or not yet looked at.
    #[default]
    Forward,
    /// For a local endpoint whose application has not taken it yet.
    LocalPending,
    /// Delivered to a local application; kept only as a replica for others.
    Delivered,
}

/// Everything the router knows about a stored bundle, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleMeta {
    /// Bundle ID.
    pub id: BundleId,
    /// Destination endpoint.
    pub destination: Eid,
    /// How the ID is keyed in summaries (declared by the source).
    pub seq_mode: SeqMode,
    /// Arrival order in this store, assigned on insert (any value passed in is replaced).
    pub arrival: u64,
    /// When this node received it (0 when the node has no clock).
    pub received_at: DtnTime,
    /// When its lifetime ends; `DtnTime(u64::MAX)` if never known.
    pub expires_at: DtnTime,
    /// Encoded size in bytes.
    pub size: u64,
    /// Transmission and eviction priority.
    pub priority: Priority,
    /// Custody state.
    pub custody: Custody,
    /// Local delivery state.
    pub delivery: Delivery,
    /// For a fragment: the total application data unit length.
    pub total_adu_len: Option<u64>,
    /// Spray-and-wait copies this node may still hand out.
    pub copies: u32,
}

/// The bytes of a bundle being inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// The whole encoded bundle, in memory.
    Bytes(Vec<u8>),
    /// Bytes already written to the store through its stager (large bundles, partial transfers).
    Staged(StagedId),
    /// No bytes at all, only `meta.size` (simulations).
    SizeOnly,
}

/// Handle of bytes written to a store's staging area but not yet committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StagedId(pub u64);

/// Why a bundle left the store for good; kept in its tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TombstoneReason {
    /// Delivered, here or (per a delivery receipt) somewhere else.
    Delivered,
    /// Deleted with this RFC 9171 status-report reason code.
    Deleted(u8),
    /// Handed on to the next hop (custody released, or forwarded without custody): taking it back from a
    /// replica would only send it round again.
    Forwarded,
}

/// A record that a bundle was delivered or deleted, kept until its lifetime ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tombstone {
    /// Why.
    pub reason: TombstoneReason,
    /// When the tombstone may be pruned: the bundle's expiry.
    pub expires_at: DtnTime,
    /// How the ID is keyed in the delivered summary.
    pub seq_mode: SeqMode,
}

/// The durable prefix of a bundle whose transfer was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialBundle {
    /// ID read from the bundle's header.
    pub id: BundleId,
    /// Where its bytes are.
    pub staged: StagedId,
    /// Length of the whole bundle, as announced.
    pub total_len: u64,
    /// Bytes known durable; only these are read back.
    pub durable_len: u64,
    /// When the partial may be dropped (the bundle's expiry).
    pub expires_at: DtnTime,
    /// Node it came from.
    pub from: Option<Eid>,
}

/// One change to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Stores a new bundle. Fails the batch if the ID is stored already or there is no room.
    Insert {
        /// Metadata.
        meta: BundleMeta,
        /// Its bytes.
        payload: Payload,
    },
    /// Replaces a stored bundle's metadata (the ID, size and arrival cannot change).
    Update(BundleMeta),
    /// Removes a bundle, leaving a tombstone if a reason is given.
    Remove {
        /// The bundle.
        id: BundleId,
        /// Tombstone to leave.
        tombstone: Option<TombstoneReason>,
    },
    /// Records a tombstone for a bundle that may not be stored here (a delivery receipt from the mesh).
    /// Removes the bundle too if it is stored.
    Tombstone {
        /// The bundle.
        id: BundleId,
        /// The tombstone.
        tombstone: Tombstone,
    },
    /// Sets (or with `None` deletes) a node-state value: routing tables, counters.
    PutState {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Option<Vec<u8>>,
    },
    /// Sets (or with `None` forgets) what a peer is known to hold.
    PutPeer {
        /// The peer's node ID.
        peer: Eid,
        /// Its holdings.
        summary: Option<Summary>,
    },
    /// Records or updates the durable prefix of a cut transfer (the bytes are in `staged`).
    PutPartial(PartialBundle),
    /// Drops a partial bundle and its bytes.
    RemovePartial(BundleId),
    /// Removes bundles and partials whose lifetime ended at or before the batch's `now`, and prunes
    /// tombstones likewise; the report lists what went.
    Sweep,
}

/// Operations applied atomically, with the time at which they are made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// Current DTN time, used for expiry during eviction and sweeps.
    pub now: DtnTime,
    /// The operations, in order.
    pub ops: Vec<WriteOp>,
}

impl WriteBatch {
    /// An empty batch made at `now`.
    pub fn new(now: DtnTime) -> Self {
        WriteBatch { now, ops: Vec::new() }
    }

    /// Appends an operation.
    pub fn push(&mut self, op: WriteOp) -> &mut Self {
        self.ops.push(op);
        self
    }
}

/// What a commit did beyond what was asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitReport {
    /// Bundles evicted to make room (not tombstoned: they may come back).
    pub evicted: Vec<BundleMeta>,
    /// Bundles removed by `Sweep` because their lifetime ended.
    pub expired: Vec<BundleMeta>,
    /// Tombstones pruned by `Sweep`.
    pub tombstones_pruned: u64,
}

impl CommitReport {
    /// Folds another report into this one.
    pub fn absorb(&mut self, other: CommitReport) {
        self.evicted.extend(other.evicted);
        self.expired.extend(other.expired);
        self.tombstones_pruned += other.tombstones_pruned;
    }
}

/// How full the store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Bundles stored.
    pub bundles: u64,
    /// Bytes counted against the quota (bundle sizes plus the announced size of partial bundles).
    pub bytes: u64,
    /// The quota in bytes.
    pub quota: u64,
    /// Tombstones kept.
    pub tombstones: u64,
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No room for the bundle even after evicting what may be evicted.
    #[error("store full: bundle of {needed} bytes does not fit ({used} of {quota} bytes used, {evictable} evictable)")]
    Full {
        /// Size of what was refused.
        needed: u64,
        /// Bytes in use.
        used: u64,
        /// Bytes that could have been evicted for it.
        evictable: u64,
        /// The quota.
        quota: u64,
    },
    /// Insert of an ID already stored.
    #[error("bundle {0} is already stored")]
    Duplicate(BundleId),
    /// Update or read of an ID not stored.
    #[error("bundle {0} is not stored")]
    NotFound(BundleId),
    /// An operation violated the store's rules.
    #[error("invalid store operation: {0}")]
    Invalid(String),
    /// The disk (or the file system holding the store) has no space left.
    #[error("no space left on the device holding the store ({context})")]
    DiskFull {
        /// What was being written.
        context: String,
    },
    /// Any other I/O failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A record on disk cannot be decoded.
    #[error("corrupt store record ({what}): {detail}")]
    Corrupt {
        /// Which record.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// The store was written by a newer format.
    #[error("store format version {found} is newer than this build supports ({supported}); upgrade the software")]
    UnsupportedFormat {
        /// Version found.
        found: u8,
        /// Newest version this build reads.
        supported: u8,
    },
    /// The database backend failed.
    #[error("database error ({context}): {detail}")]
    Backend {
        /// What was being done.
        context: String,
        /// The backend's message.
        detail: String,
    },
    /// The store is shutting down.
    #[error("store is closed")]
    Closed,
}

impl StoreError {
    /// An I/O error with context; "no space left" becomes [`StoreError::DiskFull`].
    pub fn io(context: impl Into<String>, source: io::Error) -> StoreError {
        let context = context.into();
        if source.raw_os_error() == Some(28) || source.kind() == io::ErrorKind::StorageFull {
            StoreError::DiskFull { context }
        } else {
            StoreError::Io { context, source }
        }
    }

    /// Whether the error means "no room" (quota or disk), which a convergence layer turns into a refusal.
    pub fn is_full(&self) -> bool {
        matches!(self, StoreError::Full { .. } | StoreError::DiskFull { .. })
    }
}

/// Result alias.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A reader of a stored bundle's bytes.
pub type BundleReader = Box<dyn Read + Send>;

/// A stored bundle's encoded bytes in one piece: shared with the store when it keeps them in memory, so that
/// reading a bundle to send it copies nothing; read into a buffer of its own otherwise.
#[derive(Debug, Clone)]
pub enum StoredBytes {
    /// The store's own copy.
    Shared(std::sync::Arc<[u8]>),
    /// Read out of the store.
    Owned(Vec<u8>),
}

impl std::ops::Deref for StoredBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            StoredBytes::Shared(b) => b,
            StoredBytes::Owned(b) => b,
        }
    }
}

/// The store as the router engine and the shells see it.
///
/// Reads are synchronous and cheap (an index lookup or a short range scan); none of them scans the whole
/// store. Listing methods return at most `limit` items and take the position to continue after.
pub trait BundleStore {
    /// Metadata of a stored bundle.
    fn meta(&self, id: &BundleId) -> Result<Option<BundleMeta>>;

    /// Metadata of a stored bundle last seen at `arrival` (from [`select_keys`](Self::select_keys)): the same
    /// answer as [`meta`](Self::meta), for a store that finds a record faster by arrival than by ID.
    fn meta_seen_at(&self, id: &BundleId, arrival: u64) -> Result<Option<BundleMeta>> {
        let _ = arrival;
        self.meta(id)
    }

    /// Whether the bundle is stored.
    fn contains(&self, id: &BundleId) -> Result<bool> {
        Ok(self.meta(id)?.is_some())
    }

    /// The stored bundle's encoded bytes, as a stream. A size-only bundle reads as an error.
    fn read_bundle(&self, id: &BundleId) -> Result<BundleReader>;

    /// The stored bundle's encoded bytes in one piece: [`read_bundle`](Self::read_bundle) read to the end,
    /// for a store that cannot hand out what it holds.
    fn bundle_bytes(&self, id: &BundleId) -> Result<StoredBytes> {
        let mut out = Vec::new();
        self.read_bundle(id)?.read_to_end(&mut out).map_err(|e| StoreError::io("reading a stored bundle", e))?;
        Ok(StoredBytes::Owned(out))
    }

    /// The tombstone of a delivered or deleted bundle, if one is kept.
    fn tombstone(&self, id: &BundleId) -> Result<Option<Tombstone>>;

    /// Bundles for `destination`, in arrival order, after arrival number `after`.
    fn by_destination(&self, destination: &Eid, after: Option<u64>, limit: usize) -> Result<Vec<BundleMeta>>;

    /// Bundles whose lifetime ends at or before `until`, soonest first.
    fn expiring(&self, until: DtnTime, limit: usize) -> Result<Vec<BundleMeta>>;

    /// Bundles in transmission order (highest priority, then earliest arrival), after `(priority, arrival)`.
    fn by_priority(&self, after: Option<(Priority, u64)>, limit: usize) -> Result<Vec<BundleMeta>>;

    /// Bundles whose custody retransmission is due at or before `until`, soonest first.
    fn custody_due(&self, until: DtnTime, limit: usize) -> Result<Vec<BundleMeta>>;

    /// Stored bundles whose IDs are in `want` (typically "mine minus the peer's"), in ID order.
    fn select(&self, want: &Summary, limit: usize) -> Result<Vec<BundleMeta>>;

    /// The (priority, arrival, ID) of every stored bundle whose ID is in `want`, in [`select`](Self::select)'s
    /// order: what a contact's queue holds, for a store that can answer without reading each record.
    fn select_keys(&self, want: &Summary) -> Result<Vec<(Priority, u64, BundleId)>> {
        Ok(self.select(want, usize::MAX)?.into_iter().map(|m| (m.priority, m.arrival, m.id)).collect())
    }

    /// Summary of the bundles held.
    fn summary(&self) -> Summary;

    /// Summary of the bundles known delivered (tombstones with reason `Delivered`).
    fn delivered_summary(&self) -> Summary;

    /// Calls `f` with the summaries of the bundles held and of those known delivered, borrowed: both grow
    /// with the store, and the engine consults them on every offer and receipt, so copying them there made
    /// each such message cost as much as the whole store.
    fn with_summaries(&self, f: &mut dyn FnMut(&Summary, &Summary));

    /// A node-state value.
    fn state(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// What `peer` is known to hold.
    fn peer(&self, peer: &Eid) -> Result<Option<Summary>>;

    /// Partial bundles kept from cut transfers.
    fn partials(&self) -> Result<Vec<PartialBundle>>;

    /// The durable prefix of a partial bundle.
    fn read_partial(&self, id: &BundleId) -> Result<BundleReader>;

    /// Usage and quota.
    fn usage(&self) -> Usage;

    /// Whether a bundle of `size` bytes and `priority` would fit now (evicting what may be evicted at `now`).
    /// A convergence layer asks before accepting a transfer, so it can refuse early.
    fn check_room(&self, size: u64, priority: Priority, now: DtnTime) -> Result<()>;

    /// Applies a batch atomically and durably (for a persistent store, durable when this returns).
    fn commit(&self, batch: WriteBatch) -> Result<CommitReport>;
}
