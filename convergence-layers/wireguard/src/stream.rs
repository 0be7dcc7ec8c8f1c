//! TCP connections of the userspace stack as tokio `AsyncRead + AsyncWrite` streams, and listeners.
//!
//! Flow control is TCP's own: a stream reads from and writes into its socket's buffers under the stack lock;
//! `poll_write` returns `Pending` while the send buffer is full (the peer's window is closed or the tunnel is
//! slow) and `poll_read` while nothing arrived, each registering the task's waker with smoltcp, which wakes
//! it when the driver's next poll changes the socket. Reading frees receive window, so it wakes the driver to
//! advertise it.

use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::wire::IpAddress;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::identity::PeerKey;
use crate::stack::Shared;

/// One TCP connection inside the tunnel. Dropping it closes the connection gracefully (FIN after the data
/// already written).
pub struct TunnelStream {
    shared: Arc<Shared>,
    handle: SocketHandle,
    peer: PeerKey,
    local: SocketAddr,
    remote: SocketAddr,
}

impl std::fmt::Debug for TunnelStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelStream")
            .field("peer", &self.peer)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .finish()
    }
}

fn v6(a: IpAddress, port: u16) -> SocketAddr {
    let IpAddress::Ipv6(a) = a;
    SocketAddr::V6(SocketAddrV6::new(a, port, 0, 0))
}

impl TunnelStream {
    /// Wraps a socket (connected or connecting) to `peer`.
    pub(crate) fn new(shared: Arc<Shared>, handle: SocketHandle, peer: PeerKey) -> TunnelStream {
        let (local, remote) = {
            let st = shared.lock();
            let s = st.sockets.get::<tcp::Socket>(handle);
            let l = s.local_endpoint().map(|e| v6(e.addr, e.port));
            let r = s.remote_endpoint().map(|e| v6(e.addr, e.port));
            let unspecified = SocketAddr::new(IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED), 0);
            (l.unwrap_or(unspecified), r.unwrap_or(unspecified))
        };
        TunnelStream { shared, handle, peer, local, remote }
    }

    /// The peer at the other end, authenticated by WireGuard.
    pub fn peer(&self) -> PeerKey {
        self.peer
    }

    /// Our tunnel address and port.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The peer's tunnel address and port.
    pub fn peer_addr(&self) -> SocketAddr {
        self.remote
    }

    /// Waits until the three-way handshake completed; `Err(true)` if the peer refused (reset), `Err(false)`
    /// if the socket closed otherwise.
    pub(crate) async fn established(&self) -> Result<(), bool> {
        poll_fn(|cx| {
            let mut st = self.shared.lock();
            let s = st.sockets.get_mut::<tcp::Socket>(self.handle);
            match s.state() {
                tcp::State::SynSent | tcp::State::SynReceived => {
                    s.register_send_waker(cx.waker());
                    Poll::Pending
                }
                tcp::State::Closed => Poll::Ready(Err(true)),
                _ => Poll::Ready(Ok(())),
            }
        })
        .await
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let this = self.get_mut();
        let mut st = this.shared.lock();
        let s = st.sockets.get_mut::<tcp::Socket>(this.handle);
        let mut n = 0;
        // The receive ring may wrap: take up to two contiguous pieces, copying straight into the caller's
        // buffer (no zeroing of it first).
        for _ in 0..2 {
            if buf.remaining() == 0 {
                break;
            }
            match s.recv(|data| {
                let k = data.len().min(buf.remaining());
                buf.put_slice(&data[..k]);
                (k, k)
            }) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(tcp::RecvError::Finished) => break,
                Err(tcp::RecvError::InvalidState) => {
                    if n > 0 {
                        break;
                    }
                    return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
                }
            }
        }
        if n > 0 {
            drop(st);
            this.shared.wake.notify_one();
            return Poll::Ready(Ok(()));
        }
        if !s.may_recv() {
            // FIN received and everything read: end of stream.
            return Poll::Ready(Ok(()));
        }
        s.register_recv_waker(cx.waker());
        Poll::Pending
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut st = this.shared.lock();
        if st.stopped {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        let s = st.sockets.get_mut::<tcp::Socket>(this.handle);
        if !s.may_send() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        match s.send_slice(buf) {
            Ok(0) if !buf.is_empty() => {
                s.register_send_waker(cx.waker());
                Poll::Pending
            }
            Ok(n) => {
                drop(st);
                this.shared.wake.notify_one();
                Poll::Ready(Ok(n))
            }
            Err(tcp::SendError::InvalidState) => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written bytes are in the socket's buffer and the driver has been woken: like a kernel socket.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.shared.lock().sockets.get_mut::<tcp::Socket>(this.handle).close();
        this.shared.wake.notify_one();
        Poll::Ready(Ok(()))
    }
}

impl Drop for TunnelStream {
    fn drop(&mut self) {
        self.shared.lock().orphan(self.handle);
        self.shared.wake.notify_one();
    }
}

/// Connections accepted on one port inside the tunnel. Dropping it stops listening.
pub struct Listener {
    pub(crate) shared: Arc<Shared>,
    pub(crate) port: u16,
}

impl Listener {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next connection, with the peer it came from (authenticated by WireGuard).
    pub async fn accept(&self) -> Result<TunnelStream, crate::Error> {
        loop {
            let h = poll_fn(|cx| {
                let mut st = self.shared.lock();
                if st.stopped {
                    return Poll::Ready(Err(crate::Error::Stopped));
                }
                let Some(l) = st.listeners.get_mut(&self.port) else {
                    return Poll::Ready(Err(crate::Error::Stopped));
                };
                match l.ready.pop_front() {
                    Some(h) => Poll::Ready(Ok(h)),
                    None => {
                        l.waker = Some(cx.waker().clone());
                        Poll::Pending
                    }
                }
            })
            .await?;
            let peer = {
                let mut st = self.shared.lock();
                let remote = st.sockets.get::<tcp::Socket>(h).remote_endpoint();
                let peer = remote.and_then(|e| {
                    let IpAddress::Ipv6(a) = e.addr;
                    st.peers_by_addr.get(&a).copied()
                });
                if peer.is_none() {
                    // Cannot happen while sources are checked against their peer; never hand out a stream
                    // whose peer we cannot name.
                    st.orphan(h);
                }
                peer
            };
            if let Some(peer) = peer {
                return Ok(TunnelStream::new(self.shared.clone(), h, peer));
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shared.lock().unlisten(self.port);
        self.shared.wake.notify_one();
    }
}
