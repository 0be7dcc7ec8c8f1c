//! Custody transfer (our hop-by-hop extension, docs/protocol.md), custody retransmission and expiry.

use std::num::NonZeroU64;

use super::{After, Engine, StatusKind, Timer};
use crate::bpv7::admin::reason;
use crate::bpv7::{BundleFlags, DtnTime, Eid};
use crate::engine::Notice;
use crate::proto::{CustodySignal, Disposition, OurRecord, Refusal};
use crate::store::{BundleStore, Custody, Delivery, TombstoneReason, WriteOp};

/// Refusal for a bundle carrying a block we cannot process and must delete it for (our code 16).
pub(super) const UNPROCESSABLE: Refusal = Refusal::Other(NonZeroU64::new(16).unwrap());
/// Refusal when our store failed for a reason other than space (our code 17); the custodian retries.
pub(super) const STORE_ERROR: Refusal = Refusal::Other(NonZeroU64::new(17).unwrap());

/// Wire code of a refusal (0 is "accepted").
pub(super) fn refusal_code(r: Refusal) -> u64 {
    Disposition::Refused(r).code()
}

impl Engine {
    /// Queues a custody signal; signals to one custodian with one disposition are sent together at the end
    /// of the event, however many bundles they cover.
    pub(super) fn queue_signal(&mut self, custodian: Eid, code: u64, id: crate::bpv7::BundleId) {
        self.signals.entry((custodian.node_id(), code)).or_default().push(id);
    }

    pub(super) fn flush_signals(&mut self) {
        let signals = std::mem::take(&mut self.signals);
        for ((custodian, code), ids) in signals {
            if custodian == self.cfg.node {
                continue;
            }
            let time = if self.cfg.has_clock { self.now } else { DtnTime(0) };
            let sig = CustodySignal { disposition: Disposition::from_code(code), time, ids, signature: None };
            let rec = OurRecord::CustodySignal(sig);
            if self.in_contact(&custodian) {
                self.send_record(&custodian, &rec);
            } else {
                self.originate(custodian, rec.to_admin_payload());
            }
        }
    }

    /// A custody signal for bundles we hold custody of.
    pub(super) fn custody_signal(&mut self, store: &dyn BundleStore, sig: CustodySignal) {
        let mut ops = Vec::new();
        let mut notices = Vec::new();
        for id in sig.ids {
            let mut m = match store.meta(&id) {
                Ok(Some(m)) if m.custody.is_custodian() => m,
                Ok(_) => continue,
                Err(e) => {
                    self.store_error(e);
                    continue;
                }
            };
            match sig.disposition {
                // Sent with custody before its endpoint was registered here: the next hop is responsible for its
                // copy, and this one stays for the local application.
                Disposition::Accepted if m.delivery == Delivery::LocalPending => {
                    notices.push(Notice::CustodyReleased { id: id.clone() });
                    if m.custody != Custody::Held {
                        m.custody = Custody::Held;
                        ops.push(WriteOp::Update(m));
                    }
                }
                Disposition::Accepted => {
                    notices.push(Notice::CustodyReleased { id: id.clone() });
                    ops.push(WriteOp::Remove { id, tombstone: Some(TombstoneReason::Forwarded) });
                }
                Disposition::Refused(Refusal::Duplicate) => {
                    // The peer has it or had it: no point retransmitting to it; receipts settle the rest.
                    notices.push(Notice::CustodyRefused { id, reason: Refusal::Duplicate });
                    m.custody = Custody::Held;
                    ops.push(WriteOp::Update(m));
                }
                Disposition::Refused(r @ (Refusal::Expired | Refusal::HopLimit)) => {
                    let code =
                        if r == Refusal::Expired { reason::LIFETIME_EXPIRED } else { reason::HOP_LIMIT_EXCEEDED };
                    notices.push(Notice::CustodyRefused { id: id.clone(), reason: r });
                    notices.push(Notice::Deleted { id: id.clone(), reason: code });
                    ops.push(WriteOp::Remove { id, tombstone: Some(TombstoneReason::Deleted(code as u8)) });
                }
                Disposition::Refused(r) => {
                    // Store full or other: keep custody; the retransmission timer tries again later.
                    notices.push(Notice::CustodyRefused { id, reason: r });
                }
            }
        }
        if ops.is_empty() {
            for n in notices {
                self.notice(n);
            }
        } else {
            self.persist(ops, vec![After::Notices(notices)]);
        }
    }

    /// When to retransmit after `attempts` transmissions: exponential backoff with ±10% jitter, so that
    /// custodians that lost a peer at the same moment do not all retry in step.
    pub(super) fn custody_deadline(&mut self, attempts: u32) -> DtnTime {
        let base = self.cfg.custody_retry_ms.max(1);
        let shift = attempts.saturating_sub(1).min(30);
        let wait = base.saturating_mul(1 << shift).min(self.cfg.custody_retry_max_ms.max(base));
        let jitter = wait / 10;
        let wait = wait - jitter + self.rng.below(2 * jitter + 1);
        self.now_plus(wait)
    }

    pub(super) fn custody_scan(&mut self, store: &dyn BundleStore) {
        match store.custody_due(self.now, 1024) {
            Ok(due) if !due.is_empty() => self.requeue(store, &due),
            Ok(_) => {}
            Err(e) => self.store_error(e),
        }
        self.schedule_custody_scan(store);
    }

    /// Arms the scan for the next custody deadline in the store.
    pub(super) fn schedule_custody_scan(&mut self, store: &dyn BundleStore) {
        match store.custody_due(DtnTime(u64::MAX), 1) {
            Ok(next) => {
                if let Some(Custody::Transferring { deadline, .. }) = next.first().map(|m| m.custody) {
                    // Overdue bundles wait for a contact (contact-up offers them); check again later anyway.
                    let at = if deadline > self.now { deadline } else { self.now_plus(self.cfg.custody_retry_ms) };
                    self.schedule(at, Timer::CustodyScan);
                }
            }
            Err(e) => self.store_error(e),
        }
    }

    /// Deletes bundles whose lifetime ended (RFC 9171 §5.13 reason "lifetime expired") and prunes the store.
    pub(super) fn sweep(&mut self, store: &dyn BundleStore) {
        let expired = match store.expiring(self.now, 1024) {
            Ok(e) => e,
            Err(e) => return self.store_error(e),
        };
        let mut ops = Vec::with_capacity(expired.len() + 1);
        let mut notices = Vec::new();
        for m in expired {
            if let Some(r) = self.report_wanted(store, &m.id, BundleFlags::REPORT_DELETION) {
                self.status_report(r, StatusKind::Deleted, reason::LIFETIME_EXPIRED);
            }
            notices.push(Notice::Deleted { id: m.id.clone(), reason: reason::LIFETIME_EXPIRED });
            let tombstone = Some(TombstoneReason::Deleted(reason::LIFETIME_EXPIRED as u8));
            ops.push(WriteOp::Remove { id: m.id, tombstone });
        }
        ops.push(WriteOp::Sweep);
        self.persist(ops, vec![After::Notices(notices)]);
        // Spray bookkeeping left by failed commits of bundles since removed.
        self.spray.retain(|id, h| h.in_flight > 0 || store.contains(id).unwrap_or(true));
    }
}
