//! Two `dtnd` processes on loopback, driven only through the `dtn` command, as a user would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn dtnd() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dtnd"))
}

/// The `dtn` command, built next to `dtnd` by `cargo test --workspace`.
fn dtn() -> PathBuf {
    let p = dtnd().with_file_name(format!("dtn{}", std::env::consts::EXE_SUFFIX));
    assert!(p.exists(), "{} is missing: run the tests with `cargo test --workspace`", p.display());
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Daemon {
    child: Child,
    api: String,
    tcpcl: String,
}

impl Daemon {
    fn start(dir: &Path, name: &str, peer: Option<&str>) -> Daemon {
        let (api, tcpcl) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
        let mut cmd = Command::new(dtnd());
        cmd.args(["--node-id", &format!("dtn://{name}/"), "--store"])
            .arg(dir.join(name))
            .args(["--tcpcl", &tcpcl, "--api", &api, "--no-discovery"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(p) = peer {
            cmd.args(["--peer", &format!("tcp://{p}")]);
        }
        let d = Daemon { child: cmd.spawn().expect("dtnd starts"), api, tcpcl };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !run(&["stats", "--api", &d.api]).status.success() {
            assert!(Instant::now() < deadline, "dtnd {name} did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    /// SIGTERM, and the daemon must exit cleanly.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "dtnd exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "dtnd did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(dtn()).args(args).output().expect("dtn runs")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "dtn {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn two_daemons_exchange_bundles_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let a = Daemon::start(dir.path(), "a", None);
    let b = Daemon::start(dir.path(), "b", Some(&a.tcpcl));

    // A small payload and a 24 MiB one (fragmented at the source, reassembled at b).
    let small = dir.path().join("small.txt");
    std::fs::write(&small, b"21.5 C, 1013 hPa").unwrap();
    let big = dir.path().join("big.bin");
    let big_data: Vec<u8> = (0..24u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(&big, &big_data).unwrap();
    let id1 = ok(&["send", "--api", &a.api, "--dst", "dtn://b/~in", small.to_str().unwrap()]);
    let id2 = ok(&["send", "--api", &a.api, "--dst", "dtn://b/~in", big.to_str().unwrap()]);
    assert!(id1.trim().starts_with("dtn://a/-") && id2.trim() != id1.trim(), "{id1} {id2}");

    let out = dir.path().join("out");
    ok(&[
        "recv",
        "--api",
        &b.api,
        "--endpoint",
        "dtn://b/~in",
        "--count",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--timeout",
        "60",
    ]);
    let mut files: Vec<Vec<u8>> =
        std::fs::read_dir(&out).unwrap().map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect();
    files.sort_by_key(Vec::len);
    assert_eq!(files.len(), 2);
    assert_eq!(files[0], b"21.5 C, 1013 hPa");
    assert!(files[1] == big_data, "the 24 MiB payload arrived changed");

    // b -> a through standard input and output.
    let mut send = Command::new(dtn())
        .args(["send", "--api", &b.api, "--dst", "dtn://a/~back", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut send.stdin.take().unwrap(), b"from b").unwrap();
    assert!(send.wait_with_output().unwrap().status.success());
    let got = ok(&["recv", "--api", &a.api, "--endpoint", "dtn://a/~back", "--count", "1", "--timeout", "60"]);
    assert_eq!(got, "from b");

    // Listings for scripts.
    let peers: serde_json::Value = serde_json::from_str(&ok(&["peers", "--api", &a.api, "--json"])).unwrap();
    assert_eq!(peers[0]["node"], "dtn://b/");
    let stats: serde_json::Value = serde_json::from_str(&ok(&["stats", "--api", &b.api, "--json"])).unwrap();
    assert!(stats["delivered"].as_u64().unwrap() >= 2, "{stats}");
    a.stop();
    b.stop();
}

#[test]
fn cli_errors_are_one_line_and_non_zero() {
    let port = free_port();
    let api = format!("127.0.0.1:{port}");
    let out = run(&["stats", "--api", &api]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.trim().lines().count() == 1, "{err}");
    assert!(err.contains("is dtnd running"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let a = Daemon::start(dir.path(), "a", None);
    let f = dir.path().join("p");
    std::fs::write(&f, b"x").unwrap();
    let out = run(&["send", "--api", &a.api, "--dst", "not-an-eid", f.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.trim().lines().count() == 1 && err.contains("bad destination"), "{err}");
    let out = run(&["send", "--api", &a.api, "--dst", "dtn://b/", "/nonexistent/file"]);
    assert_eq!(out.status.code(), Some(1));
    a.stop();
}

#[test]
fn export_and_import_carry_bundles_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let a = Daemon::start(dir.path(), "a", None);
    let c = Daemon::start(dir.path(), "c", None);
    let f = dir.path().join("p");
    for i in 0..5 {
        std::fs::write(&f, format!("reading {i}")).unwrap();
        ok(&["send", "--api", &a.api, "--dst", "dtn://c/~in", f.to_str().unwrap()]);
    }
    let stick = dir.path().join("usb");
    ok(&["export", "--api", &a.api, "--to", stick.to_str().unwrap()]);
    assert_eq!(std::fs::read_dir(&stick).unwrap().count(), 5);
    ok(&["import", "--api", &c.api, stick.to_str().unwrap()]);
    ok(&["import", "--api", &c.api, stick.to_str().unwrap()]);
    let out = dir.path().join("got");
    ok(&[
        "recv",
        "--api",
        &c.api,
        "--endpoint",
        "dtn://c/~in",
        "--count",
        "5",
        "--out",
        out.to_str().unwrap(),
        "--timeout",
        "30",
    ]);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 5);
    // Acknowledged deliveries are removed by the next commits.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ls: serde_json::Value = serde_json::from_str(&ok(&["ls", "--api", &c.api, "--json"])).unwrap();
        if ls.as_array().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "delivered bundles are kept: {ls}");
        std::thread::sleep(Duration::from_millis(50));
    }
    a.stop();
    c.stop();
}
