//! The engine task: the only owner of the router engine. Everything else (convergence layers, the
//! application API, store commits, timers) talks to it through one channel, so the engine sees one event at
//! a time in the order they happened, exactly as in the simulator.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dtn_core::bpv7::{BundleId, DtnTime, Eid};
use dtn_core::engine::{Action, BatchId, Engine, Event, Notice, PersistFailure, Piece, Submission, TransferId};
use dtn_core::routing::{LinkClass, LinkInfo};
use dtn_core::store::{BundleStore, CommitReport, StoreError, WriteBatch, WriteOp};
use dtn_store_lmdb::LmdbStore;
use tokio::sync::{mpsc, oneshot};

use crate::budget::{Budgets, LinkBudget};
use crate::stats::Stats;

/// What the engine task is asked to do.
pub(crate) enum Input {
    /// An engine event that needs no answer.
    Event(Event),
    /// An application submission; answered once durable (or refused).
    Submit(Submission, SubmitReply),
    /// Many submissions stored in one write; each answered on its own.
    SubmitBatch(Vec<(Submission, SubmitReply)>),
    /// A bundle from a peer; `durable` is answered once it is durable here (true) or could not be kept
    /// (false), so the convergence layer acknowledges only durable bytes.
    Received { peer: Eid, bytes: Vec<u8>, durable: oneshot::Sender<bool> },
    /// Part of a bundle from a peer (a checkpoint of a long transfer, or its end after one): the payload
    /// bytes of `bytes` beyond the first `skip` are kept as a fragment; answered like `Received`.
    ReceivedPartial { peer: Eid, bytes: Vec<u8>, skip: u64, durable: oneshot::Sender<bool> },
    /// A session to a peer is up; bundles for it go to `tx`, counted against `budget` if it has one.
    ContactUp {
        peer: Eid,
        link: LinkInfo,
        session: u64,
        tx: mpsc::UnboundedSender<Outgoing>,
        budget: Option<LinkBudget>,
    },
    /// That session ended.
    ContactDown { peer: Eid, session: u64 },
    /// A store commit finished.
    Committed(BatchId, Result<CommitReport, StoreError>),
    /// Up to `max` bundles waiting for an application at `endpoint`, in order; waits for one if `wait`.
    NextDelivery { endpoint: Eid, wait: bool, max: usize, reply: DeliveryReply },
    /// The application has the bundle (true) or gave it back (false).
    Taken { id: BundleId, ok: bool },
    /// The application gives back bundles it took, in the order it got them.
    GiveBack(Vec<BundleId>),
    /// Deletes a stored bundle on the operator's request.
    Delete(BundleId, oneshot::Sender<bool>),
    /// Peers in contact.
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    /// Counters.
    Stats(oneshot::Sender<Stats>),
    /// Cut the sessions to a peer (or let them come back).
    Link { peer: Eid, up: bool },
    /// An application started (or stopped) streaming deliveries from `endpoint`: while one does, bundles
    /// for it may be delivered directly (see [`crate::NodeConfig::direct_delivery`]).
    Reader { endpoint: Eid, open: bool },
    /// Stop: flush what is pending and answer.
    Shutdown(oneshot::Sender<()>),
}

/// Answer to a submission: the stored IDs (one per fragment), or why it was refused.
pub(crate) type SubmitReply = oneshot::Sender<Result<Vec<BundleId>, String>>;

/// Answer to [`Input::NextDelivery`]: bundles and, for one that came in fragments, the pieces of its payload.
pub(crate) type DeliveryReply = oneshot::Sender<Handed>;

/// Bundles handed to an application.
pub(crate) type Handed = Vec<Handout>;

/// A bundle handed to an application: read from the store (as `pieces` of stored fragments if it came in
/// fragments), or, delivered directly, its encoding in `bytes`.
pub(crate) struct Handout {
    pub id: BundleId,
    pub pieces: Vec<Piece>,
    pub bytes: Option<Arc<Vec<u8>>>,
}

/// A bundle delivered directly: held in memory only, its peer's acknowledgement (`durable`, one per copy
/// received meanwhile) waiting until the application has it or it is stored after all.
struct DirectHeld {
    bytes: Arc<Vec<u8>>,
    durable: Vec<oneshot::Sender<bool>>,
}

