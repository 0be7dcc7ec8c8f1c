//! Contacts: the hello exchange, the per-contact priority queue, transmissions and their outcomes.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use super::ingest::TRUSTED;
use super::{After, Engine, ReportTo, StatusKind, Timer, keys};
use crate::bpv7::{BlockFlags, BlockType, Bundle, BundleBuilder, BundleFlags, BundleId, CrcType, Eid, fragment_range};
use crate::engine::{Action, Notice, TransferId};
use crate::proto::{self, CustodyRequest, Hello, Offer, OurRecord, Receipts};
use crate::routing::{Decision, LinkClass, LinkInfo, Local, PeerView};
use crate::store::{
    BundleMeta, BundleStore, Custody, Delivery, Payload, Priority, SeqMode, Summary, TombstoneReason, WriteOp,
};

/// One peer in contact.
#[derive(Debug)]
pub(super) struct Contact {
    link: LinkInfo,
    /// The first transfer ID of this contact: transfers numbered below it belong to an earlier contact with
    /// the same peer, and how they end must not count against this one (a session's transfers are reported
    /// failed after a new session to the peer came up).
    first_transfer: TransferId,
    /// Hello received (or given up waiting for): bundles may flow.
    ready: bool,
    /// The peer runs our router.
    ours: bool,
    endpoints: Vec<Eid>,
    /// What the peer holds or knows delivered, plus what crossed this contact either way.
    pub(super) known: Summary,
    /// What we told the peer we hold: the hello's summary plus every offer since. A peer that runs our
    /// router is sent only these, and of the offered ones only those it asked for.
    announced: Summary,
    /// Bundles stored since the last offer, to announce at the end of the event.
    to_announce: Summary,
    /// Bundles the peer offered that we lack, to ask for at the end of the event.
    to_request: Summary,
    /// Bundles to offer, most urgent first: (priority, arrival, ID).
    queue: Queue,
    in_flight: usize,
    in_flight_bytes: u64,
    volume_left: Option<u64>,
    /// Bundles the peer refused or that failed on this contact: not offered again until the next one.
    refused: BTreeSet<BundleId>,
}

impl Contact {
    /// A transmission ended (finished, failed or cut): it leaves the window.
    fn ended(&mut self, t: &Transfer) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(t.size);
    }
}

/// A contact's bundles to offer, most urgent first: an ordered set of (priority, arrival, ID). A binary heap
/// with the most urgent entry on top: it is built whole when the contact becomes ready (everything the peer
/// lacks, a few dozen bundles), most of it is still there when the contact ends, and a heap is built in one
/// linear pass where sorting (the vector this was before) moved each hundred-byte entry several times. An
/// entry queued twice is taken once: its copies come off the heap together.
#[derive(Debug, Default)]
struct Queue {
    items: BinaryHeap<Reverse<(Reverse<Priority>, u64, BundleId)>>,
}

impl Queue {
    fn insert(&mut self, k: (Reverse<Priority>, u64, BundleId)) {
        self.items.push(Reverse(k));
    }

    fn extend(&mut self, keys: impl IntoIterator<Item = (Reverse<Priority>, u64, BundleId)>) {
        self.items.extend(keys.into_iter().map(Reverse));
    }

    fn pop_first(&mut self) -> Option<(Reverse<Priority>, u64, BundleId)> {
        let Reverse(first) = self.items.pop()?;
        while self.items.peek().is_some_and(|Reverse(k)| *k == first) {
            self.items.pop();
        }
        Some(first)
    }
}

/// The delivered summary our hellos carry, encoded, and the store's part of it when it was made.
#[derive(Debug)]
pub(super) struct HelloDelivered {
    store: Summary,
    pub(super) bytes: Vec<u8>,
}

/// One transmission of a stored bundle.
#[derive(Debug, Clone)]
pub(super) struct Transfer {
    peer: Eid,
    pub(super) id: BundleId,
    mode: SeqMode,
    decision: Decision,
    /// We asked the peer to take custody.
    custody: bool,
    /// The peer registered the bundle's (non-node) destination endpoint: a replica sent there is kept until the
    /// delivery receipt comes back.
    to_endpoint: bool,
    /// Where the payload data starts in the bytes sent, its length, and its offset in the whole ADU.
    payload_at: u64,
    payload_len: u64,
    adu_offset: u64,
    report: Option<ReportTo>,
    /// Bytes counted in the contact's window until the transmission ends.
    size: u64,
}

