//! State shared by a session's tasks and handles: termination progress, outgoing transfers and the send
//! window, incoming transfers awaiting the owner's acknowledgement, and statistics.
//!
//! Everything is under one `std::sync::Mutex` held only for bookkeeping, never across an `.await`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};

use crate::config::SessionParams;
use crate::error::SessionError;
use crate::msg::{
    Message, RefuseReason, RejectReason, TermReason, XFER_END, XFER_START, XferAck, XferRefuse, XferSegment,
};

/// How an outgoing transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The peer acknowledged the whole transfer (XFER_ACK with END and the full length).
    Acked,
    /// The peer refused the transfer.
    Refused(RefuseReason),
    /// The session ended first; the peer had acknowledged `acked` bytes, i.e. made them durable.
    Cut { acked: u64 },
    /// Not sent: longer than the peer's Transfer MRU. Fragment the bundle to at most `max` bytes.
    TooLarge { max: u64 },
    /// Reading the source failed after `acked` bytes were acknowledged; the transfer was abandoned.
    SourceFailed { acked: u64, error: String },
}

/// How and why a session ended.
#[derive(Debug, Clone)]
pub struct Ended {
    /// The SESS_TERM reason, if a SESS_TERM was sent or received.
    pub reason: Option<TermReason>,
    /// The peer started the end (sent the first SESS_TERM, closed the connection or timed out on us).
    pub by_peer: bool,
    /// Set when the session did not end with a clean SESS_TERM exchange.
    pub error: Option<SessionError>,
}

impl Ended {
    /// Both sides exchanged SESS_TERM and closed without losing anything.
    pub fn is_clean(&self) -> bool {
        self.error.is_none()
    }
}

/// A segment of an incoming transfer, delivered to the session's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub transfer_id: u64,
    pub start: bool,
    pub end: bool,
    /// The Transfer Length the sender announced on the START segment, if it did.
    pub total_len: Option<u64>,
    /// Bytes of this transfer before this segment.
    pub offset: u64,
    pub data: Bytes,
}

impl Segment {
    /// The acknowledged length to send once this segment's data is durable.
    pub fn len_so_far(&self) -> u64 {
        self.offset + self.data.len() as u64
    }
}

/// What a session tells its owner.
#[derive(Debug, Clone)]
pub enum Event {
    /// Data of an incoming transfer. Acknowledge it with `SessionHandle::ack` once durable, or refuse it.
    Segment(Segment),
    /// The peer rejected one of our messages (MSG_REJECT); informational.
    Rejected { reason: RejectReason, message_type: u8 },
    /// The peer asked to end the session; no new transfers start, in-progress ones may finish.
    Terminating { reason: TermReason },
    /// The session is over; always the last event.
    Ended(Ended),
}

/// Counters for tests, demos and the engine's link estimates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub transfers_started: u64,
    pub transfers_acked: u64,
    pub bytes_sent: u64,
    pub bytes_acked_by_peer: u64,
    /// Bytes sent and not yet acknowledged, now and at most.
    pub in_flight: u64,
    pub max_in_flight: u64,
    pub segments_received: u64,
    pub bytes_received: u64,
    pub bytes_acked_by_us: u64,
    /// Bytes received and delivered but not yet acknowledged by the owner, now and at most.
    pub rx_unacked: u64,
    pub max_rx_unacked: u64,
}

/// Messages for the writer task.
pub(crate) enum Ctrl {
    Msg(Message),
    /// Flush what is queued, then close our direction (TCP FIN).
    Close,
}

/// A segment ready for the wire, header pre-encoded so that the data is written without a copy.
pub(crate) struct OutSegment {
    pub header: Bytes,
    pub data: Bytes,
}

pub(crate) enum Source {
    Bytes(Bytes),
    Reader(Box<dyn tokio::io::AsyncRead + Send + Unpin>, u64),
}

impl Source {
    pub fn len(&self) -> u64 {
        match self {
            Source::Bytes(b) => b.len() as u64,
            Source::Reader(_, l) => *l,
        }
    }
}

pub(crate) struct Request {
    pub source: Source,
    pub done: oneshot::Sender<Outcome>,
}

struct OutXfer {
    total: u64,
    sent: u64,
    acked: u64,
    done: oneshot::Sender<Outcome>,
}

struct InXfer {
    first_len: u64,
    received: u64,
    acked: u64,
    total: Option<u64>,
    end_received: bool,
}

