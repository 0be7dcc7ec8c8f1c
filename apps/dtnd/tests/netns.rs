//! Stations and a van, each a `dtnd` in its own network namespace, joined by veth pairs whose links the test
//! takes down and up: the whole story with real processes, real TCP and real link loss.
//!
//! Needs root and `ip netns`; otherwise each test prints why it skips and passes. The `dtn` command must be
//! built next to `dtnd` (`cargo test --workspace` does; or `cargo build -p dtn-cli`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::netns::{ip, one_case};
use common::{dtn, dtnd, dtnd_args, wait_until};
use serde_json::Value;

/// One node: its namespace, its daemon, its store.
struct Node {
    name: String,
    ns: String,
    peers: Vec<String>,
    daemon: Option<Child>,
    extra: Vec<String>,
}

/// Namespaces, links and processes of one case; all removed on drop, also when the test fails.
struct Lab {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
    /// (a, b, subnet index): node indices of each link.
    links: Vec<(usize, usize)>,
    others: Vec<Child>,
}

impl Lab {
    /// Namespaces for `names`, a chain of veth links between neighbours (10.77.<i>.0/24), nothing running.
    fn chain(case: &str, names: &[&str]) -> Lab {
        let dir = tempfile::tempdir().expect("tempdir");
        let tag = format!("dtn{}{case}", std::process::id() % 100_000);
        let mut lab = Lab { dir, nodes: Vec::new(), links: Vec::new(), others: Vec::new() };
        for n in names {
            let ns = format!("{tag}-{n}");
            ip(&["netns", "add", &ns]);
            lab.nodes.push(Node { name: n.to_string(), ns, peers: Vec::new(), daemon: None, extra: Vec::new() });
            ip(&["-n", &lab.nodes.last().expect("node").ns, "link", "set", "lo", "up"]);
        }
        for i in 0..names.len() - 1 {
            let (a, b) = (&lab.nodes[i], &lab.nodes[i + 1]);
            let (da, db) = (format!("to-{}", b.name), format!("to-{}", a.name));
            ip(&["link", "add", &da, "netns", &a.ns, "type", "veth", "peer", "name", &db, "netns", &b.ns]);
            ip(&["-n", &a.ns, "addr", "add", &format!("10.77.{i}.1/24"), "dev", &da]);
            ip(&["-n", &b.ns, "addr", "add", &format!("10.77.{i}.2/24"), "dev", &db]);
            ip(&["-n", &a.ns, "link", "set", &da, "up"]);
            ip(&["-n", &b.ns, "link", "set", &db, "up"]);
            // Each side dials the other: whoever notices first that the link is back brings the session up.
            lab.nodes[i].peers.push(format!("tcp://10.77.{i}.2:4556"));
            lab.nodes[i + 1].peers.push(format!("tcp://10.77.{i}.1:4556"));
            lab.links.push((i, i + 1));
        }
        lab
    }

