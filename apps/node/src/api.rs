//! The application API: HTTP on loopback, payloads as raw bodies, everything else JSON. docs/api.md has
//! every route.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dtn_core::bpv7::{BundleFlags, BundleId, Eid};
use dtn_core::engine::{AduPart, Submission};
use dtn_core::store::{BundleMeta, Priority};
use futures_util::SinkExt;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::{Incoming, NodeError, NodeHandle};

/// Largest request body: a payload sent in one bundle, or one batch.
pub const MAX_BODY: usize = 1 << 30;
/// How long a bundle handed out by `GET /recv?ack=manual` waits for its acknowledgement before it is given
/// to the next reader.
pub const LEASE: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Api {
    node: NodeHandle,
    leases: Arc<Mutex<BTreeMap<BundleId, JoinHandle<()>>>>,
}

/// Binds the API and serves it until `stop` fires (then open connections are closed and the task ends,
/// so nothing holds the node's store any more) or the task is aborted.
pub async fn serve(
    addr: SocketAddr,
    node: NodeHandle,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<(SocketAddr, JoinHandle<()>), NodeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Io { context: format!("binding the API on {addr}"), source })?;
    let bound = listener.local_addr().map_err(|source| NodeError::Io { context: "API address".into(), source })?;
    let app = router(node);
    let task = tokio::spawn(async move {
        let stopping = async move {
            let _ = stop.await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopping).await {
            tracing::error!(error = %e, "API server stopped");
        }
    });
    Ok((bound, task))
}

/// The API's routes, for embedding in another server.
pub fn router(node: NodeHandle) -> Router {
    let api = Api { node, leases: Arc::default() };
    Router::new()
        .route("/node", get(node_info))
        .route("/send", post(send))
        .route("/send/batch", post(send_batch))
        .route("/endpoints", post(register).delete(unregister))
        .route("/recv", get(recv))
        .route("/recv/ack", post(ack))
        .route("/ws", get(ws))
        .route("/bundles", get(list))
        .route("/bundle", get(show).delete(delete))
        .route("/bundle/raw", get(raw))
        .route("/import", post(import))
        .route("/peers", get(peers))
        .route("/contacts", get(peers))
        .route("/stats", get(stats))
        .route("/link", post(link))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// The reason the engine gives when a submission does not fit in the store.
const STORE_FULL: &str = "store full";

/// An error as the API returns it: a status and one line of text.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, format!("{}\n", self.1)).into_response()
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let code = match &e {
            // The engine's refusal of a submission that found no room under the quota (or on disk).
            NodeError::Rejected(r) if r == STORE_FULL => StatusCode::INSUFFICIENT_STORAGE,
            NodeError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            NodeError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.to_string())
    }
}

fn bad(what: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, what.to_string())
}

fn eid(s: &str, what: &str) -> Result<Eid, ApiError> {
    s.parse().map_err(|e| bad(format!("bad {what} {s:?}: {e}")))
}

fn bundle_id(s: &str) -> Result<BundleId, ApiError> {
    s.parse().map_err(bad)
}

async fn node_info(State(api): State<Api>) -> impl IntoResponse {
    axum::Json(serde_json::json!({ "node": api.node.node_id().to_string() }))
}

/// Options of `POST /send` and `POST /send/batch`.
#[derive(Deserialize)]
struct SendParams {
    dst: String,
    src: Option<String>,
    /// Lifetime in seconds.
    lifetime: Option<u64>,
    /// 0 (bulk) to 255; 64 is normal.
    priority: Option<u8>,
    /// Comma-separated status reports wanted: received, forwarded, delivered, deleted.
    report: Option<String>,
    report_to: Option<String>,
    #[serde(default)]
    no_fragment: bool,
}

