//! The node runtime: the router engine of `dtn-core` driven by tokio, with an LMDB store that group-commits,
//! the TCPCLv4 convergence layer, LAN discovery, timers and the application API.
//!
//! `dtnd`, the demos, the integration tests and the Android library all embed this same node:
//!
//! ```no_run
//! # async fn run() -> Result<(), dtn_node::NodeError> {
//! let cfg = dtn_node::NodeConfig::new("dtn://station1/".parse().unwrap(), "/var/lib/dtn".into());
//! let node = dtn_node::Node::start(cfg).await?;
//! let id = node.handle().send("dtn://collector/~data".parse().unwrap(), b"21.5 C".to_vec()).await?;
//! println!("stored as {id:?}");
//! node.shutdown().await;
//! # Ok(()) }
//! ```

pub mod api;
mod budget;
mod clock;
mod config;
mod core;
mod links;
mod rendezvous;
mod stats;
mod wg;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use dtn_core::bpv7::{Bundle, BundleId, DtnTime, Eid, Limits};
use dtn_core::engine::{Engine, Piece, Submission};
use dtn_core::store::{BundleMeta, BundleStore, Summary};
use dtn_store_lmdb::LmdbStore;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use clock::NodeClock;
pub use config::{NodeConfig, RendezvousTiming, WgConfig, WgPeer};
pub use core::{BudgetInfo, PeerInfo, now};
pub use dtn_core::routing::LinkClass;
pub use dtn_wg::{Identity, IdentityError, PeerKey};
pub use rendezvous::RendezvousError;
pub use stats::{Stats, StoreUsage};

use crate::core::{Core, Input};

