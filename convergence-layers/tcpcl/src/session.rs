//! Session establishment (RFC 9174 §4: contact header, SESS_INIT, parameter negotiation) and the handle
//! through which the owner sends, acknowledges, refuses and terminates.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, ToSocketAddrs, lookup_host};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout_at};

use crate::config::{Role, SessionConfig, SessionParams};
use crate::driver::Driver;
use crate::error::{DecodeError, SessionError};
use crate::msg::{
    ContactHeader, Decoded, Extensions, Message, MsgReject, RefuseReason, RejectReason, SessInit, SessTerm, TERM_REPLY,
    TermReason, VERSION, decode_message,
};
use crate::state::{Ctrl, Ended, Event, Outcome, Request, SessionStats, Shared, Source};
use crate::{sender, writer};

/// Received segments and other session events, in order; `Event::Ended` is always the last one.
pub type SessionEvents = mpsc::Receiver<Event>;

/// The halves of a session's byte stream, boxed so that the driver and writer tasks are the same code over
/// TCP and over any other stream (one virtual call per read or write, negligible next to a system call).
pub(crate) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Control messages queued for the writer before `ack`/`refuse` wait.
const CTRL_QUEUE: usize = 1024;
/// Segments queued between the sender task and the writer (they already hold send window).
const DATA_QUEUE: usize = 2;
/// How long we try to deliver a SESS_TERM or MSG_REJECT when refusing a session.
const REFUSE_GRACE: Duration = Duration::from_millis(500);

/// Opens a session as the active entity.
pub async fn connect(
    addr: impl ToSocketAddrs,
    cfg: SessionConfig,
) -> Result<(SessionHandle, SessionEvents), SessionError> {
    let cfg = cfg.sanitized();
    let mut last_err = None;
    for a in lookup_host(addr).await? {
        let sock = if a.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        // Set before connect() so that the window scale in the SYN can use the full buffer.
        if let Some(n) = cfg.socket_buffer {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            let _ = sock.set_send_buffer_size(n);
            let _ = sock.set_recv_buffer_size(n);
        }
        match sock.connect(a).await {
            Ok(s) => return establish_tcp(s, cfg, Role::Active).await,
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("address resolved to nothing")).into())
}

/// Runs the passive side of a session on an accepted connection.
pub async fn accept(tcp: TcpStream, cfg: SessionConfig) -> Result<(SessionHandle, SessionEvents), SessionError> {
    establish_tcp(tcp, cfg.sanitized(), Role::Passive).await
}

/// Opens a session as the active entity over an already connected byte stream, e.g. a TCP connection of a
/// userspace stack inside a tunnel. `local_addr` and `peer_addr` only label the session (`SessionParams`).
/// Without a socket underneath, `SessionHandle::abort` ends the session by dropping the stream.
pub async fn connect_stream<S>(
    stream: S,
    local_addr: SocketAddr,
    peer_addr: SocketAddr,
    cfg: SessionConfig,
) -> Result<(SessionHandle, SessionEvents), SessionError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    establish(stream, (local_addr, peer_addr), split_stream, cfg.sanitized(), Role::Active).await
}

/// Runs the passive side of a session over an already accepted byte stream; see [`connect_stream`].
pub async fn accept_stream<S>(
    stream: S,
    local_addr: SocketAddr,
    peer_addr: SocketAddr,
    cfg: SessionConfig,
) -> Result<(SessionHandle, SessionEvents), SessionError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    establish(stream, (local_addr, peer_addr), split_stream, cfg.sanitized(), Role::Passive).await
}

fn split_stream<S>(s: S) -> (ReadHalf, WriteHalf, Option<socket2::Socket>)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (rd, wr) = tokio::io::split(s);
    (Box::new(rd), Box::new(wr), None)
}

async fn establish_tcp(
    s: TcpStream,
    cfg: SessionConfig,
    role: Role,
) -> Result<(SessionHandle, SessionEvents), SessionError> {
    configure(&s, &cfg);
    let addrs = (s.local_addr()?, s.peer_addr()?);
    // TCP splits without a lock, and keeps a duplicate of the socket so that `abort` can reset it.
    let split = |s: TcpStream| -> (ReadHalf, WriteHalf, Option<socket2::Socket>) {
        let (rd, wr) = s.into_split();
        let dup = socket2::SockRef::from(wr.as_ref()).try_clone().ok();
        (Box::new(rd), Box::new(wr), dup)
    };
    establish(s, addrs, split, cfg, role).await
}

fn configure(s: &TcpStream, cfg: &SessionConfig) {
    // Small control messages (acks, keepalives) must not wait for Nagle.
    let _ = s.set_nodelay(true);
    if let Some(n) = cfg.socket_buffer {
        let sock = socket2::SockRef::from(s);
        let _ = sock.set_send_buffer_size(n);
        let _ = sock.set_recv_buffer_size(n);
    }
}

