//! `dtnd`: the node daemon. Settings come from an optional TOML file (`--config`), then flags, which win.
//! See docs/dtnd.md.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use dtn_core::bpv7::Eid;
use dtn_core::routing::LinkClass;
use dtn_core::routing::{ContactPlan, ProphetParams, RoutingConfig, StaticRoute};
use dtn_node::{Identity, Node, NodeConfig, PeerKey, WgConfig, WgPeer};
use serde::Deserialize;

/// The DTN bundle router daemon.
#[derive(Parser, Debug, Default)]
#[command(version, about)]
struct Args {
    /// TOML configuration file (flags override it).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Node ID: dtn://name/ or ipn:N.0 (default: dtn://<hostname>/).
    #[arg(long)]
    node_id: Option<String>,
    /// Store directory (default: $XDG_DATA_HOME/dtn/store, else ~/.local/share/dtn/store).
    #[arg(long)]
    store: Option<PathBuf>,
    /// TCPCLv4 listen address, or "off" (default 0.0.0.0:4556).
    #[arg(long)]
    tcpcl: Option<String>,
    /// Static peer to keep a session with: tcp://ADDR:PORT (repeatable).
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Application API address on loopback, or "off" (default 127.0.0.1:3000).
    #[arg(long)]
    api: Option<String>,
    /// Routing agent: epidemic, spray, prophet, static, contact-plan.
    #[arg(long)]
    routing: Option<String>,
    /// Spray-and-wait copies per bundle (L).
    #[arg(long)]
    spray_copies: Option<u32>,
    /// Static route PATTERN=NEXT_HOP, e.g. "dtn://collector/*=dtn://van/" (repeatable; first match wins).
    #[arg(long = "route")]
    routes: Vec<String>,
    /// Contact-plan file for --routing contact-plan (docs/routing.md has the format).
    #[arg(long)]
    contact_plan: Option<PathBuf>,
    /// Store quota, e.g. 500M or 20G.
    #[arg(long)]
    quota: Option<String>,
    /// Turn LAN discovery off.
    #[arg(long)]
    no_discovery: bool,
    /// Do not take custody of bundles created here.
    #[arg(long)]
    no_custody: bool,
    /// The machine has no real-time clock: create bundles with time 0 and a bundle-age block, and keep the
    /// node's own time base in the store directory.
    #[arg(long)]
    no_clock: bool,
    /// TCPCL keepalive interval in seconds (0 disables): a session silent for twice this is taken for lost.
    #[arg(long)]
    keepalive: Option<u16>,
    /// Direct delivery: how long (ms) an application reading an endpoint may take to acknowledge a bundle
    /// handed to it as it arrived, before the node stores it after all (default 2000; 0 stores every
    /// bundle before delivering it).
    #[arg(long)]
    direct_wait_ms: Option<u64>,
    /// WireGuard link: UDP address of the tunnel's socket (e.g. 0.0.0.0:51820), or "off" (default off).
    #[arg(long)]
    wg: Option<String>,
    /// WireGuard peer: its identity key (from `dtnd --print-identity` on that node), with its UDP endpoint
    /// if known: KEY[@HOST:PORT] (repeatable).
    #[arg(long = "wg-peer")]
    wg_peers: Vec<String>,
    /// Identity key file (default: <store>/identity; created on first start, mode 0600).
    #[arg(long)]
    wg_key: Option<PathBuf>,
    /// Bytes a day the node may send to each WireGuard peer, e.g. 5M (default: no limit). Counts bundle
    /// bytes; the carrier sees about 7 % more (WireGuard, UDP and IP headers).
    #[arg(long)]
    wg_budget: Option<String>,
    /// Rendezvous: the DTN network's name, shared by its nodes (separates its records in the DHT).
    #[arg(long)]
    network: Option<String>,
    /// Rendezvous: a Mainline DHT node to bootstrap from, HOST:PORT (repeatable). Without one, rendezvous
    /// is off and the DHT is never contacted.
    #[arg(long = "dht-bootstrap")]
    dht_bootstrap: Vec<String>,
    /// Rendezvous: answer STUN on the tunnel's socket and announce it (for a node with a public address).
    #[arg(long)]
    stun_responder: bool,
    /// Rendezvous: be a relay for the network (a node with a public address): answer STUN, announce the
    /// tunnel as a relay and carry bundles for nodes that cannot reach each other directly.
    #[arg(long)]
    relay: bool,
    /// Rendezvous: reach peers through relays only, without hole punching (a node behind carrier-grade
    /// NAT). Without it a node still falls back to relays by itself when punching cannot work.
    #[arg(long)]
    via_relay: bool,
    /// Print this node's identity public key (creating the key if there is none yet) and exit.
    #[arg(long)]
    print_identity: bool,
}