impl SendParams {
    fn submission(&self, payload: Vec<u8>) -> Result<Submission, ApiError> {
        let mut s = Submission::new(0, eid(&self.dst, "destination")?, payload);
        if let Some(src) = &self.src {
            s.source = Some(eid(src, "source")?);
        }
        s.lifetime_ms = self.lifetime.map(|l| l.saturating_mul(1000));
        if let Some(p) = self.priority {
            s.priority = Priority(p);
        }
        if let Some(r) = &self.report {
            let mut flags = 0;
            for part in r.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                flags |= match part {
                    "received" => BundleFlags::REPORT_RECEPTION.0,
                    "forwarded" => BundleFlags::REPORT_FORWARDING.0,
                    "delivered" => BundleFlags::REPORT_DELIVERY.0,
                    "deleted" => BundleFlags::REPORT_DELETION.0,
                    other => return Err(bad(format!("unknown report {other:?}"))),
                };
            }
            s.reports = BundleFlags(flags);
        }
        if let Some(r) = &self.report_to {
            s.report_to = Some(eid(r, "report-to endpoint")?);
        }
        s.must_not_fragment = self.no_fragment;
        Ok(s)
    }
}

#[derive(Serialize)]
struct Sent {
    id: String,
    fragments: usize,
}

/// `POST /send`. A payload longer than the node's part size (with a Content-Length) is read and stored
/// part by part, each part a fragment of the one bundle, so memory stays at a few parts whatever the size.
async fn send(
    State(api): State<Api>,
    Query(p): Query<SendParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let part = api.node.part_size();
    let len = match headers.get(axum::http::header::CONTENT_LENGTH) {
        Some(v) => Some(v.to_str().ok().and_then(|v| v.parse::<u64>().ok()).ok_or_else(|| bad("bad Content-Length"))?),
        None => None,
    };
    let ids = match len {
        Some(total) if total > part && !p.no_fragment => send_parts(&api, p, total, body).await?,
        _ => {
            let limit =
                if p.no_fragment || len.is_some() { MAX_BODY } else { usize::try_from(part).unwrap_or(MAX_BODY) };
            let bytes = match axum::body::to_bytes(body, limit).await {
                Ok(b) => b,
                Err(_) if len.is_none() && !p.no_fragment => {
                    return Err(ApiError(
                        StatusCode::LENGTH_REQUIRED,
                        format!("payloads over {part} bytes need a Content-Length (they are stored part by part)"),
                    ));
                }
                Err(e) => return Err(ApiError(StatusCode::PAYLOAD_TOO_LARGE, format!("reading the payload: {e}"))),
            };
            api.node.submit(p.submission(bytes.to_vec())?).await?
        }
    };
    let first = ids.first().cloned().ok_or_else(|| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "no ID".into()))?;
    let id = BundleId { fragment: None, ..first }.compact();
    Ok(axum::Json(Sent { id, fragments: ids.len() }))
}

/// Parts stored ahead of the one being read: enough to keep the disk busy while the network delivers.
const PARTS_IN_FLIGHT: usize = 4;

/// Stores a payload of `total` bytes part by part. If the body ends early or a part is refused, the parts
/// already stored are deleted: a payload is stored whole or not at all.
async fn send_parts(api: &Api, p: SendParams, total: u64, body: Body) -> Result<Vec<BundleId>, ApiError> {
    let api = api.clone();
    // A task of its own: if the client goes away, the server drops this request's future, and the
    // clean-up must run all the same.
    let task = tokio::spawn(async move {
        let mut ids = Vec::new();
        match store_parts(&api, &p, total, body, &mut ids).await {
            Ok(()) => Ok(ids),
            Err(e) => {
                for id in ids {
                    let _ = api.node.delete(id).await;
                }
                Err(e)
            }
        }
    });
    task.await.map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("storing the payload: {e}")))?
}