    fn idx(&self, name: &str) -> usize {
        self.nodes.iter().position(|n| n.name == name).expect("a node of this lab")
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// A command run inside `node`'s namespace.
    fn cmd(&self, node: &str, prog: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.nodes[self.idx(node)].ns]).arg(prog);
        c
    }

    /// Starts (or restarts) a node's daemon and waits for its API.
    fn start(&mut self, node: &str) {
        let i = self.idx(node);
        let n = &self.nodes[i];
        let mut c = self.cmd(node, &dtnd());
        dtnd_args(&mut c, &n.name, &self.dir.path().join(&n.name), "0.0.0.0:4556", "127.0.0.1:3000")
            .args(["--keepalive", "2"])
            .args(n.peers.iter().flat_map(|p| ["--peer", p.as_str()]))
            .args(&n.extra);
        let child = c.spawn().expect("dtnd starts");
        self.nodes[i].daemon = Some(child);
        wait_until(
            Duration::from_secs(20),
            Duration::from_millis(100),
            &format!("dtnd {node} did not come up"),
            || self.dtn(node, &["stats"]).status.success(),
        );
    }

    fn kill(&mut self, node: &str) {
        let i = self.idx(node);
        if let Some(mut c) = self.nodes[i].daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `dtn ARGS --api 127.0.0.1:3000` inside `node`'s namespace.
    fn dtn(&self, node: &str, args: &[&str]) -> Output {
        self.cmd(node, &dtn()).args(args).args(["--api", "127.0.0.1:3000"]).output().expect("dtn runs")
    }

    fn stats(&self, node: &str) -> Value {
        let o = self.dtn(node, &["stats", "--json"]);
        assert!(o.status.success(), "dtn stats on {node}: {}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).expect("stats JSON")
    }

    /// Takes the link between two neighbours down or up, on both sides.
    fn set_link(&self, a: &str, b: &str, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.nodes[self.idx(a)].ns, "link", "set", &format!("to-{b}"), state]);
        ip(&["-n", &self.nodes[self.idx(b)].ns, "link", "set", &format!("to-{a}"), state]);
    }

    /// `dtn station` inside a station's namespace, output to files under the lab.
    fn station(&mut self, node: &str, run: usize, args: &[&str]) -> Child {
        let out = std::fs::File::create(self.path(&format!("{node}-{run}.out"))).expect("station out");
        let err = std::fs::File::create(self.path(&format!("{node}-{run}.err"))).expect("station err");
        let state = self.path("state");
        let mut c = self.cmd(node, &dtn());
        c.args(["station", "--api", "127.0.0.1:3000", "--station", node, "--state"])
            .arg(state)
            .args(args)
            .stdout(out)
            .stderr(err);
        c.spawn().expect("dtn station starts")
    }

    /// `dtn collect` in the van's namespace, archive under the lab.
    fn collector(&mut self, idle: &str) -> Child {
        let out = std::fs::File::create(self.path("collect.out")).expect("collect out");
        let mut c = self.cmd("van", &dtn());
        c.args(["collect", "--api", "127.0.0.1:3000", "--quiet", "--until-idle", idle, "--out"])
            .arg(self.path("archive"))
            .stdout(out)
            .stderr(Stdio::inherit());
        c.spawn().expect("dtn collect starts")
    }

    /// (station, sensor, seq) of every batch a station's runs said the node accepted.
    fn sent(&self, node: &str) -> Vec<(String, String, u64)> {
        let mut out = Vec::new();
        for run in 0..4 {
            let Ok(text) = std::fs::read_to_string(self.path(&format!("{node}-{run}.out"))) else { continue };
            for line in text.lines() {
                let f: Vec<&str> = line.split(' ').collect();
                if f.len() == 6 && f[0] == "sent" {
                    out.push((f[1].to_string(), f[2].to_string(), f[3].parse().expect("a batch number")));
                }
            }
        }
        out
    }

    /// (station, sensor, seq) of every batch in the van's archive, in the order they came.
    fn archived(&self) -> Vec<(String, String, u64)> {
        let text = std::fs::read_to_string(self.path("archive/manifest.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| {
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                (s("station"), s("sensor"), v["seq"].as_u64().unwrap_or(u64::MAX))
            })
            .collect()
    }

    /// Waits until the archive holds every batch in `want`.
    fn wait_archived(&self, want: &BTreeSet<(String, String, u64)>, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let have: BTreeSet<_> = self.archived().into_iter().collect();
            let missing: Vec<_> = want.difference(&have).collect();
            if missing.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "{} batches never reached the van: {missing:?}", missing.len());
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until a node's store is empty (what was delivered, dropped there).
    fn wait_empty(&self, node: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let held = self.stats(node)["store"]["bundles"].as_u64().unwrap_or(u64::MAX);
            if held == 0 {
                let o = self.dtn(node, &["ls", "--json"]);
                let listed: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
                assert_eq!(listed.as_array().map(Vec::len), Some(0), "{node}: {listed}");
                return;
            }
            assert!(Instant::now() < deadline, "{node} still holds {held} bundles");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.others {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &mut self.nodes {
            if let Some(mut c) = n.daemon.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = Command::new("ip").args(["netns", "del", &n.ns]).status();
        }
    }
}

