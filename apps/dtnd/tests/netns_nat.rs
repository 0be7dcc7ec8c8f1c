//! Two stations, each behind a NAT of its own, that know each other only by identity key: they find each
//! other through the Mainline DHT, punch through both NATs and exchange bundles over WireGuard. Real `dtnd`
//! processes, real kernel NAT, nothing on loopback.
//!
//! The network, one namespace per box:
//!
//! ```text
//!   a 192.168.1.2 ── 192.168.1.1 ra 10.90.1.2 ──┐            ┌── 10.90.2.2 rb 192.168.2.1 ── 192.168.2.2 b
//!                    (masquerade)               10.90.1.1 pub 10.90.2.1              (masquerade)
//!                                      DHT 10.91.0.1, STUN 10.92.0.1 and 10.93.0.1, relay 10.94.0.1
//! ```
//!
//! * `pub` is the Internet. It routes between the routers' public addresses and has no route to the
//!   private subnets, so a station can only be reached through its router's NAT mapping. Its services have addresses of their own (on `lo`),
//!   in different /16s: STUN servers are chosen for diversity, and the NAT is classified by comparing what
//!   two of them saw (RFC 4787).
//! * `ra` and `rb` are home routers (nftables): masquerade on the outward interface and a firewall that
//!   drops unsolicited traffic, as deployed routers do. The firewall matters for punching: without it, a
//!   peer's first handshake, arriving before our own went out, would leave an unreplied conntrack entry on
//!   the router that makes its masquerade pick another port for our reply (a clash), and the published
//!   mapping would be wrong. Dropped in the input chain, such a packet never creates an entry. The
//!   symmetric case adds `random,fully-random` (iptables' `--random-fully`) on `rb`: a different public
//!   port for every destination.
//! * The DHT is `mainline`'s testnet, run inside this test process: a thread enters `pub` with `setns`,
//!   and every socket and thread it then creates (the testnet's nodes, and a client the test uses to read
//!   the stations' published records) lives in `pub`, whichever thread uses them later. No DHT binary is
//!   needed, and nothing can reach the public DHT (no route out of these namespaces).
//! * The STUN responders (and the relay) are `dtnd --stun-responder` processes in `pub`, as in a real
//!   network: a responder is announced in the DHT by the node that answers.
//! * The stations run `dtnd --wg 0.0.0.0:51820 --network N --dht-bootstrap 10.91.0.1:PORT --wg-peer KEY`
//!   with the keys `dtnd --print-identity` printed; a `[wg.rendezvous]` table shortens the timers. All
//!   addresses are private, so dtnd accepts private STUN servers by itself (a closed network).
//!
//! Needs root, `ip netns`, `nft` and `conntrack` (Debian: iproute2, nftables, conntrack); otherwise each test
//! prints why it skips and passes. The `dtn` command must be built next to `dtnd` (`cargo test --workspace`
//! does; or `cargo build -p dtn-cli`).

mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::netns::{ip, one_case};
use common::{dtn, dtnd, dtnd_args, print_identity, wait_until};
use dtn_nat::mainline::async_dht::AsyncDht;
use dtn_nat::mainline::{Dht, Testnet};
use dtn_nat::{EndpointKind, EndpointRecord, NatClass, NetworkName, Resolver};
use dtn_node::PeerKey;

const NETWORK: &str = "netns-nat";
const DHT: Ipv4Addr = Ipv4Addr::new(10, 91, 0, 1);
const STUN: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 92, 0, 1), Ipv4Addr::new(10, 93, 0, 1)];
const RELAY: Ipv4Addr = Ipv4Addr::new(10, 94, 0, 1);
/// The routers' public addresses.
const RA: Ipv4Addr = Ipv4Addr::new(10, 90, 1, 2);
const RB: Ipv4Addr = Ipv4Addr::new(10, 90, 2, 2);
/// The stations' tunnel port (behind their NATs) and the public services' one.
const WG_PORT: u16 = 51820;
const STUN_PORT: u16 = 3478;

/// Rendezvous timers for a closed network of a few nodes: peers find each other within seconds.
const TIMERS: &str = "[wg.rendezvous]\ndiscovery-every = 1\nresolve-every = 1\nannounce-every = 5\n\
                      republish-every = 60\ndht-request-timeout = 0.5\n";

/// What else a NAT case needs besides `ip`.
fn missing_tools() -> Option<String> {
    for tool in ["nft", "conntrack"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Some(format!(
                "no `{tool}` command (Debian package {})",
                if tool == "nft" { "nftables" } else { tool }
            ));
        }
    }
    None
}