/// Why the node could not do something.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The store could not be opened or read.
    #[error("store: {0}")]
    Store(#[from] dtn_core::store::StoreError),
    /// A socket could not be bound or used.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The node refused the request.
    #[error("{0}")]
    Rejected(String),
    /// The node is shutting down.
    #[error("the node is stopped")]
    Stopped,
    /// The WireGuard identity key could not be loaded or created.
    #[error("identity: {0}")]
    Identity(#[from] dtn_wg::IdentityError),
    /// The WireGuard endpoint could not be started.
    #[error("WireGuard: {0}")]
    Wg(#[from] dtn_wg::Error),
    /// Rendezvous through the DHT could not start.
    #[error("rendezvous: {0}")]
    Rendezvous(#[from] rendezvous::RendezvousError),
    /// A bundle the store returned could not be decoded.
    #[error("stored bundle unreadable: {0}")]
    Corrupt(String),
}

/// A running node.
pub struct Node {
    handle: NodeHandle,
    core: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
    api: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    api_addr: Option<std::net::SocketAddr>,
    tcpcl_addr: Option<std::net::SocketAddr>,
    wg: Option<(Arc<dtn_wg::Endpoint>, PeerKey)>,
}

/// A cheap, cloneable way to talk to a running node.
#[derive(Clone)]
pub struct NodeHandle {
    tx: mpsc::UnboundedSender<Input>,
    store: Arc<LmdbStore>,
    node_id: Eid,
    /// Largest payload per bundle submitted (larger ones are submitted in parts of this size).
    part_size: u64,
    clock: NodeClock,
}

impl Node {
    /// Opens the store, starts the engine, the convergence layers and the API.
    pub async fn start(cfg: NodeConfig) -> Result<Node, NodeError> {
        std::fs::create_dir_all(&cfg.store_dir)
            .map_err(|source| NodeError::Io { context: format!("creating {}", cfg.store_dir.display()), source })?;
        let store = Arc::new(LmdbStore::open(&cfg.store_dir, dtn_store_lmdb::Options::with_quota(cfg.quota))?);
        let clock = if cfg.has_clock { NodeClock::real() } else { NodeClock::monotonic(&cfg.store_dir)? };
        let engine = Engine::new(cfg.engine_config(), cfg.routing.build(), cfg.seed);
        let (tx, rx) = mpsc::unbounded_channel();
        let blocked = Arc::new(Mutex::new(BTreeSet::new()));
        let core = Core::new(engine, store.clone(), rx, tx.clone(), blocked.clone())
            .with_clock(clock.clone())
            .with_direct_delivery(cfg.direct_delivery);
        let core = tokio::spawn(core.run());
        let handle = NodeHandle {
            tx,
            store,
            node_id: cfg.node_id.clone(),
            part_size: cfg.fragment_payload.unwrap_or(1 << 20).max(1),
            clock: clock.clone(),
        };
        let mut tasks = Vec::new();
        if !clock.has_clock() {
            tasks.push(tokio::spawn(clock::keep_lease(clock)));
        }
        let handle_blocked = blocked.clone();
        let links = links::start(&cfg, handle.clone(), blocked).await?;
        let tcpcl_addr = links.listen_addr;
        tasks.extend(links.tasks);
        let mut wg = None;
        if let Some(w) = &cfg.wg {
            let l = wg::start(&cfg, w, handle.clone(), handle_blocked.clone()).await?;
            tasks.extend(l.tasks);
            wg = Some((l.endpoint, l.identity));
        }
        let mut api_addr = None;
        let mut api = None;
        if let Some(addr) = cfg.api {
            let (stop, stopped) = oneshot::channel();
            let (bound, task) = api::serve(addr, handle.clone(), stopped).await?;
            api_addr = Some(bound);
            api = Some((stop, task));
        }
        tracing::info!(node = %cfg.node_id, store = %cfg.store_dir.display(), ?tcpcl_addr, ?api_addr, "node started");
        Ok(Node { handle, core, tasks, api, api_addr, tcpcl_addr, wg })
    }

    /// A handle for submitting, receiving and inspecting.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Where the API listens (the bound address, useful with port 0).
    pub fn api_addr(&self) -> Option<std::net::SocketAddr> {
        self.api_addr
    }

    /// Where TCPCL listens (the bound address, useful with port 0).
    pub fn tcpcl_addr(&self) -> Option<std::net::SocketAddr> {
        self.tcpcl_addr
    }

    /// The WireGuard tunnel's UDP address (the bound address, useful with port 0).
    pub fn wg_addr(&self) -> Option<std::net::SocketAddr> {
        self.wg.as_ref().map(|(ep, _)| ep.local_addr())
    }

    /// This node's identity public key, when it runs the WireGuard link.
    pub fn wg_identity(&self) -> Option<PeerKey> {
        self.wg.as_ref().map(|(_, k)| *k)
    }

    /// The WireGuard endpoint, for its statistics and peers' status.
    pub fn wg_endpoint(&self) -> Option<Arc<dtn_wg::Endpoint>> {
        self.wg.as_ref().map(|(ep, _)| ep.clone())
    }

    /// Stops accepting work, waits for pending commits, closes sessions and the store.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some((stop, task)) = self.api {
            // Connections end with the server (a reader waiting for a bundle is cut after a moment), so
            // none keeps the store open once this returns.
            let _ = stop.send(());
            let abort = task.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(2), task).await.is_err() {
                abort.abort();
            }
        }
        let (done, wait) = oneshot::channel();
        if self.handle.tx.send(Input::Shutdown(done)).is_ok() {
            let _ = wait.await;
        }
        let _ = self.core.await;
        for t in self.tasks {
            let _ = t.await;
        }
        // A WebSocket stream outlives the HTTP server that upgraded it; it ends once it sees the engine gone.
        // Give such stragglers a moment to let go of the store, so that it can be opened again at once.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        while Arc::strong_count(&self.handle.store) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// A bundle delivered to an application.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Its ID.
    pub id: BundleId,
    /// Source endpoint.
    pub source: Eid,
    /// Destination endpoint.
    pub destination: Eid,
    /// The application data.
    pub payload: Vec<u8>,
}

/// A bundle handed to an application, its payload still in the store. [`next_chunk`](Self::next_chunk)
/// reads it (blocking: call it where blocking is allowed).
pub struct Incoming {
    /// Its ID.
    pub id: BundleId,
    /// Source endpoint.
    pub source: Eid,
    /// Destination endpoint.
    pub destination: Eid,
    /// Payload length.
    pub len: u64,
    /// The bundle's creation time (DTN time, ms); 0 when its source had no clock.
    pub creation_time: DtnTime,
    /// How old the bundle is now (ms): its bundle-age block plus the time it has waited here. Known for
    /// bundles that carry a bundle age (always those from a source without a clock), else `None` (the
    /// creation time says when).
    pub age_ms: Option<u64>,
    first: Option<Vec<u8>>,
    rest: std::vec::IntoIter<Piece>,
    store: Arc<LmdbStore>,
}

impl Incoming {
    fn open(store: Arc<LmdbStore>, h: crate::core::Handout, now: DtnTime) -> Result<Incoming, NodeError> {
        let id = h.id;
        let whole = [Piece { id: id.clone(), skip: 0, len: u64::MAX }];
        let mut rest = if h.pieces.is_empty() { whole.to_vec() } else { h.pieces }.into_iter();
        let first = rest.next().ok_or_else(|| NodeError::Corrupt(format!("{id}: nothing to deliver")))?;
        let p = match &h.bytes {
            // Delivered directly as it arrived: it has waited here for no time at all.
            Some(bytes) => piece_of(bytes, &first)?,
            None => read_piece(&store, &first)?,
        };
        let len = if first.len == u64::MAX {
            p.data.len() as u64
        } else {
            p.data.len() as u64 + rest.as_slice().iter().map(|p| p.len).sum::<u64>()
        };
        let age_ms = match p.age_ms {
            Some(age) if h.bytes.is_some() => Some(age),
            Some(age) => {
                let arrived = store.meta(&first.id)?.map_or(now, |m| m.received_at);
                Some(age.saturating_add(now.0.saturating_sub(arrived.0)))
            }
            None => None,
        };
        Ok(Incoming {
            id,
            source: p.source,
            destination: p.destination,
            len,
            creation_time: p.creation_time,
            age_ms,
            first: Some(p.data),
            rest,
            store,
        })
    }

    /// The next stretch of the payload, `None` after the last.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, NodeError> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        match self.rest.next() {
            Some(p) => Ok(Some(read_piece(&self.store, &p)?.data)),
            None => Ok(None),
        }
    }

    /// Whether the next chunk has to be read from the store (the first is in memory already).
    pub fn needs_read(&self) -> bool {
        self.first.is_none()
    }

    /// Whether every stretch has been read.
    pub fn is_done(&self) -> bool {
        self.first.is_none() && self.rest.as_slice().is_empty()
    }

    /// Reads the whole payload into memory.
    pub fn into_delivery(mut self) -> Result<Delivery, NodeError> {
        let mut payload = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        while let Some(c) = self.next_chunk()? {
            payload.extend_from_slice(&c);
        }
        Ok(Delivery { id: self.id, source: self.source, destination: self.destination, payload })
    }
}

