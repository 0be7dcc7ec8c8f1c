//! Interoperability with dtn7-rs 0.21.0 over TCPCLv4: our `dtnd` and dtn7's `dtnd` exchange bundles in both
//! directions. dtn7 is installed by `scripts/install-dtn7.sh` (which `.ci/run` calls); its directory comes
//! from `DTN7_BIN`, else the script's default cache. Without it the test says why and skips.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{dtn, dtnd, dtnd_args, free_port, wait_until};

fn dtn7_bin() -> Option<PathBuf> {
    let dir = match std::env::var_os("DTN7_BIN") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/dtn-interop/dtn7-0.21.0/bin"),
    };
    dir.join("dtnd").exists().then_some(dir)
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How often the test looks again for what it waits for.
const POLL: Duration = Duration::from_millis(200);

fn output(cmd: &mut Command) -> Output {
    cmd.output().expect("command runs")
}

#[test]
fn our_node_and_dtn7_exchange_bundles_both_ways() {
    let Some(d7) = dtn7_bin() else {
        eprintln!(
            "SKIPPED our_node_and_dtn7_exchange_bundles_both_ways: dtn7 0.21.0 is not installed (run scripts/install-dtn7.sh or set DTN7_BIN)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (p7, w7, pours, api) = (free_port(), free_port(), free_port(), free_port());
    let api = format!("127.0.0.1:{api}");
    let work = dir.path().join("dtn7");
    std::fs::create_dir_all(&work).unwrap();
    let _dtn7 = Proc(
        Command::new(d7.join("dtnd"))
            .args(["-n", "dtn://seven/", "-W"])
            .arg(&work)
            .args(["-D", "mem", "-r", "epidemic", "-e", "incoming", "--disable_nd", "-i", "0"])
            .args(["-C", &format!("tcp:port={p7}:bind=127.0.0.1"), "-w", &w7.to_string()])
            .args(["-s", &format!("tcp://127.0.0.1:{pours}/ours")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dtn7 dtnd starts"),
    );
    let _ours = Proc(
        dtnd_args(&mut Command::new(dtnd()), "ours", &dir.path().join("ours"), &format!("127.0.0.1:{pours}"), &api)
            .args(["--peer", &format!("tcp://127.0.0.1:{p7}")])
            // Info, where `dtnd_args` sets warn.
            .env("RUST_LOG", "info")
            .spawn()
            .expect("our dtnd starts"),
    );
    let dtn = dtn();
    wait_until(Duration::from_secs(30), POLL, "timed out waiting for a session with dtn7", || {
        let out = output(Command::new(&dtn).args(["peers", "--api", &api, "--json"]));
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("seven")
    });

    // Ours -> dtn7.
    let payload = dir.path().join("to-seven");
    std::fs::write(&payload, b"hello dtn7, from ours").unwrap();
    let out = output(Command::new(&dtn).args(["send", "--api", &api, "--dst", "dtn://seven/incoming"]).arg(&payload));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut got = Vec::new();
    wait_until(Duration::from_secs(60), POLL, "timed out waiting for the bundle at dtn7", || {
        let out = output(Command::new(d7.join("dtnrecv")).args(["-p", &w7.to_string(), "-e", "incoming"]));
        got = out.stdout;
        !got.is_empty()
    });
    assert_eq!(got, b"hello dtn7, from ours");

    // dtn7 -> ours.
    let mut send = Command::new(d7.join("dtnsend"))
        .args(["-p", &w7.to_string(), "-r", "dtn://ours/~in"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut send.stdin.take().unwrap(), b"hello ours, from dtn7").unwrap();
    assert!(send.wait().unwrap().success());
    let out = output(Command::new(&dtn).args([
        "recv",
        "--api",
        &api,
        "--endpoint",
        "dtn://ours/~in",
        "--count",
        "1",
        "--timeout",
        "60",
    ]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"hello ours, from dtn7");
}