/// The configuration file: the same settings as the flags.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    node_id: Option<String>,
    store: Option<PathBuf>,
    tcpcl: Option<String>,
    #[serde(default)]
    peers: Vec<String>,
    api: Option<String>,
    routing: Option<String>,
    spray_copies: Option<u32>,
    #[serde(default)]
    routes: Vec<String>,
    contact_plan: Option<PathBuf>,
    quota: Option<String>,
    discovery: Option<bool>,
    custody: Option<bool>,
    clock: Option<bool>,
    keepalive: Option<u16>,
    direct_wait_ms: Option<u64>,
    wg: Option<WgFile>,
}

/// `[wg]`: the WireGuard link.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WgFile {
    listen: Option<String>,
    key: Option<PathBuf>,
    /// Seconds; 0 turns keepalives off.
    keepalive: Option<u16>,
    class: Option<String>,
    #[serde(default)]
    peers: Vec<WgPeerFile>,
    /// Bytes a day to each peer, e.g. "5M".
    budget: Option<String>,
    network: Option<String>,
    #[serde(default)]
    dht_bootstrap: Vec<String>,
    stun_responder: Option<bool>,
    relay: Option<bool>,
    via_relay: Option<bool>,
    max_relay_peers: Option<usize>,
    rendezvous: Option<RendezvousFile>,
}

/// `[wg.rendezvous]`: rendezvous timers in seconds. The defaults suit the Internet; a closed network or a
/// test may want peers to find each other within seconds.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RendezvousFile {
    discovery_every: Option<f64>,
    resolve_every: Option<f64>,
    republish_every: Option<f64>,
    announce_every: Option<f64>,
    dht_request_timeout: Option<f64>,
}

/// `[[wg.peers]]`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WgPeerFile {
    key: String,
    endpoint: Option<String>,
    keepalive: Option<u16>,
    class: Option<String>,
    budget: Option<String>,
}

// Small bundles mean many short-lived allocations on several threads; glibc's allocator spent a tenth of
// the daemon's time on them under load, mimalloc a fraction of that.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    no_huge_pages();
    let args = Args::parse();
    init_logs();
    let print_identity = args.print_identity;
    let cfg = configure(args)?;
    if print_identity {
        let path = identity_path(&cfg);
        let id = Identity::load_or_generate(&path).with_context(|| format!("identity {}", path.display()))?;
        println!("{}", id.public());
        return Ok(());
    }
    let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
    rt.block_on(run(cfg))
}

/// Turns transparent huge pages off for this process. mimalloc asks for them on its arenas and returns
/// freed pages to the system after a few milliseconds; the next allocation there faults in a whole 2 MiB
/// page, which the kernel zeroes first. With 64 KB bundles streaming through, that zeroing was a sixth
/// of the daemon's CPU time (`perf record` on `bench/transfer.sh`), and 4 KiB pages cost nothing of the
/// kind. Where the call is refused (old kernels, seccomp) nothing changes but speed.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

