//! Bundles coming in: from local applications, from peers (whole or cut short), and administrative records
//! addressed to this node. Also local reassembly of fragments.

use std::collections::BTreeMap;

use super::{After, Engine, ReportTo, StatusKind};
use crate::bpv7::admin::{self, AdminRecord, StatusAssertion, StatusReport};
use crate::bpv7::{
    BlockFlags, BlockType, Bundle, BundleBuilder, BundleFlags, BundleId, CreationTimestamp, DtnTime, Eid, Limits,
    covers, fragment, fragment_from_piece,
};
use crate::engine::{Action, Notice, Piece, Submission};
use crate::proto::{self, BundleClass, CustodyRequest, OurRecord, Refusal};
use crate::store::{
    BundleMeta, BundleStore, Custody, Delivery, Payload, Priority, SeqMode, StoredBytes, TombstoneReason, WriteOp,
};

/// Limits for re-reading bundles this node already accepted (its own store, its own output): everything
/// that was checked on the way in need not block it on the way out.
pub(super) const TRUSTED: Limits = Limits {
    max_bundle_len: u64::MAX,
    max_header_len: 1 << 24,
    max_blocks: 1 << 16,
    max_eid_len: 1 << 16,
    require_primary_crc: false,
};

/// Block types this node processes (everything else falls under RFC 9171 §4.2.4's unprocessable rules).
fn known_block(t: BlockType) -> bool {
    t == proto::BUNDLE_CLASS_BLOCK || t == proto::CUSTODY_REQUEST_BLOCK || t == proto::SPRAY_COPIES_BLOCK
}

impl Engine {
    pub(super) fn submit(&mut self, sub: Submission) {
        self.submit_batch(vec![sub]);
    }

    /// Many submissions stored in one write: all of them or, if that write fails, none (each is answered
    /// on its own token either way). A submission refused before storing does not hold up the rest.
    pub(super) fn submit_batch(&mut self, subs: Vec<Submission>) {
        let mut ops = Vec::with_capacity(subs.len() + 1);
        let mut afters = Vec::with_capacity(subs.len());
        for sub in subs {
            let Some((mut o, after)) = self.prepare_submission(sub) else { continue };
            ops.append(&mut o);
            afters.push(after);
        }
        if !afters.is_empty() {
            // The sequence numbers taken, made durable once for the lot.
            ops.push(self.seq_state());
            self.persist(ops, afters);
        }
    }