#[derive(Default)]
pub(crate) struct State {
    pub term_sent: Option<TermReason>,
    pub term_received: Option<TermReason>,
    /// Who sent the first SESS_TERM.
    pub term_by_peer: Option<bool>,
    /// A SESS_TERM was requested through a handle and the driver has yet to send it.
    pub term_pending: bool,
    pub end: Option<Ended>,
    pub next_id: u64,
    outgoing: HashMap<u64, OutXfer>,
    incoming: HashMap<u64, InXfer>,
    /// The incoming transfer whose END has not arrived yet.
    current_in: Option<u64>,
    /// The incoming transfer we are refusing: its further segments are refused again (RFC 9174 §5.2.4).
    refusing: Option<(u64, RefuseReason)>,
    pub stats: SessionStats,
}

impl State {
    pub fn ending(&self) -> bool {
        self.term_sent.is_some() || self.term_received.is_some()
    }

    fn drop_incoming(&mut self, id: u64) {
        if let Some(x) = self.incoming.remove(&id) {
            self.stats.rx_unacked -= x.received - x.acked;
        }
        if self.current_in == Some(id) {
            self.current_in = None;
        }
    }

    fn refuse_in(&mut self, id: u64, end: bool, reason: RefuseReason) -> InDecision {
        self.drop_incoming(id);
        self.refusing = if end { None } else { Some((id, reason)) };
        InDecision::Refuse(XferRefuse { reason, transfer_id: id })
    }

    /// Decides what to do with a received segment (RFC 9174 §5.2.2–§5.2.5, §6.1).
    pub fn in_segment(&mut self, seg: XferSegment, transfer_mru: u64) -> InDecision {
        let (id, end, len) = (seg.transfer_id, seg.is_end(), seg.data.len() as u64);
        let (offset, total);
        if seg.is_start() {
            // A new START abandons an unfinished transfer (the sender gave up on it, e.g. after a refusal).
            if let Some(cur) = self.current_in {
                self.drop_incoming(cur);
            }
            self.refusing = None;
            if self.incoming.contains_key(&id) {
                // Transfer IDs must be unique in a session; this one still awaits our acknowledgement.
                self.refusing = (!end).then_some((id, RefuseReason::NotAcceptable));
                return InDecision::Refuse(XferRefuse { reason: RefuseReason::NotAcceptable, transfer_id: id });
            }
            if self.ending() {
                return self.refuse_in(id, end, RefuseReason::SessionTerminating);
            }
            total = match seg.extensions.check_transfer() {
                Ok(t) => t,
                Err(_) => return self.refuse_in(id, end, RefuseReason::ExtensionFailure),
            };
            if total.unwrap_or(len).max(len) > transfer_mru {
                return self.refuse_in(id, end, RefuseReason::NoResources);
            }
            if total.is_some_and(|t| len > t || (end && len != t)) {
                return self.refuse_in(id, end, RefuseReason::NotAcceptable);
            }
            offset = 0;
            self.incoming.insert(id, InXfer { first_len: len, received: len, acked: 0, total, end_received: end });
            self.current_in = (!end).then_some(id);
        } else {
            if let Some((rid, reason)) = self.refusing
                && rid == id
            {
                if end {
                    self.refusing = None;
                }
                return InDecision::Refuse(XferRefuse { reason, transfer_id: id });
            }
            if self.current_in != Some(id) {
                return InDecision::Reject(RejectReason::Unexpected);
            }
            let Some(x) = self.incoming.get_mut(&id) else {
                return InDecision::Reject(RejectReason::Unexpected);
            };
            let new = x.received.saturating_add(len);
            if new > transfer_mru {
                return self.refuse_in(id, end, RefuseReason::NoResources);
            }
            if x.total.is_some_and(|t| new > t || (end && new != t)) {
                return self.refuse_in(id, end, RefuseReason::NotAcceptable);
            }
            offset = x.received;
            total = x.total;
            x.received = new;
            x.end_received = end;
            if end {
                self.current_in = None;
            }
        }
        let s = &mut self.stats;
        s.segments_received += 1;
        s.bytes_received += len;
        s.rx_unacked += len;
        s.max_rx_unacked = s.max_rx_unacked.max(s.rx_unacked);
        InDecision::Deliver(Segment {
            transfer_id: id,
            start: seg.is_start(),
            end,
            total_len: total,
            offset,
            data: seg.data,
        })
    }