async fn run(cfg: NodeConfig) -> Result<()> {
    let node = Node::start(cfg).await.context("starting the node")?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Merges the file and the flags into a node configuration.
fn configure(args: Args) -> Result<NodeConfig> {
    let file = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str::<FileConfig>(&text).with_context(|| format!("in {}", p.display()))?
        }
        None => FileConfig::default(),
    };
    configure_with(args, file)
}

/// Merges the file's settings and the flags.
fn configure_with(args: Args, file: FileConfig) -> Result<NodeConfig> {
    let node_id = match args.node_id.or(file.node_id) {
        Some(s) => s.parse::<Eid>().map_err(|e| anyhow::anyhow!("bad node ID {s:?}: {e}"))?,
        None => default_node_id()?,
    };
    if node_id.node_id() != node_id || node_id.is_null() {
        bail!("the node ID must be a node ID (dtn://name/ or ipn:N.0), not {node_id}");
    }
    let store = match args.store.or(file.store) {
        Some(p) => p,
        None => default_store()?,
    };
    let mut cfg = NodeConfig::new(node_id.clone(), store);
    cfg.tcpcl = addr_or_off(args.tcpcl.or(file.tcpcl), "--tcpcl", cfg.tcpcl)?;
    cfg.api = addr_or_off(args.api.or(file.api), "--api", cfg.api)?;
    let peers = if args.peers.is_empty() { file.peers } else { args.peers };
    cfg.peers = peers.iter().map(|p| parse_peer(p)).collect::<Result<_>>()?;
    if let Some(q) = args.quota.or(file.quota) {
        cfg.quota = parse_size(&q)?;
    }
    cfg.discovery = !args.no_discovery && file.discovery.unwrap_or(true);
    cfg.custody = !args.no_custody && file.custody.unwrap_or(true);
    cfg.has_clock = !args.no_clock && file.clock.unwrap_or(true);
    if let Some(k) = args.keepalive.or(file.keepalive) {
        cfg.keepalive = k;
    }
    if let Some(ms) = args.direct_wait_ms.or(file.direct_wait_ms) {
        cfg.direct_delivery = (ms > 0).then(|| std::time::Duration::from_millis(ms));
    }
    let routes = if args.routes.is_empty() { file.routes } else { args.routes };
    let copies = args.spray_copies.or(file.spray_copies);
    let plan = args.contact_plan.or(file.contact_plan);
    cfg.routing = routing(args.routing.or(file.routing).as_deref(), copies, &routes, plan.as_deref())?;
    let mut fwg = file.wg.unwrap_or_default();
    let rdv = RendezvousArgs {
        network: args.network.or(fwg.network.take()),
        bootstrap: if args.dht_bootstrap.is_empty() {
            std::mem::take(&mut fwg.dht_bootstrap)
        } else {
            args.dht_bootstrap
        },
        responder: args.stun_responder || fwg.stun_responder.unwrap_or(false),
        timing: fwg.rendezvous.take(),
        relay: args.relay || fwg.relay.unwrap_or(false),
        via_relay: args.via_relay || fwg.via_relay.unwrap_or(false),
        max_relay_peers: fwg.max_relay_peers,
    };
    cfg.wg = wg_config(args.wg, args.wg_peers, args.wg_key, args.wg_budget, fwg, args.print_identity)?;
    rendezvous_config(cfg.wg.as_mut(), rdv)?;
    Ok(cfg)
}

/// The rendezvous settings, from flags or `[wg]`.
struct RendezvousArgs {
    network: Option<String>,
    bootstrap: Vec<String>,
    responder: bool,
    timing: Option<RendezvousFile>,
    relay: bool,
    via_relay: bool,
    max_relay_peers: Option<usize>,
}