/// Bytes and number of directly delivered bundles held in memory at most; more are stored first.
const DIRECT_MAX_BYTES: usize = 64 << 20;
const DIRECT_MAX_COUNT: usize = 16_384;

/// A bundle to send on a session.
pub(crate) struct Outgoing {
    pub transfer: TransferId,
    pub bytes: Vec<u8>,
}

/// A peer in contact, as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerInfo {
    /// Its node ID.
    pub node: String,
    /// Transfers outstanding to it.
    pub in_flight: usize,
    /// The link's class: "wifi", "wired", "metered" or "unknown".
    pub class: &'static str,
    /// The daily byte budget of a metered peer, and what is left of it today.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetInfo>,
}

/// A peer's daily byte budget, as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BudgetInfo {
    /// Bytes a day.
    pub per_day: u64,
    /// Bytes left today.
    pub left: u64,
}

struct Session {
    id: u64,
    tx: mpsc::UnboundedSender<Outgoing>,
    in_flight: usize,
    /// The daily byte budget its bytes count against, and the day the engine's volume for it was set.
    budget: Option<(LinkBudget, u64)>,
    /// The link's class, for the peer list.
    class: LinkClass,
}

pub(crate) struct Core {
    engine: Engine,
    store: Arc<LmdbStore>,
    inbox: mpsc::UnboundedReceiver<Input>,
    me: mpsc::UnboundedSender<Input>,
    timer: Option<DtnTime>,
    sessions: BTreeMap<Eid, Session>,
    /// Further sessions with a peer already in contact (both sides dialled, or a peer that dials while we
    /// do): kept open so the peer can send on them, used for sending if the first one ends.
    spare: BTreeMap<Eid, Vec<(Session, LinkInfo)>>,
    /// Peers the operator cut: sessions to them are refused until they are let back.
    pub(crate) blocked: Arc<std::sync::Mutex<BTreeSet<Eid>>>,
    /// Transfers handed to sessions: the peer and the session.
    transfers: BTreeMap<TransferId, (Eid, u64)>,
    submissions: BTreeMap<u64, SubmitReply>,
    next_token: u64,
    /// Received bundles waiting for their batches to be durable: (batches left, reply, all ok so far), and
    /// which of them each batch holds up. Thousands wait at once when small bundles stream in.
    durable_waiters: BTreeMap<u64, (usize, oneshot::Sender<bool>, bool)>,
    waiting_on: BTreeMap<BatchId, Vec<u64>>,
    deliveries: BTreeMap<Eid, DeliveryQueue>,
    handed_out: BTreeMap<BundleId, Eid>,
    delivery_waiters: BTreeMap<Eid, Vec<DeliveryReply>>,
    /// Bundles delivered as pieces of stored fragments, until the application has them.
    pieces: BTreeMap<BundleId, Vec<Piece>>,
    deletes: BTreeMap<u64, oneshot::Sender<bool>>,
    /// The store writes of the inputs being handled as one group (see `Engine::begin_group`): its batch
    /// and operations, committed together when the group ends.
    group: Option<(BatchId, Vec<WriteOp>)>,
    stats: Stats,
    clock: crate::clock::NodeClock,
    budgets: Budgets,
    /// How long an application may take to take a directly delivered bundle; `None`: no direct delivery.
    direct_wait: Option<Duration>,
    direct: BTreeMap<BundleId, DirectHeld>,
    direct_bytes: usize,
    /// When each directly delivered bundle is stored if the application has not taken it, in that order.
    direct_deadlines: VecDeque<(tokio::time::Instant, BundleId)>,
    /// The bundle the event being handled delivered directly (or was a copy of one held): its peer's
    /// acknowledgement waits for it.
    direct_hit: Option<BundleId>,
    /// Applications streaming deliveries, by endpoint.
    readers: BTreeMap<Eid, usize>,
    /// Bundles stored after being handed out directly and given back: they go to the front of their queue.
    front: BTreeSet<BundleId>,
}

/// Inputs handled as one group at most: bounds the latency of the first one's acknowledgement.
const GROUP_MAX: usize = 512;

/// Bundles waiting for an application at one endpoint, in delivery order, each once. Applications often
/// fall behind (a reader that starts after a van unloads), so the queue can be long: membership is a set
/// lookup, not a scan.
#[derive(Default)]
struct DeliveryQueue {
    order: VecDeque<BundleId>,
    queued: BTreeSet<BundleId>,
}

