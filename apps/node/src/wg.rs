//! The WireGuard link: TCPCL sessions through dtn-wg tunnels, accepted from and dialled to the configured
//! peers, each handed to the same session code as TCP sessions (`links::run_session_on`) with the link
//! class of its peer's configuration.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dtn_core::routing::LinkClass;
use dtn_tcpcl::SessionConfig;
use dtn_wg::tcpcl::TCPCL_PORT;
use dtn_wg::{Endpoint, EndpointConfig, Identity, Listener, PeerConfig, PeerKey};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::budget::LinkBudget;
use crate::links::{Blocked, run_session_on, session_config};
use crate::{NodeConfig, NodeError, NodeHandle, WgConfig};

pub(crate) struct WgLinks {
    pub endpoint: Arc<Endpoint>,
    pub identity: PeerKey,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Peers with a session up through the tunnel, so that a dialler does not open a second one.
type Active = Arc<Mutex<HashSet<PeerKey>>>;

/// Marks a peer as in session for as long as it lives.
struct InSession {
    active: Active,
    peer: PeerKey,
}

impl InSession {
    fn new(active: &Active, peer: PeerKey) -> InSession {
        active.lock().unwrap_or_else(|e| e.into_inner()).insert(peer);
        InSession { active: active.clone(), peer }
    }
}

impl Drop for InSession {
    fn drop(&mut self) {
        self.active.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.peer);
    }
}

fn is_active(active: &Active, peer: &PeerKey) -> bool {
    active.lock().unwrap_or_else(|e| e.into_inner()).contains(peer)
}

#[derive(Clone)]
struct Ctx {
    scfg: SessionConfig,
    node: NodeHandle,
    blocked: Blocked,
    max: u64,
    active: Active,
    classes: Arc<HashMap<PeerKey, LinkClass>>,
    /// Daily byte budgets by peer (peers without one are absent).
    budgets: Arc<HashMap<PeerKey, u64>>,
    /// Class and budget of peers that are not configured: relays we chose, and on a relay the strangers
    /// it serves. The link's own defaults, as for a configured peer that sets none.
    default_class: LinkClass,
    default_budget: Option<u64>,
}

impl Ctx {
    fn class(&self, peer: &PeerKey) -> LinkClass {
        self.classes.get(peer).copied().unwrap_or(self.default_class)
    }

    fn budget(&self, peer: &PeerKey) -> Option<LinkBudget> {
        let per_day = match self.classes.contains_key(peer) {
            true => *self.budgets.get(peer)?,
            false => self.default_budget?,
        };
        Some(LinkBudget { name: format!("wg/{peer}"), per_day })
    }

    /// Runs a negotiated session with `peer` as one contact, with its link class and budget, marking the
    /// peer in session meanwhile so that no second one is dialled.
    async fn serve(self, h: dtn_tcpcl::SessionHandle, ev: dtn_tcpcl::SessionEvents, peer: PeerKey) {
        let _mark = InSession::new(&self.active, peer);
        let (class, budget) = (self.class(&peer), self.budget(&peer));
        run_session_on(h, ev, self.node, self.blocked, self.max, Some(class), budget).await;
    }
}

