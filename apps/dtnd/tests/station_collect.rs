//! `dtn station` and `dtn collect` against real `dtnd` processes on loopback: a station without a clock
//! whose readings the van dates by bundle age, a collector killed mid-run that loses nothing and stores
//! nothing twice, and a payload that is not a batch set aside.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Daemon, dtn, run};

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn collect(api: &str, out: &Path, idle: &str) -> Child {
    Command::new(dtn())
        .args(["collect", "--api", api, "--quiet", "--until-idle", idle, "--out"])
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dtn collect starts")
}

/// (sensor, seq) of the batches a station's output says were accepted.
fn sent(stdout: &[u8]) -> Vec<(String, u64)> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() == 6 && f[0] == "sent").then(|| (f[2].to_string(), f[3].parse().unwrap()))
        })
        .collect()
}

#[test]
fn a_clockless_station_is_dated_by_age_and_a_killed_collector_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let station = Daemon::start(dir.path(), "hill", None, &["--no-clock"]);
    let van = Daemon::start(dir.path(), "van", Some(&station.tcpcl), &[]);
    let archive = dir.path().join("archive");

    // The collector registers, takes a little, and dies without warning.
    let mut first = collect(&van.api, &archive, "30s");
    std::thread::sleep(Duration::from_millis(1500));
    let t0 = unix_ms();
    let st = Command::new(dtn())
        .args(["station", "--api", &station.api, "--station", "hill", "--clock", "uptime"])
        .args(["--sensors", "temperature=100,barometer=100", "--batch", "5", "--duration", "3s", "--state"])
        .arg(dir.path().join("state"))
        .output()
        .expect("dtn station runs");
    let t1 = unix_ms();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let batches = sent(&st.stdout);
    assert!(batches.len() >= 8, "{batches:?}");
    // Bundles from a node without a clock: creation time 0 in their IDs.
    assert!(String::from_utf8_lossy(&st.stdout).contains(" dtn://hill/-0-"));
    first.kill().unwrap();
    first.wait().unwrap();

    // Something that is not a batch, for the same endpoint.
    let junk = run(&["send", "--api", &station.api, "--dst", "dtn://collector/~weather", "/dev/null"]);
    assert!(junk.status.success(), "{}", String::from_utf8_lossy(&junk.stderr));

    // Ends once nothing has come for 10 s: long enough for the last batches still on their way from the
    // station's node on a busy machine.
    let second = collect(&van.api, &archive, "10s");
    let out = second.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(archive.join("report.json")).unwrap()).unwrap();
    let hill = &report["stations"]["hill"]["sensors"];
    let count = |s: &str| hill[s]["batches"].as_u64().unwrap_or(0);
    let want = |s: &str| batches.iter().filter(|(n, _)| n == s).count() as u64;
    assert_eq!(count("sim/temperature"), want("sim/temperature"), "{report}");
    assert_eq!(count("sim/barometer"), want("sim/barometer"), "{report}");
    assert_eq!(hill["sim/temperature"]["gaps"], serde_json::json!([]), "{report}");
    assert_eq!(report["rejected"], 1, "{report}");
    assert_eq!(std::fs::read_dir(archive.join("rejected")).unwrap().count(), 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("hill") && text.contains("payloads were not sensor batches"), "{text}");

    // Every row dated in real time from the bundles' age, within the run (and the manifest's rows match).
    let csv = std::fs::read_to_string(archive.join("hill/sim%2Ftemperature.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len() as u64, hill["sim/temperature"]["readings"].as_u64().unwrap());
    for r in &rows {
        let f: Vec<&str> = r.split(',').collect();
        let t: u64 = f[0].parse().unwrap_or_else(|_| panic!("undated row {r}"));
        assert!(t + 2_000 >= t0 && t <= t1 + 2_000, "row {r} dated outside the run {t0}..{t1}");
        assert!(!f[2].is_empty(), "uptime kept: {r}");
    }
}
