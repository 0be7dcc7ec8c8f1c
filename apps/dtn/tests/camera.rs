//! `dtn camera` and `dtn house` as processes, against a real node (LMDB store, HTTP API on loopback).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dtn_node::{Node, NodeConfig};

/// A camera sends frames through the node to itself (the node is the house); the house archives every one
/// exactly once, finds the walking box, and on SIGTERM writes its index and a summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_from_a_camera_process_end_up_in_the_house_archive() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = NodeConfig::new("dtn://house/".parse().unwrap(), dir.path().join("store"));
    cfg.tcpcl = None;
    cfg.discovery = false;
    cfg.api = Some("127.0.0.1:0".parse().unwrap());
    let node = Node::start(cfg).await.unwrap();
    let api = node.api_addr().unwrap().to_string();
    let out = dir.path().join("archive");
    let dtn = env!("CARGO_BIN_EXE_dtn");

    let house = Command::new(dtn)
        .args(["house", "--api", &api, "--out", out.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let camera = tokio::task::spawn_blocking({
        let (dtn, api) = (dtn.to_string(), api.clone());
        move || {
            Command::new(dtn)
                .args(["camera", "--api", &api, "--camera", "gate", "--count", "12", "--fps", "20"])
                .args(["--size", "160x120", "--quiet"])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(camera.status.success(), "{}", String::from_utf8_lossy(&camera.stderr));

    let frames = out.join("gate");
    let deadline = Instant::now() + Duration::from_secs(30);
    let count = || walkdir_jpgs(&frames);
    while count() < 12 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stopped = Command::new("kill").args(["-TERM", &house.id().to_string()]).status().unwrap();
    assert!(stopped.success());
    let house = tokio::task::spawn_blocking(move || house.wait_with_output().unwrap()).await.unwrap();
    let text = String::from_utf8_lossy(&house.stdout);
    assert!(house.status.success(), "{text}");
    assert_eq!(count(), 12, "{text}");
    assert!(text.contains("gate frame 1: motion"), "{text}");
    let summary = text.lines().find(|l| l.starts_with("gate ")).unwrap_or_default().to_string();
    assert_eq!(summary.split_whitespace().take(3).collect::<Vec<_>>(), ["gate", "12", "0"], "{text}");
    assert!(out.join("index.html").is_file() && out.join("events.jsonl").is_file());
    // Every delivery was acknowledged: nothing waits at the node.
    let stats = node.handle().stats().await.unwrap();
    assert_eq!(stats.store.bundles, 0, "{stats:?}");
    node.shutdown().await;
}

/// Frames under the camera's day directories.
fn walkdir_jpgs(camera: &std::path::Path) -> usize {
    let Ok(days) = std::fs::read_dir(camera) else { return 0 };
    days.flatten()
        .filter(|d| d.file_name() != "thumbs")
        .filter_map(|d| std::fs::read_dir(d.path()).ok())
        .flat_map(|files| files.flatten())
        .filter(|f| f.file_name().to_string_lossy().ends_with(".jpg"))
        .count()
}
