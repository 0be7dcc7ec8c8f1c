//! What the network-namespace tests share: whether they can run here, one case at a time, and `ip`.

use std::process::Command;
use std::sync::{Mutex, MutexGuard};

/// The cases of a test binary run one after another: each starts several daemons, and together they would
/// starve each other on a small machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Why these tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("network namespaces need root".into());
    }
    let probe = format!("dtnprobe{}", std::process::id());
    match Command::new("ip").args(["netns", "add", &probe]).output() {
        Ok(o) if o.status.success() => {
            let _ = Command::new("ip").args(["netns", "del", &probe]).status();
            None
        }
        Ok(o) => Some(format!("`ip netns add` fails: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Some(format!("no `ip` command: {e}")),
    }
}

/// The start of every case: `None` (after printing why) if namespaces are unavailable; else waits for the
/// cases before it and holds the others back until the guard is dropped.
/// `let Some(_one) = one_case() else { return };`
pub fn one_case() -> Option<MutexGuard<'static, ()>> {
    // The probe runs under the lock too: two cases probing at once would trip over each other's namespace.
    let one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = unavailable() {
        eprintln!("skipped: {why}");
        return None;
    }
    Some(one)
}

/// `ip ARGS`, which must succeed.
pub fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().expect("ip runs");
    assert!(o.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}
