//! A small blocking client of the node's application API (docs/api.md), used by the `dtn` command and by
//! tests. Payloads travel as raw bodies, both ways.

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

mod ws;

pub use ws::{Subscription, WsDelivery};

/// Default API address, the same as `dtnd --api`'s.
pub const DEFAULT_API: &str = "127.0.0.1:3000";

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers at the address.
    #[error("no node answers at {addr} (is dtnd running? start it or pass --api ADDR:PORT)")]
    NotRunning {
        /// The API address.
        addr: SocketAddr,
    },
    /// The node answered with an error.
    #[error("{0}")]
    Node(String),
    /// The request failed on the way.
    #[error("{0}")]
    Http(String),
}

/// A connection to one node's API.
pub struct Client {
    addr: SocketAddr,
    agent: ureq::Agent,
}

/// Options of a send.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// Lifetime in seconds.
    pub lifetime_s: Option<u64>,
    /// Priority 0–255.
    pub priority: Option<u8>,
    /// Status reports wanted: comma-separated received, forwarded, delivered, deleted.
    pub report: Option<String>,
    /// Where reports go.
    pub report_to: Option<String>,
    /// Source endpoint (default: the node ID).
    pub source: Option<String>,
}

impl SendOptions {
    fn apply<B>(&self, mut req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        if let Some(l) = self.lifetime_s {
            req = req.query("lifetime", l.to_string());
        }
        if let Some(p) = self.priority {
            req = req.query("priority", p.to_string());
        }
        if let Some(r) = &self.report {
            req = req.query("report", r);
        }
        if let Some(r) = &self.report_to {
            req = req.query("report_to", r);
        }
        if let Some(s) = &self.source {
            req = req.query("src", s);
        }
        req
    }
}

/// A bundle being received from an endpoint.
pub struct Receiving {
    /// Compact bundle ID.
    pub id: String,
    /// Source endpoint.
    pub source: String,
    /// Payload length, when the node said.
    pub len: Option<u64>,
    /// The payload, read from the node as it is consumed.
    pub payload: Box<dyn Read + Send>,
}

