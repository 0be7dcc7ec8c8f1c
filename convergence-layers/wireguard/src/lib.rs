//! WireGuard-over-UDP convergence layer: TCPCLv4 runs unchanged inside a WireGuard tunnel, over a userspace
//! TCP/IP stack, with no TUN device and no privileges.
//!
//! * [`identity`]: the node's Ed25519 identity (stored with mode 0600), the WireGuard X25519 key derived
//!   from it, peers named by their identity public key ([`PeerKey`], z-base-32), tunnel addresses derived
//!   from keys.
//! * [`Endpoint`]: one UDP socket, one boringtun `Tunn` per peer, one smoltcp stack; [`Endpoint::connect`]
//!   and [`Listener::accept`] give [`TunnelStream`]s (tokio `AsyncRead + AsyncWrite`). STUN datagrams on the
//!   same socket go to [`Endpoint::other_datagrams`], and [`Endpoint::send_raw`] sends from it: the seam for
//!   NAT traversal.
//! * [`tcpcl`]: TCPCL sessions through the tunnel.
//!
//! See docs/wireguard.md for the design.

mod driver;
mod endpoint;
mod error;
pub mod identity;
mod stack;
mod stats;
mod stream;
pub mod tcpcl;

pub use endpoint::{Endpoint, EndpointConfig, PeerConfig, PeerStatus};
pub use error::{Error, IdentityError};
pub use identity::{Identity, PeerKey};
pub use stats::Stats;
pub use stream::{Listener, TunnelStream};

#[cfg(test)]
mod tests {
    use crate::driver::{Kind, classify};

    #[test]
    fn datagrams_are_told_apart_by_their_first_bytes() {
        let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        stun.extend_from_slice(&[7; 12]);
        assert_eq!(classify(&stun), Kind::Stun);
        // A WireGuard data message whose receiver index happens to equal the magic cookie is still WireGuard.
        let mut wg = vec![4, 0, 0, 0, 0x21, 0x12, 0xa4, 0x42];
        wg.extend_from_slice(&[0; 24]);
        assert_eq!(classify(&wg), Kind::WireGuard(4));
        assert_eq!(classify(b"hello, is this the tunnel?"), Kind::Garbage);
        assert_eq!(classify(&[5, 0, 0, 0, 1, 2, 3]), Kind::Garbage);
        assert_eq!(classify(&[]), Kind::Garbage);
    }
}