impl Engine {
    pub(super) fn contact_up(&mut self, store: &dyn BundleStore, peer: Eid, link: LinkInfo) {
        let peer = peer.node_id();
        self.contacts.insert(
            peer.clone(),
            Contact {
                link,
                first_transfer: self.next_transfer,
                ready: false,
                ours: false,
                endpoints: Vec::new(),
                known: Summary::new(),
                announced: Summary::new(),
                to_announce: Summary::new(),
                to_request: Summary::new(),
                queue: Queue::default(),
                in_flight: 0,
                in_flight_bytes: 0,
                volume_left: link.volume,
                refused: BTreeSet::new(),
            },
        );
        self.refresh_hello_delivered(store);
        let local = Local { node: &self.cfg.node, endpoints: &self.endpoints };
        let routing = self.agent.hello(&local, self.now);
        let held = store.summary();
        let delivered = self.hello_delivered.as_ref().map_or(&[][..], |d| &d.bytes);
        let payload = proto::Hello::admin_payload_unsigned(
            &self.cfg.node,
            &self.endpoints,
            &held.to_bytes(),
            delivered,
            &routing,
        );
        if let Some(c) = self.contacts.get_mut(&peer) {
            c.announced = held;
        }
        self.send_payload(&peer, payload);
        self.schedule(self.now_plus(self.cfg.hello_timeout_ms), Timer::HelloTimeout(peer));
    }

    /// Brings the encoded delivered summary that hellos carry (the store's tombstones plus receipts) up to
    /// date. Between contacts it rarely changes while it grows with every delivery known, so it is encoded
    /// once per change rather than once per contact: a comparison with the store's summary as it was then
    /// (receipts are ours: changing them drops the cache) decides.
    pub(super) fn refresh_hello_delivered(&mut self, store: &dyn BundleStore) {
        if let Some(cached) = &self.hello_delivered {
            let mut same = false;
            store.with_summaries(&mut |_, delivered| same = *delivered == cached.store);
            if same {
                return;
            }
        }
        let from_store = store.delivered_summary();
        let mut all = from_store.clone();
        all.union_with(&self.receipts);
        all.drop_covered_fragments(&[]);
        self.hello_delivered = Some(HelloDelivered { store: from_store, bytes: all.to_bytes() });
    }

    pub(super) fn contact_down(&mut self, peer: Eid) {
        let peer = peer.node_id();
        if self.contacts.remove(&peer).is_none() {
            return;
        }
        self.unschedule(&Timer::HelloTimeout(peer.clone()));
        self.agent.contact_down(&peer, self.now);
        if let Some(state) = self.agent.save() {
            self.persist(vec![WriteOp::PutState { key: keys::ROUTING.to_vec(), value: Some(state) }], Vec::new());
        }
    }

    /// A live contact's volume was reset. Bundles refused for want of room go back in the queue: they may
    /// fit now (bundles refused by the peer are retried too; the peer refuses them again if it must).
    pub(super) fn contact_volume(&mut self, store: &dyn BundleStore, peer: Eid, volume: Option<u64>) {
        let peer = peer.node_id();
        let Some(c) = self.contacts.get_mut(&peer) else { return };
        c.volume_left = volume;
        c.link.volume = volume;
        if !c.ready {
            return;
        }
        c.refused.clear();
        // As when the contact became ready: what the peer lacks (of what we told it of, for our router).
        let mut want = Summary::new();
        if c.ours {
            want = c.announced.difference(&c.known);
        } else {
            store.with_summaries(&mut |held, _| want = held.difference(&c.known));
        }
        self.queue_and_pump(store, &peer, &want);
    }

    /// A peer's hello. `same_delivered`: its delivered summary is exactly the one our hellos carry (and was
    /// not decoded), so it holds no news, and adds nothing to what the peer is known to hold that matters: the
    /// bundles listed there are not held here.
    pub(super) fn peer_hello(&mut self, store: &dyn BundleStore, peer: &Eid, h: Hello, same_delivered: bool) {
        if h.node.node_id() != *peer {
            return self.notice(Notice::Malformed {
                from: peer.clone(),
                error: format!("hello claims to come from {}, not the peer in contact", h.node),
            });
        }
        if !same_delivered {
            self.learn_delivered(store, &h.delivered);
        }
        let Some(c) = self.contacts.get_mut(peer) else { return };
        c.ours = true;
        c.endpoints = h.endpoints;
        // Taken over rather than copied: `known` is usually empty here.
        c.known.union_owned(h.held);
        c.known.union_owned(h.delivered);
        let local = Local { node: &self.cfg.node, endpoints: &self.endpoints };
        if let Err(e) = self.agent.peer_hello(&local, peer, &h.routing, self.now) {
            self.notice(Notice::Malformed { from: peer.clone(), error: e.to_string() });
        }
        self.unschedule(&Timer::HelloTimeout(peer.clone()));
        self.make_ready(store, peer);
    }

    pub(super) fn hello_timeout(&mut self, store: &dyn BundleStore, peer: Eid) {
        if self.contacts.get(&peer).is_some_and(|c| !c.ready) {
            self.make_ready(store, &peer);
        }
    }

