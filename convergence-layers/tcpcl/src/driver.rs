//! The driver task: reads and decodes the socket, runs the session state machine (RFC 9174 §5–§6), keeps
//! the keepalive and idle timers, and decides when and how the session ends.
//!
//! Received segments go to the owner through a bounded channel; while it is full the driver stops reading,
//! so TCP flow control pushes back on the peer and memory stays bounded whatever the transfer size.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};

use crate::error::{DecodeError, SessionError};
use crate::msg::{
    Decoded, Limits, Message, MsgReject, RejectReason, SessTerm, TERM_REPLY, TermReason, decode_message, msg_type,
};
use crate::session::ReadHalf;
use crate::state::{Ctrl, Ended, Event, InDecision, PeerVerdict, Shared};
use crate::writer::{far, shut};

/// Read at least this much per read call when the next message's size is not known yet.
const READ_CHUNK: usize = 64 << 10;
/// How long we keep reading for the peer's FIN after closing our side.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// The same after a failure, where the peer may be hostile and is owed nothing.
const FAIL_GRACE: Duration = Duration::from_millis(500);

pub(crate) struct Driver {
    pub shared: Arc<Shared>,
    pub rd: ReadHalf,
    pub buf: BytesMut,
    pub limits: Limits,
    pub events: mpsc::Sender<Event>,
    pub shutdown: watch::Receiver<bool>,
    /// No byte for this long means the peer is gone (twice the keepalive, RFC 9174 §5.1.1).
    pub dead_after: Option<Duration>,
    /// No message but KEEPALIVE for this long ends the session cleanly (§6.2).
    pub idle_after: Option<Duration>,
    /// Our writer not taking a control message for this long means the peer stopped reading.
    pub stall_after: Duration,
}

/// `Err` carries how the session ended.
type Flow = Result<(), Ended>;

impl Driver {
    pub async fn run(mut self) {
        let end = self.main().await;
        self.shared.finish(end.clone());
        let end = self.shared.lock().end.clone().unwrap_or(end);
        tracing::debug!(peer = %self.shared.params.peer_addr, ?end, "tcpcl session ended");
        // The owner may have dropped the receiver; there is nobody else to tell then.
        let _ = self.events.send(Event::Ended(end)).await;
    }

    async fn main(&mut self) -> Ended {
        let mut last_rx = Instant::now();
        let mut last_activity = last_rx;
        loop {
            loop {
                match decode_message(&mut self.buf, &self.limits) {
                    Ok(Decoded::Message(m)) => {
                        if m != Message::Keepalive {
                            last_activity = Instant::now();
                        }
                        if let Err(end) = self.handle(m).await {
                            return end;
                        }
                        // Time spent waiting on a slow owner is ours, not the peer's silence.
                        last_rx = Instant::now();
                    }
                    Ok(Decoded::NeedMore(n)) => {
                        // `n` is bounded by the limits checked in the decoder.
                        let want = n.max(self.buf.len() + READ_CHUNK);
                        self.buf.reserve(want - self.buf.len());
                        break;
                    }
                    Err(e) => return self.decode_failed(e).await,
                }
            }
            if let Err(end) = self.send_pending_term().await {
                return end;
            }
            if self.shared.lock().ready_to_close() {
                return self.close_clean().await;
            }
            let dead_at = self.dead_after.map(|d| last_rx + d);
            let idle_at = self.idle_after.map(|d| last_activity + d);
            tokio::select! {
                biased;
                _ = shut(&mut self.shutdown) => return self.ended_elsewhere(),
                _ = self.shared.wake.notified() => {}
                r = self.rd.read_buf(&mut self.buf) => match r {
                    Ok(0) => return self.eof(),
                    Ok(_) => last_rx = Instant::now(),
                    Err(e) => return self.peer_failed(e.into()),
                },
                _ = sleep_until(dead_at.unwrap_or_else(far)), if dead_at.is_some() => {
                    return self.fail(SessionError::KeepaliveTimeout, TermReason::IdleTimeout).await;
                }
                _ = sleep_until(idle_at.unwrap_or_else(far)), if idle_at.is_some() => {
                    last_activity = Instant::now();
                    let quiet = self.shared.lock().quiet();
                    if quiet {
                        tracing::debug!(peer = %self.shared.params.peer_addr, "tcpcl session idle, terminating");
                        self.shared.request_terminate(TermReason::IdleTimeout);
                    }
                }
            }
        }
    }