/// `let Some(_one) = nat_case() else { return };`
macro_rules! nat_case {
    () => {{
        let Some(one) = one_case() else { return };
        if let Some(why) = missing_tools() {
            eprintln!("skipped: {why}");
            return;
        }
        one
    }};
}

/// Which NAT a router does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nat {
    /// Plain masquerade: one mapping for every destination (Linux keeps the source port when it can).
    Cone,
    /// `random,fully-random`: a new random port for every destination.
    Symmetric,
}

/// A daemon of the lab: its name, namespace, API address and process.
struct Daemon {
    name: String,
    ns: String,
    api: String,
    child: Child,
}

/// Namespaces, NAT rules, the DHT and the daemons of one case; all removed on drop, also when the test
/// fails (and then the daemons' logs are printed).
struct Lab {
    dir: tempfile::TempDir,
    tag: String,
    namespaces: Vec<String>,
    daemons: Vec<Daemon>,
    /// The testnet's nodes and the test's own client, all living in `pub`.
    dht: Option<(Testnet, AsyncDht)>,
    bootstrap: String,
}

impl Lab {
    fn new(case: &str, nat_b: Nat) -> Lab {
        let dir = tempfile::tempdir().expect("tempdir");
        let tag = format!("dtn{}{case}", std::process::id() % 100_000);
        let mut lab =
            Lab { dir, tag, namespaces: Vec::new(), daemons: Vec::new(), dht: None, bootstrap: String::new() };
        for n in ["pub", "ra", "rb", "a", "b"] {
            let ns = lab.ns(n);
            ip(&["netns", "add", &ns]);
            lab.namespaces.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        let (pb, ra, rb, a, b) = (lab.ns("pub"), lab.ns("ra"), lab.ns("rb"), lab.ns("a"), lab.ns("b"));
        // The Internet routes between the routers' public addresses (and knows nothing of the private subnets).
        lab.exec(&pb, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        for svc in [DHT, STUN[0], STUN[1], RELAY] {
            ip(&["-n", &pb, "addr", "add", &format!("{svc}/32"), "dev", "lo"]);
        }
        for (router, host, i, nat) in [(&ra, &a, 1, Nat::Cone), (&rb, &b, 2, nat_b)] {
            let to_router = format!("to-r{}", if i == 1 { 'a' } else { 'b' });
            ip(&["link", "add", &to_router, "netns", &pb, "type", "veth", "peer", "name", "wan", "netns", router]);
            ip(&["link", "add", "lan", "netns", router, "type", "veth", "peer", "name", "eth0", "netns", host]);
            ip(&["-n", &pb, "addr", "add", &format!("10.90.{i}.1/24"), "dev", &to_router]);
            ip(&["-n", router, "addr", "add", &format!("10.90.{i}.2/24"), "dev", "wan"]);
            ip(&["-n", router, "addr", "add", &format!("192.168.{i}.1/24"), "dev", "lan"]);
            ip(&["-n", host, "addr", "add", &format!("192.168.{i}.2/24"), "dev", "eth0"]);
            ip(&["-n", &pb, "link", "set", &to_router, "up"]);
            ip(&["-n", router, "link", "set", "wan", "up"]);
            ip(&["-n", router, "link", "set", "lan", "up"]);
            ip(&["-n", host, "link", "set", "eth0", "up"]);
            ip(&["-n", router, "route", "add", "default", "via", &format!("10.90.{i}.1")]);
            ip(&["-n", host, "route", "add", "default", "via", &format!("192.168.{i}.1")]);
            lab.router(router, nat);
        }
        lab.start_dht();
        lab
    }

    fn ns(&self, n: &str) -> String {
        format!("{}-{n}", self.tag)
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `prog` inside namespace `n` of this lab.
    fn cmd(&self, n: &str, prog: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(n)]).arg(prog);
        c
    }

    fn exec(&self, ns: &str, args: &[&str]) -> Output {
        let o = Command::new("ip").args(["netns", "exec", ns]).args(args).output().expect("ip netns exec runs");
        assert!(o.status.success(), "{args:?} in {ns}: {}", String::from_utf8_lossy(&o.stderr));
        o
    }

    /// A home router: forwarding on, masquerade out of `wan`, and nothing unsolicited in.
    fn router(&self, ns: &str, nat: Nat) {
        self.exec(ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        let masquerade = match nat {
            Nat::Cone => "masquerade",
            Nat::Symmetric => "masquerade random,fully-random",
        };
        let rules = format!(
            "table ip nat {{\n\
               chain post {{\n type nat hook postrouting priority srcnat;\n oifname \"wan\" {masquerade}\n }}\n\
             }}\n\
             table ip filter {{\n\
               chain input {{\n type filter hook input priority filter; policy drop;\n\
                 ct state established,related accept\n iifname {{ \"lo\", \"lan\" }} accept\n }}\n\
               chain forward {{\n type filter hook forward priority filter; policy drop;\n\
                 ct state established,related accept\n iifname \"lan\" accept\n }}\n\
             }}\n"
        );
        let file = self.path(&format!("{ns}.nft"));
        std::fs::write(&file, rules).expect("write the rules");
        self.exec(ns, &["nft", "-f", file.to_str().expect("path")]);
    }

    /// The DHT testnet in `pub`, and a client of it for the test.
    fn start_dht(&mut self) {
        let netns = PathBuf::from("/run/netns").join(self.ns("pub"));
        let (net, client) = std::thread::spawn(move || {
            enter(&netns);
            let net = Testnet::builder(5).bind_address(DHT).build().expect("testnet in pub");
            let client = Dht::builder()
                .bootstrap(&net.bootstrap)
                .bind_address(DHT)
                .request_timeout(Duration::from_millis(500))
                .build()
                .expect("DHT client in pub")
                .as_async();
            (net, client)
        })
        .join()
        .expect("the thread in pub");
        self.bootstrap = net.bootstrap[0].clone();
        self.dht = Some((net, client));
    }

    /// Starts `dtnd` as `name` in namespace `n` with its API at `api` and `extra` arguments; waits for it.
    fn start(&mut self, n: &str, name: &str, api: &str, extra: &[&str]) {
        let config = self.path("rendezvous.toml");
        std::fs::write(&config, TIMERS).expect("config");
        let log = std::fs::File::create(self.path(&format!("{name}.log"))).expect("log");
        let mut c = self.cmd(n, &dtnd());
        dtnd_args(&mut c, name, &self.path(name), "off", api)
            .arg("--config")
            .arg(&config)
            .args(["--network", NETWORK, "--dht-bootstrap", &self.bootstrap])
            .args(extra)
            .env("RUST_LOG", "warn,dtn_node::rendezvous=info,dtn_node::wg=info")
            .stderr(log);
        let child = c.spawn().expect("dtnd starts");
        self.daemons.push(Daemon { name: name.into(), ns: n.into(), api: api.into(), child });
        wait_until(
            Duration::from_secs(20),
            Duration::from_millis(100),
            &format!("dtnd {name} did not come up"),
            || self.dtn(name, &["stats"]).status.success(),
        );
    }

    /// The two STUN responders in `pub`.
    fn start_stun(&mut self) {
        for (i, addr) in STUN.iter().enumerate() {
            let wg = format!("{addr}:{STUN_PORT}");
            self.start(
                "pub",
                &format!("stun{i}"),
                &format!("127.0.0.1:{}", 3010 + i),
                &["--wg", &wg, "--stun-responder"],
            );
        }
    }

    /// The stations a and b, each knowing the other's key only.
    fn start_stations(&mut self) -> (String, String) {
        let (ka, kb) = (print_identity(&self.path("a")), print_identity(&self.path("b")));
        let wg = format!("0.0.0.0:{WG_PORT}");
        self.start("a", "a", "127.0.0.1:3000", &["--wg", &wg, "--wg-peer", &kb]);
        self.start("b", "b", "127.0.0.1:3000", &["--wg", &wg, "--wg-peer", &ka]);
        (ka, kb)
    }

    fn daemon(&self, name: &str) -> &Daemon {
        self.daemons.iter().find(|d| d.name == name).expect("a daemon of this lab")
    }

    /// `dtn ARGS` next to daemon `name`.
    fn dtn(&self, name: &str, args: &[&str]) -> Output {
        let d = self.daemon(name);
        self.cmd(&d.ns, &dtn()).args(args).args(["--api", &d.api]).output().expect("dtn runs")
    }

    /// Sends `text` from station `from` to `to`'s endpoint `~in`.
    fn send(&self, from: &str, to: &str, text: &str) {
        let file = self.path(&format!("{from}-to-{to}.txt"));
        std::fs::write(&file, text).expect("write");
        let out = self.dtn(from, &["send", "--dst", &format!("dtn://{to}/~in"), file.to_str().expect("path")]);
        assert!(out.status.success(), "dtn send on {from}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The payloads `name` received at `~in` within `timeout` seconds (at most one).
    fn recv(&self, name: &str, timeout: u64) -> Vec<Vec<u8>> {
        let got = self.path(&format!("{name}-got"));
        let ep = format!("dtn://{name}/~in");
        let t = timeout.to_string();
        let got_s = got.to_str().expect("path");
        let out = self.dtn(name, &["recv", "--endpoint", &ep, "--count", "1", "--timeout", &t, "--out", got_s]);
        if !out.status.success() {
            eprintln!("dtn recv on {name}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        std::fs::read_dir(&got)
            .map(|d| d.filter_map(|e| std::fs::read(e.ok()?.path()).ok()).collect())
            .unwrap_or_default()
    }

    /// The endpoint record a station published under its key, as any node of the network reads it.
    fn record(&self, key: &str) -> Option<EndpointRecord> {
        let (_, client) = self.dht.as_ref()?;
        let key: PeerKey = key.parse().expect("an identity key");
        let resolver = Resolver::new(client.clone(), &NetworkName::new(NETWORK).expect("network name"));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(resolver.resolve(key.as_bytes())).ok().flatten().map(|r| r.record)
    }

    /// Waits until `key`'s record says `nat`; returns it.
    fn wait_record(&self, key: &str, nat: NatClass, within: Duration) -> EndpointRecord {
        let deadline = Instant::now() + within;
        loop {
            let r = self.record(key);
            if let Some(r) = r.as_ref().filter(|r| r.nat == nat) {
                return r.clone();
            }
            assert!(Instant::now() < deadline, "{key}'s record never said {nat:?}: {r:?}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The router's UDP flows from `host`'s tunnel socket: (destination, public port it was given, answered:
    /// traffic seen both ways).
    fn flows(&self, router: &str, host: Ipv4Addr) -> Vec<(SocketAddr, u16, bool)> {
        let o = self.exec(
            &self.ns(router),
            &["conntrack", "-L", "-p", "udp", "--orig-src", &host.to_string(), "--orig-port-src", &WG_PORT.to_string()],
        );
        String::from_utf8_lossy(&o.stdout).lines().filter_map(parse_flow).collect()
    }
}

/// One line of `conntrack -L`: `udp 17 29 src=A dst=B sport=P dport=Q [UNREPLIED] src=B dst=R sport=Q
/// dport=M ...`; the original direction comes first, the reply second. `[UNREPLIED]`: nothing came back.
fn parse_flow(line: &str) -> Option<(SocketAddr, u16, bool)> {
    let field = |k: &str, nth: usize| line.split(' ').filter_map(|f| f.strip_prefix(k)).nth(nth);
    let dst: Ipv4Addr = field("dst=", 0)?.parse().ok()?;
    let dport: u16 = field("dport=", 0)?.parse().ok()?;
    let mapped: u16 = field("dport=", 1)?.parse().ok()?;
    Some((SocketAddr::from((dst, dport)), mapped, !line.contains("[UNREPLIED]")))
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &Path) {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // SAFETY: setns only reads the descriptor, which `f` keeps open for the call.
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {}: {}", path.display(), std::io::Error::last_os_error());
}

impl Drop for Lab {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            let _ = d.child.kill();
            let _ = d.child.wait();
        }
        if std::thread::panicking() {
            for d in &self.daemons {
                let log = std::fs::read_to_string(self.dir.path().join(format!("{}.log", d.name))).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                eprintln!("---- {} (last {} of {} lines)", d.name, lines.len().min(60), lines.len());
                for l in &lines[lines.len().saturating_sub(60)..] {
                    eprintln!("{l}");
                }
            }
            for r in ["ra", "rb"] {
                let o = Command::new("ip").args(["netns", "exec", &self.ns(r), "conntrack", "-L"]).output();
                eprintln!(
                    "---- {r} conntrack\n{}",
                    o.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
                );
            }
        }
        self.dht = None;
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn stations_behind_two_nats_find_each_other_by_key_and_punch_through() {
    let _one = nat_case!();
    let started = Instant::now();
    let mut lab = Lab::new("c", Nat::Cone);
    lab.start_stun();
    let (ka, kb) = lab.start_stations();

    // Each station learnt its router's mapping by STUN on the tunnel's socket, found it the same at both
    // servers (cone), and published it.
    for (key, router) in [(&ka, RA), (&kb, RB)] {
        let r = lab.wait_record(key, NatClass::Cone, Duration::from_secs(40));
        let public: Vec<_> = r.endpoints.iter().filter(|e| e.kind == EndpointKind::Public).map(|e| e.addr).collect();
        assert_eq!(public.len(), 1, "{r:?}");
        assert_eq!(public[0].ip(), router, "{r:?}");
    }
    eprintln!("records published after {:?}", started.elapsed());

    lab.send("a", "b", "from a, behind its NAT");
    lab.send("b", "a", "from b, behind its NAT");
    assert_eq!(lab.recv("b", 60), vec![b"from a, behind its NAT".to_vec()]);
    assert_eq!(lab.recv("a", 60), vec![b"from b, behind its NAT".to_vec()]);
    eprintln!("delivered both ways after {:?}", started.elapsed());

    // The path is direct: each router has a flow from its station's tunnel socket to the other router's
    // public address, with traffic both ways, and there is no third party in the network that could carry
    // the tunnel (the STUN responders do not know the stations' keys).
    for (router, host, other) in [("ra", Ipv4Addr::new(192, 168, 1, 2), RB), ("rb", Ipv4Addr::new(192, 168, 2, 2), RA)]
    {
        let flows = lab.flows(router, host);
        assert!(
            flows.iter().any(|(dst, _, answered)| dst.ip() == other && *answered),
            "{router}: no two-way flow to {other}: {flows:?}"
        );
    }
}

/// What case 2 rests on: `random,fully-random` masquerade is a symmetric NAT, the stations classify it so
/// from what two STUN servers saw, and without a relay punching does not get through.
#[test]
fn a_port_randomising_nat_is_classified_symmetric_and_defeats_punching() {
    let _one = nat_case!();
    let mut lab = Lab::new("s", Nat::Symmetric);
    lab.start_stun();
    let (ka, kb) = lab.start_stations();
    lab.wait_record(&ka, NatClass::Cone, Duration::from_secs(40));
    let r = lab.wait_record(&kb, NatClass::Symmetric, Duration::from_secs(40));
    // A per-destination mapping is no use to a peer: only b's LAN address is published.
    assert!(r.endpoints.iter().all(|e| e.kind == EndpointKind::Lan), "{r:?}");

    // The router itself: b's one socket got a different public port towards each STUN server.
    let flows = lab.flows("rb", Ipv4Addr::new(192, 168, 2, 2));
    let ports: BTreeSet<u16> = flows
        .iter()
        .filter(|(dst, _, answered)| STUN.iter().any(|s| dst.ip() == *s) && *answered)
        .map(|(_, mapped, _)| *mapped)
        .collect();
    eprintln!("rb mapped b's tunnel socket to ports {ports:?} towards the two STUN servers");
    assert_eq!(ports.len(), 2, "{flows:?}");

    // a knows nowhere to aim, and b's handshakes come from a port a's router never sent to.
    lab.send("a", "b", "lost in the NAT");
    assert!(lab.recv("b", 15).is_empty(), "a bundle crossed a symmetric NAT without a relay");
}

#[test]
fn behind_a_symmetric_nat_bundles_go_through_the_relay() {
    let _one = nat_case!();
    let started = Instant::now();
    let mut lab = Lab::new("r", Nat::Symmetric);
    lab.start_stun();
    let relay = format!("{RELAY}:{WG_PORT}");
    lab.start("pub", "relay", "127.0.0.1:3020", &["--wg", &relay, "--relay"]);
    let (_, kb) = lab.start_stations();
    lab.wait_record(&kb, NatClass::Symmetric, Duration::from_secs(40));

    lab.send("a", "b", "from a, by way of the relay");
    lab.send("b", "a", "from b, by way of the relay");
    assert_eq!(lab.recv("b", 90), vec![b"from a, by way of the relay".to_vec()]);
    assert_eq!(lab.recv("a", 90), vec![b"from b, by way of the relay".to_vec()]);
    eprintln!("delivered both ways through the relay after {:?}", started.elapsed());

    // Through the relay, not around it: both stations have a two-way flow with it, and none with each
    // other's router.
    for (router, host, other) in [("ra", Ipv4Addr::new(192, 168, 1, 2), RB), ("rb", Ipv4Addr::new(192, 168, 2, 2), RA)]
    {
        let flows = lab.flows(router, host);
        assert!(flows.iter().any(|(d, _, answered)| d.ip() == RELAY && *answered), "{router}: {flows:?}");
        assert!(!flows.iter().any(|(d, _, answered)| d.ip() == other && *answered), "{router}: {flows:?}");
    }
}
