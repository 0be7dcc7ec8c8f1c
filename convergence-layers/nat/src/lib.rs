//! NAT traversal for the DTN bundle router.
//!
//! * STUN (RFC 8489): [`StunClient`] learns the public mapping of a socket it shares with the WireGuard
//!   tunnel (through [`DatagramPort`] and [`StunClient::handle_datagram`]), [`is_stun`] separates STUN from
//!   WireGuard on that socket, and [`Responder`] is the Binding-only server a publicly reachable node runs.
//! * Discovery: responders announce themselves in the Mainline DHT ([`Announcer`]) under an info-hash
//!   derived from the [`NetworkName`]; NATed nodes look them up, check each with a real Binding request
//!   and keep the best two or three ([`StunDiscovery`], with the pure rules in [`Selection`]).
//! * Rendezvous: each node publishes its [`EndpointRecord`] as a BEP 44 mutable item signed with its
//!   identity key ([`Publisher`], sequence number persisted by [`SeqFile`]); peers resolve it by key
//!   ([`Resolver`]).
//! * [`decide`]: punch, connect directly, or fall back to a relay; [`relay_needed`] and [`pick_relays`]:
//!   whether a node needs relays and which to keep (relays are found under
//!   [`NetworkName::relay_info_hash`] and name themselves with the DTN-IDENTITY attribute of [`wire`]).
//!
//! Identity keys are `ed25519-dalek` 3 [`SigningKey`]s (the version `mainline` 8 uses), re-exported here;
//! a key held as another version converts through its 32 secret bytes (`SigningKey::from_bytes`).
//!
//! See `docs/nat.md` in the repository for the design.

mod client;
mod discovery;
mod fallback;
mod port;
mod record;
mod rendezvous;
mod responder;
mod selection;
mod seq;
pub mod wire;

pub use client::{Binding, BindingError, ClientStats, ReceiveLoop, RetransmitPolicy, StunClient};
pub use discovery::{
    Announcer, BadNetworkName, DEFAULT_ANNOUNCE_EVERY, DiscoveryTask, MAX_NETWORK_NAME_LEN, NetworkName, StunDiscovery,
};
pub use fallback::{
    DEFAULT_PUNCH_ATTEMPTS, DEFAULT_RELAYS_KEPT, PathDecision, RelayCandidate, RelayReason, decide, pick_relays,
    relay_needed,
};
pub use mainline::{self, SigningKey};
pub use port::{DatagramPort, UdpPort, spawn_receive_loop};
pub use record::{
    Endpoint, EndpointKind, EndpointRecord, MAX_ENDPOINTS, MAX_RELAYS, MAX_VALUE_LEN, NatClass, RecordError,
};
pub use rendezvous::{
    DEFAULT_REPUBLISH_EVERY, DEFAULT_RETRY_AFTER, PublishError, PublishStatus, Publisher, PublisherHandle,
    ResolveError, Resolved, Resolver,
};
pub use responder::{Responder, ResponderStats};
pub use selection::{MappingBehaviour, Selected, Selection, SelectionConfig, acceptable, classify};
pub use seq::{SeqError, SeqFile};
pub use wire::is_stun;