impl DeliveryQueue {
    fn push(&mut self, id: BundleId) {
        if self.queued.insert(id.clone()) {
            self.order.push_back(id);
        }
    }

    /// Back to the front: the application that took it let it go unread.
    fn put_back(&mut self, id: BundleId) {
        if self.queued.insert(id.clone()) {
            self.order.push_front(id);
        }
    }

    fn pop(&mut self) -> Option<BundleId> {
        let id = self.order.pop_front()?;
        self.queued.remove(&id);
        Some(id)
    }
}

/// Milliseconds since the DTN epoch, from the system clock.
pub fn now() -> DtnTime {
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    DtnTime::from_unix_ms(unix)
}

impl Core {
    pub(crate) fn new(
        engine: Engine,
        store: Arc<LmdbStore>,
        inbox: mpsc::UnboundedReceiver<Input>,
        me: mpsc::UnboundedSender<Input>,
        blocked: Arc<std::sync::Mutex<BTreeSet<Eid>>>,
    ) -> Core {
        Core {
            engine,
            store,
            inbox,
            me,
            timer: None,
            sessions: BTreeMap::new(),
            spare: BTreeMap::new(),
            blocked,
            transfers: BTreeMap::new(),
            submissions: BTreeMap::new(),
            next_token: 1,
            durable_waiters: BTreeMap::new(),
            waiting_on: BTreeMap::new(),
            deliveries: BTreeMap::new(),
            handed_out: BTreeMap::new(),
            delivery_waiters: BTreeMap::new(),
            pieces: BTreeMap::new(),
            deletes: BTreeMap::new(),
            group: None,
            stats: Stats::default(),
            clock: crate::clock::NodeClock::real(),
            budgets: Budgets::default(),
            direct_wait: None,
            direct: BTreeMap::new(),
            direct_bytes: 0,
            direct_deadlines: VecDeque::new(),
            direct_hit: None,
            readers: BTreeMap::new(),
            front: BTreeSet::new(),
        }
    }

    /// Delivers directly to reading applications, giving each bundle `wait` to be taken (see
    /// [`crate::NodeConfig::direct_delivery`]); the engine must have been configured for it too.
    pub(crate) fn with_direct_delivery(mut self, wait: Option<Duration>) -> Core {
        self.direct_wait = wait;
        self
    }

    /// Runs on `clock` instead of the system clock (a node without a real-time clock).
    pub(crate) fn with_clock(mut self, clock: crate::clock::NodeClock) -> Core {
        self.clock = clock;
        self
    }