    /// Builds a submitted bundle and the writes that store it (the caller adds the sequence counter's);
    /// `None` once it has been rejected.
    fn prepare_submission(&mut self, sub: Submission) -> Option<(Vec<WriteOp>, After)> {
        let token = sub.token;
        let reject = |e: &mut Self, reason: String| {
            e.reject(token, reason);
            None
        };
        let source = sub.source.clone().unwrap_or_else(|| self.cfg.node.clone());
        if source.node_id() != self.cfg.node {
            return reject(self, format!("source {source} is not an endpoint of this node ({})", self.cfg.node));
        }
        if sub.destination.is_null() {
            return reject(self, "the destination is the null endpoint".into());
        }
        if let Some(part) = sub.part {
            let end = part.offset.checked_add(sub.payload.len() as u64);
            if end.is_none_or(|e| e > part.total_len) || sub.payload.is_empty() {
                return reject(
                    self,
                    format!(
                        "part of {} bytes at offset {} does not fit an ADU of {} bytes",
                        sub.payload.len(),
                        part.offset,
                        part.total_len
                    ),
                );
            }
            if sub.must_not_fragment {
                return reject(self, "a payload submitted in parts is fragmented by definition".into());
            }
        }
        let local = self.is_local(&sub.destination);
        let creation = match sub.part.and_then(|p| p.creation) {
            Some(c) => c,
            None => CreationTimestamp { time: self.creation_time(), sequence: self.take_seq().0 },
        };
        let lifetime = sub.lifetime_ms.unwrap_or(self.cfg.default_lifetime_ms);
        let mut flags = BundleFlags(sub.reports.0 & BundleFlags::ALL_REPORTS.0);
        if sub.must_not_fragment {
            flags = BundleFlags(flags.0 | BundleFlags::MUST_NOT_FRAGMENT.0);
        }
        let class = BundleClass { priority: sub.priority, unique_seq: true };
        let mut b = BundleBuilder::new(source, sub.destination.clone())
            .creation(creation)
            .lifetime_ms(lifetime)
            .flags(flags)
            .extension_block(proto::BUNDLE_CLASS_BLOCK, BlockFlags::REPLICATE_IN_FRAGMENTS, class.encode());
        if let Some(r) = sub.report_to {
            b = b.report_to(r);
        }
        if !self.cfg.has_clock {
            b = b.bundle_age_ms(0);
        }
        if let Some(part) = sub.part {
            // Every part carries every extension block: required for the replicated ones, harmless for the
            // rest, and it keeps each part a complete bundle on its own.
            b = b.fragment(part.offset, part.total_len);
        }
        if let Some(h) = self.cfg.hop_limit {
            b = b.hop_limit(h);
        }
        let payload_len = sub.payload.len() as u64;
        let bundle = match b.payload(sub.payload).build() {
            Ok(b) => b,
            Err(e) => return reject(self, format!("cannot build the bundle: {e}")),
        };
        let pieces = match self.cfg.fragment_payload {
            Some(max) if payload_len > max && !sub.must_not_fragment => match fragment(&bundle, max.max(1)) {
                Ok(p) => p,
                Err(e) => return reject(self, format!("cannot fragment the bundle: {e}")),
            },
            _ => vec![bundle],
        };
        let custody = if self.cfg.custody || local { Custody::Held } else { Custody::None };
        let copies = self.agent.initial_copies();
        let mut ops = Vec::with_capacity(pieces.len());
        let mut ids = Vec::with_capacity(pieces.len());
        for p in pieces {
            let bytes = p.to_vec();
            let meta = self.meta_of(&p, bytes.len() as u64, Some(class), local, custody, copies);
            ids.push(meta.id.clone());
            ops.push(WriteOp::Insert { meta, payload: Payload::Bytes(bytes) });
        }
        Some((ops, After::Submitted { token, ids, local, registrations: self.registrations }))
    }

    fn reject(&mut self, token: u64, reason: String) {
        self.out.push(Action::Rejected { token, reason });
    }

    /// Metadata for a bundle entering the store now.
    fn meta_of(
        &self,
        b: &Bundle<'_>,
        size: u64,
        class: Option<BundleClass>,
        local: bool,
        custody: Custody,
        copies: u32,
    ) -> BundleMeta {
        let p = b.primary();
        BundleMeta {
            id: b.id(),
            destination: p.destination.clone(),
            seq_mode: seq_mode(class),
            arrival: 0,
            received_at: self.now,
            expires_at: self.expiry(b),
            size,
            priority: class.map_or(Priority::NORMAL, |c| c.priority),
            custody,
            delivery: if local { Delivery::LocalPending } else { Delivery::Forward },
            total_adu_len: p.fragment.map(|f| f.total_adu_len),
            copies: copies.max(1),
        }
    }

    /// When a bundle's lifetime ends, in this node's time base. With a clock and a creation time, that is
    /// creation + lifetime; otherwise (RFC 9171 §4.2.6: no clock at the source, or none here) the remaining
    /// lifetime after the bundle's age counts from now.
    pub(super) fn expiry(&self, b: &Bundle<'_>) -> DtnTime {
        let p = b.primary();
        if self.cfg.has_clock && p.creation.time.0 != 0 {
            DtnTime(p.creation.time.0.saturating_add(p.lifetime_ms))
        } else {
            let age = b.bundle_age_ms().unwrap_or(0);
            DtnTime(self.now.0.saturating_add(p.lifetime_ms.saturating_sub(age)))
        }
    }

    pub(super) fn received(&mut self, store: &dyn BundleStore, peer: Eid, bytes: Vec<u8>) {
        let peer = peer.node_id();
        match Bundle::decode_with(&bytes, &self.cfg.limits) {
            Ok(b) => self.ingest(store, peer, b, &bytes, true),
            Err(e) => self.notice(Notice::Malformed { from: peer, error: format!("undecodable bundle: {e}") }),
        }
        // Handed over directly as received: the action takes the bytes themselves.
        if let Some(i) = self.direct_fill.take()
            && let Some(Action::DeliverDirect { bytes: b, .. }) = self.out.get_mut(i)
        {
            *b = bytes;
        }
    }

