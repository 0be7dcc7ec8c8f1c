//! Counters the node keeps for `dtn stats` and the API.

use dtn_core::engine::Notice;
use serde::Serialize;

/// Node counters since start, plus the store's usage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Bundles stored from peers.
    pub stored: u64,
    /// Bundles delivered to local applications.
    pub delivered: u64,
    /// Of those, bundles delivered directly as they arrived, never stored here (only their tombstones).
    pub direct: u64,
    /// Transmissions of stored bundles completed.
    pub forwarded: u64,
    /// Bundles that arrived again (already held, delivered or deleted).
    pub duplicates: u64,
    /// Bundles refused on arrival.
    pub refused: u64,
    /// Bundles deleted (expiry, operator, eviction).
    pub deleted: u64,
    /// Replicas dropped because the bundle was delivered elsewhere.
    pub delivered_elsewhere: u64,
    /// Custody taken.
    pub custody_accepted: u64,
    /// Custody handed on.
    pub custody_released: u64,
    /// Input from peers that could not be used.
    pub malformed: u64,
    /// Store errors.
    pub store_errors: u64,
    /// Bytes of bundles received from peers.
    pub received_bytes: u64,
    /// Bytes handed to convergence layers.
    pub sent_bytes: u64,
    /// Peers in contact now.
    pub peers: usize,
    /// The store's usage.
    pub store: StoreUsage,
}

/// The store's usage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreUsage {
    /// Bundles stored.
    pub bundles: u64,
    /// Bytes counted against the quota.
    pub bytes: u64,
    /// The quota.
    pub quota: u64,
    /// Tombstones kept.
    pub tombstones: u64,
}

impl From<dtn_core::store::Usage> for StoreUsage {
    fn from(u: dtn_core::store::Usage) -> Self {
        StoreUsage { bundles: u.bundles, bytes: u.bytes, quota: u.quota, tombstones: u.tombstones }
    }
}

impl Stats {
    pub(crate) fn count(&mut self, n: &Notice) {
        let c = match n {
            Notice::Stored { .. } => &mut self.stored,
            Notice::Delivered { .. } => &mut self.delivered,
            Notice::Forwarded { .. } => &mut self.forwarded,
            Notice::Duplicate { .. } => &mut self.duplicates,
            Notice::Refused { .. } => &mut self.refused,
            Notice::Deleted { .. } => &mut self.deleted,
            Notice::DeliveredElsewhere { .. } => &mut self.delivered_elsewhere,
            Notice::CustodyAccepted { .. } => &mut self.custody_accepted,
            Notice::CustodyReleased { .. } => &mut self.custody_released,
            Notice::Malformed { .. } => &mut self.malformed,
            Notice::StoreError(_) => &mut self.store_errors,
            _ => return,
        };
        *c += 1;
    }
}