/// Adds rendezvous to the WireGuard link. Settings that would silently do nothing are refused.
fn rendezvous_config(wg: Option<&mut WgConfig>, rdv: RendezvousArgs) -> Result<()> {
    let Some(wg) = wg else {
        if rdv.network.is_some()
            || !rdv.bootstrap.is_empty()
            || rdv.responder
            || rdv.relay
            || rdv.via_relay
            || rdv.timing.is_some()
        {
            bail!("rendezvous is configured but the WireGuard link is off: add --wg ADDR:PORT");
        }
        return Ok(());
    };
    for b in &rdv.bootstrap {
        wg.dht_bootstrap.push(resolve(b).with_context(|| format!("--dht-bootstrap {b:?}"))?);
    }
    if wg.dht_bootstrap.is_empty() {
        if rdv.responder {
            bail!("--stun-responder needs --dht-bootstrap (it is announced in the DHT)");
        }
        if rdv.timing.is_some() {
            bail!("[wg.rendezvous] is set but rendezvous is off: add --dht-bootstrap HOST:PORT");
        }
        if rdv.relay || rdv.via_relay {
            bail!("--relay and --via-relay need --dht-bootstrap and --network (relays are found in the DHT)");
        }
        return Ok(());
    }
    if let Some(t) = &rdv.timing {
        let r = &mut wg.rendezvous;
        let secs = |v: Option<f64>, key: &str, default: Duration| -> Result<Duration> {
            let Some(v) = v else { return Ok(default) };
            match Duration::try_from_secs_f64(v) {
                Ok(d) if !d.is_zero() => Ok(d),
                _ => bail!("[wg.rendezvous] {key} = {v}: expected a positive number of seconds"),
            }
        };
        r.discovery_every = secs(t.discovery_every, "discovery-every", r.discovery_every)?;
        r.resolve_every = secs(t.resolve_every, "resolve-every", r.resolve_every)?;
        r.republish_every = secs(t.republish_every, "republish-every", r.republish_every)?;
        r.announce_every = secs(t.announce_every, "announce-every", r.announce_every)?;
        if t.dht_request_timeout.is_some() {
            r.dht_request_timeout = Some(secs(t.dht_request_timeout, "dht-request-timeout", Duration::ZERO)?);
        }
    }
    let Some(network) = rdv.network else {
        bail!("--dht-bootstrap needs --network NAME (records and STUN servers are found under it)");
    };
    wg.network = network;
    wg.stun_responder = rdv.responder;
    wg.relay = rdv.relay;
    wg.via_relay = rdv.via_relay;
    if let Some(n) = rdv.max_relay_peers {
        wg.max_relay_peers = n;
    }
    // A DHT reached only at loopback or private addresses is a closed network, whose STUN servers have
    // such addresses too; on the Internet an announcement naming one is refused.
    wg.rendezvous.allow_private = wg.dht_bootstrap.iter().all(|a| match a.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        std::net::IpAddr::V6(ip) => ip.is_loopback() || ip.is_unique_local() || ip.is_unicast_link_local(),
    });
    Ok(())
}

/// Where the identity key is: the WireGuard link's key file, else the default in the store.
fn identity_path(cfg: &NodeConfig) -> PathBuf {
    cfg.wg.as_ref().map(|w| w.key_path(&cfg.store_dir)).unwrap_or_else(|| cfg.store_dir.join("identity"))
}

