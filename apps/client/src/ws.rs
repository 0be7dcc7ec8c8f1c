//! Deliveries over the API's WebSocket (`GET /ws`), blocking.
//!
//! With manual acknowledgement a bundle stays the client's until it says it has stored it
//! ([`Subscription::ack`]); closing the socket gives back whatever is not acknowledged, so a client that
//! acknowledges only what it has made durable loses nothing when it crashes.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::Deserialize;
use tungstenite::{Message, WebSocket};

use crate::ClientError;

/// A bundle received over the WebSocket.
#[derive(Debug, Clone)]
pub struct WsDelivery {
    /// Compact bundle ID (what [`Subscription::ack`] takes).
    pub id: String,
    /// Source endpoint.
    pub source: String,
    /// Destination endpoint.
    pub destination: String,
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
}

/// A WebSocket stream of deliveries for one endpoint.
pub struct Subscription {
    socket: WebSocket<TcpStream>,
    max_payload: usize,
    /// A delivery whose head has come and whose payload is still arriving.
    partial: Option<(Head, Vec<u8>, u64)>,
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
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

    /// The next delivery, waiting up to `wait` for it (`None` if none came in time; a delivery half received
    /// then is finished by the next call).
    pub fn next(&mut self, wait: Duration) -> Result<Option<WsDelivery>, ClientError> {
        self.socket
            .get_ref()
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        loop {
            if let Some((head, payload, got)) = self.partial.take() {
                if got >= head.length {
                    return Ok(Some(WsDelivery {
                        id: head.id,
                        source: head.source,
                        destination: head.destination,
                        len: head.length,
                        payload,
                    }));
                }
                self.partial = Some((head, payload, got));
            }
            let msg = match self.socket.read() {
                Ok(m) => m,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(ws_err(e)),
            };
            match msg {
                Message::Text(t) => {
                    if self.partial.is_some() {
                        return Err(ClientError::Http("WebSocket: a new bundle began before the payload ended".into()));
                    }
                    let head: Head = serde_json::from_str(t.as_str())
                        .map_err(|e| ClientError::Http(format!("WebSocket: unexpected delivery header: {e}")))?;
                    let keep = usize::try_from(head.length).unwrap_or(usize::MAX).min(self.max_payload);
                    self.partial = Some((head, Vec::with_capacity(keep), 0));
                }
                Message::Binary(b) => {
                    let Some((head, payload, got)) = self.partial.as_mut() else {
                        return Err(ClientError::Http("WebSocket: payload bytes without a delivery header".into()));
                    };
                    *got += b.len() as u64;
                    if *got > head.length {
                        return Err(ClientError::Http("WebSocket: more payload bytes than announced".into()));
                    }
                    let room = self.max_payload.saturating_sub(payload.len());
                    payload.extend_from_slice(&b[..b.len().min(room)]);
                }
                Message::Close(_) => return Err(ClientError::Http("WebSocket closed by the node".into())),
                _ => {}
            }
        }
    }

    fn send_json(&mut self, v: serde_json::Value) -> Result<(), ClientError> {
        self.socket.send(Message::Text(v.to_string().into())).map_err(ws_err)
    }

    /// Acknowledges deliveries (manual mode): the node will not deliver them again.
    pub fn ack(&mut self, ids: &[&str]) -> Result<(), ClientError> {
        self.send_json(serde_json::json!({ "ack": ids }))
    }

    /// Gives deliveries back (manual mode): the node delivers them again later.
    pub fn nack(&mut self, ids: &[&str]) -> Result<(), ClientError> {
        self.send_json(serde_json::json!({ "nack": ids }))
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
    }
}