    async fn handle(&mut self, m: Message) -> Flow {
        match m {
            Message::XferSegment(seg) => {
                let decision = self.shared.lock().in_segment(seg, self.shared.params.transfer_mru);
                match decision {
                    InDecision::Deliver(s) => self.deliver(Event::Segment(s)).await,
                    InDecision::Refuse(r) => self.ctrl(Message::XferRefuse(r)).await,
                    InDecision::Reject(r) => self.reject(r, msg_type::XFER_SEGMENT).await,
                }
            }
            Message::XferAck(a) => match self.shared.on_ack(a) {
                PeerVerdict::Ok => Ok(()),
                PeerVerdict::Reject(r) => self.reject(r, msg_type::XFER_ACK).await,
            },
            Message::XferRefuse(r) => match self.shared.on_refuse(r) {
                PeerVerdict::Ok => Ok(()),
                PeerVerdict::Reject(r) => self.reject(r, msg_type::XFER_REFUSE).await,
            },
            Message::Keepalive => Ok(()),
            Message::SessInit(_) => self.reject(RejectReason::Unexpected, msg_type::SESS_INIT).await,
            Message::MsgReject(r) => {
                tracing::warn!(peer = %self.shared.params.peer_addr, ?r, "tcpcl peer rejected a message");
                self.deliver(Event::Rejected { reason: r.reason, message_type: r.rejected_type }).await
            }
            Message::SessTerm(t) => {
                let (reply, first) = {
                    let mut st = self.shared.lock();
                    if st.term_received.is_some() {
                        (false, false)
                    } else {
                        st.term_received = Some(t.reason);
                        st.term_by_peer.get_or_insert(true);
                        // RFC 9174 §6.1: answer with identical content and the REPLY flag, unless we sent ours.
                        let reply = st.term_sent.is_none();
                        if reply {
                            st.term_sent = Some(t.reason);
                        }
                        (reply, !t.is_reply())
                    }
                };
                if reply {
                    self.ctrl(Message::SessTerm(SessTerm { flags: TERM_REPLY, reason: t.reason })).await?;
                }
                if first { self.deliver(Event::Terminating { reason: t.reason }).await } else { Ok(()) }
            }
        }
    }

    async fn reject(&mut self, reason: RejectReason, rejected_type: u8) -> Flow {
        tracing::debug!(peer = %self.shared.params.peer_addr, ?reason, rejected_type, "tcpcl rejecting message");
        self.ctrl(Message::MsgReject(MsgReject { reason, rejected_type })).await
    }

    /// Hands an event to the owner, waiting (and so not reading the socket) while its queue is full.
    async fn deliver(&mut self, ev: Event) -> Flow {
        loop {
            enum Step {
                Shut,
                OwnerGone,
                Wake,
            }
            let step = tokio::select! {
                biased;
                _ = shut(&mut self.shutdown) => Step::Shut,
                p = self.events.reserve() => match p {
                    Ok(p) => {
                        p.send(ev);
                        return Ok(());
                    }
                    Err(_) => Step::OwnerGone,
                },
                _ = self.shared.wake.notified() => Step::Wake,
            };
            match step {
                Step::Shut => return Err(self.ended_elsewhere()),
                Step::OwnerGone => return Err(self.fail(SessionError::OwnerGone, TermReason::Unknown).await),
                // A handle may have asked to terminate while we wait on a slow owner.
                Step::Wake => self.send_pending_term().await?,
            }
        }
    }

