//! The one thing the STUN client needs from a socket: sending a datagram.
//!
//! The client must learn the mapping of the very socket the WireGuard tunnel uses (a NAT maps each local
//! port separately), so it cannot own that socket. The socket's owner reads it and hands STUN datagrams to
//! [`StunClient::handle_datagram`](crate::StunClient::handle_datagram); the client sends through a
//! [`DatagramPort`]. A tunnel implements it in a few lines:
//!
//! ```ignore
//! impl DatagramPort for TunnelSocket {
//!     async fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
//!         self.udp.send_to(datagram, to).await.map(|_| ())
//!     }
//! }
//! // in the receive loop:
//! if dtn_nat::is_stun(&buf[..n]) { stun.handle_datagram(&buf[..n], from); } else { /* WireGuard */ }
//! ```
//!
//! [`UdpPort`] is the implementation over a plain tokio socket, with [`spawn_receive_loop`] to read it,
//! for nodes that run STUN on a socket of its own and for tests.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::client::StunClient;

/// Sends raw datagrams from the socket whose public mapping the STUN client is to learn.
pub trait DatagramPort: Send + Sync + 'static {
    /// Sends one datagram to `to`. An error is treated like a lost packet (the client retransmits), so it
    /// may be returned freely, e.g. when the socket's send buffer is full.
    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> impl Future<Output = io::Result<()>> + Send;
}

/// A [`DatagramPort`] over a tokio UDP socket.
#[derive(Clone, Debug)]
pub struct UdpPort(pub Arc<UdpSocket>);

impl DatagramPort for UdpPort {
    async fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        self.0.send_to(datagram, to).await.map(|_| ())
    }
}

/// Reads `socket` forever and hands every datagram to `client`; non-STUN datagrams are counted and
/// dropped. Abort the returned task to stop. Errors that an unconnected UDP socket may report for an
/// earlier send (ICMP port unreachable) are ignored: they must not stop the loop.
pub fn spawn_receive_loop(socket: Arc<UdpSocket>, client: Arc<StunClient<UdpPort>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            match socket.recv_from(&mut buf).await {
                Ok((n, from)) => {
                    client.handle_datagram(&buf[..n], from);
                }
                Err(e) if transient(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "STUN receive loop stops");
                    return;
                }
            }
        }
    })
}

pub(crate) fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}
