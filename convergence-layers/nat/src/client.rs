//! The STUN client: Binding transactions with RFC 8489 §6.2.1 retransmission over a [`DatagramPort`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::port::{DatagramPort, UdpPort};
use crate::wire::{self, BindingOutcome, BindingResponse};

/// When to retransmit a request and when to give up (RFC 8489 §6.2.1): transmissions at 0, RTO, 3·RTO,
/// 7·RTO, … (the interval doubles), `max_transmissions` of them (Rc), then a last wait of
/// `final_wait_multiplier` · RTO (Rm) before the transaction fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetransmitPolicy {
    pub initial_rto: Duration,
    pub max_transmissions: u32,
    pub final_wait_multiplier: u32,
}

impl Default for RetransmitPolicy {
    /// RFC 8489's defaults: RTO 500 ms, Rc 7, Rm 16; a silent server fails after 39.5 s.
    fn default() -> Self {
        RetransmitPolicy { initial_rto: Duration::from_millis(500), max_transmissions: 7, final_wait_multiplier: 16 }
    }
}

impl RetransmitPolicy {
    /// For checking candidates found in the DHT: three transmissions and a short last wait, so that a dead
    /// candidate costs 3.5 s, not 39.5 s. A server more than a few seconds away is useless to us anyway.
    pub fn probe() -> Self {
        RetransmitPolicy { initial_rto: Duration::from_millis(500), max_transmissions: 3, final_wait_multiplier: 4 }
    }

    /// Offsets from the start of the transaction at which each transmission goes out, and the offset at
    /// which the transaction fails. At least one transmission is always made.
    pub fn schedule(&self) -> (Vec<Duration>, Duration) {
        let n = self.max_transmissions.max(1);
        let mut at = Duration::ZERO;
        let mut rto = self.initial_rto;
        let mut sends = Vec::with_capacity(n as usize);
        for i in 0..n {
            sends.push(at);
            if i + 1 < n {
                at += rto;
                rto = rto.saturating_mul(2);
            }
        }
        (sends, at + self.initial_rto.saturating_mul(self.final_wait_multiplier))
    }
}

/// A successful Binding transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// The server that answered.
    pub server: SocketAddr,
    /// Our address as the server saw it: the NAT's public mapping of our socket.
    pub mapped: SocketAddr,
    /// From the most recent transmission to the answer. With `transmissions > 1` the answer may belong to
    /// an earlier copy (Karn's problem), so this is then only a lower bound; selection prefers clean samples.
    pub rtt: Duration,
    /// How many copies of the request went out.
    pub transmissions: u32,
    /// The identity key the server claims, if it was asked ([`StunClient::binding_identity`]) and is a
    /// relay. Only a hint: a relay is trusted once a WireGuard handshake with this key completes.
    pub identity: Option<[u8; 32]>,
}

/// Why a Binding transaction failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BindingError {
    #[error("no answer from the STUN server within the retransmission schedule")]
    Timeout,
    #[error("the STUN server answered with error {0}")]
    ErrorResponse(u16),
}

/// Counters of what the client saw; hostile or stray input shows up here instead of in a panic.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClientStats {
    /// Binding transactions started.
    pub transactions: u64,
    /// Request copies sent after the first.
    pub retransmissions: u64,
    /// Sends the port refused (counted as losses).
    pub send_errors: u64,
    /// Answers matched to a transaction.
    pub responses: u64,
    /// STUN messages that matched no open transaction, or came from another address than it was sent to.
    pub unmatched: u64,
    /// Datagrams that were not STUN, or STUN we could not use.
    pub malformed: u64,
    /// Transactions that ran out of time.
    pub timeouts: u64,
}

#[derive(Default)]
struct Counters {
    transactions: AtomicU64,
    retransmissions: AtomicU64,
    send_errors: AtomicU64,
    responses: AtomicU64,
    unmatched: AtomicU64,
    malformed: AtomicU64,
    timeouts: AtomicU64,
}

struct Pending {
    server: SocketAddr,
    done: oneshot::Sender<(BindingResponse, Instant)>,
}

/// A STUN client on somebody else's socket. Cheap to share (`Arc`); any number of transactions may run at
/// once.
pub struct StunClient<P: DatagramPort> {
    port: P,
    policy: RetransmitPolicy,
    pending: Mutex<HashMap<[u8; 12], Pending>>,
    counters: Counters,
}

/// IPv4 peers seen through a dual-stack socket arrive as `::ffff:a.b.c.d`; compare them as IPv4.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// Removes the transaction when the `binding` future ends for any reason, including being dropped.
struct PendingGuard<'a, P: DatagramPort> {
    client: &'a StunClient<P>,
    tid: [u8; 12],
}

impl<P: DatagramPort> Drop for PendingGuard<'_, P> {
    fn drop(&mut self) {
        self.client.lock().remove(&self.tid);
    }
}

impl<P: DatagramPort> StunClient<P> {
    pub fn new(port: P, policy: RetransmitPolicy) -> Self {
        StunClient { port, policy, pending: Mutex::new(HashMap::new()), counters: Counters::default() }
    }

