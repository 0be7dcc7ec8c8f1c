//! Typed errors: what the decoder rejects, what an extension list can get wrong, and why a session failed.

use std::sync::Arc;

use crate::msg::TermReason;

/// The byte stream cannot be decoded; the session cannot continue after one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("contact header does not start with \"dtn!\"")]
    BadMagic,
    #[error("unknown message type {0:#04x}")]
    UnknownMessageType(u8),
    #[error("segment of {len} bytes exceeds our segment MRU of {max}")]
    SegmentTooLong { len: u64, max: u64 },
    #[error("extension list of {len} bytes exceeds our limit of {max}")]
    ExtensionsTooLong { len: u32, max: u32 },
    #[error("SESS_INIT node ID is not UTF-8")]
    NodeIdNotUtf8,
}

/// An extension list is malformed or asks for something we do not support.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionError {
    #[error("extension item at offset {at} overruns the extension list")]
    Truncated { at: usize },
    #[error("unknown critical extension item type {item_type:#06x}")]
    UnknownCritical { item_type: u16 },
    #[error("Transfer Length extension value is {len} bytes, not 8")]
    BadTransferLength { len: usize },
    #[error("more than one Transfer Length extension")]
    DuplicateTransferLength,
}

/// Why a session could not be established or why it ended abnormally.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionError {
    #[error("I/O error: {0}")]
    Io(Arc<std::io::Error>),
    #[error("connection closed by the peer")]
    ConnectionClosed,
    #[error("contact header or SESS_INIT not received within the negotiation timeout")]
    NegotiationTimeout,
    #[error("peer does not speak TCPCL (bad magic)")]
    BadMagic,
    #[error("peer speaks TCPCL version {0}, we speak 4")]
    VersionMismatch(u8),
    #[error("undecodable message: {0}")]
    Decode(#[from] DecodeError),
    #[error("bad session extensions: {0}")]
    SessionExtension(ExtensionError),
    #[error("message type {0:#04x} received before SESS_INIT")]
    UnexpectedBeforeInit(u8),
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    #[error("peer parameters unacceptable: {0}")]
    Unacceptable(&'static str),
    #[error("peer refused the session with SESS_TERM reason {0:?}")]
    PeerRefused(TermReason),
    #[error("nothing received for twice the keepalive interval")]
    KeepaliveTimeout,
    #[error("peer stopped reading; our output stalled")]
    Stalled,
    #[error("transfer ID space exhausted")]
    TransferIdsExhausted,
    #[error("the session's owner dropped its event receiver")]
    OwnerGone,
    #[error("session aborted locally")]
    Aborted,
    #[error("session has ended")]
    Closed,
    #[error("no incoming transfer {0} awaiting acknowledgement")]
    UnknownTransfer(u64),
    #[error("invalid acknowledgement: {0}")]
    InvalidAck(&'static str),
}

impl From<std::io::Error> for SessionError {
    fn from(e: std::io::Error) -> Self {
        SessionError::Io(Arc::new(e))
    }
}
