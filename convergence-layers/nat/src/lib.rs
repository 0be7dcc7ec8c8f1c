//! NAT traversal for the DTN bundle router.
//!
//! * STUN (RFC 8489): [`StunClient`] learns the public mapping of a socket it shares with the WireGuard
//!   tunnel (through [`DatagramPort`] and [`StunClient::handle_datagram`]), [`is_stun`] separates STUN from
//!   WireGuard on that socket, and [`Responder`] is the Binding-only server a publicly reachable node runs.
//!
//! See `docs/nat.md` in the repository for the design.

mod client;
mod port;
mod responder;
pub mod wire;

pub use client::{Binding, BindingError, ClientStats, ReceiveLoop, RetransmitPolicy, StunClient};
pub use port::{DatagramPort, UdpPort, spawn_receive_loop};
pub use responder::{Responder, ResponderStats};
pub use wire::is_stun;