pub(crate) async fn start(
    cfg: &NodeConfig,
    wg: &WgConfig,
    node: NodeHandle,
    blocked: Blocked,
) -> Result<WgLinks, NodeError> {
    if (wg.relay || wg.via_relay) && (!wg.rendezvous_enabled() || wg.network.is_empty()) {
        let what = if wg.relay { "a relay" } else { "reaching peers through relays" };
        return Err(NodeError::Rejected(format!(
            "{what} needs rendezvous: a network name and DHT bootstrap nodes (relays are found in the DHT)"
        )));
    }
    let identity = Identity::load_or_generate(&wg.key_path(&cfg.store_dir))?;
    let me = identity.public();
    let mut ecfg = EndpointConfig::new(wg.listen);
    if wg.relay {
        ecfg.accept_unknown_peers = wg.max_relay_peers;
    }
    let mut classes = HashMap::new();
    let mut budgets = HashMap::new();
    for p in &wg.peers {
        if p.key == me {
            return Err(NodeError::Rejected(format!("WireGuard peer {} is this node's own key", p.key)));
        }
        ecfg.peers.push(PeerConfig {
            key: p.key,
            endpoint: p.endpoint,
            persistent_keepalive: p.persistent_keepalive.or(wg.persistent_keepalive),
        });
        classes.insert(p.key, p.class.unwrap_or(wg.class));
        if let Some(b) = p.budget_per_day.or(wg.budget_per_day) {
            budgets.insert(p.key, b);
        }
    }
    let endpoint = Arc::new(Endpoint::bind(&identity, ecfg).await?);
    let listener = endpoint.listen(TCPCL_PORT)?;
    let ctx = Ctx {
        scfg: session_config(cfg),
        node,
        blocked,
        max: cfg.max_bundle,
        active: Arc::new(Mutex::new(HashSet::new())),
        classes: Arc::new(classes),
        budgets: Arc::new(budgets),
        default_class: wg.class,
        default_budget: wg.budget_per_day,
    };
    let mut tasks = vec![tokio::spawn(accept_loop(listener, ctx.clone()))];
    for p in &wg.peers {
        tasks.push(tokio::spawn(dial_loop(endpoint.clone(), me, p.key, ctx.clone(), false)));
    }
    if wg.rendezvous_enabled() {
        let (relays_tx, relays) = mpsc::unbounded_channel();
        let found =
            crate::rendezvous::start(endpoint.clone(), &identity, wg, &cfg.store_dir, cfg.has_clock, relays_tx)?;
        tasks.extend(found);
        tasks.push(tokio::spawn(keep_relays(endpoint.clone(), me, relays, ctx.clone())));
    }
    tracing::info!(identity = %me, addr = %endpoint.local_addr(), peers = wg.peers.len(), "WireGuard link up");
    Ok(WgLinks { endpoint, identity: me, tasks })
}

async fn accept_loop(listener: Listener, ctx: Ctx) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "WireGuard accept failed; the tunnel has stopped");
                return;
            }
        };
        let ctx = ctx.clone();
        // Negotiation runs apart from the loop so that one slow peer does not hold up the others.
        tokio::spawn(async move {
            let (peer, local, remote) = (stream.peer(), stream.local_addr(), stream.peer_addr());
            match dtn_tcpcl::accept_stream(stream, local, remote, ctx.scfg.clone()).await {
                Ok((h, ev)) => {
                    tracing::info!(%peer, node = h.peer_node_id(), "WireGuard session accepted");
                    ctx.serve(h, ev, peer).await;
                }
                Err(e) => tracing::info!(%peer, error = %e, "TCPCL session through the tunnel refused"),
            }
        });
    }
}

/// Keeps a session with each relay rendezvous chose (their tunnels are up), as with a configured peer.
/// The sessions stop with this task (the set aborts them when dropped).
async fn keep_relays(ep: Arc<Endpoint>, me: PeerKey, mut relays: mpsc::UnboundedReceiver<PeerKey>, ctx: Ctx) {
    let mut sessions = JoinSet::new();
    while let Some(relay) = relays.recv().await {
        tracing::info!(%relay, "keeping a session with a relay");
        sessions.spawn(dial_loop(ep.clone(), me, relay, ctx.clone(), true));
    }
}

/// Keeps a session with a peer, reconnecting with backoff (1 s doubling to 30 s) as for static TCP peers.
/// Both ends of a tunnel know each other, so both would dial: the one with the smaller key dials at once,
/// the other only after a grace period if no session came up meanwhile. A relay never dials the nodes it
/// serves, so they dial it at once (`first`).
async fn dial_loop(ep: Arc<Endpoint>, me: PeerKey, peer: PeerKey, ctx: Ctx, first: bool) {
    let grace = if first || me.as_bytes() < peer.as_bytes() { Duration::ZERO } else { Duration::from_secs(3) };
    let mut backoff = Duration::from_secs(1);
    loop {
        // Until the peer's address is known (configured, heard from, or found by rendezvous) a connection
        // attempt could only time out.
        let known = ep.peer_status(peer).await.is_some_and(|s| s.endpoint.is_some());
        if !known || is_active(&ctx.active, &peer) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        tokio::time::sleep(grace).await;
        if is_active(&ctx.active, &peer) {
            continue;
        }
        match dtn_wg::tcpcl::connect(&ep, peer, TCPCL_PORT, ctx.scfg.clone()).await {
            Ok((h, ev)) => {
                backoff = Duration::from_secs(1);
                tracing::info!(%peer, node = h.peer_node_id(), "WireGuard session dialled");
                ctx.clone().serve(h, ev, peer).await;
            }
            Err(e) => tracing::debug!(%peer, error = %e, "WireGuard connect failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