/// One piece of a delivery as read from the store.
struct ReadPiece {
    source: Eid,
    destination: Eid,
    creation_time: DtnTime,
    /// The bundle-age block's value, or 0 for a bundle created without a clock that has none.
    age_ms: Option<u64>,
    data: Vec<u8>,
}

/// Reads one piece of a delivery: the stored bundle's header fields and the stretch of its payload.
fn read_piece(store: &LmdbStore, p: &Piece) -> Result<ReadPiece, NodeError> {
    let r = store.read_bundle(&p.id)?;
    let bytes = dtn_store_lmdb::read_to_vec(r)
        .map_err(|source| NodeError::Io { context: format!("reading {}", p.id), source })?;
    piece_of(&bytes, p)
}

/// One piece of a delivery from the bundle's encoding.
fn piece_of(bytes: &[u8], p: &Piece) -> Result<ReadPiece, NodeError> {
    // Checked on the way in; a bundle from dtn7-rs may lack the primary-block CRC.
    let limits = Limits { require_primary_crc: false, ..Limits::default() };
    let b = Bundle::decode_with(bytes, &limits).map_err(|e| NodeError::Corrupt(e.to_string()))?;
    let payload = b.payload();
    let start = usize::try_from(p.skip).unwrap_or(usize::MAX).min(payload.len());
    let end = start.saturating_add(usize::try_from(p.len).unwrap_or(usize::MAX)).min(payload.len());
    if p.len != u64::MAX && (end - start) as u64 != p.len {
        return Err(NodeError::Corrupt(format!("{} holds fewer payload bytes than its piece", p.id)));
    }
    let pr = b.primary();
    let creation_time = pr.creation.time;
    let age_ms = b.bundle_age_ms().or((creation_time.0 == 0).then_some(0));
    Ok(ReadPiece {
        source: pr.source.clone(),
        destination: pr.destination.clone(),
        creation_time,
        age_ms,
        data: payload[start..end].to_vec(),
    })
}

impl NodeHandle {
    /// This node's ID.
    pub fn node_id(&self) -> &Eid {
        &self.node_id
    }

    /// The node's time base (DTN time, or its own on a node without a clock).
    pub fn now(&self) -> DtnTime {
        self.clock.now()
    }

    /// Payloads longer than this are best submitted in parts of this size ([`Submission::part`]).
    pub fn part_size(&self) -> u64 {
        self.part_size
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Input) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// Submits a bundle; returns once it is durable, with its ID (one per fragment if it was split).
    pub async fn submit(&self, sub: Submission) -> Result<Vec<BundleId>, NodeError> {
        self.submit_now(sub)?.await
    }

    /// Submits a bundle at once and returns a future for its answer (submissions made one after another
    /// this way share group commits).
    pub fn submit_now(
        &self,
        sub: Submission,
    ) -> Result<impl Future<Output = Result<Vec<BundleId>, NodeError>> + use<>, NodeError> {
        let (tx, answer) = submit_reply();
        self.tx.send(Input::Submit(sub, tx)).map_err(|_| NodeError::Stopped)?;
        Ok(answer)
    }