    /// Queues a control message for the writer. If the writer cannot take it for `stall_after`, the peer has
    /// stopped reading while still sending; reset the connection rather than buffer without bound.
    async fn ctrl(&mut self, m: Message) -> Flow {
        match timeout(self.stall_after, self.shared.ctrl.send(Ctrl::Msg(m))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.ended_elsewhere()),
            Err(_) => {
                self.shared.abort(SessionError::Stalled);
                Err(self.ended_elsewhere())
            }
        }
    }

    async fn send_pending_term(&mut self) -> Flow {
        let reason = {
            let mut st = self.shared.lock();
            if !st.term_pending {
                return Ok(());
            }
            st.term_pending = false;
            st.term_sent
        };
        match reason {
            Some(reason) => self.ctrl(Message::SessTerm(SessTerm { flags: 0, reason })).await,
            None => Ok(()),
        }
    }

    /// Ends the session because of something the peer did (or failed to do): SESS_TERM with `reason` unless
    /// one was sent already, then close.
    async fn fail(&mut self, error: SessionError, reason: TermReason) -> Ended {
        tracing::debug!(peer = %self.shared.params.peer_addr, %error, ?reason, "tcpcl session failing");
        let send = {
            let mut st = self.shared.lock();
            let send = st.term_sent.is_none() || st.term_pending;
            st.term_pending = false;
            st.term_by_peer.get_or_insert(false);
            let r = *st.term_sent.get_or_insert(reason);
            send.then_some(r)
        };
        if let Some(r) = send {
            let _ = self.ctrl(Message::SessTerm(SessTerm { flags: 0, reason: r })).await;
        }
        self.close_and_drain(FAIL_GRACE).await;
        let reason = self.shared.lock().term_sent;
        Ended { reason, by_peer: false, error: Some(error) }
    }

    async fn decode_failed(&mut self, e: DecodeError) -> Ended {
        match e {
            DecodeError::UnknownMessageType(t) => {
                // RFC 9174 §5.1.2: reject and close; the message's length is unknown, so no resync.
                let _ = self.reject(RejectReason::TypeUnknown, t).await;
                self.close_and_drain(FAIL_GRACE).await;
                let reason = self.shared.lock().term_sent;
                Ended { reason, by_peer: false, error: Some(e.into()) }
            }
            DecodeError::SegmentTooLong { .. } | DecodeError::ExtensionsTooLong { .. } => {
                self.fail(e.into(), TermReason::ResourceExhaustion).await
            }
            DecodeError::BadMagic | DecodeError::NodeIdNotUtf8 => self.fail(e.into(), TermReason::ContactFailure).await,
        }
    }

    /// Both SESS_TERMs are exchanged and nothing is in flight: close our side and wait for the peer's.
    async fn close_clean(&mut self) -> Ended {
        self.close_and_drain(CLOSE_GRACE).await;
        let st = self.shared.lock();
        let by_peer = st.term_by_peer.unwrap_or(false);
        let reason = if by_peer { st.term_received } else { st.term_sent };
        Ended { reason, by_peer, error: None }
    }

    /// Sends FIN after everything queued, then discards input until the peer's FIN (or `grace`), so that
    /// closing with unread data does not turn into a reset that could destroy our last messages in flight.
    async fn close_and_drain(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        if tokio::time::timeout_at(deadline, self.shared.ctrl.send(Ctrl::Close)).await.is_err() {
            return;
        }
        let mut scratch = [0u8; 8192];
        loop {
            tokio::select! {
                biased;
                _ = shut(&mut self.shutdown) => return,
                r = self.rd.read(&mut scratch) => if !matches!(r, Ok(n) if n > 0) { return },
                _ = sleep_until(deadline) => return,
            }
        }
    }

    fn eof(&self) -> Ended {
        let st = self.shared.lock();
        let reason = st.term_received.or(st.term_sent);
        if st.ready_to_close() {
            let by_peer = st.term_by_peer.unwrap_or(true);
            Ended { reason, by_peer, error: None }
        } else {
            Ended { reason, by_peer: true, error: Some(SessionError::ConnectionClosed) }
        }
    }

    fn peer_failed(&self, error: SessionError) -> Ended {
        let st = self.shared.lock();
        Ended { reason: st.term_received.or(st.term_sent), by_peer: true, error: Some(error) }
    }

    /// Another task ended the session (abort, writer failure); report what it recorded.
    fn ended_elsewhere(&self) -> Ended {
        self.shared.lock().end.clone().unwrap_or(Ended {
            reason: None,
            by_peer: false,
            error: Some(SessionError::Closed),
        })
    }
}