    pub fn policy(&self) -> RetransmitPolicy {
        self.policy
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 12], Pending>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and removes).
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one Binding transaction with `server` under the client's policy.
    pub async fn binding(&self, server: SocketAddr) -> Result<Binding, BindingError> {
        self.binding_with(server, self.policy).await
    }

    /// Runs one Binding transaction with `server` under `policy`.
    pub async fn binding_with(&self, server: SocketAddr, policy: RetransmitPolicy) -> Result<Binding, BindingError> {
        self.transaction(server, policy, false).await
    }

    /// Runs one Binding transaction with `server` under `policy` that also asks for its identity key
    /// (DTN-IDENTITY): a relay answers with it, any other server ignores the question.
    pub async fn binding_identity(
        &self,
        server: SocketAddr,
        policy: RetransmitPolicy,
    ) -> Result<Binding, BindingError> {
        self.transaction(server, policy, true).await
    }

    async fn transaction(
        &self,
        server: SocketAddr,
        policy: RetransmitPolicy,
        ask: bool,
    ) -> Result<Binding, BindingError> {
        let server = canonical(server);
        let tid = wire::new_transaction_id();
        let request = if ask { wire::binding_request_with_identity(tid) } else { wire::binding_request(tid) };
        let (tx, mut rx) = oneshot::channel();
        self.lock().insert(tid, Pending { server, done: tx });
        let _guard = PendingGuard { client: self, tid };
        self.counters.transactions.fetch_add(1, Ordering::Relaxed);

        let (sends, give_up) = policy.schedule();
        let start = Instant::now();
        let mut last_sent = start;
        for (i, offset) in sends.iter().enumerate() {
            // Wait for an answer until this copy is due.
            if i > 0 {
                match tokio::time::timeout_at(start + *offset, &mut rx).await {
                    Ok(Ok(answer)) => return self.finish(server, answer, last_sent, i as u32),
                    Ok(Err(_)) => return Err(BindingError::Timeout),
                    Err(_) => {
                        self.counters.retransmissions.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            last_sent = Instant::now();
            if self.port.send_to(&request, server).await.is_err() {
                self.counters.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        match tokio::time::timeout_at(start + give_up, &mut rx).await {
            Ok(Ok(answer)) => self.finish(server, answer, last_sent, sends.len() as u32),
            _ => {
                self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(BindingError::Timeout)
            }
        }
    }

    fn finish(
        &self,
        server: SocketAddr,
        (response, at): (BindingResponse, Instant),
        last_sent: Instant,
        transmissions: u32,
    ) -> Result<Binding, BindingError> {
        match response.outcome {
            BindingOutcome::Mapped(mapped) => Ok(Binding {
                server,
                mapped,
                rtt: at.saturating_duration_since(last_sent),
                transmissions,
                identity: response.identity,
            }),
            BindingOutcome::Error(code) => Err(BindingError::ErrorResponse(code)),
        }
    }

    /// Offers a received datagram. Returns true if it was a STUN message (the caller should not pass it on
    /// to WireGuard), whether or not it answered one of our transactions.
    pub fn handle_datagram(&self, datagram: &[u8], from: SocketAddr) -> bool {
        let at = Instant::now();
        if !wire::is_stun(datagram) {
            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let response = match wire::parse_binding_response(datagram) {
            Ok(r) => r,
            Err(_) => {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        };
        let mut pending = self.lock();
        // Only the server we asked may answer: the 96-bit transaction ID already defeats blind forgery, and
        // this keeps a reflected copy of a request (an echo) or a third party out as well.
        match pending.get(&response.transaction_id) {
            Some(p) if p.server == canonical(from) => {
                if let Some(p) = pending.remove(&response.transaction_id) {
                    self.counters.responses.fetch_add(1, Ordering::Relaxed);
                    let _ = p.done.send((response, at));
                }
            }
            _ => {
                self.counters.unmatched.fetch_add(1, Ordering::Relaxed);
            }
        }
        true
    }

    pub fn stats(&self) -> ClientStats {
        let c = &self.counters;
        ClientStats {
            transactions: c.transactions.load(Ordering::Relaxed),
            retransmissions: c.retransmissions.load(Ordering::Relaxed),
            send_errors: c.send_errors.load(Ordering::Relaxed),
            responses: c.responses.load(Ordering::Relaxed),
            unmatched: c.unmatched.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
        }
    }
}

impl StunClient<UdpPort> {
    /// A client on a socket of its own, with its receive loop running; the loop stops when the returned
    /// handle is dropped.
    pub fn on_socket(socket: tokio::net::UdpSocket, policy: RetransmitPolicy) -> (Arc<Self>, ReceiveLoop) {
        let socket = Arc::new(socket);
        let client = Arc::new(StunClient::new(UdpPort(socket.clone()), policy));
        let task = crate::port::spawn_receive_loop(socket, client.clone());
        (client, ReceiveLoop(task))
    }
}

/// Stops the receive loop of [`StunClient::on_socket`] when dropped.
#[derive(Debug)]
pub struct ReceiveLoop(tokio::task::JoinHandle<()>);

impl Drop for ReceiveLoop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn default_schedule_is_rfc_8489() {
        // RFC 8489 §6.2.1: with RTO 500 ms, requests at 0, 500, 1500, 3500, 7500, 15500 and 31500 ms, and
        // failure at 39500 ms.
        let (sends, give_up) = RetransmitPolicy::default().schedule();
        assert_eq!(sends, [0, 500, 1500, 3500, 7500, 15500, 31500].map(ms));
        assert_eq!(give_up, ms(39500));
    }

    #[test]
    fn probe_schedule_is_bounded() {
        let (sends, give_up) = RetransmitPolicy::probe().schedule();
        assert_eq!(sends, [0, 500, 1500].map(ms));
        assert_eq!(give_up, ms(3500));
        let none = RetransmitPolicy { initial_rto: ms(10), max_transmissions: 0, final_wait_multiplier: 0 };
        assert_eq!(none.schedule(), (vec![ms(0)], ms(0)), "at least one request always goes out");
    }
}