    /// Starts the flow of bundles to a peer: everything we hold that it does not, most urgent first.
    fn make_ready(&mut self, store: &dyn BundleStore, peer: &Eid) {
        let Some(c) = self.contacts.get_mut(peer) else { return };
        if c.ready {
            return;
        }
        c.ready = true;
        let view = PeerView { node: peer, link: &c.link, endpoints: &c.endpoints, ours: c.ours };
        let local = Local { node: &self.cfg.node, endpoints: &self.endpoints };
        self.agent.contact_up(&local, &view, self.now);
        // Read in place rather than copied: the held summary can be long, and this runs for every contact.
        let mut want = Summary::new();
        store.with_summaries(&mut |held, _| {
            want = if c.ours {
                // Both hellos were written before either side read the other's, so the two sets sent are
                // disjoint. Bundles stored since our hello may have reached the peer meanwhile too: they are
                // offered first, like every bundle stored during the contact.
                let later = held.difference_all(&[&c.announced, &c.known]);
                c.to_announce.union_with(&later);
                c.announced.difference(&c.known)
            } else {
                held.difference(&c.known)
            };
        });
        self.queue_and_pump(store, peer, &want);
    }

    /// Queues the stored bundles in `want` for `peer`, then sends what its window allows.
    fn queue_and_pump(&mut self, store: &dyn BundleStore, peer: &Eid, want: &Summary) {
        match store.select_keys(want) {
            Ok(found) => {
                if let Some(c) = self.contacts.get_mut(peer) {
                    let keys = found.into_iter().map(|(p, a, id)| (Reverse(p), a, id));
                    c.queue.extend(keys);
                }
            }
            Err(e) => return self.store_error(e),
        }
        self.pump(store, peer);
    }

    /// Offers newly stored bundles to every peer in contact that lacks them: a peer that runs our router
    /// hears of them in an [`Offer`] and asks for what it lacks, others are sent them.
    pub(super) fn offer(&mut self, store: &dyn BundleStore, ids: &[BundleId]) {
        let mut metas = Vec::with_capacity(ids.len());
        for id in ids {
            match store.meta(id) {
                Ok(Some(m)) => metas.push(m),
                Ok(None) => {}
                Err(e) => self.store_error(e),
            }
        }
        let peers: Vec<Eid> = self.contacts.iter().filter(|(_, c)| c.ready).map(|(p, _)| p.clone()).collect();
        for p in &peers {
            if let Some(c) = self.contacts.get_mut(p) {
                for m in metas.iter().filter(|m| !c.known.contains(&m.id, m.seq_mode)) {
                    if c.ours {
                        c.to_announce.insert(&m.id, m.seq_mode);
                    } else {
                        c.queue.insert((Reverse(m.priority), m.arrival, m.id.clone()));
                    }
                }
            }
            self.pump(store, p);
        }
    }

    /// Puts bundles whose custody retransmission is due back in front of every peer in contact.
    pub(super) fn requeue(&mut self, store: &dyn BundleStore, metas: &[BundleMeta]) {
        let peers: Vec<Eid> = self.contacts.iter().filter(|(_, c)| c.ready).map(|(p, _)| p.clone()).collect();
        for p in &peers {
            if let Some(c) = self.contacts.get_mut(p) {
                // A peer that already got the bundle on this contact is not sent it again (a bundle never
                // crosses a contact twice); it gets it on a later contact if it still lacks it then. A peer
                // that runs our router gets only what it was offered (the rest is in its next offer).
                for m in metas.iter().filter(|m| !c.ours || c.announced.contains(&m.id, m.seq_mode)) {
                    c.queue.insert((Reverse(m.priority), m.arrival, m.id.clone()));
                }
            }
            self.pump(store, p);
        }
    }

