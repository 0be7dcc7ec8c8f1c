//! Rendezvous through BEP 44: a node publishes its [`EndpointRecord`] as a mutable item signed with its
//! Ed25519 identity key (salt "dtn-ep/" + network name); a peer that knows the key resolves it.

use std::path::PathBuf;
use std::time::Duration;

use mainline::async_dht::AsyncDht;
use mainline::errors::{ConcurrencyError, PutMutableError};
use mainline::{MutableItem, SigningKey};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::discovery::NetworkName;
use crate::record::{EndpointRecord, RecordError};
use crate::seq::{SeqError, SeqFile};

/// Storing nodes keep items for a time of their own choosing: BEP 44 leaves it to them, deployed nodes
/// forget an item an hour or two after its last put, and the `mainline` crate keeps items until its cache
/// is full. Republishing every 30 minutes keeps the record alive through a lost round even with the
/// one-hour nodes, and reaches nodes that joined the DHT near our key since.
pub const DEFAULT_REPUBLISH_EVERY: Duration = Duration::from_secs(30 * 60);
/// After a failed publication, try again this soon (or at the next change).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Seq(#[from] SeqError),
    #[error("DHT put failed: {0}")]
    Dht(#[from] PutMutableError),
    #[error("the sequence-number task failed")]
    Join,
}

/// Publishes one node's endpoint record.
pub struct Publisher {
    dht: AsyncDht,
    key: SigningKey,
    salt: Vec<u8>,
    seq: Option<SeqFile>,
    /// The DHT's highest `seq` for our item was read once since start (guards a lost sequence file).
    checked_dht: bool,
}

impl Publisher {
    /// `seq_path`: the file holding the item's sequence number (created if absent; see [`SeqFile`]).
    pub fn new(
        dht: AsyncDht,
        key: SigningKey,
        network: &NetworkName,
        seq_path: impl Into<PathBuf>,
    ) -> Result<Publisher, PublishError> {
        Ok(Publisher {
            dht,
            key,
            salt: network.endpoint_salt(),
            seq: Some(SeqFile::open(seq_path)?),
            checked_dht: false,
        })
    }

    /// The identity public key records are published under.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    async fn highest_in_dht(&self) -> i64 {
        let key = self.public_key();
        self.dht.get_mutable_most_recent(&key, Some(&self.salt)).await.map(|i| i.seq()).unwrap_or(0)
    }

    async fn reserve(&mut self, floor: i64) -> Result<i64, PublishError> {
        // The file is synced; keep that off the async threads.
        let mut file = self.seq.take().ok_or(PublishError::Join)?;
        let (file, result) = tokio::task::spawn_blocking(move || {
            let r = file.reserve(floor);
            (file, r)
        })
        .await
        .map_err(|_| PublishError::Join)?;
        self.seq = Some(file);
        Ok(result?)
    }

    /// Signs and stores `record` under a fresh sequence number, which it returns.
    pub async fn publish(&mut self, record: &EndpointRecord) -> Result<i64, PublishError> {
        let value = record.encode()?;
        let mut floor = 0;
        if !self.checked_dht {
            floor = self.highest_in_dht().await;
            self.checked_dht = true;
        }
        let mut retried = false;
        loop {
            let seq = self.reserve(floor).await?;
            let item = MutableItem::new(self.key.clone(), &value, seq, Some(&self.salt));
            match self.dht.put_mutable(item, None).await {
                Ok(_) => return Ok(seq),
                // Someone holds a higher number (our file was lost, or the key runs on two machines): jump
                // above it once.
                Err(PutMutableError::Concurrency(ConcurrencyError::NotMostRecent)) if !retried => {
                    retried = true;
                    floor = self.highest_in_dht().await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Publishes `initial` now, again whenever [`PublisherHandle::update`] changes the reachability, and
    /// every `every` in any case (items expire). Stops when the handle is dropped.
    pub fn spawn(self, initial: EndpointRecord, every: Duration) -> PublisherHandle {
        self.spawn_with_retry(initial, every, DEFAULT_RETRY_AFTER)
    }

    pub fn spawn_with_retry(mut self, initial: EndpointRecord, every: Duration, retry: Duration) -> PublisherHandle {
        let (record_tx, mut record_rx) = watch::channel(initial);
        let (status_tx, status) = watch::channel(PublishStatus::default());
        let task = tokio::spawn(async move {
            let mut published: Option<EndpointRecord> = None;
            loop {
                let current = record_rx.borrow_and_update().clone();
                let wait = match self.publish(&current).await {
                    Ok(seq) => {
                        status_tx.send_modify(|s| {
                            s.last_seq = Some(seq);
                            s.publications += 1;
                        });
                        published = Some(current);
                        every
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "publishing the endpoint record failed");
                        status_tx.send_modify(|s| s.failures += 1);
                        retry.min(every)
                    }
                };
                let deadline = tokio::time::Instant::now() + wait;
                // Sleep until the deadline, waking early only for a change worth publishing.
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => break,
                        changed = record_rx.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            let new = record_rx.borrow().clone();
                            if published.as_ref().is_none_or(|p| !p.same_reachability(&new)) {
                                break;
                            }
                        }
                    }
                }
            }
        });
        PublisherHandle { record: record_tx, status, task }
    }
}

/// What the publishing task has done so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PublishStatus {
    pub last_seq: Option<i64>,
    pub publications: u64,
    pub failures: u64,
}

/// Controls a running [`Publisher::spawn`] task; dropping it stops the task.
#[derive(Debug)]
pub struct PublisherHandle {
    record: watch::Sender<EndpointRecord>,
    status: watch::Receiver<PublishStatus>,
    task: JoinHandle<()>,
}

impl PublisherHandle {
    /// Sets the record to publish; it goes out at once if its endpoints, NAT class or relays changed.
    pub fn update(&self, record: EndpointRecord) {
        self.record.send_replace(record);
    }

    pub fn status(&self) -> watch::Receiver<PublishStatus> {
        self.status.clone()
    }
}

impl Drop for PublisherHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The key's latest item is validly signed but does not hold a record we understand.
    #[error("the peer's endpoint record does not decode: {0}")]
    Record(#[from] RecordError),
}

/// A peer's latest endpoint record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub seq: i64,
    pub record: EndpointRecord,
}

/// Looks up peers' endpoint records.
#[derive(Clone)]
pub struct Resolver {
    dht: AsyncDht,
    salt: Vec<u8>,
}

impl Resolver {
    pub fn new(dht: AsyncDht, network: &NetworkName) -> Resolver {
        Resolver { dht, salt: network.endpoint_salt() }
    }

    /// The latest record published under `public_key`, `Ok(None)` if the DHT holds none. `mainline` drops
    /// every item whose signature does not verify against the key and salt before we see it, so what is
    /// returned was signed by the key's owner.
    pub async fn resolve(&self, public_key: &[u8; 32]) -> Result<Option<Resolved>, ResolveError> {
        let Some(item) = self.dht.get_mutable_most_recent(public_key, Some(&self.salt)).await else {
            return Ok(None);
        };
        let record = EndpointRecord::decode(item.value())?;
        Ok(Some(Resolved { seq: item.seq(), record }))
    }
}