/// A bundle received from an endpoint.
#[derive(Debug, Clone)]
pub struct Received {
    /// Compact bundle ID.
    pub id: String,
    /// Source endpoint.
    pub source: String,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Answer of a send.
#[derive(Debug, Clone, Deserialize)]
pub struct Sent {
    /// Compact bundle ID.
    pub id: String,
    /// Fragments it was split into at the source (1 if none).
    pub fragments: usize,
}

impl Client {
    /// A client for the API at `addr`.
    pub fn new(addr: SocketAddr) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .build()
            .new_agent();
        Client { addr, agent }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn check(
        &self,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, ClientError> {
        let r = r.map_err(|e| match e {
            ureq::Error::Io(ref io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning { addr: self.addr }
            }
            ureq::Error::ConnectionFailed => ClientError::NotRunning { addr: self.addr },
            other => ClientError::Http(other.to_string()),
        })?;
        if r.status().is_success() {
            return Ok(r);
        }
        let status = r.status();
        let text = r.into_body().read_to_string().unwrap_or_default();
        let text = text.trim();
        Err(ClientError::Node(if text.is_empty() { status.to_string() } else { text.to_string() }))
    }

    fn json<T: serde::de::DeserializeOwned>(&self, r: ureq::http::Response<ureq::Body>) -> Result<T, ClientError> {
        let text = r.into_body().read_to_string().map_err(|e| ClientError::Http(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| ClientError::Http(format!("unexpected answer: {e}")))
    }

    /// Sends `payload` to `dst` (`len` bytes if known, else streamed until its end); returns once the bundle
    /// is durable in the node's store.
    pub fn send(
        &self,
        dst: &str,
        payload: impl Read + Send + 'static,
        len: Option<u64>,
        opts: &SendOptions,
    ) -> Result<Sent, ClientError> {
        let mut req = opts.apply(self.agent.post(self.url("/send")).query("dst", dst));
        if let Some(len) = len {
            req = req.header("content-length", len.to_string());
        }
        let r = self.check(req.send(ureq::SendBody::from_owned_reader(payload)))?;
        self.json(r)
    }

    /// Sends many small payloads to `dst` in one request; returns their IDs, all durable.
    pub fn send_batch(&self, dst: &str, payloads: &[Vec<u8>]) -> Result<Vec<String>, ClientError> {
        self.send_batch_with(dst, payloads, &SendOptions::default())
    }

    /// [`send_batch`](Self::send_batch) with options (the same for every payload). All are stored or none.
    pub fn send_batch_with(
        &self,
        dst: &str,
        payloads: &[Vec<u8>],
        opts: &SendOptions,
    ) -> Result<Vec<String>, ClientError> {
        let mut body = Vec::with_capacity(payloads.iter().map(|p| p.len() + 4).sum());
        for p in payloads {
            let len = u32::try_from(p.len()).map_err(|_| ClientError::Http("payload over 4 GiB in a batch".into()))?;
            body.extend_from_slice(&len.to_be_bytes());
            body.extend_from_slice(p);
        }
        let req = opts.apply(self.agent.post(self.url("/send/batch")).query("dst", dst));
        let r = self.check(req.send(&body[..]))?;
        #[derive(Deserialize)]
        struct Ids {
            ids: Vec<String>,
        }
        Ok(self.json::<Ids>(r)?.ids)
    }

    /// Registers an endpoint at the node.
    pub fn register(&self, endpoint: &str) -> Result<(), ClientError> {
        self.check(self.agent.post(self.url("/endpoints")).query("eid", endpoint).send_empty())?;
        Ok(())
    }

    /// The next bundle for `endpoint`, waiting up to `wait` for one. With `manual_ack` the node keeps it
    /// until [`ack`](Self::ack) (or gives it to the next reader after a minute).
    pub fn recv(&self, endpoint: &str, wait: Duration, manual_ack: bool) -> Result<Option<Received>, ClientError> {
        let Some(mut r) = self.recv_stream(endpoint, wait, manual_ack)? else { return Ok(None) };
        let mut payload = Vec::new();
        r.payload.read_to_end(&mut payload).map_err(|e| ClientError::Http(format!("reading the payload: {e}")))?;
        Ok(Some(Received { id: r.id, source: r.source, payload }))
    }

    /// Like [`recv`](Self::recv), with the payload as a stream: for payloads too large to hold in memory.
    pub fn recv_stream(
        &self,
        endpoint: &str,
        wait: Duration,
        manual_ack: bool,
    ) -> Result<Option<Receiving>, ClientError> {
        let req = self
            .agent
            .get(self.url("/recv"))
            .query("endpoint", endpoint)
            .query("wait", wait.as_secs().to_string())
            .query("ack", if manual_ack { "manual" } else { "auto" });
        let r = self.check(req.call())?;
        if r.status() == 204 {
            return Ok(None);
        }
        let header = |k: &str| r.headers().get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let (id, source) = (header("x-bundle-id"), header("x-source"));
        let len = header("content-length").parse().ok();
        let payload = Box::new(r.into_body().into_with_config().limit(u64::MAX).reader());
        Ok(Some(Receiving { id, source, len, payload }))
    }

    /// Confirms a bundle received with manual acknowledgement.
    pub fn ack(&self, id: &str) -> Result<(), ClientError> {
        self.check(self.agent.post(self.url("/recv/ack")).query("id", id).send_empty())?;
        Ok(())
    }

    /// Stored bundles (JSON objects as the API returns them).
    pub fn list(&self) -> Result<Vec<serde_json::Value>, ClientError> {
        let r = self.check(self.agent.get(self.url("/bundles")).call())?;
        self.json(r)
    }

    /// One stored bundle's metadata.
    pub fn show(&self, id: &str) -> Result<serde_json::Value, ClientError> {
        let r = self.check(self.agent.get(self.url("/bundle")).query("id", id).call())?;
        self.json(r)
    }

    /// One stored bundle's encoded bytes.
    pub fn raw(&self, id: &str) -> Result<Vec<u8>, ClientError> {
        let r = self.check(self.agent.get(self.url("/bundle/raw")).query("id", id).call())?;
        let mut out = Vec::new();
        r.into_body().into_reader().read_to_end(&mut out).map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(out)
    }

    /// Deletes a stored bundle.
    pub fn delete(&self, id: &str) -> Result<(), ClientError> {
        self.check(self.agent.delete(self.url("/bundle")).query("id", id).call())?;
        Ok(())
    }

    /// Stores an encoded bundle as if a peer had sent it.
    pub fn import(&self, bundle: &[u8]) -> Result<(), ClientError> {
        self.check(self.agent.post(self.url("/import")).send(bundle))?;
        Ok(())
    }

    /// Peers in contact.
    pub fn peers(&self) -> Result<Vec<serde_json::Value>, ClientError> {
        let r = self.check(self.agent.get(self.url("/peers")).call())?;
        self.json(r)
    }

    /// Node counters.
    pub fn stats(&self) -> Result<serde_json::Value, ClientError> {
        let r = self.check(self.agent.get(self.url("/stats")).call())?;
        self.json(r)
    }

    /// The node's ID.
    pub fn node_id(&self) -> Result<String, ClientError> {
        let r = self.check(self.agent.get(self.url("/node")).call())?;
        let v: serde_json::Value = self.json(r)?;
        Ok(v["node"].as_str().unwrap_or_default().to_string())
    }

    /// Opens a WebSocket stream of deliveries for `endpoint` (`GET /ws`, see [`Subscription`]). With
    /// `manual_ack` each bundle stays the stream's until [`Subscription::ack`] (it is delivered again if it is
    /// given back with [`Subscription::nack`] or the stream ends first). Payloads longer than `max_payload`
    /// bytes are read to their end but kept only up to it ([`WsDelivery::truncated`]), so memory stays bounded
    /// whatever arrives.
    pub fn subscribe(&self, endpoint: &str, manual_ack: bool, max_payload: usize) -> Result<Subscription, ClientError> {
        Subscription::open(self.addr, endpoint, manual_ack, max_payload)
    }

    /// Cuts (or restores) the node's sessions to a peer.
    pub fn set_link(&self, peer: &str, up: bool) -> Result<(), ClientError> {
        let req = self.agent.post(self.url("/link")).query("peer", peer).query("up", up.to_string());
        self.check(req.send_empty())?;
        Ok(())
    }
}