async fn establish<S>(
    mut s: S,
    (local_addr, peer_addr): (SocketAddr, SocketAddr),
    split: impl FnOnce(S) -> (ReadHalf, WriteHalf, Option<socket2::Socket>),
    cfg: SessionConfig,
    role: Role,
) -> Result<(SessionHandle, SessionEvents), SessionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if cfg.node_id.len() > usize::from(u16::MAX) {
        return Err(SessionError::Config("node ID longer than 65535 bytes"));
    }
    let mut buf = BytesMut::with_capacity(4096);
    let deadline = Instant::now() + cfg.negotiation_timeout;
    let peer = match negotiate(&mut s, &mut buf, &cfg, role, deadline).await {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(%peer_addr, error = %e, "tcpcl negotiation failed");
            close_gently(s).await;
            return Err(e);
        }
    };
    let keepalive = cfg.keepalive.min(peer.keepalive);
    let params = SessionParams {
        role,
        local_addr,
        peer_addr,
        peer_node_id: peer.node_id,
        keepalive,
        peer_segment_mru: peer.segment_mru,
        peer_transfer_mru: peer.transfer_mru,
        segment_size: cfg.max_segment_size.min(peer.segment_mru).min(cfg.send_window),
        send_window: cfg.send_window,
        transfer_mru: cfg.transfer_mru,
    };
    tracing::debug!(?params, "tcpcl session established");
    let ka = (keepalive > 0).then(|| Duration::from_secs(u64::from(keepalive)));

    let (rd, wr, dup) = split(s);
    let (ctrl_tx, ctrl_rx) = mpsc::channel(CTRL_QUEUE);
    let (data_tx, data_rx) = mpsc::channel(DATA_QUEUE);
    let (req_tx, req_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::channel(cfg.event_queue);
    let shared = Arc::new(Shared::new(params, ctrl_tx, dup));
    let driver = Driver {
        shared: shared.clone(),
        rd,
        buf,
        limits: cfg.limits(),
        events: ev_tx,
        shutdown: shared.shutdown.subscribe(),
        dead_after: ka.map(|k| 2 * k),
        idle_after: cfg.idle_timeout,
        stall_after: ka.map(|k| 2 * k).unwrap_or(cfg.negotiation_timeout).max(cfg.negotiation_timeout),
    };
    // KEEPALIVE after half the interval of silence, not the whole: some peers (dtn7-rs 0.21) end a session
    // that was silent for exactly one interval, and a keepalive sent on the dot loses that race.
    let ka_every = ka.map(|k| (k / 2).max(Duration::from_secs(1)));
    tokio::spawn(writer::run(wr, ctrl_rx, data_rx, ka_every, shared.clone()));
    tokio::spawn(sender::run(shared.clone(), req_rx, data_tx));
    tokio::spawn(driver.run());
    let handle = SessionHandle { inner: Arc::new(HandleInner { shared, requests: req_tx }) };
    Ok((handle, ev_rx))
}