    /// Reactive fragmentation, receiving side: the durable prefix of a cut transfer becomes a fragment of
    /// its own, so the sender only has to send the rest.
    pub(super) fn received_partial(&mut self, store: &dyn BundleStore, peer: Eid, bytes: &[u8], skip: u64) {
        let peer = peer.node_id();
        match fragment_from_piece(bytes, skip, &self.cfg.limits) {
            Ok(Some(frag)) => {
                let v = frag.to_vec();
                match Bundle::decode_with(&v, &TRUSTED) {
                    Ok(b) => self.ingest(store, peer, b, &v, false),
                    Err(e) => self.notice(Notice::Malformed { from: peer, error: format!("kept prefix: {e}") }),
                }
            }
            Ok(None) => {}
            Err(e) => self.notice(Notice::Malformed { from: peer, error: format!("cut transfer unusable: {e}") }),
        }
    }

    /// A bundle the shell could not hand to its application after all ([`Event::DirectReturned`]): it is
    /// stored as if it had just arrived.
    pub(super) fn direct_returned(&mut self, store: &dyn BundleStore, id: BundleId, bytes: &[u8]) {
        let Some(d) = self.direct.remove(&id) else {
            return self.notice(Notice::StoreError(format!("{id} given back but never handed out")));
        };
        self.pending_ids.remove(&id);
        match Bundle::decode_with(bytes, &TRUSTED) {
            Ok(b) if b.id() == id => self.ingest(store, d.from, b, bytes, false),
            Ok(b) => self.notice(Notice::StoreError(format!("{id} given back as {}", b.id()))),
            Err(e) => self.notice(Notice::StoreError(format!("{id} given back unreadable: {e}"))),
        }
    }

    /// The application took a bundle handed to it directly: its tombstone is all that is written.
    pub(super) fn direct_taken(&mut self, id: BundleId, d: super::Direct) {
        let tombstone =
            crate::store::Tombstone { reason: TombstoneReason::Delivered, expires_at: d.expires_at, seq_mode: d.mode };
        let mut after = Vec::with_capacity(4);
        if let Some(r) = d.report_received {
            after.push(After::ReportReceived(r));
        }
        // Custody ends here as it would for a stored bundle: accepted, then delivered.
        if let Some(c) = d.custodian {
            after.push(After::Notices(vec![Notice::CustodyAccepted { id: id.clone() }]));
            after.push(After::Signal(c, 0, id.clone()));
        }
        after.push(After::Delivered { id: id.clone(), mode: d.mode, report: d.report_delivered });
        self.persist(vec![WriteOp::Tombstone { id, tombstone }], after);
    }