    /// Sends from the peer's queue until the in-flight window is full.
    pub(super) fn pump(&mut self, store: &dyn BundleStore, peer: &Eid) {
        loop {
            let Some(c) = self.contacts.get_mut(peer) else { return };
            if !c.ready
                || c.in_flight >= self.cfg.max_in_flight
                || (c.in_flight > 0 && c.in_flight_bytes >= self.cfg.max_in_flight_bytes)
            {
                return;
            }
            let Some((_, arrival, id)) = c.queue.pop_first() else { return };
            if c.refused.contains(&id) {
                continue;
            }
            let mut meta = match store.meta_seen_at(&id, arrival) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    self.store_error(e);
                    continue;
                }
            };
            meta.copies = self.copies_left(&meta);
            let Some(c) = self.contacts.get(peer) else { return };
            // Nearly every queued bundle is a fragment, asked about as itself, as its whole bundle and as
            // covered by pieces: each summary's source is looked up once for all three.
            let (id, mode) = (&meta.id, meta.seq_mode);
            if c.known.source(&id.source).is_some_and(|s| {
                s.contains_or_whole(id, mode) || (id.fragment.is_some() && super::ingest::covered_in(s, id))
            }) || self.receipts.source(&id.source).is_some_and(|s| s.contains_or_whole(id, mode))
                || meta.expires_at <= self.now
                || meta.delivery != Delivery::Forward
                || self.deferred_claims.contains(&meta.id)
                || matches!(meta.custody, Custody::Transferring { deadline, .. } if deadline > self.now)
            {
                continue;
            }
            let to_destination = meta.destination.node_id() == *peer || c.endpoints.contains(&meta.destination);
            // One rule for metered links, whatever the agent and even for the peer's own bundles: below the
            // configured priority a bundle waits for a free link. The agent may still skip more.
            let decision = if c.link.class == LinkClass::Metered && meta.priority < self.cfg.metered_min_priority {
                Decision::Skip
            } else if to_destination {
                Decision::Forward
            } else if self.is_local(&meta.destination) {
                Decision::Skip
            } else {
                let view = PeerView { node: peer, link: &c.link, endpoints: &c.endpoints, ours: c.ours };
                let local = Local { node: &self.cfg.node, endpoints: &self.endpoints };
                self.agent.decide(&local, &meta, &view, self.now)
            };
            if decision != Decision::Skip {
                self.transmit_stored(store, peer, &meta, decision, to_destination);
            }
        }
    }

    fn transmit_stored(
        &mut self,
        store: &dyn BundleStore,
        peer: &Eid,
        meta: &BundleMeta,
        decision: Decision,
        to_destination: bool,
    ) {
        let Some(stored) = self.read_stored(store, &meta.id) else { return };
        let bundle = match Bundle::decode_with(&stored, &TRUSTED) {
            Ok(b) => b,
            Err(e) => return self.notice(Notice::StoreError(format!("stored bundle {} unreadable: {e}", meta.id))),
        };
        // Custody to the destination node itself over a link whose acknowledgement means durable adds nothing
        // but a signal and two store writes per bundle: the acknowledgement settles it.
        let acked_is_enough = self.contacts.get(peer).is_some_and(|c| c.ours && c.link.durable_acks)
            && meta.destination.node_id() == *peer;
        let custody = decision == Decision::Forward
            && meta.custody.is_custodian()
            && !bundle.is_admin_record()
            && !acked_is_enough;
        let bytes = match self.outgoing(&bundle, meta, decision, custody) {
            Ok(b) => b,
            Err(e) => return self.notice(Notice::StoreError(format!("cannot prepare {} for sending: {e}", meta.id))),
        };
        let Some(c) = self.contacts.get_mut(peer) else { return };
        let limit = match (c.link.mtu, c.volume_left) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(limit) = limit.filter(|&l| (bytes.len() as u64) > l) {
            return self.split_to_fit(peer, &bundle, meta, bytes.len() as u64, limit);
        }
        // The payload block is last and keeps its data and CRC on the way out, so its data ends just before
        // the CRC field and the bundle's closing break: no need to decode what was just encoded.
        let payload_len = bundle.payload().len() as u64;
        let trailer = bundle.payload_block().crc_type().field_len() as u64 + 1;
        let payload_at = (bytes.len() as u64).saturating_sub(trailer + payload_len);
        debug_assert_eq!(
            Bundle::decode_with(&bytes, &TRUSTED).ok().map(|b| b.payload().as_ptr() as u64 - bytes.as_ptr() as u64),
            Some(payload_at)
        );
        let adu_offset = bundle.primary().fragment.map_or(0, |f| f.offset);
        let report = self.report_for(&bundle, BundleFlags::REPORT_FORWARDING);
        let transfer = self.next_transfer;
        self.next_transfer += 1;
        let Some(c) = self.contacts.get_mut(peer) else { return };
        c.in_flight += 1;
        // The window counts the size the store accounts (the encoding as stored; a simulator's store counts
        // the size a stand-in bundle stands for), so that it bounds what the link must carry, not a stand-in.
        let window_size = meta.size.max(bytes.len() as u64);
        c.in_flight_bytes += window_size;
        c.volume_left = c.volume_left.map(|v| v.saturating_sub(bytes.len() as u64));
        // Known from the start, so that nothing queued meanwhile (a custody retry, an offer) sends it again.
        c.known.insert(&meta.id, meta.seq_mode);
        if let Decision::Spray { give } = decision {
            self.spray.entry(meta.id.clone()).or_default().in_flight += give;
        }
        self.transfers.insert(
            transfer,
            Transfer {
                peer: peer.clone(),
                id: meta.id.clone(),
                mode: meta.seq_mode,
                decision,
                custody,
                to_endpoint: to_destination && meta.destination.node_id() != *peer,
                payload_at,
                payload_len,
                adu_offset,
                report,
                size: window_size,
            },
        );
        self.out.push(Action::Transmit {
            peer: peer.clone(),
            transfer,
            id: Some(meta.id.clone()),
            priority: meta.priority,
            bytes,
        });
    }

    /// A bundle too large for what is left of the contact is split in the store; the pieces are offered once
    /// the split is durable.
    fn split_to_fit(&mut self, peer: &Eid, bundle: &Bundle<'_>, meta: &BundleMeta, size: u64, limit: u64) {
        let overhead = size.saturating_sub(bundle.payload().len() as u64) + 64;
        let refuse = |c: &mut Contact| {
            c.refused.insert(meta.id.clone());
        };
        if bundle.primary().flags.contains(BundleFlags::MUST_NOT_FRAGMENT) || limit <= overhead {
            if let Some(c) = self.contacts.get_mut(peer) {
                refuse(c);
            }
            return;
        }
        let pieces = match crate::bpv7::fragment(bundle, limit - overhead) {
            Ok(p) if p.len() > 1 => p,
            _ => {
                if let Some(c) = self.contacts.get_mut(peer) {
                    refuse(c);
                }
                return;
            }
        };
        let mut ops = vec![WriteOp::Remove { id: meta.id.clone(), tombstone: None }];
        let mut ids = Vec::new();
        for p in pieces {
            let bytes = p.to_vec();
            let mut m = meta.clone();
            m.id = p.id();
            m.size = bytes.len() as u64;
            m.total_adu_len = p.primary().fragment.map(|f| f.total_adu_len);
            ids.push(m.id.clone());
            ops.push(WriteOp::Insert { meta: m, payload: Payload::Bytes(bytes) });
        }
        self.persist(ops, vec![After::Enqueue(ids)]);
    }

    /// The bytes to send: previous node, bundle age and hop count brought up to date (RFC 9171 §5.4), and
    /// our custody and spray blocks set for this hop.
    fn outgoing(
        &self,
        bundle: &Bundle<'_>,
        meta: &BundleMeta,
        decision: Decision,
        custody: bool,
    ) -> Result<Vec<u8>, crate::bpv7::DecodeError> {
        let mut b = bundle.clone();
        b.set_previous_node(&self.cfg.node)?;
        if b.bundle_age_ms().is_some() || b.primary().creation.time.0 == 0 {
            let dwell = self.now.0.saturating_sub(meta.received_at.0);
            b.set_bundle_age_ms(b.bundle_age_ms().unwrap_or(0).saturating_add(dwell))?;
        }
        b.increment_hop_count()?;
        let ours: Vec<u64> = b
            .extension_blocks()
            .iter()
            .filter(|x| x.block_type() == proto::CUSTODY_REQUEST_BLOCK || x.block_type() == proto::SPRAY_COPIES_BLOCK)
            .map(|x| x.number())
            .collect();
        for n in ours {
            b.remove_block(n);
        }
        if custody {
            let req = CustodyRequest { custodian: self.cfg.node.clone() };
            add_block(&mut b, proto::CUSTODY_REQUEST_BLOCK, &req.encode())?;
        }
        if let Decision::Spray { give } = decision {
            add_block(&mut b, proto::SPRAY_COPIES_BLOCK, &proto::encode_copies(give))?;
        }
        Ok(b.to_vec())
    }

    pub(super) fn transfer_finished(&mut self, store: &dyn BundleStore, transfer: TransferId) {
        let Some(t) = self.transfers.remove(&transfer) else { return };
        if let Some(c) = self.contacts.get_mut(&t.peer).filter(|c| transfer >= c.first_transfer) {
            c.ended(&t);
            c.known.insert(&t.id, t.mode);
        }
        self.notice(Notice::Forwarded { id: t.id.clone(), to: t.peer.clone() });
        if let Some(r) = t.report.clone() {
            self.status_report(r, StatusKind::Forwarded, 0);
        }
        if self.end_deferred(store, &t) {
            return self.pump(store, &t.peer);
        }
        if let Decision::Spray { give } = t.decision {
            return self.spray_finished(store, &t, give);
        }
        match store.meta(&t.id) {
            Ok(Some(mut m)) => match t.decision {
                Decision::Spray { .. } => {}
                Decision::Forward if t.custody => {
                    let attempts = match m.custody {
                        Custody::Transferring { attempts, .. } => attempts.saturating_add(1),
                        _ => 1,
                    };
                    let deadline = self.custody_deadline(attempts);
                    m.custody = Custody::Transferring { deadline, attempts };
                    self.schedule(deadline, Timer::CustodyScan);
                    self.persist(vec![WriteOp::Update(m)], Vec::new());
                }
                // Handed to a next hop without custody: that hop has it now, and the tombstone keeps a replica
                // of it (or of a routed custody signal, which no receipt ever settles) from being taken back.
                // A replica handed to its destination endpoint stays until the destination's delivery receipt
                // comes back, so that neighbours still holding it do not send it here again in the meantime.
                Decision::Forward if !t.to_endpoint => {
                    let ops = vec![WriteOp::Remove { id: t.id.clone(), tombstone: Some(TombstoneReason::Forwarded) }];
                    self.persist(ops, Vec::new());
                }
                Decision::Forward => {}
                Decision::Replicate | Decision::Skip => {}
            },
            Ok(None) => {}
            Err(e) => self.store_error(e),
        }
        self.pump(store, &t.peer);
    }

    /// A spray transfer completed: the copies handed over leave this node's count for good.
    fn spray_finished(&mut self, store: &dyn BundleStore, t: &Transfer, give: u32) {
        // A bundle being removed (split after a cut, delivered) takes no more updates.
        let going = self.removing.contains(&t.id);
        let hold = self.spray.entry(t.id.clone()).or_default();
        hold.in_flight = hold.in_flight.saturating_sub(give);
        let update = match store.meta(&t.id) {
            Ok(Some(mut m)) if !going => {
                m.copies = hold.count.unwrap_or(m.copies).saturating_sub(give).max(1);
                hold.count = Some(m.copies);
                hold.updates += 1;
                Some(m)
            }
            Ok(_) => None,
            Err(e) => {
                self.store_error(e);
                None
            }
        };
        match update {
            Some(m) => {
                self.persist(vec![WriteOp::Update(m)], vec![After::CopiesGiven(t.id.clone())]);
            }
            None => self.spray_settled(&t.id),
        }
        self.pump(store, &t.peer);
    }

    /// Copies this node may still hand out: the count (as last updated) less copies reserved by transfers
    /// in flight.
    fn copies_left(&self, m: &BundleMeta) -> u32 {
        match self.spray.get(&m.id) {
            Some(h) => h.count.unwrap_or(m.copies).saturating_sub(h.in_flight).max(1),
            None => m.copies,
        }
    }

    /// Forgets a bundle's spray bookkeeping once nothing is in flight or pending for it.
    pub(super) fn spray_settled(&mut self, id: &BundleId) {
        if self.spray.get(id).is_some_and(|h| h.in_flight == 0 && h.updates == 0) {
            self.spray.remove(id);
        }
    }

    fn release_reserved(&mut self, t: &Transfer) {
        if let Decision::Spray { give } = t.decision {
            if let Some(h) = self.spray.get_mut(&t.id) {
                h.in_flight = h.in_flight.saturating_sub(give);
            }
            self.spray_settled(&t.id);
        }
    }

    /// A transfer of a bundle claimed for local delivery while it was being sent ended: once no transfer of it
    /// is left, the claim is made. True if the bundle was such a one: the caller leaves it as it is (the copy
    /// the peer got is the peer's; this node delivers its own).
    fn end_deferred(&mut self, store: &dyn BundleStore, t: &Transfer) -> bool {
        if !self.deferred_claims.contains(&t.id) {
            return false;
        }
        self.release_reserved(t);
        if !self.transfers.values().any(|x| x.id == t.id) {
            self.deferred_claims.remove(&t.id);
            self.claim_ids(store, std::slice::from_ref(&t.id));
        }
        true
    }

    pub(super) fn transfer_failed(&mut self, store: &dyn BundleStore, transfer: TransferId) {
        let Some(t) = self.transfers.remove(&transfer) else { return };
        if let Some(c) = self.contacts.get_mut(&t.peer).filter(|c| transfer >= c.first_transfer) {
            c.ended(&t);
            c.refused.insert(t.id.clone());
        }
        if !self.end_deferred(store, &t) {
            self.release_reserved(&t);
        }
        self.pump(store, &t.peer);
    }

    /// Reactive fragmentation, sending side: the peer keeps the payload prefix it durably received as a
    /// fragment, so the stored bundle is split at the same point and only the rest is sent again.
    pub(super) fn transfer_cut(&mut self, store: &dyn BundleStore, transfer: TransferId, durable: u64) {
        let Some(t) = self.transfers.remove(&transfer) else { return };
        if let Some(c) = self.contacts.get_mut(&t.peer).filter(|c| transfer >= c.first_transfer) {
            c.ended(&t);
            c.refused.insert(t.id.clone());
        }
        // Delivered here whole: no need to split it for the rest of the transfer.
        if self.end_deferred(store, &t) {
            return;
        }
        self.release_reserved(&t);
        let kept = durable.saturating_sub(t.payload_at).min(t.payload_len);
        if kept == 0 || kept >= t.payload_len {
            return;
        }
        let mut meta = match store.meta(&t.id) {
            // Split already (another transfer of it was cut): the pieces stand in for it.
            Ok(Some(m)) if !self.removing.contains(&t.id) => m,
            Ok(_) => return,
            Err(e) => return self.store_error(e),
        };
        // Both pieces start from the copies left; the head's copies handed over stay with the peer.
        meta.copies = self.copies_left(&meta);
        let head_copies = match t.decision {
            Decision::Spray { give } => meta.copies.saturating_sub(give).max(1),
            _ => meta.copies,
        };
        let Some(stored) = self.read_stored(store, &t.id) else { return };
        let Ok(bundle) = Bundle::decode_with(&stored, &TRUSTED) else { return };
        if bundle.primary().flags.contains(BundleFlags::MUST_NOT_FRAGMENT) {
            return;
        }
        let split = t.adu_offset + kept;
        let end = t.adu_offset + t.payload_len;
        let (head, rest) = match (fragment_range(&bundle, t.adu_offset, split), fragment_range(&bundle, split, end)) {
            (Ok(h), Ok(r)) => (h, r),
            (Err(e), _) | (_, Err(e)) => {
                return self.notice(Notice::StoreError(format!("cannot split {} after a cut: {e}", t.id)));
            }
        };
        let mut ops = vec![WriteOp::Remove { id: t.id.clone(), tombstone: None }];
        let mut ids = Vec::new();
        let piece = |p: &Bundle<'_>, custody: Custody, copies: u32| {
            let bytes = p.to_vec();
            let mut m = meta.clone();
            m.id = p.id();
            m.size = bytes.len() as u64;
            m.total_adu_len = p.primary().fragment.map(|f| f.total_adu_len);
            m.custody = custody;
            m.copies = copies;
            (m, bytes)
        };
        let held = if meta.custody.is_custodian() { Custody::Held } else { Custody::None };
        // The head is at the peer now. As its custodian we keep it until the peer's signal; as a mere
        // forwarder we are done with it; as a replica holder we keep our copy.
        let keep_head = t.custody || t.decision != Decision::Forward || t.to_endpoint;
        if keep_head {
            let custody = if t.custody {
                let deadline = self.custody_deadline(1);
                self.schedule(deadline, Timer::CustodyScan);
                Custody::Transferring { deadline, attempts: 1 }
            } else {
                held
            };
            let (m, bytes) = piece(&head, custody, head_copies);
            ids.push(m.id.clone());
            ops.push(WriteOp::Insert { meta: m, payload: Payload::Bytes(bytes) });
        }
        let (m, bytes) = piece(&rest, held, meta.copies);
        ids.push(m.id.clone());
        ops.push(WriteOp::Insert { meta: m, payload: Payload::Bytes(bytes) });
        if let Some(c) = self.contacts.get_mut(&t.peer) {
            c.known.insert(&head.id(), t.mode);
        }
        self.notice(Notice::SplitAfterCut { id: t.id.clone(), kept });
        self.persist(ops, vec![After::Enqueue(ids)]);
    }

    /// Learns that bundles were delivered somewhere: replicas here are dropped, and the news spreads on.
    pub(super) fn learn_delivered(&mut self, store: &dyn BundleStore, delivered: &Summary) {
        let mut delta = Summary::new();
        let mut fragments = Vec::new();
        store.with_summaries(&mut |mine, known| {
            delta = delivered.difference_all(&[known, &self.receipts]);
            // Pieces of a bundle whose whole ID is known add nothing to pass on or to remember.
            delta.drop_covered_fragments(&[known, &self.receipts]);
            // Fragments held here are listed under their own IDs: those of a bundle delivered whole, found by
            // their source, and those the summary lists themselves.
            for (source, s) in mine.sources() {
                if delta.source(source).is_none() && delivered.source(source).is_none() {
                    continue;
                }
                for frag in s.fragment_ids(source) {
                    let whole = BundleId { fragment: None, ..frag.clone() };
                    if delta.contains(&whole, SeqMode::Unique)
                        || delta.contains(&whole, SeqMode::PerTime)
                        || delivered.contains(&frag, SeqMode::PerTime)
                    {
                        fragments.push(frag);
                    }
                }
            }
        });
        if delta.is_empty() && fragments.is_empty() {
            return;
        }
        self.new_receipts.union_with(&delta);
        let mut held = match store.select(&delta, usize::MAX) {
            Ok(h) => h,
            Err(e) => return self.store_error(e),
        };
        for frag in fragments {
            if let Ok(Some(m)) = store.meta(&frag)
                && !held.iter().any(|h| h.id == m.id)
            {
                held.push(m);
            }
        }
        // What is held here gets a tombstone, which the store's delivered summary lists from then on; only
        // the rest needs remembering as receipts.
        let mut rest = delta;
        for m in &held {
            rest.remove(&m.id, m.seq_mode);
        }
        let save_receipts = !rest.is_empty();
        if save_receipts {
            self.hello_delivered = None;
        }
        self.receipts.union_with(&rest);
        let mut ops = Vec::with_capacity(held.len() + 1);
        let mut notices = Vec::with_capacity(held.len());
        for m in held {
            let tombstone = crate::store::Tombstone {
                reason: crate::store::TombstoneReason::Delivered,
                expires_at: m.expires_at,
                seq_mode: m.seq_mode,
            };
            notices.push(Notice::DeliveredElsewhere { id: m.id.clone() });
            ops.push(WriteOp::Tombstone { id: m.id, tombstone });
        }
        if save_receipts {
            ops.push(WriteOp::PutState { key: keys::RECEIPTS.to_vec(), value: Some(self.receipts.to_bytes()) });
        }
        self.persist(ops, vec![After::Notices(notices)]);
    }

    /// Tells every peer in contact that runs our router about deliveries learned since the last call.
    pub(super) fn flush_receipts(&mut self) {
        if self.new_receipts.is_empty() {
            return;
        }
        let delta = std::mem::take(&mut self.new_receipts);
        let peers: Vec<Eid> = self.contacts.iter().filter(|(_, c)| c.ready && c.ours).map(|(p, _)| p.clone()).collect();
        for p in peers {
            self.send_record(&p, &OurRecord::Receipts(Receipts { delivered: delta.clone(), signature: None }));
            if let Some(c) = self.contacts.get_mut(&p) {
                c.known.union_with(&delta);
            }
        }
    }

    /// Sends each peer that runs our router what was stored and what it offered that we lack, since the
    /// last call.
    pub(super) fn flush_offers(&mut self) {
        let peers: Vec<Eid> = self
            .contacts
            .iter()
            .filter(|(_, c)| c.ready && c.ours && !(c.to_announce.is_empty() && c.to_request.is_empty()))
            .map(|(p, _)| p.clone())
            .collect();
        for p in peers {
            let Some(c) = self.contacts.get_mut(&p) else { continue };
            let held = std::mem::take(&mut c.to_announce);
            let wanted = std::mem::take(&mut c.to_request);
            c.announced.union_with(&held);
            self.send_record(&p, &OurRecord::Offer(Offer { held, wanted, signature: None }));
        }
    }

    /// A peer's offer: what it now holds is not sent to it, what it lacks of ours is.
    pub(super) fn peer_offer(&mut self, store: &dyn BundleStore, peer: &Eid, o: Offer) {
        let Some(c) = self.contacts.get_mut(peer) else { return };
        c.known.union_with(&o.held);
        let mut lacking = Summary::new();
        store.with_summaries(&mut |held, delivered| {
            lacking = o.held.difference_all(&[held, delivered, &self.receipts]);
        });
        c.to_request.union_with(&lacking);
        if o.wanted.is_empty() {
            return;
        }
        // Only what we offered: an offer is no way to fetch arbitrary bundles.
        let wanted = o.wanted.difference(&o.wanted.difference(&c.announced));
        self.queue_and_pump(store, peer, &wanted);
    }

    /// Sends one of our records straight to a peer in contact, without storing it.
    pub(super) fn send_record(&mut self, peer: &Eid, rec: &OurRecord) {
        self.send_payload(peer, rec.to_admin_payload());
    }

    /// Sends an administrative-record payload straight to a peer in contact, without storing it.
    fn send_payload(&mut self, peer: &Eid, payload: Vec<u8>) {
        let seq = self.hello_seq;
        self.hello_seq += 1;
        let mut b = BundleBuilder::new(self.cfg.node.clone(), peer.clone())
            .creation(crate::bpv7::CreationTimestamp { time: self.creation_time(), sequence: seq })
            .lifetime_ms(3_600_000)
            .flags(BundleFlags(BundleFlags::ADMIN_RECORD.0 | BundleFlags::MUST_NOT_FRAGMENT.0))
            .payload(payload);
        if !self.cfg.has_clock {
            b = b.bundle_age_ms(0);
        }
        match b.build() {
            Ok(bundle) => {
                let transfer = self.next_transfer;
                self.next_transfer += 1;
                let bytes = bundle.to_vec();
                // Records go even when the contact's volume is spent (without a hello nothing flows at
                // all), but they use it up like bundles do: a daily byte budget covers everything sent.
                if let Some(c) = self.contacts.get_mut(peer) {
                    c.volume_left = c.volume_left.map(|v| v.saturating_sub(bytes.len() as u64));
                }
                self.out.push(Action::Transmit {
                    peer: peer.clone(),
                    transfer,
                    id: None,
                    priority: Priority::EXPEDITED,
                    bytes,
                });
            }
            Err(e) => self.notice(Notice::StoreError(format!("cannot build a record for {peer}: {e}"))),
        }
    }

    /// Whether a peer is in contact.
    pub(super) fn in_contact(&self, peer: &Eid) -> bool {
        self.contacts.contains_key(peer)
    }
}

fn add_block(b: &mut Bundle<'_>, ty: BlockType, data: &[u8]) -> Result<u64, crate::bpv7::DecodeError> {
    b.add_extension_block(ty, BlockFlags::REPLICATE_IN_FRAGMENTS, CrcType::Crc32c, data)
}
