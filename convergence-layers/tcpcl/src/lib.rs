//! TCP convergence layer version 4 (RFC 9174) on tokio.
//!
//! * [`msg`] is the wire format: contact header, every message type, extension items, an incremental
//!   decoder that never allocates beyond configured limits.
//! * [`connect`] and [`accept`] establish a session and return a [`SessionHandle`] (send, acknowledge,
//!   refuse, terminate, abort) and [`SessionEvents`] (received segments, then `Event::Ended`).
//!   [`connect_stream`] and [`accept_stream`] do the same over any byte stream (e.g. a TCP connection of a
//!   userspace stack inside a WireGuard tunnel).
//!
//! Acknowledgements carry durability: the owner acknowledges received bytes only once they are stored, so
//! an `Outcome::Cut { acked }` on the sending side tells exactly where to resume. See the README for the
//! parts of RFC 9174 implemented and the defaults chosen.

mod config;
mod driver;
mod error;
pub mod msg;
mod sender;
mod session;
mod state;
mod writer;

pub use config::{Role, SessionConfig, SessionParams};
pub use error::{DecodeError, ExtensionError, SessionError};
pub use msg::{RefuseReason, RejectReason, TermReason};
pub use session::{SessionEvents, SessionHandle, accept, accept_stream, connect, connect_stream};
pub use state::{Ended, Event, Outcome, Segment, SessionStats};