    /// Submits many bundles to be stored in one write (all or none); returns a future per submission, in
    /// order, each answered once the batch is durable.
    pub fn submit_batch_now(
        &self,
        subs: Vec<Submission>,
    ) -> Result<Vec<impl Future<Output = Result<Vec<BundleId>, NodeError>> + use<>>, NodeError> {
        let mut batch = Vec::with_capacity(subs.len());
        let mut answers = Vec::with_capacity(subs.len());
        for sub in subs {
            let (tx, answer) = submit_reply();
            batch.push((sub, tx));
            answers.push(answer);
        }
        self.tx.send(Input::SubmitBatch(batch)).map_err(|_| NodeError::Stopped)?;
        Ok(answers)
    }

    /// Sends `payload` to `destination` with default options; returns the bundle's ID once durable.
    pub async fn send(&self, destination: Eid, payload: Vec<u8>) -> Result<BundleId, NodeError> {
        let ids = self.submit(Submission::new(0, destination, payload)).await?;
        ids.into_iter().next().map(whole).ok_or_else(|| NodeError::Rejected("nothing was stored".into()))
    }

    /// Registers an application endpoint: bundles for it are delivered here from now on (and across
    /// restarts, until unregistered).
    pub fn register(&self, endpoint: Eid) -> Result<(), NodeError> {
        self.tx.send(Input::Event(dtn_core::engine::Event::Register(endpoint))).map_err(|_| NodeError::Stopped)
    }

    /// Unregisters an endpoint; its bundles wait in the store.
    pub fn unregister(&self, endpoint: Eid) -> Result<(), NodeError> {
        self.tx.send(Input::Event(dtn_core::engine::Event::Unregister(endpoint))).map_err(|_| NodeError::Stopped)
    }

    /// The next bundle for `endpoint` (registered), waiting for one if `wait`. The caller must answer with
    /// [`taken`](Self::taken): until then no one else gets it. The payload is read from the store piece by
    /// piece as the caller asks for it, so a payload of any size takes memory for one piece.
    pub async fn next_delivery(&self, endpoint: Eid, wait: bool) -> Result<Option<Incoming>, NodeError> {
        Ok(self.next_deliveries(endpoint, wait, 1).await?.pop())
    }

