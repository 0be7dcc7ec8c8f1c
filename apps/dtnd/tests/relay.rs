//! Three `dtnd` processes on loopback and a local Mainline DHT testnet (never the public DHT): a relay
//! started with `--relay`, and two daemons started with `--via-relay` that know only each other's key. They
//! find the relay in the DHT and deliver to each other through it.

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use common::{Daemon, dtnd, free_port, run};
use dtn_nat::mainline::Testnet;

fn print_identity(store: &Path) -> String {
    let out = Command::new(dtnd()).arg("--store").arg(store).arg("--print-identity").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn daemons_that_do_not_punch_deliver_through_a_relay() {
    let net = Testnet::builder(5).bind_address(Ipv4Addr::LOCALHOST).build().expect("loopback testnet");
    let boot = net.bootstrap[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let (ka, kb) = (print_identity(&dir.path().join("a")), print_identity(&dir.path().join("b")));
    // The command line of the network-namespace test: `--wg`, `--network`, `--dht-bootstrap`, and the role.
    let start = |name: &str, extra: &[&str]| {
        let wg = format!("127.0.0.1:{}", free_port());
        let mut v = vec!["--wg", &wg, "--network", "dtnd-relay-test", "--dht-bootstrap", &boot];
        v.extend_from_slice(extra);
        Daemon::start(dir.path(), name, None, &v)
    };
    let r = start("r", &["--relay"]);
    let node = |name: &str, peer: &str| start(name, &["--wg-peer", peer, "--via-relay"]);
    let a = node("a", &kb);
    let b = node("b", &ka);

    let file = dir.path().join("msg.txt");
    std::fs::write(&file, b"through the relay").unwrap();
    let out = run(&["send", "--api", &a.api, "--dst", "dtn://b/~in", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = dir.path().join("got");
    let recv = ["recv", "--api", &b.api, "--endpoint", "dtn://b/~in", "--count", "1", "--timeout", "90", "--out"];
    let out = run(&[&recv[..], &[got.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let files: Vec<_> = std::fs::read_dir(&got).unwrap().map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect();
    assert_eq!(files, vec![b"through the relay".to_vec()]);
    a.stop();
    b.stop();
    r.stop();
}