    /// `direct`: the bundle may be handed straight to a registered application ([`Config::direct_delivery`]).
    fn ingest(&mut self, store: &dyn BundleStore, peer: Eid, bundle: Bundle<'_>, bytes: &[u8], direct: bool) {
        let id = bundle.id();
        if bundle.is_admin_record() && bundle.primary().destination.node_id() == self.cfg.node {
            return self.admin_record(store, &peer, &bundle);
        }
        let class = match BundleClass::of(&bundle) {
            Ok(c) => c,
            Err(e) => return self.notice(Notice::Malformed { from: peer, error: format!("bundle {id}: {e}") }),
        };
        let mode = seq_mode(class);
        if let Some(c) = self.contacts.get_mut(&peer) {
            c.known.insert(&id, mode);
        }
        let custodian = match CustodyRequest::of(&bundle) {
            Ok(r) => r.map(|r| r.custodian),
            Err(e) => return self.notice(Notice::Malformed { from: peer, error: format!("bundle {id}: {e}") }),
        };
        let copies = match proto::copies_of(&bundle) {
            Ok(c) => c.unwrap_or(1),
            Err(e) => return self.notice(Notice::Malformed { from: peer, error: format!("bundle {id}: {e}") }),
        };
        let unprocessable = bundle.unprocessable_blocks(known_block);
        if unprocessable.delete_bundle {
            let r = self.report_for(&bundle, BundleFlags::REPORT_DELETION);
            return self.drop_on_arrival(
                id,
                custodian,
                super::custody::UNPROCESSABLE,
                admin::reason::BLOCK_UNSUPPORTED,
                r,
            );
        }
        if bundle.hop_count().is_some_and(|h| h.exceeded()) {
            let r = self.report_for(&bundle, BundleFlags::REPORT_DELETION);
            return self.drop_on_arrival(id, custodian, Refusal::HopLimit, admin::reason::HOP_LIMIT_EXCEEDED, r);
        }
        if self.expiry(&bundle) <= self.now {
            let r = self.report_for(&bundle, BundleFlags::REPORT_DELETION);
            return self.drop_on_arrival(id, custodian, Refusal::Expired, admin::reason::LIFETIME_EXPIRED, r);
        }
        if self.is_duplicate(store, &id, mode) {
            return self.duplicate(store, peer, id, custodian);
        }
        let mut owned;
        let as_received = unprocessable.discard.is_empty();
        let (bundle, bytes) = if as_received {
            (bundle, bytes)
        } else {
            let mut b = bundle;
            for n in &unprocessable.discard {
                b.remove_block(*n);
            }
            owned = b.to_vec();
            owned.shrink_to_fit();
            match Bundle::decode_with(&owned, &TRUSTED) {
                Ok(b) => (b, owned.as_slice()),
                Err(e) => return self.notice(Notice::Malformed { from: peer, error: format!("bundle {id}: {e}") }),
            }
        };
        if direct
            && self.cfg.direct_delivery
            && id.fragment.is_none()
            && let Some(endpoint) = self.local_endpoint(&bundle.primary().destination)
        {
            // Still counts as seen (a second copy is a duplicate) until its tombstone is durable.
            self.pending_ids.insert(id.clone());
            let d = super::Direct {
                from: peer,
                custodian: custodian.filter(|_| self.cfg.custody),
                expires_at: self.expiry(&bundle),
                mode,
                report_received: self.report_for(&bundle, BundleFlags::REPORT_RECEPTION),
                report_delivered: self.report_for(&bundle, BundleFlags::REPORT_DELIVERY),
            };
            self.direct.insert(id.clone(), d);
            if as_received {
                // `received` moves the bytes in once this borrow of them ends.
                self.direct_fill = Some(self.out.len());
                self.out.push(Action::DeliverDirect { endpoint, id, bytes: Vec::new() });
            } else {
                self.out.push(Action::DeliverDirect { endpoint, id, bytes: bytes.to_vec() });
            }
            return;
        }
        let priority = class.map_or(Priority::NORMAL, |c| c.priority);
        if let Err(e) = store.check_room(bytes.len() as u64, priority, self.now) {
            if e.is_full() {
                let r = self.report_for(&bundle, BundleFlags::REPORT_DELETION);
                return self.drop_on_arrival(id, custodian, Refusal::StoreFull, admin::reason::DEPLETED_STORAGE, r);
            }
            return self.store_error(e);
        }
        let local = self.is_local(&bundle.primary().destination);
        let accept = custodian.filter(|_| self.cfg.custody);
        // A bundle (or fragment) for a local application is this node's responsibility until the application
        // has it: held like custody, so the store never evicts it to make room. Evictable pieces would let a
        // busy store evict each piece before the next arrives, and no bundle would ever be reassembled.
        let custody = if accept.is_some() || local { Custody::Held } else { Custody::None };
        let meta = self.meta_of(&bundle, bytes.len() as u64, class, local, custody, copies);
        let report_received = self.report_for(&bundle, BundleFlags::REPORT_RECEPTION);
        let ops = vec![WriteOp::Insert { meta, payload: Payload::Bytes(bytes.to_vec()) }];
        let registrations = self.registrations;
        let after = After::Stored { id, from: Some(peer), custodian: accept, local, registrations, report_received };
        self.persist(ops, vec![after]);
    }