/// Contact header and SESS_INIT exchange (RFC 9174 §4.1–§4.7); returns the peer's SESS_INIT. On failure the
/// peer has been told whatever the RFC requires and the caller closes the connection.
async fn negotiate(
    s: &mut (impl AsyncRead + AsyncWrite + Unpin),
    buf: &mut BytesMut,
    cfg: &SessionConfig,
    role: Role,
    deadline: Instant,
) -> Result<SessInit, SessionError> {
    let mut out = BytesMut::new();
    // The active entity speaks first; the passive one only answers a valid header (§4.1).
    if role == Role::Active {
        ContactHeader::ours().encode(&mut out);
        write(s, &mut out, deadline).await?;
    }
    let ch = loop {
        match ContactHeader::decode(buf) {
            // §6.1: an undecodable contact header is answered by closing, without SESS_TERM.
            Err(_) => return Err(SessionError::BadMagic),
            Ok(Some(ch)) => {
                buf.advance(ContactHeader::LEN);
                break ch;
            }
            Ok(None) => read_some(s, buf, deadline).await?,
        }
    };
    if role == Role::Passive {
        ContactHeader::ours().encode(&mut out);
        if ch.version != VERSION {
            // §4.3: send our contact header, then terminate with "Version mismatch".
            term(TermReason::VersionMismatch).encode(&mut out);
            let _ = write(s, &mut out, Instant::now() + REFUSE_GRACE).await;
            return Err(SessionError::VersionMismatch(ch.version));
        }
        write(s, &mut out, deadline).await?;
    } else if ch.version != VERSION {
        // §4.3: an active entity answered with another version just closes.
        return Err(SessionError::VersionMismatch(ch.version));
    }
    // Neither side can do TLS here (we never set CAN_TLS), so the negotiated "Enable TLS" is false.
    if role == Role::Active {
        ours(cfg).encode(&mut out);
        write(s, &mut out, deadline).await?;
    }
    let limits = cfg.limits();
    let init = loop {
        let refuse = match decode_message(buf, &limits) {
            Ok(Decoded::Message(Message::SessInit(i))) => break i,
            Ok(Decoded::Message(Message::SessTerm(t))) => {
                if !t.is_reply() {
                    Message::SessTerm(SessTerm { flags: TERM_REPLY, reason: t.reason }).encode(&mut out);
                    let _ = write(s, &mut out, Instant::now() + REFUSE_GRACE).await;
                }
                return Err(SessionError::PeerRefused(t.reason));
            }
            Ok(Decoded::Message(m)) => {
                let t = m.type_code();
                reject(RejectReason::Unexpected, t).encode(&mut out);
                (SessionError::UnexpectedBeforeInit(t), Some(TermReason::ContactFailure))
            }
            Ok(Decoded::NeedMore(n)) => {
                // `n` is bounded by the limits the decoder checked.
                buf.reserve(n.saturating_sub(buf.len()));
                match read_some(s, buf, deadline).await {
                    Ok(()) => continue,
                    // §4.1 figures 8 and 9: a SESS_INIT timeout ends the session with SESS_TERM.
                    Err(SessionError::NegotiationTimeout) => {
                        (SessionError::NegotiationTimeout, Some(TermReason::IdleTimeout))
                    }
                    Err(e) => return Err(e),
                }
            }
            // §5.1.2: an unknown type is rejected and the connection closed (its length is unknown).
            Err(e @ DecodeError::UnknownMessageType(t)) => {
                reject(RejectReason::TypeUnknown, t).encode(&mut out);
                (e.into(), None)
            }
            Err(e) => (e.into(), Some(TermReason::ContactFailure)),
        };
        return Err(refuse_session(s, &mut out, refuse).await);
    };
    // §4.7/§4.8: unknown critical session extensions and unacceptable MRUs end the session.
    let bad = if let Err(e) = init.extensions.check_session() {
        Some(SessionError::SessionExtension(e))
    } else if init.segment_mru < cfg.min_peer_segment_mru {
        Some(SessionError::Unacceptable("peer Segment MRU below our minimum"))
    } else {
        None
    };
    if let Some(e) = bad {
        return Err(refuse_session(s, &mut out, (e, Some(TermReason::ContactFailure))).await);
    }
    if role == Role::Passive {
        ours(cfg).encode(&mut out);
        write(s, &mut out, deadline).await?;
    }
    Ok(init)
}

fn ours(cfg: &SessionConfig) -> Message {
    Message::SessInit(SessInit {
        keepalive: cfg.keepalive,
        segment_mru: cfg.segment_mru,
        transfer_mru: cfg.transfer_mru,
        node_id: cfg.node_id.clone(),
        extensions: Extensions::empty(),
    })
}

fn term(reason: TermReason) -> Message {
    Message::SessTerm(SessTerm { flags: 0, reason })
}

fn reject(reason: RejectReason, rejected_type: u8) -> Message {
    Message::MsgReject(MsgReject { reason, rejected_type })
}

/// Sends what is queued in `out` plus an optional SESS_TERM, best effort, and returns the error.
async fn refuse_session(
    s: &mut (impl AsyncWrite + Unpin),
    out: &mut BytesMut,
    (error, reason): (SessionError, Option<TermReason>),
) -> SessionError {
    if let Some(r) = reason {
        term(r).encode(out);
    }
    let _ = write(s, out, Instant::now() + REFUSE_GRACE).await;
    error
}

async fn write(s: &mut (impl AsyncWrite + Unpin), out: &mut BytesMut, deadline: Instant) -> Result<(), SessionError> {
    let r = timeout_at(deadline, s.write_all(out)).await;
    out.clear();
    match r {
        Ok(r) => Ok(r?),
        Err(_) => Err(SessionError::NegotiationTimeout),
    }
}

async fn read_some(
    s: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    deadline: Instant,
) -> Result<(), SessionError> {
    if buf.capacity() == buf.len() {
        buf.reserve(4096);
    }
    match timeout_at(deadline, s.read_buf(buf)).await {
        Err(_) => Err(SessionError::NegotiationTimeout),
        Ok(Ok(0)) => Err(SessionError::ConnectionClosed),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
    }
}

/// FIN, then a short drain so that our last words are not destroyed by a reset.
async fn close_gently(mut s: impl AsyncRead + AsyncWrite + Unpin) {
    let deadline = Instant::now() + REFUSE_GRACE;
    if timeout_at(deadline, s.shutdown()).await.is_err() {
        return;
    }
    let mut scratch = [0u8; 4096];
    while let Ok(Ok(n)) = timeout_at(deadline, s.read(&mut scratch)).await {
        if n == 0 {
            break;
        }
    }
}

