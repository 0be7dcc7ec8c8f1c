//! A set of nodes on loopback, and the links between them.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dtn_core::bpv7::Eid;
use dtn_core::routing::RoutingConfig;
use dtn_node::{Node, NodeConfig, NodeHandle};

/// One running node of the demo.
pub struct DemoNode {
    /// Its name (`s1`, `van`, …).
    pub name: String,
    /// Its node ID.
    pub eid: Eid,
    /// The running node.
    pub node: Node,
    /// A handle to it.
    pub handle: NodeHandle,
}

/// Where a demo keeps its stores and archive: `keep` if given, else a temporary directory that is removed
/// when the returned guard is dropped.
pub fn work_dir(keep: Option<&Path>) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    match keep {
        Some(d) => Ok((d.to_path_buf(), None)),
        None => {
            let tmp = tempfile::tempdir().context("creating a temporary directory")?;
            Ok((tmp.path().to_path_buf(), Some(tmp)))
        }
    }
}

/// How a demo tells what happens: `say(out, start, msg)` writes `msg` stamped with the time since `start`,
/// unless `quiet`.
pub fn progress(quiet: bool) -> impl Fn(&mut (dyn Write + Send), Instant, String) {
    move |out: &mut (dyn Write + Send), start: Instant, msg: String| {
        if !quiet {
            let _ = writeln!(out, "[{:>6.1}s] {msg}", start.elapsed().as_secs_f64());
        }
    }
}

/// Free loopback ports, one per node, so that every node's peers can be configured before any starts.
pub fn free_ports(n: usize) -> Result<Vec<SocketAddr>> {
    // Held together until all are known, so no two are the same.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()
        .context("finding free ports")?;
    listeners.iter().map(|l| l.local_addr().context("reading a port")).collect()
}

/// Starts a node called `name` listening on `addr`, dialling `peers`, storing under `dir/name`.
pub async fn start(
    dir: &Path,
    name: &str,
    addr: SocketAddr,
    peers: Vec<SocketAddr>,
    routing: RoutingConfig,
    quota: u64,
    seed: u64,
) -> Result<DemoNode> {
    start_with(config(dir, name, addr, peers, routing, quota, seed)?).await
}

/// The configuration [`start`] uses, for a node that needs more (its application API, say).
pub fn config(
    dir: &Path,
    name: &str,
    addr: SocketAddr,
    peers: Vec<SocketAddr>,
    routing: RoutingConfig,
    quota: u64,
    seed: u64,
) -> Result<NodeConfig> {
    let eid: Eid = format!("dtn://{name}/").parse().with_context(|| format!("node name {name}"))?;
    let mut cfg = NodeConfig::new(eid, dir.join(name));
    cfg.tcpcl = Some(addr);
    cfg.peers = peers;
    cfg.discovery = false;
    cfg.api = None;
    cfg.routing = routing;
    cfg.quota = quota;
    cfg.seed = seed;
    cfg.default_lifetime = Duration::from_secs(30 * 24 * 3600);
    Ok(cfg)
}

/// Starts a node from its configuration; it is named after its node ID's host part.
pub async fn start_with(cfg: NodeConfig) -> Result<DemoNode> {
    let eid = cfg.node_id.clone();
    let name = eid.to_string().trim_start_matches("dtn://").trim_end_matches('/').to_string();
    let node = Node::start(cfg).await.with_context(|| format!("starting node {name}"))?;
    let handle = node.handle();
    Ok(DemoNode { name, eid, node, handle })
}

/// Brings the link between two nodes up or down, on both sides (either may be dialling).
pub fn set_link(a: &DemoNode, b: &DemoNode, up: bool) -> Result<()> {
    a.handle.set_link(b.eid.clone(), up).context("node stopped")?;
    b.handle.set_link(a.eid.clone(), up).context("node stopped")?;
    Ok(())
}

/// Bundles a node holds now.
pub async fn held(n: &DemoNode) -> u64 {
    n.handle.stats().await.map(|s| s.store.bundles).unwrap_or(0)
}

/// `name:bundles` for each node, what each holds now.
pub async fn held_by(nodes: &[DemoNode]) -> String {
    let mut list = Vec::with_capacity(nodes.len());
    for n in nodes {
        list.push(format!("{}:{}", n.name, held(n).await));
    }
    list.join(" ")
}

/// Shuts the nodes down, one after another.
pub async fn shutdown(nodes: impl IntoIterator<Item = DemoNode>) {
    for n in nodes {
        n.node.shutdown().await;
    }
}

/// When `links` links come up and go down until `end`: each up for `window` every `window + gap`, link `i`
/// offset by `i / links` of that cycle so the windows are staggered. Sorted by time: `(at, link, up)`.
pub fn staggered_windows(links: usize, window: Duration, gap: Duration, end: Duration) -> Vec<(Duration, usize, bool)> {
    let cycle = window + gap;
    let mut schedule = Vec::new();
    for i in 0..links {
        let mut t = cycle.mul_f64(i as f64 / links as f64);
        while t < end {
            schedule.push((t, i, true));
            schedule.push(((t + window).min(end), i, false));
            t += cycle;
        }
    }
    schedule.sort_by_key(|(t, i, up)| (*t, *i, *up));
    schedule
}

/// Now, Unix milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