    /// Checks and records the owner's acknowledgement, returning the XFER_ACK to send.
    pub fn owner_ack(&mut self, id: u64, len: u64, end: bool) -> Result<XferAck, SessionError> {
        let x = self.incoming.get_mut(&id).ok_or(SessionError::UnknownTransfer(id))?;
        if len > x.received {
            return Err(SessionError::InvalidAck("length beyond the bytes received"));
        }
        if len < x.acked {
            return Err(SessionError::InvalidAck("length smaller than an earlier acknowledgement"));
        }
        if end && !(x.end_received && len == x.received) {
            return Err(SessionError::InvalidAck("END before the whole transfer was received"));
        }
        // The flags must match the acknowledged segment's (§5.2.3); START marks the first one.
        let mut flags = if len == x.first_len && x.acked == 0 { XFER_START } else { 0 };
        if end {
            flags |= XFER_END;
        }
        let delta = len - x.acked;
        x.acked = len;
        self.stats.rx_unacked -= delta;
        self.stats.bytes_acked_by_us += delta;
        if end {
            self.incoming.remove(&id);
        }
        Ok(XferAck { flags, transfer_id: id, length: len })
    }

    /// Records the owner's refusal, returning the XFER_REFUSE to send.
    pub fn owner_refuse(&mut self, id: u64, reason: RefuseReason) -> Result<XferRefuse, SessionError> {
        if self.incoming.contains_key(&id) {
            if self.current_in == Some(id) {
                self.refusing = Some((id, reason));
            }
            self.drop_incoming(id);
        } else if self.refusing.is_none_or(|(rid, _)| rid != id) {
            return Err(SessionError::UnknownTransfer(id));
        }
        Ok(XferRefuse { reason, transfer_id: id })
    }

    /// Both SESS_TERMs are exchanged and no transfer is in progress in either direction (§6.1).
    pub fn ready_to_close(&self) -> bool {
        self.term_sent.is_some()
            && self.term_received.is_some()
            && !self.term_pending
            && self.outgoing.is_empty()
            && self.incoming.is_empty()
            && self.current_in.is_none()
    }

    /// Nothing is in flight either way: the session may count as idle.
    pub fn quiet(&self) -> bool {
        self.outgoing.is_empty() && self.incoming.is_empty()
    }
}

pub(crate) enum InDecision {
    Deliver(Segment),
    Refuse(XferRefuse),
    Reject(RejectReason),
}

/// What to do about a received XFER_ACK or XFER_REFUSE.
pub(crate) enum PeerVerdict {
    Ok,
    Reject(RejectReason),
}

pub(crate) struct Shared {
    pub params: SessionParams,
    state: Mutex<State>,
    /// Permits are bytes of send window.
    pub window: Semaphore,
    pub ctrl: mpsc::Sender<Ctrl>,
    /// Wakes the driver after a handle changed the state (terminate, acknowledgements).
    pub wake: Notify,
    pub shutdown: watch::Sender<bool>,
    pub ended: watch::Sender<Option<Ended>>,
    /// A duplicate of the socket, kept so that `abort` can reset the connection from any task.
    pub sock: Mutex<Option<socket2::Socket>>,
}

