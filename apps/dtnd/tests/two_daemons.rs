//! Two `dtnd` processes on loopback, driven only through the `dtn` command, as a user would.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, dtn, free_port, run};

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "dtn {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn two_daemons_exchange_bundles_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let a = Daemon::start(dir.path(), "a", None, &[]);
    let b = Daemon::start(dir.path(), "b", Some(&a.tcpcl), &[]);

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
    // A loopback TCPCL session is a wired link with no byte budget.
    assert_eq!(peers[0]["class"], "wired", "{peers}");
    assert!(peers[0].get("budget").is_none(), "{peers}");
    let listed = ok(&["peers", "--api", &a.api]);
    assert!(listed.starts_with("dtn://b/  wired  in flight: "), "{listed}");
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
    let a = Daemon::start(dir.path(), "a", None, &[]);
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
    let a = Daemon::start(dir.path(), "a", None, &[]);
    let c = Daemon::start(dir.path(), "c", None, &[]);
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

/// Peak anonymous memory (heap, stacks) of a process, sampled until `stop` is set. File pages the kernel
/// caches for the store's payload files are not the daemon's memory and are not counted.
fn watch_memory(pid: u32, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { break };
            let kib = status
                .lines()
                .find_map(|l| l.strip_prefix("RssAnon:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0);
            peak = peak.max(kib << 10);
            std::thread::sleep(Duration::from_millis(50));
        }
        peak
    })
}

/// Block `i` of the large payload: 1 MiB that names its own index, so a lost, repeated or misplaced block
/// shows.
fn block(i: u64, len: usize) -> Vec<u8> {
    let mut b = vec![(i % 251) as u8; len];
    for (k, chunk) in b.chunks_mut(4096).enumerate() {
        let tag = (i << 16 | k as u64).to_be_bytes();
        let n = tag.len().min(chunk.len());
        chunk[..n].copy_from_slice(&tag[..n]);
    }
    b
}

/// Free bytes on the file system holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let out = Command::new("df").args(["--output=avail", "-B1"]).arg(dir).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().nth(1)?.trim().parse().ok()
}

/// `DTN_LARGE_MB` sets the size (default 1000: the 1 GB of the acceptance criteria).
#[test]
fn a_1_gb_payload_crosses_two_daemons_with_bounded_memory() {
    const MIB: u64 = 1 << 20;
    let mb: u64 = std::env::var("DTN_LARGE_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let total = mb * 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    // The payload file, both stores and the received file.
    let need = total * 4;
    if free_bytes(dir.path()).is_some_and(|f| f < need) {
        eprintln!(
            "SKIPPED a_1_gb_payload_crosses_two_daemons_with_bounded_memory: needs {} GB free",
            need / 1_000_000_000
        );
        return;
    }
    let src = dir.path().join("large.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).unwrap());
        let mut left = total;
        for i in 0.. {
            if left == 0 {
                break;
            }
            let n = left.min(MIB);
            std::io::Write::write_all(&mut f, &block(i, n as usize)).unwrap();
            left -= n;
        }
    }
    let a = Daemon::start(dir.path(), "a", None, &[]);
    let b = Daemon::start(dir.path(), "b", Some(&a.tcpcl), &[]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (wa, wb) = (watch_memory(a.child.id(), stop.clone()), watch_memory(b.child.id(), stop.clone()));

    let started = Instant::now();
    let id = ok(&["send", "--api", &a.api, "--dst", "dtn://b/~big", src.to_str().unwrap()]);
    let sent = started.elapsed();
    let out = dir.path().join("out");
    ok(&[
        "recv",
        "--api",
        &b.api,
        "--endpoint",
        "dtn://b/~big",
        "--count",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--timeout",
        "600",
    ]);
    let done = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (peak_a, peak_b) = (wa.join().unwrap(), wb.join().unwrap());
    eprintln!(
        "{mb} MB: stored at a in {:.1} s, delivered at b after {:.1} s; peak anonymous memory a {} MiB, b {} MiB",
        sent.as_secs_f64(),
        done.as_secs_f64(),
        peak_a / MIB,
        peak_b / MIB
    );

    let files: Vec<PathBuf> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].to_string_lossy().contains(&id.trim().replace([':', '/'], "_")[..10]), "{files:?} vs {id}");
    let mut got = std::io::BufReader::new(std::fs::File::open(&files[0]).unwrap());
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), total, "received length");
    let mut left = total;
    for i in 0.. {
        if left == 0 {
            break;
        }
        let n = left.min(MIB) as usize;
        let mut buf = vec![0; n];
        std::io::Read::read_exact(&mut got, &mut buf).unwrap();
        assert!(buf == block(i, n), "block {i} of the payload arrived changed");
        left -= n as u64;
    }
    // Bounded: a few parts in flight per daemon, nowhere near the payload's size.
    let bound = 200 * MIB;
    assert!(peak_a < bound && peak_b < bound, "peak anonymous memory a {} MiB, b {} MiB", peak_a / MIB, peak_b / MIB);
    a.stop();
    b.stop();
}
