//! What the tests that run `dtnd` processes share: the binaries, free ports, the daemon's command line, a
//! daemon on loopback, and waiting for a condition.

// Each test file is its own crate and uses only some of these.
#![allow(dead_code)]

pub mod netns;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn dtnd() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dtnd"))
}

/// The `dtn` command, built next to `dtnd` by `cargo test --workspace`.
pub fn dtn() -> PathBuf {
    let p = dtnd().with_file_name(format!("dtn{}", std::env::consts::EXE_SUFFIX));
    assert!(p.exists(), "{} is missing: run `cargo build -p dtn-cli` or `cargo test --workspace`", p.display());
    p
}

/// The identity key of the node whose store is `store` (created there if there is none yet), as
/// `dtnd --print-identity` prints it for the operator to hand to the other side.
pub fn print_identity(store: &Path) -> String {
    let out = Command::new(dtnd()).arg("--store").arg(store).arg("--print-identity").output().expect("dtnd runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `cmd`, which runs `dtnd()` (directly or inside a network namespace), given what every test's node has:
/// node ID `dtn://NAME/`, its store, its TCPCL and API addresses, no discovery, and warnings on standard
/// error.
pub fn dtnd_args<'a>(cmd: &'a mut Command, name: &str, store: &Path, tcpcl: &str, api: &str) -> &'a mut Command {
    cmd.args(["--node-id", &format!("dtn://{name}/"), "--store"])
        .arg(store)
        .args(["--tcpcl", tcpcl, "--api", api, "--no-discovery"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
}

/// Polls `done` every `every` until it holds; panics with `what` once `within` has passed.
pub fn wait_until(within: Duration, every: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(every);
    }
}

/// `dtn ARGS`.
pub fn run(args: &[&str]) -> Output {
    Command::new(dtn()).args(args).output().expect("dtn runs")
}

/// A `dtnd` on loopback ports of its own, storing under `dir/NAME`; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub api: String,
    pub tcpcl: String,
}

impl Daemon {
    /// Starts it, dialling `peer` (a TCPCL address) if given, with `extra` arguments, and waits for its API.
    pub fn start(dir: &Path, name: &str, peer: Option<&str>, extra: &[&str]) -> Daemon {
        let (api, tcpcl) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
        let mut cmd = Command::new(dtnd());
        dtnd_args(&mut cmd, name, &dir.join(name), &tcpcl, &api).args(extra);
        if let Some(p) = peer {
            cmd.args(["--peer", &format!("tcp://{p}")]);
        }
        let d = Daemon { child: cmd.spawn().expect("dtnd starts"), api, tcpcl };
        wait_until(Duration::from_secs(20), Duration::from_millis(50), &format!("dtnd {name} did not come up"), || {
            run(&["stats", "--api", &d.api]).status.success()
        });
        d
    }

    /// SIGTERM, and the daemon must exit cleanly.
    pub fn stop(mut self) {
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
