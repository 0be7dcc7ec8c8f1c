//! Two `dtnd` processes on loopback that reach each other only through the WireGuard link, configured by
//! identity keys printed with `dtnd --print-identity`, as operators would exchange them.

mod common;

use common::{Daemon, free_port, print_identity, run};

#[test]
fn two_daemons_deliver_through_the_tunnel_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let (ka, kb) = (print_identity(&dir.path().join("a")), print_identity(&dir.path().join("b")));
    assert_eq!(ka.len(), 52, "{ka}");
    assert_ne!(ka, kb);
    // The key is created once and kept: printing it again gives the same name.
    assert_eq!(print_identity(&dir.path().join("a")), ka);

    let (pa, pb) = (free_port(), free_port());
    let wa = format!("127.0.0.1:{pa}");
    let a = Daemon::start(dir.path(), "a", None, &["--wg", &wa, "--wg-peer", &kb]);
    let peer_a = format!("{ka}@{wa}");
    let b = Daemon::start(dir.path(), "b", None, &["--wg", &format!("127.0.0.1:{pb}"), "--wg-peer", &peer_a]);

    let file = dir.path().join("msg.txt");
    std::fs::write(&file, b"through the tunnel").unwrap();
    let out = run(&["send", "--api", &a.api, "--dst", "dtn://b/~in", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = dir.path().join("got");
    let args = ["recv", "--api", &b.api, "--endpoint", "dtn://b/~in", "--count", "1", "--timeout", "30", "--out"];
    let out = run(&[&args[..], &[got.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let files: Vec<_> = std::fs::read_dir(&got).unwrap().map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect();
    assert_eq!(files, vec![b"through the tunnel".to_vec()]);
    a.stop();
    b.stop();
}
