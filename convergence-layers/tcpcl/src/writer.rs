//! The writer task: the only code that writes to the socket once a session is up.
//!
//! Control messages (acknowledgements, refusals, SESS_TERM, MSG_REJECT) go before queued data segments so
//! that our acknowledgements are not stuck behind our own bulk data; a message is never interrupted, as
//! RFC 9174 §6.1 requires. KEEPALIVE is sent whenever nothing was written for the negotiated interval.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

use crate::error::SessionError;
use crate::msg::Message;
use crate::session::WriteHalf;
use crate::state::{Ctrl, Ended, OutSegment, Shared};

/// Control messages, and small data segments, are batched into one write up to this size.
const BATCH: usize = 64 << 10;
/// Segment data below this size is copied next to its header so that both go in one write.
const COALESCE: usize = 16 << 10;

pub(crate) async fn run(
    wr: WriteHalf,
    ctrl: mpsc::Receiver<Ctrl>,
    data: mpsc::Receiver<OutSegment>,
    keepalive: Option<Duration>,
    shared: Arc<Shared>,
) {
    let shutdown = shared.shutdown.subscribe();
    let mut w = Writer { wr, shutdown, buf: BytesMut::with_capacity(BATCH) };
    if let Err(e) = w.pump(ctrl, data, keepalive).await {
        tracing::debug!(peer = %shared.params.peer_addr, error = %e, "tcpcl writer failed");
        let reason = {
            let st = shared.lock();
            st.term_sent.or(st.term_received)
        };
        shared.finish(Ended { reason, by_peer: true, error: Some(e.into()) });
    }
}

struct Writer {
    wr: WriteHalf,
    shutdown: watch::Receiver<bool>,
    buf: BytesMut,
}

impl Writer {
    async fn pump(
        &mut self,
        mut ctrl: mpsc::Receiver<Ctrl>,
        mut data: mpsc::Receiver<OutSegment>,
        keepalive: Option<Duration>,
    ) -> io::Result<()> {
        let mut data_open = true;
        let mut last_tx = Instant::now();
        loop {
            let ka_at = keepalive.map(|k| last_tx + k);
            self.buf.clear();
            let mut close = false;
            tokio::select! {
                biased;
                _ = shut(&mut self.shutdown) => return Ok(()),
                c = ctrl.recv() => match c {
                    None => return Ok(()),
                    Some(Ctrl::Close) => close = true,
                    Some(Ctrl::Msg(m)) => {
                        m.encode(&mut self.buf);
                        while self.buf.len() < BATCH {
                            match ctrl.try_recv() {
                                Ok(Ctrl::Msg(m)) => m.encode(&mut self.buf),
                                Ok(Ctrl::Close) => { close = true; break; }
                                Err(_) => break,
                            }
                        }
                    }
                },
                s = data.recv(), if data_open => match s {
                    None => data_open = false,
                    Some(seg) => {
                        // Small segments already queued go out in the same write: one system call for many
                        // small bundles.
                        let mut next = Some(seg);
                        while let Some(seg) = next.take() {
                            self.buf.extend_from_slice(&seg.header);
                            if seg.data.len() < COALESCE {
                                self.buf.extend_from_slice(&seg.data);
                            } else {
                                let header = std::mem::take(&mut self.buf);
                                self.write(&header).await?;
                                self.buf = header;
                                self.buf.clear();
                                self.write(&seg.data).await?;
                                break;
                            }
                            if self.buf.len() >= BATCH {
                                break;
                            }
                            next = data.try_recv().ok();
                        }
                    }
                },
                _ = sleep_until(ka_at.unwrap_or_else(far)), if ka_at.is_some() => Message::Keepalive.encode(&mut self.buf),
            }
            if !self.buf.is_empty() {
                let out = std::mem::take(&mut self.buf);
                self.write(&out).await?;
                self.buf = out;
                last_tx = Instant::now();
            }
            if close {
                // FIN after everything queued before the close; the driver reads until the peer's FIN.
                self.wr.shutdown().await?;
                return Ok(());
            }
        }
    }

    /// Writes all of `b`, giving up when the session is shut down (e.g. aborted while the peer is not
    /// reading).
    async fn write(&mut self, b: &[u8]) -> io::Result<()> {
        tokio::select! {
            r = self.wr.write_all(b) => r,
            _ = shut(&mut self.shutdown) => Err(io::Error::other(SessionError::Closed)),
        }
    }
}

/// Resolves once the session is shut down; the output borrows nothing, so `select!` handlers may use self.
pub(crate) async fn shut(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

pub(crate) fn far() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}