async fn store_parts(
    api: &Api,
    p: &SendParams,
    total: u64,
    body: Body,
    ids: &mut Vec<BundleId>,
) -> Result<(), ApiError> {
    let part = usize::try_from(api.node.part_size()).unwrap_or(1 << 20);
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::with_capacity(part);
    let mut offset = 0u64;
    let mut creation = None;
    let mut in_flight = std::collections::VecDeque::new();
    let read = async {
        loop {
            let frame = stream.next().await;
            let ended = frame.is_none();
            if let Some(f) = frame {
                let f = f.map_err(|e| bad(format!("reading the payload: {e}")))?;
                buf.extend_from_slice(&f);
                if offset + buf.len() as u64 > total {
                    return Err(bad("the body is longer than its Content-Length"));
                }
            }
            while buf.len() >= part || (ended && !buf.is_empty()) {
                let rest = if buf.len() > part { buf.split_off(part) } else { Vec::with_capacity(part) };
                let chunk = std::mem::replace(&mut buf, rest);
                let n = chunk.len() as u64;
                let mut sub = p.submission(chunk)?;
                sub.part = Some(AduPart { total_len: total, offset, creation });
                offset += n;
                if creation.is_none() {
                    // The first part fixes the bundle's creation timestamp; the others reuse it.
                    let got = api.node.submit(sub).await?;
                    creation = got.first().map(|id| id.creation);
                    ids.extend(got);
                } else {
                    in_flight.push_back(api.node.submit_now(sub)?);
                    if in_flight.len() >= PARTS_IN_FLIGHT
                        && let Some(f) = in_flight.pop_front()
                    {
                        ids.extend(f.await?);
                    }
                }
            }
            if ended {
                break;
            }
        }
        if offset != total {
            return Err(bad(format!("the body ended after {offset} of {total} bytes")));
        }
        Ok(())
    }
    .await;
    // Every part handed to the node is accounted for, so that a failure can delete them all.
    let mut failed = read.err();
    for f in in_flight {
        match f.await {
            Ok(got) => ids.extend(got),
            Err(e) => failed = failed.or(Some(e.into())),
        }
    }
    failed.map_or(Ok(()), Err)
}

/// `POST /send/batch`: the body is any number of payloads, each as a 4-byte big-endian length and the bytes,
/// all sent with the same options. Every bundle is durable when the answer comes.
async fn send_batch(
    State(api): State<Api>,
    Query(p): Query<SendParams>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let mut rest = &body[..];
    let mut subs = Vec::new();
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(bad(format!("batch: truncated length at byte {}", body.len() - rest.len())));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if tail.len() < len {
            return Err(bad(format!("batch: payload at byte {} is cut short", body.len() - rest.len())));
        }
        subs.push(p.submission(tail[..len].to_vec())?);
        rest = &tail[len..];
    }
    let waits = api.node.submit_batch_now(subs)?;
    let mut ids = Vec::with_capacity(waits.len());
    for r in futures_util::future::join_all(waits).await {
        let first = r?.into_iter().next().map(|id| BundleId { fragment: None, ..id });
        ids.extend(first.map(|id| id.compact()));
    }
    Ok(axum::Json(serde_json::json!({ "ids": ids })))
}

#[derive(Deserialize)]
struct EndpointParams {
    eid: String,
}

