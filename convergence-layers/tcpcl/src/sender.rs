//! The sender task: runs outgoing transfers one after another, in the order they were requested.
//!
//! Segments of one transfer are never interleaved with another's (RFC 9174 §5.2). Transfers are pipelined:
//! the next one starts as soon as the previous one's last segment is queued, without waiting for its
//! acknowledgements; the send window (bytes sent but unacknowledged, across all transfers) is what bounds
//! how far ahead we go, and therefore the memory a slow or silent peer can make us hold.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use crate::error::SessionError;
use crate::msg::{ExtensionItem, Extensions, TermReason, XFER_END, XFER_START, XferSegment};
use crate::state::{OutSegment, Request, Shared, Source};

pub(crate) async fn run(
    shared: Arc<Shared>,
    mut reqs: mpsc::UnboundedReceiver<Request>,
    data: mpsc::Sender<OutSegment>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let req = tokio::select! {
            biased;
            _ = crate::writer::shut(&mut shutdown) => break,
            r = reqs.recv() => match r {
                Some(r) => r,
                None => break,
            },
        };
        if !send_one(&shared, req, &data).await {
            break;
        }
    }
    // Requests still queued are dropped here; their futures resolve as `Cut { acked: 0 }`.
}

/// Sends one transfer; false when the session is gone and the task should stop.
async fn send_one(shared: &Shared, req: Request, data: &mpsc::Sender<OutSegment>) -> bool {
    let total = req.source.len();
    let id = match shared.out_start(total, req.done) {
        Ok(id) => id,
        Err(SessionError::TransferIdsExhausted) => {
            // RFC 9174 §5.2.1: exhausting the Transfer ID space ends the session.
            shared.request_terminate(TermReason::ResourceExhaustion);
            return true;
        }
        Err(_) => return true,
    };
    let mut source = req.source;
    let seg_size = shared.params.segment_size;
    let mut offset = 0u64;
    loop {
        let n = seg_size.min(total - offset);
        // `n` <= segment size <= send window <= u32::MAX (see `SessionConfig::sanitized`).
        let Ok(permit) = shared.window.acquire_many(n as u32).await else { return false };
        permit.forget();
        let chunk = match &mut source {
            Source::Bytes(b) => Ok(b.slice(offset as usize..(offset + n) as usize)),
            Source::Reader(r, _) => read_chunk(r, n as usize).await,
        };
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                shared.window.add_permits(n as usize);
                shared.out_abandon(id, e.to_string());
                return true;
            }
        };
        if !shared.out_sent(id, n) {
            // Refused by the peer (or the session ended) while we waited for window or data.
            shared.window.add_permits(n as usize);
            return true;
        }
        let mut flags = 0;
        if offset == 0 {
            flags |= XFER_START;
        }
        if offset + n == total {
            flags |= XFER_END;
        }
        // The Transfer Length lets the receiver refuse early or preallocate; RFC 9174 §5.2.5.1 says not to
        // send it when the transfer is a single segment.
        let extensions = if flags == XFER_START {
            Extensions::from_items(&[ExtensionItem::transfer_length(total)])
        } else {
            Extensions::empty()
        };
        let seg = XferSegment { flags, transfer_id: id, extensions, data: chunk };
        let mut header = BytesMut::with_capacity(40);
        seg.encode_header(&mut header);
        if data.send(OutSegment { header: header.freeze(), data: seg.data }).await.is_err() {
            return false;
        }
        offset += n;
        if offset == total {
            return true;
        }
    }
}

async fn read_chunk(r: &mut Box<dyn AsyncRead + Send + Unpin>, n: usize) -> std::io::Result<Bytes> {
    let mut v = vec![0u8; n];
    r.read_exact(&mut v).await?;
    Ok(Bytes::from(v))
}