    /// Up to `max` bundles waiting at `endpoint`, in delivery order (waiting for one if `wait`); each is the
    /// caller's until it calls [`NodeHandle::taken`]. Taking many at once is what lets an application keep
    /// up with small bundles: one request and one read of the store for all of them.
    pub async fn next_deliveries(&self, endpoint: Eid, wait: bool, max: usize) -> Result<Vec<Incoming>, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Input::NextDelivery { endpoint, wait, max, reply }).map_err(|_| NodeError::Stopped)?;
        // The caller may drop this future at any await (a WebSocket client that hangs up while it waits): what
        // the node handed out by then goes back, or it would stay handed out to nobody.
        let mut guard = GiveBackOnDrop { node: self.clone(), rx: Some(rx), ids: Vec::new() };
        let ids = match guard.rx.as_mut() {
            Some(rx) => rx.await.map_err(|_| NodeError::Stopped)?,
            None => return Err(NodeError::Stopped),
        };
        guard.rx = None;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        guard.ids = ids.iter().map(|h| h.id.clone()).collect();
        let store = self.store.clone();
        let now = self.clock.now();
        let opened = tokio::task::spawn_blocking(move || {
            ids.into_iter().map(|h| (h.id.clone(), Incoming::open(store.clone(), h, now))).collect::<Vec<_>>()
        })
        .await
        .map_err(|e| NodeError::Corrupt(format!("reading a delivery: {e}")))?;
        guard.ids.clear();
        let mut out = Vec::with_capacity(opened.len());
        let mut first_error = None;
        for (id, r) in opened {
            match r {
                Ok(d) => out.push(d),
                Err(e) => {
                    self.taken(id, false);
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    /// The application has the bundle (`ok`, it is never delivered again) or gives it back.
    pub fn taken(&self, id: BundleId, ok: bool) {
        let _ = self.tx.send(Input::Taken { id, ok });
    }

    /// Marks `endpoint` as read by a streaming application until the guard is dropped: bundles that arrive
    /// for it whole may then be delivered directly, without being stored first (see
    /// [`NodeConfig::direct_delivery`]). A reader that waits in [`next_deliveries`](Self::next_deliveries)
    /// counts as reading anyway; the guard also covers the time it spends on what it was given.
    pub fn reading(&self, endpoint: Eid) -> ReadingGuard {
        let _ = self.tx.send(Input::Reader { endpoint: endpoint.clone(), open: true });
        ReadingGuard { tx: self.tx.clone(), endpoint }
    }

    /// Gives back bundles taken with [`next_deliveries`](Self::next_deliveries), listed in the order they
    /// were received: they are delivered again in that order, before bundles that were never handed out.
    pub fn give_back(&self, ids: Vec<BundleId>) {
        if !ids.is_empty() {
            let _ = self.tx.send(Input::GiveBack(ids));
        }
    }

    /// Receives the next bundle for `endpoint`, whole, and acknowledges it.
    pub async fn recv(&self, endpoint: Eid) -> Result<Delivery, NodeError> {
        loop {
            if let Some(d) = self.next_delivery(endpoint.clone(), true).await? {
                let id = d.id.clone();
                let got = tokio::task::spawn_blocking(move || d.into_delivery())
                    .await
                    .map_err(|e| NodeError::Corrupt(format!("reading a delivery: {e}")))?;
                self.taken(id, got.is_ok());
                return got;
            }
        }
    }

    /// The stored bytes of a bundle.
    pub fn read(&self, id: &BundleId) -> Result<Vec<u8>, NodeError> {
        let r = self.store.read_bundle(id)?;
        dtn_store_lmdb::read_to_vec(r).map_err(|source| NodeError::Io { context: format!("reading {id}"), source })
    }

    /// Stored bundles, in arrival order per source.
    pub fn list(&self, limit: usize) -> Result<Vec<BundleMeta>, NodeError> {
        Ok(self.store.select(&self.store.summary(), limit)?)
    }

    /// One stored bundle's metadata.
    pub fn meta(&self, id: &BundleId) -> Result<Option<BundleMeta>, NodeError> {
        Ok(self.store.meta(id)?)
    }

    /// What the store holds, as a summary.
    pub fn summary(&self) -> Summary {
        self.store.summary()
    }

    /// Deletes a stored bundle; false if it is not stored.
    pub async fn delete(&self, id: BundleId) -> Result<bool, NodeError> {
        self.ask(|tx| Input::Delete(id, tx)).await
    }

    /// Peers in contact.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NodeError> {
        self.ask(Input::Peers).await
    }

    /// Counters.
    pub async fn stats(&self) -> Result<Stats, NodeError> {
        self.ask(Input::Stats).await
    }

    /// Cuts every session to `peer` and refuses new ones (`up = false`), or lets them come back.
    pub fn set_link(&self, peer: Eid, up: bool) -> Result<(), NodeError> {
        self.tx.send(Input::Link { peer: peer.node_id(), up }).map_err(|_| NodeError::Stopped)
    }

    pub(crate) fn input(&self, i: Input) -> Result<(), NodeError> {
        self.tx.send(i).map_err(|_| NodeError::Stopped)
    }
}

/// The core's end of a submission's answer, and the caller's.
fn submit_reply() -> (crate::core::SubmitReply, impl Future<Output = Result<Vec<BundleId>, NodeError>>) {
    let (tx, rx) = oneshot::channel();
    (tx, async move { rx.await.map_err(|_| NodeError::Stopped)?.map_err(NodeError::Rejected) })
}

/// The whole bundle's ID for a fragment's.
fn whole(id: BundleId) -> BundleId {
    BundleId { fragment: None, ..id }
}

/// An application reading from an endpoint; see [`NodeHandle::reading`].
pub struct ReadingGuard {
    tx: mpsc::UnboundedSender<Input>,
    endpoint: Eid,
}

impl Drop for ReadingGuard {
    fn drop(&mut self) {
        let _ = self.tx.send(Input::Reader { endpoint: self.endpoint.clone(), open: false });
    }
}

/// Gives back what a [`NodeHandle::next_deliveries`] call was handed if the call is dropped before it
/// returns it.
struct GiveBackOnDrop {
    node: NodeHandle,
    /// The node's answer, while it is awaited.
    rx: Option<oneshot::Receiver<crate::core::Handed>>,
    /// Bundles received and not yet returned to the caller.
    ids: Vec<BundleId>,
}

impl Drop for GiveBackOnDrop {
    fn drop(&mut self) {
        let mut ids = std::mem::take(&mut self.ids);
        if let Some(mut rx) = self.rx.take()
            && let Ok(answer) = rx.try_recv()
        {
            ids.extend(answer.into_iter().map(|h| h.id));
        }
        self.node.give_back(ids);
    }
}