    /// Whether this bundle was seen before: stored, being stored, delivered or deleted here, or known
    /// delivered elsewhere. A fragment counts as seen when its whole bundle was.
    fn is_duplicate(&self, store: &dyn BundleStore, id: &BundleId, mode: SeqMode) -> bool {
        let seen = |id: &BundleId| {
            self.pending_ids.contains(id)
                || self.receipts.contains(id, mode)
                || store.contains(id).unwrap_or(false)
                || store.tombstone(id).ok().flatten().is_some()
        };
        if seen(id) {
            return true;
        }
        if id.fragment.is_none() {
            return false;
        }
        if seen(&BundleId { fragment: None, ..id.clone() }) {
            return true;
        }
        // Pieces held here may cover it already (this node split it after a cut transfer).
        let mut is_covered = false;
        store.with_summaries(&mut |held, _| is_covered = covered(held, id));
        is_covered
    }

    fn duplicate(&mut self, store: &dyn BundleStore, peer: Eid, id: BundleId, custodian: Option<Eid>) {
        self.notice(Notice::Duplicate { id: id.clone(), from: peer });
        let Some(custodian) = custodian else { return };
        match store.meta(&id) {
            // We hold it: take custody (or confirm we have it) so the sender can stop retransmitting.
            Ok(Some(mut m)) if self.cfg.custody => {
                if m.custody.is_custodian() {
                    self.queue_signal(custodian, 0, id);
                } else {
                    m.custody = Custody::Held;
                    let after = vec![
                        After::Notices(vec![Notice::CustodyAccepted { id: id.clone() }]),
                        After::Signal(custodian, 0, id),
                    ];
                    self.persist(vec![WriteOp::Update(m)], after);
                }
            }
            Ok(_) => {
                self.queue_signal(custodian, super::custody::refusal_code(Refusal::Duplicate), id);
            }
            Err(e) => self.store_error(e),
        }
    }

    /// Refuses a bundle on arrival: the custodian hears why, the report-to endpoint too if it asked.
    fn drop_on_arrival(
        &mut self,
        id: BundleId,
        custodian: Option<Eid>,
        refusal: Refusal,
        reason: u64,
        report: Option<ReportTo>,
    ) {
        self.notice(Notice::Refused { id: id.clone(), reason: refusal });
        if let Some(c) = custodian {
            self.queue_signal(c, super::custody::refusal_code(refusal), id);
        }
        if let Some(r) = report {
            self.status_report(r, StatusKind::Deleted, reason);
        }
    }

    fn admin_record(&mut self, store: &dyn BundleStore, peer: &Eid, bundle: &Bundle<'_>) {
        let rec = match AdminRecord::decode(bundle.payload()) {
            Ok(r) => r,
            Err(e) => {
                return self.notice(Notice::Malformed { from: peer.clone(), error: format!("admin record: {e}") });
            }
        };
        if let AdminRecord::Other { record_type: proto::HELLO_RECORD, content } = &rec {
            // Usually the peer knows of exactly the deliveries we know of: compared as bytes, that hello's
            // delivered summary is neither decoded nor learned from.
            self.refresh_hello_delivered(store);
            let ours = self.hello_delivered.as_ref().map(|d| &d.bytes[..]);
            return match proto::Hello::decode_against(content, ours) {
                Ok((h, same)) => self.peer_hello(store, peer, h, same),
                Err(e) => self.notice(Notice::Malformed { from: peer.clone(), error: format!("admin record: {e}") }),
            };
        }
        match OurRecord::from_admin(&rec) {
            Ok(Some(OurRecord::Hello(h))) => self.peer_hello(store, peer, h, false),
            Ok(Some(OurRecord::Receipts(r))) => self.learn_delivered(store, &r.delivered),
            Ok(Some(OurRecord::Offer(o))) => self.peer_offer(store, peer, o),
            Ok(Some(OurRecord::CustodySignal(s))) => self.custody_signal(store, s),
            Ok(None) => {
                if let AdminRecord::StatusReport(report) = rec {
                    let from = bundle.primary().source.clone();
                    self.notice(Notice::StatusReport { from, report });
                }
            }
            Err(e) => self.notice(Notice::Malformed { from: peer.clone(), error: format!("admin record: {e}") }),
        }
    }