impl Shared {
    pub fn new(params: SessionParams, ctrl: mpsc::Sender<Ctrl>, sock: Option<socket2::Socket>) -> Self {
        let window = Semaphore::new(params.send_window as usize);
        Shared {
            params,
            state: Mutex::new(State::default()),
            window,
            ctrl,
            wake: Notify::new(),
            shutdown: watch::channel(false).0,
            ended: watch::channel(None).0,
            sock: Mutex::new(sock),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in this file; the state itself stays consistent
        // enough to end the session, so do not propagate the poison.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the driver to send SESS_TERM (no-op if one was sent or the session ended).
    pub fn request_terminate(&self, reason: TermReason) {
        {
            let mut st = self.lock();
            if st.end.is_some() || st.term_sent.is_some() {
                return;
            }
            st.term_sent = Some(reason);
            st.term_pending = true;
            st.term_by_peer.get_or_insert(false);
        }
        self.wake.notify_one();
    }

    /// Starts an outgoing transfer, or says why it must not start.
    pub fn out_start(&self, total: u64, done: oneshot::Sender<Outcome>) -> Result<u64, SessionError> {
        let mut st = self.lock();
        if st.end.is_some() || st.ending() {
            let _ = done.send(Outcome::Cut { acked: 0 });
            return Err(SessionError::Closed);
        }
        if total > self.params.peer_transfer_mru {
            let _ = done.send(Outcome::TooLarge { max: self.params.peer_transfer_mru });
            return Err(SessionError::Closed);
        }
        let id = st.next_id;
        let Some(next) = id.checked_add(1) else {
            let _ = done.send(Outcome::Cut { acked: 0 });
            return Err(SessionError::TransferIdsExhausted);
        };
        st.next_id = next;
        st.stats.transfers_started += 1;
        st.outgoing.insert(id, OutXfer { total, sent: 0, acked: 0, done });
        Ok(id)
    }

    /// Records `n` more bytes as sent; false if the transfer was refused or the session ended meanwhile.
    pub fn out_sent(&self, id: u64, n: u64) -> bool {
        let mut st = self.lock();
        let Some(x) = st.outgoing.get_mut(&id) else { return false };
        x.sent += n;
        let s = &mut st.stats;
        s.bytes_sent += n;
        s.in_flight += n;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        true
    }

    /// Gives up an outgoing transfer whose source failed.
    pub fn out_abandon(&self, id: u64, error: String) {
        let mut st = self.lock();
        if let Some(x) = st.outgoing.remove(&id) {
            self.release(&mut st, x.sent - x.acked);
            let _ = x.done.send(Outcome::SourceFailed { acked: x.acked, error });
        }
    }

    fn release(&self, st: &mut State, n: u64) {
        st.stats.in_flight -= n;
        self.window.add_permits(n as usize);
    }

    pub fn on_ack(&self, ack: XferAck) -> PeerVerdict {
        let mut st = self.lock();
        if ack.transfer_id >= st.next_id {
            return PeerVerdict::Reject(RejectReason::Unexpected);
        }
        // A late acknowledgement of a transfer already resolved (refused, abandoned) is harmless.
        let Some(x) = st.outgoing.get_mut(&ack.transfer_id) else { return PeerVerdict::Ok };
        if ack.length > x.sent {
            return PeerVerdict::Reject(RejectReason::Unsupported);
        }
        let delta = ack.length.saturating_sub(x.acked);
        x.acked = x.acked.max(ack.length);
        let complete = ack.flags & XFER_END != 0 && x.acked == x.total && x.sent == x.total;
        st.stats.bytes_acked_by_peer += delta;
        self.release(&mut st, delta);
        if complete && let Some(x) = st.outgoing.remove(&ack.transfer_id) {
            st.stats.transfers_acked += 1;
            let _ = x.done.send(Outcome::Acked);
        }
        PeerVerdict::Ok
    }

    pub fn on_refuse(&self, r: XferRefuse) -> PeerVerdict {
        let mut st = self.lock();
        if r.transfer_id >= st.next_id {
            return PeerVerdict::Reject(RejectReason::Unexpected);
        }
        if let Some(x) = st.outgoing.remove(&r.transfer_id) {
            self.release(&mut st, x.sent - x.acked);
            let _ = x.done.send(Outcome::Refused(r.reason));
        }
        PeerVerdict::Ok
    }

    /// Ends the session once: resolves every outgoing transfer as cut, closes the window, stops the tasks.
    pub fn finish(&self, end: Ended) {
        {
            let mut st = self.lock();
            if st.end.is_some() {
                return;
            }
            st.end = Some(end.clone());
            for (_, x) in st.outgoing.drain() {
                let _ = x.done.send(Outcome::Cut { acked: x.acked });
            }
            st.incoming.clear();
            st.current_in = None;
            st.stats.in_flight = 0;
            st.stats.rx_unacked = 0;
        }
        self.window.close();
        self.shutdown.send_replace(true);
        self.ended.send_replace(Some(end));
        drop(self.sock.lock().unwrap_or_else(|e| e.into_inner()).take());
    }

    /// Resets the connection: no SESS_TERM, pending transfers are cut where the peer's acknowledgements left
    /// them.
    pub fn abort(&self, error: SessionError) {
        if let Some(s) = self.sock.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            // Linger 0 makes the final close send RST, so neither side waits on unsent data.
            let _ = s.set_linger(Some(std::time::Duration::ZERO));
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        let reason = {
            let st = self.lock();
            st.term_sent.or(st.term_received)
        };
        self.finish(Ended { reason, by_peer: false, error: Some(error) });
    }
}
