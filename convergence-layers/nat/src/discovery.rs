//! STUN servers found through the Mainline DHT: responders announce themselves under the network's
//! info-hash; NATed nodes look them up, check each with a real Binding request and keep the best few.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::StreamExt;
use mainline::Id;
use mainline::async_dht::AsyncDht;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::client::{Binding, RetransmitPolicy, StunClient};
use crate::port::DatagramPort;
use crate::selection::{MappingBehaviour, Selected, Selection, SelectionConfig, classify};

/// BEP 44 limits a salt to 64 bytes; the longest prefix we put before the name is 7 ("dtn-ep/").
pub const MAX_NETWORK_NAME_LEN: usize = 57;

/// The name of a DTN network, shared by all its nodes: it separates its STUN servers, relays and endpoint
/// records from every other network's (and from everything else) in the shared DHT.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NetworkName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a network name is 1 to {MAX_NETWORK_NAME_LEN} bytes of UTF-8")]
pub struct BadNetworkName;

impl NetworkName {
    pub fn new(name: impl Into<String>) -> Result<Self, BadNetworkName> {
        let name = name.into();
        if name.is_empty() || name.len() > MAX_NETWORK_NAME_LEN {
            return Err(BadNetworkName);
        }
        Ok(NetworkName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where the network's STUN responders announce themselves: SHA-1("dtn-stun/" + name).
    pub fn stun_info_hash(&self) -> Id {
        sha1_id("dtn-stun/", &self.0)
    }

    /// Where the network's relay nodes announce themselves: SHA-1("dtn-relay/" + name).
    pub fn relay_info_hash(&self) -> Id {
        sha1_id("dtn-relay/", &self.0)
    }

    /// The BEP 44 salt of endpoint records: "dtn-ep/" + name. A salt lets one identity key publish a
    /// record per network without the records overwriting each other.
    pub fn endpoint_salt(&self) -> Vec<u8> {
        format!("dtn-ep/{}", self.0).into_bytes()
    }
}

fn sha1_id(prefix: &str, name: &str) -> Id {
    let mut h = sha1_smol::Sha1::new();
    h.update(prefix.as_bytes());
    h.update(name.as_bytes());
    Id::from(h.digest().bytes())
}

/// BEP 5 leaves the lifetime of an announcement to the storing nodes; common implementations drop peers
/// after about 30 minutes. Re-announcing every 10 minutes keeps a responder listed through two lost rounds.
pub const DEFAULT_ANNOUNCE_EVERY: Duration = Duration::from_secs(10 * 60);

/// Keeps a STUN responder (or relay) announced; stops when dropped.
#[derive(Debug)]
pub struct Announcer {
    task: JoinHandle<()>,
    announced: watch::Receiver<u64>,
}

impl Announcer {
    /// Announces `port` under `info_hash` now and every `every`. The address is the one the DHT nodes see
    /// our DHT socket at, so the responder must listen on the same host (and, behind port forwarding, the
    /// forwarded port must be the one given). A failed round is retried after a minute at most.
    pub fn spawn(dht: AsyncDht, info_hash: Id, port: u16, every: Duration) -> Announcer {
        let (tx, announced) = watch::channel(0u64);
        let task = tokio::spawn(async move {
            loop {
                let wait = match dht.announce_peer(info_hash, Some(port)).await {
                    Ok(_) => {
                        tx.send_modify(|n| *n += 1);
                        every
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "DHT announcement failed");
                        every.min(Duration::from_secs(60))
                    }
                };
                tokio::time::sleep(wait).await;
            }
        });
        Announcer { task, announced }
    }

    /// Counts successful announcement rounds.
    pub fn announced(&self) -> watch::Receiver<u64> {
        self.announced.clone()
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Finds, checks and keeps STUN servers for one socket.
pub struct StunDiscovery<P: DatagramPort> {
    dht: AsyncDht,
    info_hash: Id,
    client: Arc<StunClient<P>>,
    probe: RetransmitPolicy,
    /// At most this many checks run at once (each is a few 28-byte datagrams).
    parallel: usize,
    selection: Mutex<Selection>,
    /// The latest successful answer of each selected server, to classify the NAT.
    answers: Mutex<Vec<Binding>>,
}

impl<P: DatagramPort> StunDiscovery<P> {
    pub fn new(dht: AsyncDht, network: &NetworkName, client: Arc<StunClient<P>>, cfg: SelectionConfig) -> Self {
        StunDiscovery {
            dht,
            info_hash: network.stun_info_hash(),
            client,
            probe: RetransmitPolicy::probe(),
            parallel: 8,
            selection: Mutex::new(Selection::new(cfg)),
            answers: Mutex::new(Vec::new()),
        }
    }

    /// Sets the retransmission policy of checks (default [`RetransmitPolicy::probe`]).
    pub fn with_probe_policy(mut self, probe: RetransmitPolicy) -> Self {
        self.probe = probe;
        self
    }

    fn selection(&self) -> std::sync::MutexGuard<'_, Selection> {
        self.selection.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the DHT for announced servers and adds them as unverified candidates. Returns how many were
    /// new.
    pub async fn lookup(&self) -> usize {
        let mut found: Vec<SocketAddr> = Vec::new();
        let mut stream = self.dht.get_peers(self.info_hash);
        while let Some(batch) = stream.next().await {
            found.extend(batch.into_iter().map(SocketAddr::V4));
            // Every storing node answers with up to ~20 peers; a bound keeps a hostile flood cheap.
            if found.len() > 4096 {
                break;
            }
        }
        let now = std::time::Instant::now();
        let mut sel = self.selection();
        sel.expire(now);
        sel.offer(found, now)
    }

    /// Checks every candidate that is due now, with a real Binding request each, at most `parallel` at a
    /// time. One pass: what falls due during it waits for the next call.
    pub async fn verify_due(&self) {
        let mut due = self.selection().due(std::time::Instant::now(), usize::MAX).into_iter();
        let mut set = JoinSet::new();
        loop {
            while set.len() < self.parallel {
                let Some(server) = due.next() else { break };
                let client = self.client.clone();
                let probe = self.probe;
                set.spawn(async move { (server, client.binding_with(server, probe).await) });
            }
            let Some(done) = set.join_next().await else { break };
            let Ok((server, result)) = done else { continue };
            self.selection().record(server, &result, std::time::Instant::now());
            if let Ok(b) = result {
                let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
                answers.retain(|a| a.server != b.server);
                answers.push(b);
            }
        }
    }

    /// A lookup, the checks it makes due, and the resulting selection.
    pub async fn refresh(&self) -> Vec<Selected> {
        self.lookup().await;
        self.verify_due().await;
        self.selected()
    }

    /// The chosen servers, best first; only servers whose latest check succeeded.
    pub fn selected(&self) -> Vec<Selected> {
        self.selection().selected()
    }

    /// What the selected servers say about our NAT (`local`: our socket's own address, if known).
    pub fn mapping(&self, local: Option<SocketAddr>) -> MappingBehaviour {
        let selected = self.selected();
        let answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        let current: Vec<Binding> =
            answers.iter().filter(|a| selected.iter().any(|s| s.server == a.server)).copied().collect();
        classify(local, &current)
    }
}

impl<P: DatagramPort> StunDiscovery<P> {
    /// Refreshes now and then every `every` (re-checks fall due by the selection's own clock), publishing
    /// each selection on the returned channel. Stops when the handle is dropped.
    pub fn spawn(self: Arc<Self>, every: Duration) -> (DiscoveryTask, watch::Receiver<Vec<Selected>>) {
        let (tx, rx) = watch::channel(Vec::new());
        let task = tokio::spawn(async move {
            loop {
                let selected = self.refresh().await;
                tx.send_replace(selected);
                tokio::time::sleep(every).await;
            }
        });
        (DiscoveryTask(task), rx)
    }
}

/// Stops [`StunDiscovery::spawn`]'s loop when dropped.
#[derive(Debug)]
pub struct DiscoveryTask(JoinHandle<()>);

impl Drop for DiscoveryTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_hashes_are_sha1_of_prefix_and_name() {
        let n = NetworkName::new("hills").unwrap();
        // sha1("dtn-stun/hills"), computed independently with `printf dtn-stun/hills | sha1sum`.
        assert_eq!(n.stun_info_hash().to_string(), "bb1c089d691ff43f67ae714a4128c15315494527");
        assert_ne!(n.stun_info_hash(), n.relay_info_hash());
        assert_ne!(n.stun_info_hash(), NetworkName::new("coast").unwrap().stun_info_hash());
        assert_eq!(n.endpoint_salt(), b"dtn-ep/hills");
        assert!(NetworkName::new("").is_err());
        assert!(NetworkName::new("x".repeat(58)).is_err());
        assert!(NetworkName::new("x".repeat(57)).unwrap().endpoint_salt().len() <= 64);
    }
}