/// The WireGuard link from its flags and `[wg]`. With `print_identity` the link is configured even when off
/// (it is never started then), so that the key file setting is found.
fn wg_config(
    listen: Option<String>,
    peers: Vec<String>,
    key: Option<PathBuf>,
    budget: Option<String>,
    file: WgFile,
    print_identity: bool,
) -> Result<Option<WgConfig>> {
    let off = if print_identity { Some(SocketAddr::from(([127, 0, 0, 1], 0))) } else { None };
    let listen = addr_or_off(listen.or(file.listen), "--wg", None)?.or(off);
    let key_file = key.or(file.key);
    let Some(listen) = listen else {
        if !peers.is_empty() || !file.peers.is_empty() {
            bail!("WireGuard peers are configured but the link is off: add --wg ADDR:PORT");
        }
        return Ok(None);
    };
    let mut wg = WgConfig::new(listen);
    wg.key_file = key_file;
    if let Some(k) = file.keepalive {
        wg.persistent_keepalive = (k > 0).then_some(k);
    }
    if let Some(c) = &file.class {
        wg.class = parse_class(c)?;
    }
    if let Some(b) = budget.or(file.budget) {
        wg.budget_per_day = Some(parse_size(&b).context("--wg-budget")?);
    }
    if peers.is_empty() {
        for p in &file.peers {
            let mut peer = WgPeer::new(parse_key(&p.key)?, p.endpoint.as_deref().map(resolve).transpose()?);
            peer.persistent_keepalive = p.keepalive.filter(|&k| k > 0);
            peer.class = p.class.as_deref().map(parse_class).transpose()?;
            peer.budget_per_day = p.budget.as_deref().map(parse_size).transpose().context("a peer's budget")?;
            wg.peers.push(peer);
        }
    } else {
        for p in &peers {
            let (key, endpoint) = match p.split_once('@') {
                Some((k, e)) => (k, Some(resolve(e).with_context(|| format!("--wg-peer {p:?}"))?)),
                None => (p.as_str(), None),
            };
            wg.peers.push(WgPeer::new(parse_key(key).with_context(|| format!("--wg-peer {p:?}"))?, endpoint));
        }
    }
    Ok(Some(wg))
}

fn parse_key(s: &str) -> Result<PeerKey> {
    s.trim().parse().map_err(|e| anyhow::anyhow!("peer key {s:?}: {e}"))
}

fn parse_class(s: &str) -> Result<LinkClass> {
    LinkClass::from_name(s).ok_or_else(|| anyhow::anyhow!("link class {s:?}: expected metered, wired, wifi or unknown"))
}

fn resolve(s: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .with_context(|| format!("{s:?}: expected HOST:PORT"))?
        .next()
        .with_context(|| format!("{s:?}: no address"))
}

fn routing(name: Option<&str>, copies: Option<u32>, routes: &[String], plan: Option<&Path>) -> Result<RoutingConfig> {
    Ok(match name.unwrap_or("epidemic") {
        "epidemic" => RoutingConfig::Epidemic,
        "spray" | "spray-and-wait" => RoutingConfig::SprayAndWait { copies: copies.unwrap_or(8).max(1) },
        "prophet" => RoutingConfig::Prophet(ProphetParams::default()),
        "static" => {
            if routes.is_empty() {
                bail!("--routing static needs at least one --route PATTERN=NEXT_HOP");
            }
            RoutingConfig::Static(routes.iter().map(|r| parse_route(r)).collect::<Result<_>>()?)
        }
        "contact-plan" => {
            let Some(path) = plan else { bail!("--routing contact-plan needs --contact-plan FILE") };
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let plan = ContactPlan::parse(&text, dtn_node::now()).with_context(|| format!("in {}", path.display()))?;
            RoutingConfig::ContactPlan(plan)
        }
        other => bail!("unknown routing agent {other:?} (epidemic, spray, prophet, static, contact-plan)"),
    })
}

fn parse_route(s: &str) -> Result<StaticRoute> {
    let Some((pattern, hop)) = s.split_once('=') else { bail!("route {s:?}: expected PATTERN=NEXT_HOP") };
    let pattern = pattern.trim().parse().map_err(|e| anyhow::anyhow!("route {s:?}: {e}"))?;
    let via: Eid = hop.trim().parse().map_err(|e| anyhow::anyhow!("route {s:?}: bad next hop: {e}"))?;
    Ok(StaticRoute { pattern, via })
}

fn addr_or_off(v: Option<String>, flag: &str, default: Option<SocketAddr>) -> Result<Option<SocketAddr>> {
    match v.as_deref() {
        None => Ok(default),
        Some("off") => Ok(None),
        Some(s) => s.parse().map(Some).with_context(|| format!("{flag} {s:?}: expected ADDR:PORT or off")),
    }
}