    /// The status report a bundle asks for with `flag`, if any (never about administrative records).
    pub(super) fn report_for(&self, b: &Bundle<'_>, flag: BundleFlags) -> Option<ReportTo> {
        let p = b.primary();
        (p.flags.contains(flag) && !b.is_admin_record() && !p.report_to.is_null()).then(|| ReportTo {
            report_to: p.report_to.clone(),
            id: b.id(),
            with_time: p.flags.contains(BundleFlags::STATUS_TIME_REQUESTED),
        })
    }

    /// Like [`report_for`](Self::report_for), for a stored bundle (read from the store).
    pub(super) fn report_wanted(
        &mut self,
        store: &dyn BundleStore,
        id: &BundleId,
        flag: BundleFlags,
    ) -> Option<ReportTo> {
        let bytes = self.read_stored(store, id)?;
        let b = Bundle::decode_with(&bytes, &TRUSTED).ok()?;
        self.report_for(&b, flag)
    }

    pub(super) fn read_stored(&mut self, store: &dyn BundleStore, id: &BundleId) -> Option<StoredBytes> {
        match store.bundle_bytes(id) {
            Ok(b) => Some(b),
            Err(e) => {
                self.store_error(e);
                None
            }
        }
    }

    /// Sends a status report (RFC 9171 §6.1.1) as a bundle of its own, stored and routed like any other.
    pub(super) fn status_report(&mut self, r: ReportTo, kind: StatusKind, reason: u64) {
        let time = (r.with_time && self.cfg.has_clock).then_some(self.now);
        let a = |k: StatusKind| StatusAssertion { asserted: k == kind, time: if k == kind { time } else { None } };
        let rec = AdminRecord::StatusReport(StatusReport {
            received: a(StatusKind::Received),
            forwarded: a(StatusKind::Forwarded),
            delivered: a(StatusKind::Delivered),
            deleted: a(StatusKind::Deleted),
            reason,
            source: r.id.source.clone(),
            creation: r.id.creation,
            fragment: r.id.fragment,
        });
        if r.report_to.node_id() == self.cfg.node {
            let AdminRecord::StatusReport(report) = rec else { return };
            return self.notice(Notice::StatusReport { from: self.cfg.node.clone(), report });
        }
        self.originate(r.report_to, rec.encode());
    }

    /// Stores and routes an administrative record made here (status reports, custody signals for a
    /// custodian not in contact).
    pub(super) fn originate(&mut self, destination: Eid, payload: Vec<u8>) {
        let (seq, seq_op) = self.take_seq();
        let class = BundleClass { priority: Priority::EXPEDITED, unique_seq: true };
        let mut b = BundleBuilder::new(self.cfg.node.clone(), destination)
            .creation(CreationTimestamp { time: self.creation_time(), sequence: seq })
            .lifetime_ms(self.cfg.default_lifetime_ms)
            .flags(BundleFlags(BundleFlags::ADMIN_RECORD.0 | BundleFlags::MUST_NOT_FRAGMENT.0))
            .extension_block(proto::BUNDLE_CLASS_BLOCK, BlockFlags::REPLICATE_IN_FRAGMENTS, class.encode())
            .payload(payload);
        if !self.cfg.has_clock {
            b = b.bundle_age_ms(0);
        }
        let bundle = match b.build() {
            Ok(b) => b,
            Err(e) => return self.notice(Notice::StoreError(format!("cannot build an administrative record: {e}"))),
        };
        let bytes = bundle.to_vec();
        let copies = self.agent.initial_copies();
        let meta = self.meta_of(&bundle, bytes.len() as u64, Some(class), false, Custody::None, copies);
        let ids = vec![meta.id.clone()];
        self.persist(
            vec![seq_op, WriteOp::Insert { meta, payload: Payload::Bytes(bytes) }],
            vec![After::Originated { ids }],
        );
    }

