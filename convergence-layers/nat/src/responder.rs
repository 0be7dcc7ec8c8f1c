//! A small STUN responder (Binding only) for publicly reachable nodes.
//!
//! It answers Binding requests and nothing else: no TURN, no credentials, no state per client. Its answer
//! (40 bytes for IPv4) is barely larger than the smallest request it answers (28 bytes with FINGERPRINT,
//! 20 without), so it is a poor amplifier; responses, indications and garbage get no answer at all.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::wire;

/// What the responder did with the datagrams it received.
#[derive(Debug, Default)]
pub struct ResponderStats {
    answered: AtomicU64,
    ignored: AtomicU64,
    send_errors: AtomicU64,
}

impl ResponderStats {
    /// Binding requests answered.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }
    /// Datagrams dropped without an answer (not a Binding request, malformed, garbage).
    pub fn ignored(&self) -> u64 {
        self.ignored.load(Ordering::Relaxed)
    }
    /// Answers the socket refused to send.
    pub fn send_errors(&self) -> u64 {
        self.send_errors.load(Ordering::Relaxed)
    }
}

/// A running responder; dropping it stops it.
#[derive(Debug)]
pub struct Responder {
    local: SocketAddr,
    stats: Arc<ResponderStats>,
    task: JoinHandle<()>,
}

impl Responder {
    /// Binds `addr` and starts answering (within a tokio runtime).
    pub async fn bind(addr: SocketAddr) -> io::Result<Responder> {
        Ok(Responder::start(UdpSocket::bind(addr).await?))
    }

    /// Starts answering on an already bound socket.
    pub fn start(socket: UdpSocket) -> Responder {
        let stats = Arc::new(ResponderStats::default());
        // A socket we cannot name is still served; port 0 then tells the caller something is off.
        let local = socket.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let task = tokio::spawn(serve(socket, stats.clone()));
        Responder { local, stats, task }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn stats(&self) -> Arc<ResponderStats> {
        self.stats.clone()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(socket: UdpSocket, stats: Arc<ResponderStats>) {
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(v) => v,
            Err(e) if crate::port::transient(&e) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "STUN responder stops");
                return;
            }
        };
        match wire::answer(&buf[..n], from) {
            Some(reply) => {
                if socket.send_to(&reply, from).await.is_ok() {
                    stats.answered.fetch_add(1, Ordering::Relaxed);
                } else {
                    stats.send_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                stats.ignored.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