    pub(crate) async fn run(mut self) {
        self.handle(Event::Start);
        loop {
            // A budget's new day wakes the loop too, so that a contact idle for want of budget goes on.
            let wake = match (self.timer, self.budget_wake()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let mut sleep = wake.map(|at| Duration::from_millis(at.0.saturating_sub(self.clock.now().0)));
            if let Some((at, _)) = self.direct_deadlines.front() {
                let d = at.saturating_duration_since(tokio::time::Instant::now());
                sleep = Some(sleep.map_or(d, |s| s.min(d)));
            }
            let input = match sleep {
                Some(wait) => {
                    tokio::select! {
                        i = self.inbox.recv() => i,
                        _ = tokio::time::sleep(wait) => {
                            self.begin_group();
                            self.store_overdue();
                            self.roll_budgets();
                            if self.timer.is_some_and(|t| t <= self.clock.now()) {
                                self.timer = None;
                                self.handle(Event::Timer);
                            }
                            self.end_group();
                            continue;
                        }
                    }
                }
                None => self.inbox.recv().await,
            };
            let Some(input) = input else { break };
            // Whatever else is already waiting is handled with it as one group: one store write, one commit
            // report, one round of messages to peers for a burst of small bundles or acknowledgements.
            self.begin_group();
            let mut next = Some(input);
            let mut handled = 0;
            while let Some(input) = next.take() {
                if let Input::Shutdown(done) = input {
                    self.end_group();
                    self.shutdown().await;
                    let _ = done.send(());
                    return;
                }
                self.input(input);
                handled += 1;
                if handled < GROUP_MAX {
                    next = self.inbox.try_recv().ok();
                }
            }
            self.end_group();
        }
    }

    /// Waits for commits already handed to the store, so that every acknowledgement sent is true.
    async fn shutdown(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.engine.pending_batches() > 0 {
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Ok(Some(Input::Committed(b, r))) => self.committed(b, r),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        self.sessions.clear();
        self.spare.clear();
    }

    fn input(&mut self, input: Input) {
        match input {
            Input::Event(e) => {
                if let Event::TransferFinished { transfer }
                | Event::TransferFailed { transfer }
                | Event::TransferCut { transfer, .. } = &e
                    && let Some((peer, session)) = self.transfers.remove(transfer)
                    && let Some(s) = self.sessions.get_mut(&peer).filter(|s| s.id == session)
                {
                    s.in_flight = s.in_flight.saturating_sub(1);
                }
                self.handle(e);
            }
            Input::Submit(sub, reply) => {
                let sub = self.awaiting(sub, reply);
                self.handle(Event::Submit(sub));
            }
            Input::SubmitBatch(subs) => {
                let batch = subs.into_iter().map(|(sub, reply)| self.awaiting(sub, reply)).collect();
                self.handle(Event::SubmitBatch(batch));
            }
            Input::Received { peer, bytes, durable } => {
                self.stats.received_bytes += bytes.len() as u64;
                self.direct_hit = None;
                let batches = self.handle(Event::Received { peer, bytes });
                // Held in memory only: the peer hears of it once the application has it (or it is stored).
                match self.direct_hit.take().and_then(|id| self.direct.get_mut(&id)) {
                    Some(held) => held.durable.push(durable),
                    None => self.wait_durable(batches, durable),
                }
            }
            Input::ReceivedPartial { peer, bytes, skip, durable } => {
                let batches = self.handle(Event::ReceivedPartial { peer, bytes, skip });
                self.wait_durable(batches, durable);
            }
            Input::ContactUp { peer, link, session, tx, budget } => {
                let s = Session { id: session, tx, in_flight: 0, budget: budget.map(|b| (b, 0)), class: link.class };
                if self.sessions.contains_key(&peer) {
                    // One contact per peer: the engine sends on the first session only.
                    self.spare.entry(peer).or_default().push((s, link));
                    return;
                }
                let link = self.budgeted(s, &peer, link);
                self.handle(Event::ContactUp { peer, link });
            }
            Input::ContactDown { peer, session } => {
                if let Some(spares) = self.spare.get_mut(&peer) {
                    spares.retain(|(s, _)| s.id != session);
                }
                if self.sessions.get(&peer).is_some_and(|s| s.id == session) {
                    self.sessions.remove(&peer);
                    self.handle(Event::ContactDown { peer: peer.clone() });
                    let next = self.spare.get_mut(&peer).and_then(|v| (!v.is_empty()).then(|| v.remove(0)));
                    if let Some((s, link)) = next {
                        let link = self.budgeted(s, &peer, link);
                        self.handle(Event::ContactUp { peer: peer.clone(), link });
                    }
                }
                if self.spare.get(&peer).is_some_and(Vec::is_empty) {
                    self.spare.remove(&peer);
                }
            }
            Input::Committed(batch, result) => self.committed(batch, result),
            Input::NextDelivery { endpoint, wait, max, reply } => {
                let mut out = Vec::new();
                while out.len() < max.max(1)
                    && let Some(id) = self.deliveries.get_mut(&endpoint).and_then(DeliveryQueue::pop)
                {
                    out.push(self.handout(id));
                }
                if out.is_empty() && wait {
                    return self.delivery_waiters.entry(endpoint).or_default().push(reply);
                }
                for h in &out {
                    self.handed_out.insert(h.id.clone(), endpoint.clone());
                }
                if let Err(out) = reply.send(out) {
                    // The application went away while asking: the bundles wait for the next one.
                    for h in out.into_iter().rev() {
                        self.handed_out.remove(&h.id);
                        self.deliveries.entry(endpoint.clone()).or_default().put_back(h.id);
                    }
                }
            }
            Input::Taken { id, ok: true } => {
                if self.handed_out.remove(&id).is_some() {
                    self.pieces.remove(&id);
                    let held = self.take_direct(&id);
                    let batches = self.handle(Event::DeliveryAcked { id });
                    if let Some(held) = held {
                        self.stats.direct += 1;
                        for durable in held.durable {
                            self.wait_durable(batches.clone(), durable);
                        }
                    }
                }
            }
            Input::Taken { id, ok: false } => self.give_back(vec![id]),
            Input::GiveBack(ids) => self.give_back(ids),
            Input::Delete(id, reply) => {
                let token = self.next_token;
                self.next_token += 1;
                self.deletes.insert(token, reply);
                self.handle(Event::Delete { id, token });
            }
            Input::Peers(reply) => {
                let now = self.clock.now();
                let (state, budgets) = (state_of(&self.store), &mut self.budgets);
                let peers = self
                    .sessions
                    .iter()
                    .map(|(p, s)| PeerInfo {
                        node: p.to_string(),
                        in_flight: s.in_flight,
                        class: s.class.name(),
                        budget: s
                            .budget
                            .as_ref()
                            .map(|(b, _)| BudgetInfo { per_day: b.per_day, left: budgets.left(b, now, &state) }),
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Input::Stats(reply) => {
                let mut s = self.stats.clone();
                s.peers = self.sessions.len();
                s.store = dtn_core::store::BundleStore::usage(&*self.store).into();
                let _ = reply.send(s);
            }
            Input::Link { peer, up } => {
                let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
                if up {
                    blocked.remove(&peer);
                } else {
                    blocked.insert(peer.clone());
                    drop(blocked);
                    // Dropping the sender ends the session task, which cuts the TCP connection.
                    self.spare.remove(&peer);
                    if self.sessions.remove(&peer).is_some() {
                        self.handle(Event::ContactDown { peer });
                    }
                }
            }
            Input::Reader { endpoint, open } => {
                let n = self.readers.entry(endpoint.clone()).or_default();
                if open {
                    *n += 1;
                    return;
                }
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.readers.remove(&endpoint);
                    if !self.is_live(&endpoint) {
                        // Nobody reads there now: what waits in memory for it is stored.
                        let queued: Vec<BundleId> = self
                            .deliveries
                            .get(&endpoint)
                            .map(|q| q.order.iter().filter(|id| self.direct.contains_key(*id)).cloned().collect())
                            .unwrap_or_default();
                        self.store_direct(queued);
                    }
                }
            }
            Input::Shutdown(_) => {}
        }
    }

    /// Whether an application reads from `endpoint` now (streaming, or waiting for a bundle).
    fn is_live(&self, endpoint: &Eid) -> bool {
        self.readers.contains_key(endpoint) || self.delivery_waiters.get(endpoint).is_some_and(|w| !w.is_empty())
    }

    fn take_direct(&mut self, id: &BundleId) -> Option<DirectHeld> {
        let held = self.direct.remove(id)?;
        self.direct_bytes -= held.bytes.len();
        Some(held)
    }

    /// Stores bundles held in memory for direct delivery after all (their reader went away, gave them back
    /// or is too slow), given in delivery order; their peers' acknowledgements wait for that write. An
    /// application that has one may still take it. Those still queued go to the front of their queue, in
    /// the same order.
    fn store_direct(&mut self, ids: Vec<BundleId>) {
        let ids: Vec<BundleId> = ids.into_iter().filter(|id| self.direct.contains_key(id)).collect();
        if ids.is_empty() {
            return;
        }
        // One pass over each queue, however many there are: a reader that goes away may leave thousands.
        let set: BTreeSet<&BundleId> = ids.iter().collect();
        for q in self.deliveries.values_mut() {
            if q.queued.iter().any(|id| set.contains(id)) {
                q.order.retain(|id| !set.contains(id));
                for id in &ids {
                    if q.queued.remove(id) {
                        self.front.insert(id.clone());
                    }
                }
            }
        }
        // Last first: each goes back to the front of its queue once stored.
        for id in ids.into_iter().rev() {
            let Some(held) = self.take_direct(&id) else { continue };
            let bytes = Arc::try_unwrap(held.bytes).unwrap_or_else(|shared| shared.as_ref().clone());
            let batches = self.handle(Event::DirectReturned { id, bytes });
            for durable in held.durable {
                self.wait_durable(batches.clone(), durable);
            }
        }
    }

    /// Stores the directly delivered bundles whose application did not take them in time.
    fn store_overdue(&mut self) {
        let now = tokio::time::Instant::now();
        let mut overdue = Vec::new();
        while let Some((at, id)) = self.direct_deadlines.front().cloned() {
            if at > now {
                break;
            }
            self.direct_deadlines.pop_front();
            if self.direct.contains_key(&id) {
                overdue.push(id);
            }
        }
        if !overdue.is_empty() {
            tracing::debug!(bundles = overdue.len(), "not taken in time: stored");
            self.store_direct(overdue);
        }
    }

    /// What to hand an application for `id`.
    fn handout(&self, id: BundleId) -> Handout {
        let pieces = self.pieces.get(&id).cloned().unwrap_or_default();
        let bytes = self.direct.get(&id).map(|d| d.bytes.clone());
        Handout { id, pieces, bytes }
    }

    /// Answers `durable` once `batches` are durable (at once if there are none: a duplicate, a record, or
    /// refused, as the notices say; the peer may stop sending it either way).
    fn wait_durable(&mut self, batches: BTreeSet<BatchId>, durable: oneshot::Sender<bool>) {
        if batches.is_empty() {
            let _ = durable.send(true);
        } else {
            let token = self.next_token;
            self.next_token += 1;
            for b in &batches {
                self.waiting_on.entry(*b).or_default().push(token);
            }
            self.durable_waiters.insert(token, (batches.len(), durable, true));
        }
    }

    /// Gives a submission a token the engine answers on, and remembers who waits for that answer.
    fn awaiting(&mut self, mut sub: Submission, reply: SubmitReply) -> Submission {
        sub.token = self.next_token;
        self.next_token += 1;
        self.submissions.insert(sub.token, reply);
        sub
    }

    fn committed(&mut self, batch: BatchId, result: Result<CommitReport, StoreError>) {
        let ok = result.is_ok();
        match result {
            Ok(report) => {
                if !report.evicted.is_empty() {
                    self.handle(Event::Evicted(report.evicted));
                }
                self.handle(Event::Persisted(vec![batch]));
            }
            Err(e) => {
                let failure = PersistFailure::from(&e);
                self.handle(Event::PersistFailed { batch, failure });
            }
        }
        for token in self.waiting_on.remove(&batch).unwrap_or_default() {
            let Some(w) = self.durable_waiters.get_mut(&token) else { continue };
            w.0 -= 1;
            w.2 &= ok;
            if w.0 == 0
                && let Some((_, tx, ok)) = self.durable_waiters.remove(&token)
            {
                let _ = tx.send(ok);
            }
        }
    }

    fn begin_group(&mut self) {
        self.engine.begin_group();
        self.group = Some((0, Vec::new()));
    }

    /// Commits the group's writes, then carries out what the engine left for the group's end.
    fn end_group(&mut self) {
        if let Some((batch, ops)) = self.group.take()
            && batch != 0
        {
            self.commit(batch, ops);
        }
        let actions = self.engine.end_group();
        self.act(actions);
        self.save_budgets();
    }

    /// Writes the budget counts changed by the group's transmissions, in a write of their own: the
    /// engine's batches are its business. A crash loses at most the last group's count.
    fn save_budgets(&mut self) {
        let ops = self.budgets.take_writes();
        if ops.is_empty() {
            return;
        }
        self.store.submit_with(WriteBatch { now: self.clock.now(), ops }, |r| {
            if let Err(e) = r {
                tracing::warn!(error = %e, "byte budget count not saved");
            }
        });
    }

    /// Makes `s` the session of `peer`, with the link's volume at what is left of its daily budget today.
    fn budgeted(&mut self, mut s: Session, peer: &Eid, mut link: LinkInfo) -> LinkInfo {
        let now = self.clock.now();
        if let Some((b, day)) = &mut s.budget {
            let left = self.budgets.left(b, now, &state_of(&self.store));
            *day = crate::budget::day_of(now);
            link.volume = Some(link.volume.map_or(left, |v| v.min(left)));
            tracing::info!(%peer, budget = b.per_day, left, "metered contact with a daily budget");
        }
        self.sessions.insert(peer.clone(), s);
        link
    }

    /// When the next day of a budget starts, if a session in contact has one.
    fn budget_wake(&self) -> Option<DtnTime> {
        let now = self.clock.now();
        self.sessions.values().any(|s| s.budget.is_some()).then(|| crate::budget::next_day(now))
    }

    /// A new day on a live contact: the engine's volume is raised to the new day's budget (rather than
    /// cycling the contact, which would resend hellos and requeue everything for nothing).
    fn roll_budgets(&mut self) {
        let now = self.clock.now();
        let today = crate::budget::day_of(now);
        let mut raised = Vec::new();
        for (peer, s) in &mut self.sessions {
            if let Some((b, day)) = &mut s.budget
                && *day != today
            {
                *day = today;
                raised.push((peer.clone(), self.budgets.left(b, now, &state_of(&self.store))));
            }
        }
        for (peer, left) in raised {
            tracing::info!(%peer, left, "new day of the byte budget");
            self.handle(Event::ContactVolume { peer, volume: Some(left) });
        }
    }

    fn commit(&mut self, batch: BatchId, ops: Vec<WriteOp>) {
        let me = self.me.clone();
        self.store.submit_with(WriteBatch { now: self.clock.now(), ops }, move |r| {
            let _ = me.send(Input::Committed(batch, r));
        });
    }

    /// Runs one event through the engine and carries out its actions; returns the batches it asked for.
    fn handle(&mut self, event: Event) -> BTreeSet<BatchId> {
        let actions = self.engine.handle(&*self.store, self.clock.now(), event);
        self.act(actions)
    }

    /// Carries out the engine's actions; returns the batches they write.
    fn act(&mut self, actions: Vec<Action>) -> BTreeSet<BatchId> {
        let mut batches = BTreeSet::new();
        for a in actions {
            match a {
                Action::Persist { batch, ops } => {
                    batches.insert(batch);
                    match &mut self.group {
                        Some((b, group_ops)) => {
                            *b = batch;
                            group_ops.extend(ops);
                        }
                        None => self.commit(batch, ops),
                    }
                }
                Action::Transmit { peer, transfer, bytes, .. } => self.transmit(peer, transfer, bytes),
                Action::Deliver { endpoint, id, pieces } => self.deliver(endpoint, id, pieces),
                Action::DeliverDirect { endpoint, id, bytes } => {
                    batches.extend(self.deliver_direct(endpoint, id, bytes))
                }
                Action::Accepted { token, ids } => {
                    if let Some(reply) = self.submissions.remove(&token) {
                        let _ = reply.send(Ok(ids));
                    } else if let Some(reply) = self.deletes.remove(&token) {
                        let _ = reply.send(true);
                    }
                }
                Action::Rejected { token, reason } => {
                    if let Some(reply) = self.submissions.remove(&token) {
                        let _ = reply.send(Err(reason));
                    } else if let Some(reply) = self.deletes.remove(&token) {
                        let _ = reply.send(false);
                    }
                }
                Action::SetTimer(t) => self.timer = Some(t),
                Action::Notice(n) => {
                    // A copy of a bundle held for direct delivery: its acknowledgement waits for the first.
                    if let Notice::Duplicate { id, .. } = &n
                        && self.direct.contains_key(id)
                    {
                        self.direct_hit = Some(id.clone());
                    }
                    self.notice(n)
                }
            }
        }
        batches
    }

    /// Bundles an application gave back (in the order it got them) go back to the front of their queues, in
    /// that order, ahead of anything newer; then readers already waiting (one may have started waiting while
    /// the bundles were out) are served from the front. All at once, so that a waiting reader does not get
    /// the last one first.
    fn give_back(&mut self, ids: Vec<BundleId>) {
        let mut endpoints = BTreeSet::new();
        for id in ids.into_iter().rev() {
            let Some(endpoint) = self.handed_out.remove(&id) else { continue };
            if self.direct.contains_key(&id) {
                // Not taken: stored now, and delivered from the store, first in its queue.
                self.front.insert(id.clone());
                self.store_direct(vec![id]);
                continue;
            }
            self.deliveries.entry(endpoint.clone()).or_default().put_back(id);
            endpoints.insert(endpoint);
        }
        for endpoint in endpoints {
            self.serve_waiters(&endpoint);
        }
    }

    /// Hands queued bundles, one each, to the readers waiting at `endpoint`.
    fn serve_waiters(&mut self, endpoint: &Eid) {
        while let Some(w) = self.delivery_waiters.get_mut(endpoint).and_then(Vec::pop) {
            let Some(id) = self.deliveries.get_mut(endpoint).and_then(DeliveryQueue::pop) else {
                self.delivery_waiters.entry(endpoint.clone()).or_default().push(w);
                return;
            };
            match w.send(vec![self.handout(id.clone())]) {
                Ok(()) => {
                    self.handed_out.insert(id, endpoint.clone());
                }
                // That reader went away while waiting: the bundle stays first for the next.
                Err(_) => self.deliveries.entry(endpoint.clone()).or_default().put_back(id),
            }
        }
    }

    /// Hands a bundle to an application waiting at its endpoint, or queues it for the next one to ask.
    fn deliver(&mut self, endpoint: Eid, id: BundleId, pieces: Vec<Piece>) {
        let front = self.front.remove(&id);
        if self.handed_out.contains_key(&id) {
            return;
        }
        if !pieces.is_empty() {
            self.pieces.insert(id.clone(), pieces.clone());
        }
        if front {
            // Given back earlier: it goes before what came after it.
            self.deliveries.entry(endpoint.clone()).or_default().put_back(id);
            return self.serve_waiters(&endpoint);
        }
        while let Some(w) = self.delivery_waiters.get_mut(&endpoint).and_then(Vec::pop) {
            // A waiter whose request was dropped (client gone) refuses the send; try the next one.
            if w.send(vec![self.handout(id.clone())]).is_ok() {
                self.handed_out.insert(id, endpoint);
                return;
            }
        }
        self.deliveries.entry(endpoint).or_default().push(id);
    }

    /// A bundle the engine hands straight to the application (see [`Action::DeliverDirect`]): held in
    /// memory if an application reads at `endpoint` and there is room, else stored at once. Returns the
    /// batches storing it wrote.
    fn deliver_direct(&mut self, endpoint: Eid, id: BundleId, bytes: Vec<u8>) -> BTreeSet<BatchId> {
        let room = self.direct_bytes + bytes.len() <= DIRECT_MAX_BYTES && self.direct.len() < DIRECT_MAX_COUNT;
        let (Some(wait), true, true) = (self.direct_wait, room, self.is_live(&endpoint)) else {
            return self.handle(Event::DirectReturned { id, bytes });
        };
        self.direct_bytes += bytes.len();
        self.direct.insert(id.clone(), DirectHeld { bytes: Arc::new(bytes), durable: Vec::new() });
        self.direct_deadlines.push_back((tokio::time::Instant::now() + wait, id.clone()));
        self.direct_hit = Some(id.clone());
        self.deliver(endpoint, id, Vec::new());
        BTreeSet::new()
    }

    fn transmit(&mut self, peer: Eid, transfer: TransferId, bytes: Vec<u8>) {
        self.stats.sent_bytes += bytes.len() as u64;
        let now = self.clock.now();
        let sent = match self.sessions.get_mut(&peer) {
            Some(s) => {
                s.in_flight += 1;
                self.transfers.insert(transfer, (peer.clone(), s.id));
                // Counted when handed to the session: a failed transfer's bytes were mostly sent (and
                // billed) too. Hellos and offers count as well; only stored bundles are held back.
                if let Some((b, _)) = &s.budget {
                    self.budgets.spend(b, now, bytes.len() as u64, &state_of(&self.store));
                }
                s.tx.send(Outgoing { transfer, bytes }).is_ok()
            }
            None => false,
        };
        if !sent {
            self.transfers.remove(&transfer);
            // The session went away between the engine's decision and now: the engine hears it failed.
            let _ = self.me.send(Input::Event(Event::TransferFailed { transfer }));
        }
    }

    fn notice(&mut self, n: Notice) {
        self.stats.count(&n);
        match &n {
            Notice::StoreError(e) => tracing::error!(error = %e, "store"),
            Notice::Malformed { from, error } => tracing::warn!(%from, %error, "malformed input"),
            Notice::Refused { id, reason } => tracing::info!(%id, ?reason, "refused"),
            Notice::Deleted { id, reason } => tracing::info!(%id, reason, "deleted"),
            other => tracing::debug!(?other),
        }
    }
}

/// The store's node state as budgets read it (a count never saved reads as none).
fn state_of(store: &LmdbStore) -> impl Fn(&[u8]) -> Option<Vec<u8>> + '_ {
    move |k| store.state(k).ok().flatten()
}