    /// Drops the fragments waiting for reassembly of a bundle that arrived whole.
    pub(super) fn drop_pieces(&mut self, key: &(Eid, CreationTimestamp)) {
        let Some(entry) = self.reassembly.remove(key) else { return };
        let ops = entry
            .pieces
            .into_values()
            .map(|id| WriteOp::Remove { id, tombstone: Some(TombstoneReason::Delivered) })
            .collect();
        self.persist(ops, Vec::new());
    }

    /// Records a stored fragment for a local endpoint; once every byte is here, hands the payload out as pieces.
    pub(super) fn note_fragment(&mut self, store: &dyn BundleStore, id: &BundleId, total: u64) {
        let key = (id.source.clone(), id.creation);
        let Some((off, len)) = id.fragment else { return };
        let whole = BundleId { fragment: None, ..id.clone() };
        let whole_here = self.pending_ids.contains(&whole)
            || store.contains(&whole).unwrap_or(false)
            || store.tombstone(&whole).ok().flatten().is_some();
        let entry = self.reassembly.entry(key.clone()).or_default();
        entry.total = total;
        entry.pieces.insert((off, len), id.clone());
        if whole_here {
            // The whole bundle came (or was delivered) by another path: the pieces are redundant.
            return self.drop_pieces(&key);
        }
        let ranges: Vec<(u64, u64)> = entry.pieces.keys().copied().collect();
        if !covers(&ranges, total) {
            return;
        }
        // Every byte is here. The fragments stay as they are and are handed out as pieces of one payload:
        // copying them into one bundle would need memory (or disk) for the whole payload again.
        let pieces = pieces_in_order(&entry.pieces);
        let Some(first) = pieces.first() else { return };
        let first = match store.meta(&first.id) {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => return self.store_error(e),
        };
        let Some(endpoint) = self.local_endpoint(&first.destination) else { return };
        self.out.push(Action::Deliver { endpoint, id: whole, pieces });
    }

    /// The pieces of a bundle whose fragments are all here (None if they are not).
    pub(super) fn assembled(&self, whole: &BundleId) -> Option<Vec<Piece>> {
        let entry = self.reassembly.get(&(whole.source.clone(), whole.creation))?;
        let ranges: Vec<(u64, u64)> = entry.pieces.keys().copied().collect();
        covers(&ranges, entry.total).then(|| pieces_in_order(&entry.pieces))
    }
}

/// Stretches of overlapping fragments (keyed by offset and length) that spell the payload once, in order.
fn pieces_in_order(fragments: &BTreeMap<(u64, u64), BundleId>) -> Vec<Piece> {
    let mut at = 0;
    let mut out = Vec::new();
    for (&(off, len), id) in fragments {
        let end = off + len;
        if end <= at || off > at {
            // Wholly inside what earlier pieces gave, or (never, once covered) a gap.
            continue;
        }
        out.push(Piece { id: id.clone(), skip: at - off, len: end - at });
        at = end;
    }
    out
}

/// How a bundle's ID is keyed in summaries, from its class block.
pub(super) fn seq_mode(class: Option<BundleClass>) -> SeqMode {
    if class.is_some_and(|c| c.unique_seq) { SeqMode::Unique } else { SeqMode::PerTime }
}

/// Whether the fragments listed in `summary` together cover fragment `id`'s whole range (pieces of a split
/// bundle stand in for the piece they came from).
pub(super) fn covered(summary: &crate::store::Summary, id: &BundleId) -> bool {
    summary.source(&id.source).is_some_and(|s| covered_in(s, id))
}

/// [`covered`], given the summary's entry for `id`'s source.
pub(super) fn covered_in(s: &crate::store::SourceSummary, id: &BundleId) -> bool {
    let Some((off, len)) = id.fragment else { return false };
    let ranges: Vec<(u64, u64)> = s
        .fragments
        .of_bundle(id.creation.time.0, id.creation.sequence)
        .iter()
        .filter_map(|&(_, _, fo, fl)| {
            // Each held piece clipped to the range asked about, relative to its start.
            let (lo, hi) = (fo.max(off), (fo + fl).min(off + len));
            (lo < hi).then(|| (lo - off, hi - lo))
        })
        .collect();
    !ranges.is_empty() && covers(&ranges, len)
}