struct HandleInner {
    shared: Arc<Shared>,
    requests: mpsc::UnboundedSender<Request>,
}

impl Drop for HandleInner {
    /// Nobody can acknowledge or send any more: end the session cleanly, letting transfers in progress finish.
    fn drop(&mut self) {
        self.shared.request_terminate(TermReason::Unknown);
    }
}

/// The owner's side of a session. Cloning is cheap; when the last clone is dropped the session terminates.
#[derive(Clone)]
pub struct SessionHandle {
    inner: Arc<HandleInner>,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle").field("params", &self.inner.shared.params).finish_non_exhaustive()
    }
}

impl SessionHandle {
    pub fn params(&self) -> &SessionParams {
        &self.inner.shared.params
    }

    /// The node ID the peer gave in its SESS_INIT (empty if it gave none). Unauthenticated without TLS.
    pub fn peer_node_id(&self) -> &str {
        &self.inner.shared.params.peer_node_id
    }

    /// Sends `data` as one transfer. Transfers start in call order; the future resolves when the peer
    /// acknowledged or refused it, or when the session ended.
    pub fn send(&self, data: Bytes) -> impl Future<Output = Outcome> + Send + 'static {
        self.enqueue(Source::Bytes(data))
    }

    /// Sends `len` bytes read from `reader` as one transfer, one segment at a time, so that memory stays
    /// bounded by the send window however large the bundle is.
    pub fn send_reader<R>(&self, reader: R, len: u64) -> impl Future<Output = Outcome> + Send + 'static
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        self.enqueue(Source::Reader(Box::new(reader), len))
    }

    fn enqueue(&self, source: Source) -> impl Future<Output = Outcome> + Send + 'static {
        let (done, rx) = oneshot::channel();
        // Enqueued now, not when first polled, so that transfers keep the order of the calls.
        let _ = self.inner.requests.send(Request { source, done });
        // The sender dropped the request (session over before it started): nothing was acknowledged.
        async move { rx.await.unwrap_or(Outcome::Cut { acked: 0 }) }
    }

    /// Acknowledges `len_so_far` bytes of incoming transfer `transfer_id` (`end` on the last segment).
    /// Call it only once those bytes are durable: the sender resumes from the acknowledged length if the
    /// session is cut. RFC 9174 §5.2.3 expects one acknowledgement per received segment.
    pub async fn ack(&self, transfer_id: u64, len_so_far: u64, end: bool) -> Result<(), SessionError> {
        let msg = {
            let mut st = self.inner.shared.lock();
            if st.end.is_some() {
                return Err(SessionError::Closed);
            }
            st.owner_ack(transfer_id, len_so_far, end)?
        };
        self.control(Message::XferAck(msg)).await
    }

    /// Refuses incoming transfer `transfer_id`; its remaining segments are refused as they arrive.
    pub async fn refuse(&self, transfer_id: u64, reason: RefuseReason) -> Result<(), SessionError> {
        let msg = {
            let mut st = self.inner.shared.lock();
            if st.end.is_some() {
                return Err(SessionError::Closed);
            }
            st.owner_refuse(transfer_id, reason)?
        };
        self.control(Message::XferRefuse(msg)).await
    }

    async fn control(&self, m: Message) -> Result<(), SessionError> {
        let shared = &self.inner.shared;
        shared.ctrl.send(Ctrl::Msg(m)).await.map_err(|_| SessionError::Closed)?;
        // The driver may now be able to close a terminating session.
        shared.wake.notify_one();
        Ok(())
    }

    /// Starts a clean termination (SESS_TERM): no new transfers, those in progress finish, then the
    /// connection closes. Watch for `Event::Ended` or await [`SessionHandle::closed`].
    pub fn terminate(&self, reason: TermReason) {
        self.inner.shared.request_terminate(reason);
    }

    /// Cuts the connection at once (TCP reset): pending transfers resolve as `Cut` at the acknowledged length.
    pub fn abort(&self) {
        self.inner.shared.abort(SessionError::Aborted);
    }

    /// Waits until the session has ended.
    pub async fn closed(&self) -> Ended {
        let mut rx = self.inner.shared.ended.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(e) => e.clone().unwrap_or_else(closed_unknown),
            Err(_) => closed_unknown(),
        }
    }

    /// How the session ended, if it has.
    pub fn ended(&self) -> Option<Ended> {
        self.inner.shared.lock().end.clone()
    }

    pub fn stats(&self) -> SessionStats {
        self.inner.shared.lock().stats
    }
}

fn closed_unknown() -> Ended {
    Ended { reason: None, by_peer: false, error: Some(SessionError::Closed) }
}