async fn register(State(api): State<Api>, Query(p): Query<EndpointParams>) -> Result<StatusCode, ApiError> {
    api.node.register(eid(&p.eid, "endpoint")?)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unregister(State(api): State<Api>, Query(p): Query<EndpointParams>) -> Result<StatusCode, ApiError> {
    api.node.unregister(eid(&p.eid, "endpoint")?)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct RecvParams {
    endpoint: String,
    /// Seconds to wait for a bundle; 0 answers at once.
    #[serde(default)]
    wait: u64,
    /// `auto` (default): the bundle counts as delivered once sent. `manual`: it waits for `POST /recv/ack`.
    ack: Option<String>,
}

fn delivery_headers(d: &Incoming) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut put = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    put("x-bundle-id", d.id.compact());
    put("x-source", d.source.to_string());
    put("x-destination", d.destination.to_string());
    put("content-type", "application/octet-stream".into());
    put("content-length", d.len.to_string());
    put("x-creation-time", d.creation_time.0.to_string());
    if let Some(age) = d.age_ms {
        put("x-bundle-age", age.to_string());
    }
    h
}

/// `GET /recv`: the next bundle for an endpoint, its payload as the body; 204 when there is none.
async fn recv(State(api): State<Api>, Query(p): Query<RecvParams>) -> Result<Response, ApiError> {
    let endpoint = eid(&p.endpoint, "endpoint")?;
    let manual = match p.ack.as_deref() {
        None | Some("auto") => false,
        Some("manual") => true,
        Some(other) => return Err(bad(format!("ack must be auto or manual, not {other:?}"))),
    };
    let next = api.node.next_delivery(endpoint, p.wait > 0);
    let d = if p.wait > 0 {
        match tokio::time::timeout(Duration::from_secs(p.wait), next).await {
            Ok(r) => r?,
            Err(_) => None,
        }
    } else {
        next.await?
    };
    let Some(d) = d else { return Ok(StatusCode::NO_CONTENT.into_response()) };
    if manual {
        let node = api.node.clone();
        let id = d.id.clone();
        let lease = tokio::spawn(async move {
            tokio::time::sleep(LEASE).await;
            node.taken(id, false);
        });
        if let Some(old) = api.leases.lock().unwrap_or_else(|e| e.into_inner()).insert(d.id.clone(), lease) {
            old.abort();
        }
    }
    let headers = delivery_headers(&d);
    let mut reading = Reading { id: d.id.clone(), node: api.node.clone(), auto: !manual, done: false };
    let body = payload_chunks(d).map(move |c| match c {
        Ok((c, last)) => {
            if last {
                reading.finish();
            }
            Ok(Bytes::from(c))
        }
        Err(e) => Err(std::io::Error::other(e.to_string())),
    });
    Ok((headers, Body::from_stream(body)).into_response())
}

/// A payload being streamed to a reader. Dropped before its end (the reader went away), an automatically
/// acknowledged bundle is given back, to be delivered again.
struct Reading {
    id: BundleId,
    node: NodeHandle,
    auto: bool,
    done: bool,
}

impl Reading {
    /// The last bytes are with the HTTP layer: with `auto`, this counts as delivered.
    fn finish(&mut self) {
        self.done = true;
        if self.auto {
            self.node.taken(self.id.clone(), true);
        }
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        if self.auto && !self.done {
            self.node.taken(self.id.clone(), false);
        }
    }
}

/// A delivery's payload as a stream of chunks, each with whether it is the last.
fn payload_chunks(inc: Incoming) -> impl futures_util::Stream<Item = Result<(Vec<u8>, bool), NodeError>> {
    futures_util::stream::unfold(Some(inc), |inc| async move {
        match read_chunk(inc?).await {
            Ok((inc, Some(c))) => {
                let last = inc.is_done();
                Some((Ok((c, last)), (!last).then_some(inc)))
            }
            Ok((_, None)) => None,
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// The next stretch of a payload, read from the store off the async threads.
async fn read_chunk(mut inc: Incoming) -> Result<(Incoming, Option<Vec<u8>>), NodeError> {
    // Small payloads are in memory already: no thread hop.
    if inc.is_done() {
        return Ok((inc, None));
    }
    if !inc.needs_read() {
        let c = inc.next_chunk()?;
        return Ok((inc, c));
    }
    tokio::task::spawn_blocking(move || {
        let c = inc.next_chunk()?;
        Ok((inc, c))
    })
    .await
    .map_err(|e| NodeError::Corrupt(format!("reading a delivery: {e}")))?
}

#[derive(Deserialize)]
struct IdParams {
    id: String,
}

/// `POST /recv/ack?id=`: the application has the bundle; it is never delivered again.
async fn ack(State(api): State<Api>, Query(p): Query<IdParams>) -> Result<StatusCode, ApiError> {
    let id = bundle_id(&p.id)?;
    let lease = api.leases.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    match lease {
        Some(l) => {
            l.abort();
            api.node.taken(id, true);
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("{} is not waiting for an acknowledgement", p.id))),
    }
}

#[derive(Deserialize)]
struct WsParams {
    endpoint: String,
    /// `auto` (default): bundles count as delivered once their frames are flushed. `manual`: once the client
    /// acknowledges them with a text frame `{"ack": [ID, …]}`; those it gives back (`{"nack": [ID, …]}`) or
    /// still holds unacknowledged when the connection ends are delivered again.
    ack: Option<String>,
}

/// `GET /ws?endpoint=`: each bundle as a text frame (JSON: id, source, destination, length, creation_time,
/// age_ms) followed by binary frames holding its payload.
async fn ws(State(api): State<Api>, Query(p): Query<WsParams>, up: WebSocketUpgrade) -> Result<Response, ApiError> {
    let endpoint = eid(&p.endpoint, "endpoint")?;
    let manual = match p.ack.as_deref() {
        None | Some("auto") => false,
        Some("manual") => true,
        Some(other) => return Err(bad(format!("ack must be auto or manual, not {other:?}"))),
    };
    Ok(up.on_upgrade(move |socket| stream_deliveries(api.node, endpoint, manual, socket)))
}

/// A client's acknowledgement on a manual WebSocket stream.
#[derive(Deserialize)]
struct WsAck {
    /// Stored by the client: never delivered again.
    #[serde(default)]
    ack: Vec<String>,
    /// Given back: delivered again later (to this client or another).
    #[serde(default)]
    nack: Vec<String>,
}

async fn stream_deliveries(node: NodeHandle, endpoint: Eid, manual: bool, mut socket: WebSocket) {
    // While the stream is open, bundles arriving for the endpoint may come straight to it.
    let _reading = node.reading(endpoint.clone());
    // Manual acknowledgement: bundles whose frames went out, by compact ID, until the client confirms them.
    // Each with the order it went out in, so that what is given back keeps its place in the queue.
    let mut unacked: BTreeMap<String, (u64, BundleId)> = BTreeMap::new();
    let mut sent_count = 0u64;
    // The request for the next bundles lives across rounds: dropped while the node answers, its bundles
    // would be handed to nobody.
    let mut fetch = None;
    loop {
        let room = if manual { WS_MAX_UNACKED.saturating_sub(unacked.len()).min(WS_BATCH) } else { WS_BATCH };
        if fetch.is_none() && room > 0 {
            let n = node.clone();
            let ep = endpoint.clone();
            fetch = Some(Box::pin(async move { n.next_deliveries(ep, true, room).await }));
        }
        let batch = tokio::select! {
            d = async { fetch.as_mut().expect("checked").await }, if fetch.is_some() => {
                fetch = None;
                d
            }
            m = socket.recv() => match m {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Text(t))) if manual => match serde_json::from_str::<WsAck>(&t) {
                    Ok(a) => {
                        // Only what this socket holds: an ID it was never given changes nothing.
                        for id in a.ack {
                            if let Some((_, b)) = unacked.remove(&id) {
                                node.taken(b, true);
                            }
                        }
                        // Out of the window at once; back in the order they were sent, whatever the
                        // order of the list.
                        let mut back: Vec<(u64, BundleId)> =
                            a.nack.iter().filter_map(|id| unacked.remove(id)).collect();
                        back.sort_unstable_by_key(|(n, _)| *n);
                        node.give_back(back.into_iter().map(|(_, id)| id).collect());
                        continue;
                    }
                    Err(e) => {
                        let _ = socket.send(Message::Text(format!("bad acknowledgement: {e}").into())).await;
                        break;
                    }
                },
                // The client hung up (or sent something it should not): stop.
                _ => break,
            },
        };
        let Ok(batch) = batch else { break };
        // Frames are queued and flushed once per batch; the bundles count as delivered only after the flush
        // (and, with manual acknowledgement, the client's word).
        let mut ids = Vec::with_capacity(batch.len());
        let mut sent = true;
        for d in batch {
            ids.push(d.id.clone());
            if !sent {
                continue;
            }
            let head = serde_json::json!({
                "id": d.id.compact(),
                "source": d.source.to_string(),
                "destination": d.destination.to_string(),
                "length": d.len,
                "creation_time": d.creation_time.0,
                "age_ms": d.age_ms,
            });
            sent = socket.feed(Message::Text(head.to_string().into())).await.is_ok();
            let mut chunks = std::pin::pin!(payload_chunks(d));
            while sent && let Some(c) = chunks.next().await {
                sent = match c {
                    Ok((c, _)) => socket.feed(Message::Binary(c.into())).await.is_ok(),
                    Err(_) => false,
                };
            }
        }
        if !(sent && socket.flush().await.is_ok()) {
            // The client may have had some of them: with no acknowledgement, all are delivered again.
            node.give_back(ids);
            break;
        }
        for id in ids {
            if manual {
                sent_count += 1;
                unacked.insert(id.compact(), (sent_count, id));
            } else {
                node.taken(id, true);
            }
        }
    }
    // Given back in the order they were sent, so that the next reader gets them in that order.
    let mut back: Vec<(u64, BundleId)> = unacked.into_values().collect();
    back.sort_unstable_by_key(|(n, _)| *n);
    node.give_back(back.into_iter().map(|(_, id)| id).collect());
}

/// Bundles taken per round on a WebSocket stream.
const WS_BATCH: usize = 256;
/// Bundles a manual WebSocket stream sends ahead of the client's acknowledgements.
const WS_MAX_UNACKED: usize = 4 * WS_BATCH;

/// A stored bundle as the API lists it.
#[derive(Serialize)]
pub struct BundleInfo {
    /// Compact ID.
    pub id: String,
    /// Destination.
    pub destination: String,
    /// Encoded size.
    pub size: u64,
    /// Priority.
    pub priority: u8,
    /// Custody state.
    pub custody: String,
    /// Delivery state.
    pub delivery: String,
    /// Expiry (DTN time, ms).
    pub expires_at: u64,
    /// Spray-and-wait copies.
    pub copies: u32,
}

impl From<&BundleMeta> for BundleInfo {
    fn from(m: &BundleMeta) -> Self {
        BundleInfo {
            id: m.id.compact(),
            destination: m.destination.to_string(),
            size: m.size,
            priority: m.priority.0,
            custody: format!("{:?}", m.custody),
            delivery: format!("{:?}", m.delivery),
            expires_at: m.expires_at.0,
            copies: m.copies,
        }
    }
}

#[derive(Deserialize)]
struct ListParams {
    limit: Option<usize>,
}

async fn list(State(api): State<Api>, Query(p): Query<ListParams>) -> Result<impl IntoResponse, ApiError> {
    let metas = api.node.list(p.limit.unwrap_or(10_000))?;
    Ok(axum::Json(metas.iter().map(BundleInfo::from).collect::<Vec<_>>()))
}

async fn show(State(api): State<Api>, Query(p): Query<IdParams>) -> Result<impl IntoResponse, ApiError> {
    let id = bundle_id(&p.id)?;
    match api.node.meta(&id)? {
        Some(m) => Ok(axum::Json(BundleInfo::from(&m))),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("{} is not stored here", p.id))),
    }
}

