//! Deliveries over the API's WebSocket (`GET /ws`), blocking.
//!
//! Per bundle the node sends a text frame (its header) and then one or more binary frames holding exactly
//! `length` payload bytes (one empty frame for an empty payload). With manual acknowledgement a bundle stays
//! the client's until it says it has stored it ([`Subscription::ack`]) or gives it back
//! ([`Subscription::nack`]); closing the socket gives back whatever is not acknowledged, so a client that
//! acknowledges only what it has made durable loses nothing when it crashes.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tungstenite::{Message, WebSocket};

use crate::ClientError;

/// A bundle received over the WebSocket.
#[derive(Debug, Clone)]
pub struct WsDelivery {
    /// Compact bundle ID (what [`Subscription::ack`] and [`Subscription::nack`] take).
    pub id: String,
    /// Source endpoint.
    pub source: String,
    /// Destination endpoint.
    pub destination: String,
    /// Creation time (DTN time, ms); 0 when the source had no clock.
    pub creation_time: u64,
    /// How old the bundle was when the node handed it over (ms), when it carries a bundle age.
    pub age_ms: Option<u64>,
    /// The payload's length as the node announced it.
    pub len: u64,
    /// The payload, or its first `max_payload` bytes if it was longer (the rest was read and dropped).
    pub payload: Vec<u8>,
}

impl WsDelivery {
    /// Whether the payload was longer than the subscription keeps.
    pub fn truncated(&self) -> bool {
        (self.payload.len() as u64) < self.len
    }
}

#[derive(Deserialize)]
struct Head {
    id: String,
    source: String,
    destination: String,
    length: u64,
    #[serde(default)]
    creation_time: u64,
    #[serde(default)]
    age_ms: Option<u64>,
}

/// A delivery whose header has come and whose payload is still arriving.
struct Partial {
    head: Head,
    payload: Vec<u8>,
    /// Payload bytes received, kept or not.
    got: u64,
}

/// A WebSocket stream of deliveries for one endpoint ([`Client::subscribe`](crate::Client::subscribe)).
pub struct Subscription {
    socket: WebSocket<TcpStream>,
    max_payload: usize,
    partial: Option<Partial>,
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay; endpoint IDs hold `:` and `/`,
/// sometimes `?`).
fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn ws_err(e: tungstenite::Error) -> ClientError {
    ClientError::Http(format!("WebSocket: {e}"))
}

fn protocol(what: &str) -> ClientError {
    ClientError::Http(format!("WebSocket: {what}"))
}

impl Subscription {
    /// Opens `GET /ws?endpoint=…` at the API `addr`. Payloads longer than `max_payload` are cut to it.
    pub fn open(addr: SocketAddr, endpoint: &str, manual_ack: bool, max_payload: usize) -> Result<Self, ClientError> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionRefused => ClientError::NotRunning { addr },
            _ => ClientError::Http(format!("connecting to {addr}: {e}")),
        })?;
        let _ = stream.set_nodelay(true);
        let url = format!(
            "ws://{addr}/ws?endpoint={}&ack={}",
            encode_query(endpoint),
            if manual_ack { "manual" } else { "auto" }
        );
        let (socket, _) = tungstenite::client(url, stream).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r)) => {
                let body = r.body().as_ref().map(|b| String::from_utf8_lossy(b).trim().to_string()).unwrap_or_default();
                ClientError::Node(if body.is_empty() { r.status().to_string() } else { body })
            }
            other => ClientError::Http(format!("WebSocket handshake: {other}")),
        })?;
        Ok(Subscription { socket, max_payload, partial: None })
    }

    /// The next delivery, waiting up to `wait` for it; `None` if none was complete in time. A delivery
    /// partly received when the wait ends is finished by the next call, so a short wait never blocks on a
    /// large payload.
    pub fn next(&mut self, wait: Duration) -> Result<Option<WsDelivery>, ClientError> {
        let deadline = Instant::now() + wait;
        loop {
            // A zero read timeout would mean "block forever": a zero wait still looks once.
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            self.socket.get_ref().set_read_timeout(Some(left)).map_err(|e| ClientError::Http(e.to_string()))?;
            let msg = match self.socket.read() {
                Ok(m) => m,
                // tungstenite keeps a frame cut by the timeout and resumes it on the next read.
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                    ) =>
                {
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                    continue;
                }
                Err(e) => return Err(ws_err(e)),
            };
            match msg {
                Message::Text(t) => {
                    if self.partial.is_some() {
                        return Err(protocol("a new bundle began before the payload ended"));
                    }
                    let head: Head = serde_json::from_str(t.as_str())
                        .map_err(|e| protocol(&format!("unexpected delivery header {:?}: {e}", t.as_str())))?;
                    let keep = usize::try_from(head.length).unwrap_or(usize::MAX).min(self.max_payload);
                    // Capped: the announced length is the node's word, not memory to reserve blindly.
                    let payload = Vec::with_capacity(keep.min(16 << 20));
                    self.partial = Some(Partial { head, payload, got: 0 });
                }
                Message::Binary(b) => {
                    let Some(p) = self.partial.as_mut() else {
                        return Err(protocol("payload bytes without a delivery header"));
                    };
                    p.got += b.len() as u64;
                    if p.got > p.head.length {
                        return Err(protocol("more payload bytes than announced"));
                    }
                    let room = self.max_payload.saturating_sub(p.payload.len());
                    p.payload.extend_from_slice(&b[..b.len().min(room)]);
                    // Complete only on a binary frame: an empty payload still comes as one (empty) frame,
                    // which must be read here, not taken for the start of the next bundle.
                    if p.got == p.head.length
                        && let Some(Partial { head, payload, .. }) = self.partial.take()
                    {
                        return Ok(Some(WsDelivery {
                            id: head.id,
                            source: head.source,
                            destination: head.destination,
                            creation_time: head.creation_time,
                            age_ms: head.age_ms,
                            len: head.length,
                            payload,
                        }));
                    }
                }
                Message::Close(_) => return Err(protocol("closed by the node")),
                _ => {}
            }
        }
    }

    fn send_json(&mut self, v: serde_json::Value) -> Result<(), ClientError> {
        self.socket.send(Message::Text(v.to_string().into())).map_err(ws_err)
    }

    /// Acknowledges deliveries (manual mode): the node will not deliver them again.
    pub fn ack<S: AsRef<str>>(&mut self, ids: &[S]) -> Result<(), ClientError> {
        self.answer("ack", ids)
    }

    /// Gives deliveries back (manual mode): the node delivers them again later, in the order they first
    /// came, and they no longer count against the bundles it sends ahead of acknowledgements.
    pub fn nack<S: AsRef<str>>(&mut self, ids: &[S]) -> Result<(), ClientError> {
        self.answer("nack", ids)
    }

    fn answer<S: AsRef<str>>(&mut self, key: &str, ids: &[S]) -> Result<(), ClientError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
        self.send_json(serde_json::json!({ key: ids }))
    }

    /// Closes the socket; unacknowledged deliveries go back to the node.
    pub fn close(mut self) {
        let _ = self.socket.close(None);
        let _ = self.socket.flush();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_encoded() {
        assert_eq!(super::encode_query("dtn://house/~camera"), "dtn%3A%2F%2Fhouse%2F~camera");
        assert_eq!(super::encode_query("ipn:2.1?x"), "ipn%3A2.1%3Fx");
    }
}