fn wait_exit(c: &mut Child, within: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = c.try_wait().expect("wait") {
            return s;
        }
        if Instant::now() >= deadline {
            let _ = c.kill();
            panic!("{what} did not finish within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for every batch the stations accepted to reach the archive and for the collector to finish, then
/// checks that each is there exactly once.
fn collected_exactly_once(lab: &Lab, collector: &mut Child, stations: &[&str]) -> BTreeSet<(String, String, u64)> {
    let sent: BTreeSet<_> = stations.iter().flat_map(|s| lab.sent(s)).collect();
    lab.wait_archived(&sent, Duration::from_secs(40));
    assert!(wait_exit(collector, Duration::from_secs(40), "the collector").success());
    assert_exactly_once(lab, stations)
}

/// Every batch accepted at a station is in the archive, and no batch is in it twice.
fn assert_exactly_once(lab: &Lab, stations: &[&str]) -> BTreeSet<(String, String, u64)> {
    let archived = lab.archived();
    let unique: BTreeSet<_> = archived.iter().cloned().collect();
    assert_eq!(unique.len(), archived.len(), "a batch is in the archive twice");
    let mut sent = BTreeSet::new();
    for s in stations {
        let list = lab.sent(s);
        assert!(!list.is_empty(), "{s} sent nothing");
        sent.extend(list);
    }
    let missing: Vec<_> = sent.difference(&unique).collect();
    assert!(missing.is_empty(), "accepted but not collected: {missing:?}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(lab.path("archive/report.json")).expect("report")).expect("JSON");
    assert_eq!(report["rejected"], 0, "{report}");
    sent
}

const STATIONS: [&str; 3] = ["s1", "s2", "s3"];
const SENSORS: &[&str] = &["--sensors", "temperature=250,humidity=250", "--batch", "4"];

/// Links up and down, staggered along the chain, for `for_how_long`; then all up.
fn flap(lab: &Lab, for_how_long: Duration) {
    let names: Vec<String> = lab.nodes.iter().map(|n| n.name.clone()).collect();
    let start = Instant::now();
    let mut k = 0u32;
    while start.elapsed() < for_how_long {
        for (i, pair) in names.windows(2).enumerate() {
            // Each link: up 2 s, down 2 s, each a second after its neighbour.
            let up = (k + i as u32) % 4 < 2;
            lab.set_link(&pair[0], &pair[1], up);
        }
        k += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
    for pair in names.windows(2) {
        lab.set_link(&pair[0], &pair[1], true);
    }
}

fn chain_lab(case: &str) -> Lab {
    let mut lab = Lab::chain(case, &["s1", "s2", "s3", "van"]);
    for n in ["s1", "s2", "s3", "van"] {
        lab.start(n);
    }
    lab
}

#[test]
fn every_batch_crosses_an_intermittent_chain_exactly_once() {
    let Some(_one) = one_case() else { return };
    let mut lab = chain_lab("a");
    let mut collector = lab.collector("15s");
    let mut stations: Vec<Child> = STATIONS
        .iter()
        .map(|s| {
            let mut args = SENSORS.to_vec();
            args.extend(["--duration", "8s"]);
            lab.station(s, 0, &args)
        })
        .collect();
    flap(&lab, Duration::from_secs(10));
    for s in &mut stations {
        assert!(wait_exit(s, Duration::from_secs(30), "a station").success());
    }
    let sent = collected_exactly_once(&lab, &mut collector, &STATIONS);
    // Nothing came that no station sent: the numbering at every station runs without holes.
    assert_eq!(lab.archived().len(), sent.len());
    for s in STATIONS {
        lab.wait_empty(s, Duration::from_secs(30));
    }
}

#[test]
fn a_station_killed_and_restarted_mid_run_loses_nothing_it_accepted() {
    let Some(_one) = one_case() else { return };
    let mut lab = chain_lab("b");
    let mut collector = lab.collector("15s");
    let mut runs: BTreeMap<&str, Child> = BTreeMap::new();
    for s in STATIONS {
        let mut args = SENSORS.to_vec();
        args.extend(["--duration", "10s"]);
        runs.insert(s, lab.station(s, 0, &args));
    }
    std::thread::sleep(Duration::from_secs(4));
    // s2's node and its station program die at once, as in a power cut; they come back 2 s later.
    lab.kill("s2");
    if let Some(mut c) = runs.remove("s2") {
        let _ = c.kill();
        let _ = c.wait();
    }
    std::thread::sleep(Duration::from_secs(2));
    lab.start("s2");
    let mut args = SENSORS.to_vec();
    args.extend(["--duration", "5s"]);
    runs.insert("s2", lab.station("s2", 1, &args));
    for (_, mut c) in runs {
        assert!(wait_exit(&mut c, Duration::from_secs(30), "a station").success());
    }
    collected_exactly_once(&lab, &mut collector, &STATIONS);
    // The restarted station went on numbering after what it had used: no number twice.
    let s2 = lab.sent("s2");
    let distinct: BTreeSet<_> = s2.iter().collect();
    assert_eq!(distinct.len(), s2.len(), "s2 used a batch number twice: {s2:?}");
    let second_run = std::fs::read_to_string(lab.path("s2-1.out")).expect("second run");
    assert!(!second_run.contains(" sim/temperature 0 "), "the restarted station started again from 0");
    for s in STATIONS {
        lab.wait_empty(s, Duration::from_secs(30));
    }
}

/// A JPEG of noise: it does not compress, so its size is close to what is asked for.
fn noise_jpeg(width: u32, height: u32) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let pixels: Vec<u8> = (0..width * height * 3)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8
        })
        .collect();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode(&pixels, width, height, image::ExtendedColorType::Rgb8)
        .expect("encode");
    out
}

#[test]
fn a_large_still_cut_mid_transfer_resumes_where_it_was() {
    let Some(_one) = one_case() else { return };
    let mut lab = Lab::chain("c", &["s3", "van"]);
    let images = lab.path("images");
    std::fs::create_dir_all(&images).expect("mkdir");
    let jpeg = noise_jpeg(2200, 1600);
    let size = jpeg.len() as u64;
    assert!((4 << 20..15 << 20).contains(&size), "{size} bytes");
    std::fs::write(images.join("frame.jpg"), &jpeg).expect("write");
    // A slow link: the transfer takes seconds, so it can be cut in the middle.
    let shape =
        ["tc", "qdisc", "add", "dev", "to-van", "root", "tbf", "rate", "8mbit", "burst", "32kb", "latency", "400ms"];
    let o = lab.cmd("s3", Path::new(shape[0])).args(&shape[1..]).output().expect("tc runs");
    assert!(o.status.success(), "tc: {}", String::from_utf8_lossy(&o.stderr));
    lab.start("s3");
    lab.start("van");
    let mut collector = lab.collector("20s");
    let img = images.to_str().expect("path").to_string();
    let mut station = lab.station("s3", 0, &["--sensors", "camera=600000", "--images", &img, "--count", "1"]);
    assert!(wait_exit(&mut station, Duration::from_secs(30), "the station").success());

    // Cut once the van holds most of it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = lab.stats("van")["received_bytes"].as_u64().unwrap_or(0);
        if got >= size * 6 / 10 {
            break;
        }
        assert!(Instant::now() < deadline, "the transfer did not get going ({got} bytes)");
        std::thread::sleep(Duration::from_millis(50));
    }
    lab.set_link("s3", "van", false);
    let sent_at_cut = lab.stats("s3")["sent_bytes"].as_u64().unwrap_or(0);
    // Long enough for both sides to give the session up (twice the 2 s keepalive).
    std::thread::sleep(Duration::from_secs(6));
    assert!(lab.archived().is_empty(), "the still arrived although the link was cut");
    lab.set_link("s3", "van", true);

    let want: BTreeSet<_> = lab.sent("s3").into_iter().collect();
    assert_eq!(want.len(), 1);
    lab.wait_archived(&want, Duration::from_secs(40));
    let after = lab.stats("s3")["sent_bytes"].as_u64().unwrap_or(0) - sent_at_cut;
    eprintln!("still of {size} bytes: {after} bytes sent after the link came back");
    assert!(after < size * 6 / 10, "{after} of {size} bytes sent again after the cut: it started over");
    assert!(wait_exit(&mut collector, Duration::from_secs(40), "the collector").success());
    let kept = std::fs::read(lab.path("archive/s3/cam0/00000000.jpg")).expect("the still in the archive");
    assert!(kept == jpeg, "the still arrived changed");
    lab.wait_empty("s3", Duration::from_secs(30));
}

#[test]
fn a_station_over_its_quota_refuses_cleanly_and_keeps_what_it_accepted() {
    let Some(_one) = one_case() else { return };
    let mut lab = Lab::chain("d", &["s3", "van"]);
    lab.nodes[0].extra = vec!["--quota".into(), "24K".into()];
    lab.start("s3");
    lab.start("van");
    // No contact while the station fills its store.
    lab.set_link("s3", "van", false);
    let mut collector = lab.collector("15s");
    let mut station = lab.station(
        "s3",
        0,
        &["--sensors", "temperature=50,humidity=50,barometer=50", "--batch", "2", "--duration", "6s"],
    );
    wait_until(Duration::from_secs(20), Duration::from_millis(100), "the station never hit its quota", || {
        std::fs::read_to_string(lab.path("s3-0.err")).unwrap_or_default().contains("store full")
    });
    // The van comes: what was accepted drains, the store frees, and the station's refused batches go in.
    lab.set_link("s3", "van", true);
    let status = wait_exit(&mut station, Duration::from_secs(40), "the station");
    // 0: everything got in in the end; 3: some batches were given up and said so. Never a crash.
    assert!(matches!(status.code(), Some(0 | 3)), "{status}");
    collected_exactly_once(&lab, &mut collector, &["s3"]);
    let err = std::fs::read_to_string(lab.path("s3-0.err")).expect("station stderr");
    assert!(err.contains("refused") && err.contains("store full"), "{err}");
    lab.wait_empty("s3", Duration::from_secs(30));
}