async fn raw(State(api): State<Api>, Query(p): Query<IdParams>) -> Result<Response, ApiError> {
    let id = bundle_id(&p.id)?;
    if api.node.meta(&id)?.is_none() {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("{} is not stored here", p.id)));
    }
    Ok(Body::from(api.node.read(&id)?).into_response())
}

async fn delete(State(api): State<Api>, Query(p): Query<IdParams>) -> Result<StatusCode, ApiError> {
    let id = bundle_id(&p.id)?;
    if api.node.delete(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, format!("{} is not stored here", p.id)))
    }
}

/// `POST /import`: one encoded bundle, stored as if a peer had sent it (bundles carried by hand).
async fn import(State(api): State<Api>, body: Bytes) -> Result<StatusCode, ApiError> {
    let limits = dtn_core::bpv7::Limits { require_primary_crc: false, ..Default::default() };
    if let Err(e) = dtn_core::bpv7::Bundle::decode_with(&body, &limits) {
        return Err(bad(format!("not a bundle: {e}")));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    api.node.input(crate::core::Input::Received { peer: Eid::Null, bytes: body.to_vec(), durable: tx })?;
    match rx.await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError(StatusCode::INSUFFICIENT_STORAGE, "the bundle could not be stored".into())),
        Err(_) => Err(NodeError::Stopped.into()),
    }
}

async fn peers(State(api): State<Api>) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(api.node.peers().await?))
}

async fn stats(State(api): State<Api>) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(api.node.stats().await?))
}

#[derive(Deserialize)]
struct LinkParams {
    peer: String,
    up: bool,
}

/// `POST /link?peer=&up=false`: cuts the sessions to a peer and refuses new ones (`up=true` lets them back).
async fn link(State(api): State<Api>, Query(p): Query<LinkParams>) -> Result<StatusCode, ApiError> {
    api.node.set_link(eid(&p.peer, "peer")?, p.up)?;
    Ok(StatusCode::NO_CONTENT)
}
