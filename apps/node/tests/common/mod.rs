//! Nodes that talk only through WireGuard tunnels on loopback, for the test binaries that need them.

#![allow(dead_code)]

use std::time::Duration;

use dtn_node::{Identity, NodeConfig, NodeHandle, PeerKey, WgConfig, WgPeer};

/// A node called `name` under `dir` with no TCPCL listener, no discovery and no API: its only link is a
/// WireGuard tunnel on a free loopback port to `peers`.
pub fn wg_config(dir: &std::path::Path, name: &str, peers: Vec<WgPeer>) -> NodeConfig {
    let mut cfg = NodeConfig::new(format!("dtn://{name}/").parse().unwrap(), dir.join(name));
    cfg.tcpcl = None;
    cfg.discovery = false;
    cfg.api = None;
    cfg.seed = 1;
    let mut wg = WgConfig::new("127.0.0.1:0".parse().unwrap());
    wg.peers = peers;
    cfg.wg = Some(wg);
    cfg
}

/// Creates the identity file a node named `name` will load, so that its key is known before it starts.
pub fn identity(dir: &std::path::Path, name: &str) -> PeerKey {
    let id = Identity::generate().unwrap();
    id.store(&dir.join(name).join("identity")).unwrap();
    id.public()
}

/// Waits (up to 20 s) until `h` has a contact up.
pub async fn wait_for_peer(h: &NodeHandle) {
    for _ in 0..400 {
        if !h.peers().await.unwrap().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no contact came up");
}

/// A node called `name` under `dir` with a TCPCL listener on a free loopback port, no discovery and no API.
pub fn loopback_config(dir: &std::path::Path, name: &str) -> NodeConfig {
    let mut cfg = NodeConfig::new(format!("dtn://{name}/").parse().unwrap(), dir.join(name));
    cfg.tcpcl = Some("127.0.0.1:0".parse().unwrap());
    cfg.discovery = false;
    cfg.api = None;
    cfg.seed = 1;
    cfg
}