fn parse_peer(s: &str) -> Result<SocketAddr> {
    let addr = s.strip_prefix("tcp://").unwrap_or(s).trim_end_matches('/');
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .with_context(|| format!("peer {s:?}: expected tcp://ADDR:PORT"))?
        .next()
        .with_context(|| format!("peer {s:?}: no address"))
}

/// "500M", "20G", "1048576" → bytes.
fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let (digits, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => bail!("size {s:?}: unknown unit {c:?} (K, M, G, T)"),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = digits.trim().parse().with_context(|| format!("size {s:?}: not a number"))?;
    n.checked_mul(mult).with_context(|| format!("size {s:?} is too large"))
}

fn default_node_id() -> Result<Eid> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_else(|_| "localhost".into());
    let name: String =
        host.trim().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
    format!("dtn://{name}/").parse().map_err(|e| anyhow::anyhow!("cannot make a node ID from the host name: {e}"))
}

fn default_store() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_DATA_HOME") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => match std::env::var_os("HOME") {
            Some(h) => PathBuf::from(h).join(".local/share"),
            None => bail!("no --store given and no home directory to put the store in"),
        },
    };
    Ok(base.join("dtn/store"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_bad_values_are_named() {
        assert_eq!(parse_size("20G").unwrap(), 20 << 30);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert!(parse_size("12Q").unwrap_err().to_string().contains("unknown unit"));
        assert_eq!(parse_peer("tcp://127.0.0.1:4556").unwrap(), "127.0.0.1:4556".parse().unwrap());
        assert!(parse_peer("tcp://nowhere").is_err());
        assert!(parse_route("dtn://c/*").is_err());
        let args = Args {
            node_id: Some("dtn://a/".into()),
            store: Some("/tmp/x".into()),
            tcpcl: Some("off".into()),
            routing: Some("spray".into()),
            spray_copies: Some(4),
            ..Args::default()
        };
        let cfg = configure(args).unwrap();
        assert_eq!(cfg.tcpcl, None);
        assert!(matches!(cfg.routing, RoutingConfig::SprayAndWait { copies: 4 }));
        let bad = Args { node_id: Some("dtn://a/x".into()), store: Some("/tmp/x".into()), ..Args::default() };
        assert!(configure(bad).unwrap_err().to_string().contains("must be a node ID"));
        let bad = Args { routing: Some("flood".into()), store: Some("/tmp/x".into()), ..Args::default() };
        assert!(configure(bad).unwrap_err().to_string().contains("unknown routing agent"));
    }

    #[test]
    fn wireguard_flags_and_table() {
        let key = Identity::from_seed(&[4; 32]).public().to_string();
        let base = || Args { store: Some("/tmp/x".into()), node_id: Some("dtn://a/".into()), ..Args::default() };
        let cfg = configure_with(base(), FileConfig::default()).unwrap();
        assert!(cfg.wg.is_none());
        let args = Args {
            wg: Some("127.0.0.1:51820".into()),
            wg_peers: vec![key.clone(), format!("{key}@127.0.0.1:9")],
            wg_key: Some("/tmp/k".into()),
            ..base()
        };
        let wg = configure_with(args, FileConfig::default()).unwrap().wg.unwrap();
        assert_eq!(wg.listen, "127.0.0.1:51820".parse().unwrap());
        assert_eq!(wg.key_path(Path::new("/s")), PathBuf::from("/tmp/k"));
        assert_eq!(wg.peers[0].endpoint, None);
        assert_eq!(wg.peers[1].endpoint, Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(wg.class, LinkClass::Metered);
        assert_eq!(wg.budget_per_day, None);
        let budgeted = Args { wg: Some("127.0.0.1:0".into()), wg_budget: Some("5M".into()), ..base() };
        let wg = configure_with(budgeted, FileConfig::default()).unwrap().wg.unwrap();
        assert_eq!(wg.budget_per_day, Some(5 << 20));
        let bad = Args { wg: Some("127.0.0.1:0".into()), wg_budget: Some("lots".into()), ..base() };
        assert!(configure_with(bad, FileConfig::default()).unwrap_err().to_string().contains("--wg-budget"));
        let bad = Args { wg: Some("127.0.0.1:0".into()), wg_peers: vec!["not-a-key".into()], ..base() };
        assert!(configure_with(bad, FileConfig::default()).unwrap_err().to_string().contains("--wg-peer"));
        let orphan = Args { wg_peers: vec![key.clone()], ..base() };
        assert!(configure_with(orphan, FileConfig::default()).unwrap_err().to_string().contains("link is off"));

        let text = format!(
            "[wg]\nlisten = \"0.0.0.0:51820\"\nkeepalive = 0\nclass = \"wired\"\n\
             [[wg.peers]]\nkey = \"{key}\"\nendpoint = \"127.0.0.1:7\"\nclass = \"metered\"\nkeepalive = 15\n\
             budget = \"20M\"\n"
        );
        let wg = configure_with(base(), toml::from_str(&text).unwrap()).unwrap().wg.unwrap();
        assert_eq!((wg.persistent_keepalive, wg.class), (None, LinkClass::Wired));
        assert_eq!(wg.key_path(Path::new("/s")), PathBuf::from("/s/identity"));
        let p = &wg.peers[0];
        assert_eq!(
            (p.endpoint, p.class, p.persistent_keepalive),
            (Some("127.0.0.1:7".parse().unwrap()), Some(LinkClass::Metered), Some(15))
        );
        assert_eq!(p.budget_per_day, Some(20 << 20));
        assert!(toml::from_str::<FileConfig>("[wg]\nlisen = \"x\"\n").is_err());

        // Rendezvous: off without bootstrap nodes; a private bootstrap makes a closed network.
        let wg = |a: Args| configure_with(a, FileConfig::default()).map(|c| c.wg.unwrap());
        let on = || Args { wg: Some("127.0.0.1:0".into()), ..base() };
        let w = wg(on()).unwrap();
        assert!(!w.rendezvous_enabled() && !w.stun_responder);
        let w = wg(Args {
            network: Some("hills".into()),
            dht_bootstrap: vec!["127.0.0.1:6881".into(), "10.0.0.1:6881".into()],
            stun_responder: true,
            ..on()
        })
        .unwrap();
        assert_eq!(w.network, "hills");
        assert_eq!(w.dht_bootstrap.len(), 2);
        assert!(w.stun_responder && w.rendezvous.allow_private);
        let w = wg(Args { network: Some("hills".into()), dht_bootstrap: vec!["192.0.2.1:6881".into()], ..on() });
        assert!(!w.unwrap().rendezvous.allow_private);
        let e = wg(Args { dht_bootstrap: vec!["127.0.0.1:6881".into()], ..on() }).unwrap_err();
        assert!(e.to_string().contains("--network"));
        assert!(wg(Args { stun_responder: true, ..on() }).unwrap_err().to_string().contains("--dht-bootstrap"));
        let e = configure_with(Args { network: Some("hills".into()), ..base() }, FileConfig::default());
        assert!(e.unwrap_err().to_string().contains("WireGuard link is off"));
        let text = "[wg]\nlisten = \"127.0.0.1:0\"\nnetwork = \"hills\"\ndht-bootstrap = [\"127.0.0.1:6881\"]\n\
                    stun-responder = true\n";
        let w = configure_with(base(), toml::from_str(text).unwrap()).unwrap().wg.unwrap();
        assert_eq!((w.network.as_str(), w.dht_bootstrap.len(), w.stun_responder), ("hills", 1, true));
        assert!(!w.relay && !w.via_relay && w.max_relay_peers == 256);

        // Relays: only with rendezvous.
        let rdv = || Args { network: Some("hills".into()), dht_bootstrap: vec!["127.0.0.1:6881".into()], ..on() };
        let w = wg(Args { relay: true, ..rdv() }).unwrap();
        assert!(w.relay && !w.via_relay);
        assert!(wg(Args { via_relay: true, ..rdv() }).unwrap().via_relay);
        assert!(wg(Args { relay: true, ..on() }).unwrap_err().to_string().contains("--dht-bootstrap"));
        assert!(wg(Args { via_relay: true, ..on() }).unwrap_err().to_string().contains("--dht-bootstrap"));
        let text = "[wg]\nlisten = \"127.0.0.1:0\"\nnetwork = \"hills\"\ndht-bootstrap = [\"127.0.0.1:6881\"]\n\
                    relay = true\nmax-relay-peers = 16\n";
        let w = configure_with(base(), toml::from_str(text).unwrap()).unwrap().wg.unwrap();
        assert_eq!((w.relay, w.max_relay_peers), (true, 16));
        let text = "[wg]\nlisten = \"127.0.0.1:0\"\nnetwork = \"hills\"\ndht-bootstrap = [\"127.0.0.1:6881\"]\n\
                    via-relay = true\n";
        assert!(configure_with(base(), toml::from_str(text).unwrap()).unwrap().wg.unwrap().via_relay);
    }

    #[test]
    fn rendezvous_timers_from_the_file() {
        let base = || Args { store: Some("/tmp/x".into()), node_id: Some("dtn://a/".into()), ..Args::default() };
        let with = |table: &str| {
            let text = format!(
                "[wg]\nlisten = \"127.0.0.1:0\"\nnetwork = \"hills\"\ndht-bootstrap = [\"127.0.0.1:6881\"]\n\
                 [wg.rendezvous]\n{table}"
            );
            configure_with(base(), toml::from_str(&text)?).map(|c| c.wg.unwrap().rendezvous)
        };
        let r =
            with("discovery-every = 2\nresolve-every = 1\nannounce-every = 5\ndht-request-timeout = 0.3\n").unwrap();
        assert_eq!(r.discovery_every, Duration::from_secs(2));
        assert_eq!(r.resolve_every, Duration::from_secs(1));
        assert_eq!(r.announce_every, Duration::from_secs(5));
        assert_eq!(r.dht_request_timeout, Some(Duration::from_millis(300)));
        // What is not given keeps its default.
        let defaults = dtn_node::RendezvousTiming::default();
        assert_eq!(r.republish_every, defaults.republish_every);
        let r = with("").unwrap();
        assert_eq!((r.resolve_every, r.dht_request_timeout), (defaults.resolve_every, None));
        for bad in ["resolve-every = 0\n", "resolve-every = -1\n", "discovery-every = \"fast\"\n", "every = 1\n"] {
            assert!(with(bad).is_err(), "{bad}");
        }
        assert!(with("resolve-every = 0\n").unwrap_err().to_string().contains("resolve-every"));
        // Timers for a rendezvous that is off would silently do nothing.
        let text = "[wg]\nlisten = \"127.0.0.1:0\"\n[wg.rendezvous]\nresolve-every = 1\n";
        let e = configure_with(base(), toml::from_str(text).unwrap()).unwrap_err();
        assert!(e.to_string().contains("rendezvous is off"), "{e}");
    }

    #[test]
    fn config_file_is_strict() {
        let f: Result<FileConfig, _> = toml::from_str("node-id = \"dtn://a/\"\nrouting = \"prophet\"\n");
        assert!(f.is_ok());
        let f: FileConfig = toml::from_str("clock = false\n").unwrap();
        let cfg = configure_with(
            Args { store: Some("/tmp/x".into()), node_id: Some("dtn://a/".into()), ..Args::default() },
            f,
        );
        assert!(!cfg.unwrap().has_clock);
        let sample = include_str!("../dist/dtnd.toml");
        assert!(toml::from_str::<FileConfig>(sample).is_ok(), "the sample configuration parses");
        let f: Result<FileConfig, _> = toml::from_str("nodeid = \"dtn://a/\"\n");
        assert!(f.unwrap_err().to_string().contains("unknown field"));
    }
}
