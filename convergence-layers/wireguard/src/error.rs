//! Typed errors of the identity and the endpoint.

use std::io;
use std::path::PathBuf;

use crate::identity::PeerKey;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("identity file: {0}")]
    Io(#[from] io::Error),
    #[error(
        "identity file {} has mode {mode:03o}: group or others may read it, so the key may have leaked; \
         refusing to use it (if it is still secret: chmod 600 {})",
        path.display(),
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("identity file {}: {why}", path.display())]
    Format { path: PathBuf, why: &'static str },
    #[error("bad identity key: {0}")]
    BadKey(&'static str),
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    #[error("peer {0} is not configured")]
    UnknownPeer(PeerKey),
    #[error("peer {0} is already configured")]
    DuplicatePeer(PeerKey),
    #[error("port {0} is already listened on")]
    PortInUse(u16),
    #[error("no free local port inside the tunnel")]
    NoFreePort,
    #[error("connection to {0} refused inside the tunnel")]
    Refused(PeerKey),
    #[error("connection to {0} timed out (no WireGuard session, or nobody listening)")]
    TimedOut(PeerKey),
    #[error("the endpoint has stopped")]
    Stopped,
    #[error("too many peers")]
    TooManyPeers,
}
