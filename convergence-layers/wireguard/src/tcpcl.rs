//! TCPCLv4 sessions through the tunnel: the same `dtn-tcpcl` sessions as over Wi-Fi TCP, on a connection of
//! the userspace stack, with the peer's identity authenticated by WireGuard (TCPCL's own node ID is not).

use dtn_tcpcl::{SessionConfig, SessionError, SessionEvents, SessionHandle};

use crate::endpoint::Endpoint;
use crate::identity::PeerKey;
use crate::stream::Listener;

/// The TCPCL port (RFC 9174 §8.1), also inside the tunnel.
pub const TCPCL_PORT: u16 = 4556;

#[derive(Debug, thiserror::Error)]
pub enum TcpclError {
    #[error("tunnel: {0}")]
    Tunnel(#[from] crate::Error),
    #[error("tcpcl: {0}")]
    Session(#[from] SessionError),
}

/// Opens a TCPCL session to `peer` inside the tunnel.
pub async fn connect(
    ep: &Endpoint,
    peer: PeerKey,
    port: u16,
    cfg: SessionConfig,
) -> Result<(SessionHandle, SessionEvents), TcpclError> {
    let s = ep.connect(peer, port).await?;
    let (local, remote) = (s.local_addr(), s.peer_addr());
    Ok(dtn_tcpcl::connect_stream(s, local, remote, cfg).await?)
}

/// Accepts the next connection on `listener` and runs the passive side of a TCPCL session on it; returns
/// the peer it came from. Run it in a loop, spawning each session's negotiation if peers may be slow.
pub async fn accept(
    listener: &Listener,
    cfg: SessionConfig,
) -> Result<(PeerKey, SessionHandle, SessionEvents), TcpclError> {
    let s = listener.accept().await?;
    let (peer, local, remote) = (s.peer(), s.local_addr(), s.peer_addr());
    let (h, ev) = dtn_tcpcl::accept_stream(s, local, remote, cfg).await?;
    Ok((peer, h, ev))
}
