//! The STUN client against our responder and against a real STUN server (coturn), on loopback.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use dtn_nat::{BindingError, DatagramPort, Responder, RetransmitPolicy, StunClient, is_stun};
use tokio::net::UdpSocket;

const LOCALHOST: &str = "127.0.0.1:0";

fn quick() -> RetransmitPolicy {
    RetransmitPolicy { initial_rto: Duration::from_millis(100), max_transmissions: 3, final_wait_multiplier: 2 }
}

async fn client() -> (Arc<StunClient<dtn_nat::UdpPort>>, dtn_nat::ReceiveLoop, SocketAddr) {
    let sock = UdpSocket::bind(LOCALHOST).await.unwrap();
    let local = sock.local_addr().unwrap();
    let (c, l) = StunClient::on_socket(sock, quick());
    (c, l, local)
}

#[tokio::test]
async fn our_client_learns_its_mapping_from_our_responder() {
    let responder = Responder::bind(LOCALHOST.parse().unwrap()).await.unwrap();
    let (client, _loop, local) = client().await;
    let b = client.binding(responder.local_addr()).await.expect("binding succeeds");
    assert_eq!(b.mapped, local, "on loopback the mapping is the socket itself");
    assert_eq!(b.server, responder.local_addr());
    assert!(b.rtt < Duration::from_secs(1));
    assert_eq!(responder.stats().answered(), u64::from(b.transmissions));
}

#[tokio::test]
async fn responder_survives_garbage_and_keeps_answering() {
    let responder = Responder::bind(LOCALHOST.parse().unwrap()).await.unwrap();
    let junk = UdpSocket::bind(LOCALHOST).await.unwrap();
    let mut sent = 0;
    for len in [0usize, 1, 19, 20, 27, 28, 100, 1400] {
        let mut d: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
        if len >= 8 {
            // STUN-shaped: Binding request type and magic cookie, nonsense after.
            d[0..2].copy_from_slice(&[0, 1]);
            d[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
        }
        junk.send_to(&d, responder.local_addr()).await.unwrap();
        sent += 1;
    }
    let (client, _loop, _) = client().await;
    client.binding(responder.local_addr()).await.expect("still answering after garbage");
    // Every datagram got a verdict; none of the garbage was answered.
    let stats = responder.stats();
    tokio::time::timeout(Duration::from_secs(2), async {
        while stats.ignored() < sent {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("all garbage counted as ignored");
    let mut buf = [0u8; 64];
    let nothing = tokio::time::timeout(Duration::from_millis(200), junk.recv_from(&mut buf)).await;
    assert!(nothing.is_err(), "garbage gets no answer");
}

#[tokio::test]
async fn an_echo_is_not_an_answer_and_silence_times_out() {
    // A UDP echo service reflects our request: same transaction ID, but a request, not a response.
    let echo = UdpSocket::bind(LOCALHOST).await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            let _ = echo.send_to(&buf[..n], from).await;
        }
    });
    let (client, _loop, _) = client().await;
    assert_eq!(client.binding(echo_addr).await, Err(BindingError::Timeout));
    let silent = UdpSocket::bind(LOCALHOST).await.unwrap();
    assert_eq!(client.binding(silent.local_addr().unwrap()).await, Err(BindingError::Timeout));
    let s = client.stats();
    assert_eq!(s.transactions, 2);
    assert_eq!(s.timeouts, 2);
    assert_eq!(s.retransmissions, 4, "three copies per transaction");
    assert_eq!(s.responses, 0);
}

#[tokio::test]
async fn an_answer_from_another_address_is_not_accepted() {
    // A third party that learns our transaction ID (here: by being sent the request) cannot answer for
    // the server we asked.
    let relay = UdpSocket::bind(LOCALHOST).await.unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let responder = Responder::bind(LOCALHOST.parse().unwrap()).await.unwrap();
    let target = responder.local_addr();
    tokio::spawn(async move {
        // Forward requests to the responder from another socket, and forward its answers back from a third.
        let fwd = UdpSocket::bind(LOCALHOST).await.unwrap();
        let mut buf = [0u8; 2048];
        let mut back = [0u8; 2048];
        while let Ok((n, from)) = relay.recv_from(&mut buf).await {
            fwd.send_to(&buf[..n], target).await.unwrap();
            if let Ok((m, _)) = fwd.recv_from(&mut back).await {
                let spoof = UdpSocket::bind(LOCALHOST).await.unwrap();
                spoof.send_to(&back[..m], from).await.unwrap();
            }
        }
    });
    let (client, _loop, _) = client().await;
    assert_eq!(client.binding(relay_addr).await, Err(BindingError::Timeout));
    assert!(client.stats().unmatched >= 1);
}

/// A port over which the test decides what gets through: a stand-in for the WireGuard socket's sender.
struct Lossy {
    socket: Arc<UdpSocket>,
    drop_first: std::sync::atomic::AtomicU32,
}

impl DatagramPort for Lossy {
    async fn send_to(&self, datagram: &[u8], to: SocketAddr) -> std::io::Result<()> {
        if self.drop_first.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            self.drop_first.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(());
        }
        self.socket.send_to(datagram, to).await.map(|_| ())
    }
}

#[tokio::test]
async fn lost_requests_are_retransmitted_on_a_shared_socket() {
    let responder = Responder::bind(LOCALHOST.parse().unwrap()).await.unwrap();
    let socket = Arc::new(UdpSocket::bind(LOCALHOST).await.unwrap());
    let client = Arc::new(StunClient::new(Lossy { socket: socket.clone(), drop_first: 2.into() }, quick()));
    // The socket's owner demultiplexes: STUN to the client, the rest (here: WireGuard-ish noise) elsewhere.
    let (c2, s2) = (client.clone(), socket.clone());
    let other = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let other2 = other.clone();
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s2.recv_from(&mut buf).await {
            if is_stun(&buf[..n]) {
                c2.handle_datagram(&buf[..n], from);
            } else {
                other2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let noise = UdpSocket::bind(LOCALHOST).await.unwrap();
    let mut wg_like = vec![0u8; 148];
    wg_like[0] = 1;
    noise.send_to(&wg_like, socket.local_addr().unwrap()).await.unwrap();
    let b = client.binding(responder.local_addr()).await.expect("third copy gets through");
    assert_eq!(b.transmissions, 3);
    assert_eq!(b.mapped, socket.local_addr().unwrap());
    assert_eq!(other.load(std::sync::atomic::Ordering::Relaxed), 1, "WireGuard traffic is not taken as STUN");
    reader.abort();
}

// --- coturn --------------------------------------------------------------------------------------------

struct Turnserver(Child);

impl Drop for Turnserver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind(LOCALHOST).unwrap().local_addr().unwrap().port()
}

fn start_turnserver(port: u16, dir: &std::path::Path) -> Option<Turnserver> {
    let child = Command::new("turnserver")
        .args(["-c", "/dev/null", "--stun-only", "--no-cli", "--no-tls", "--no-dtls"])
        .args(["--listening-ip", "127.0.0.1", "--listening-port", &port.to_string()])
        // STUN-only never allocates relays, but keep its range away from ports other tests may use.
        .args(["--min-port", "59000", "--max-port", "59010"])
        .args(["--log-file", "stdout", "--simple-log", "--no-software-attribute"])
        .arg("--pidfile")
        .arg(dir.join("turnserver.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        Ok(c) => Some(Turnserver(c)),
        Err(e) => {
            println!("SKIP: coturn's turnserver is not installed here ({e}); `apt-get install coturn` to run this");
            None
        }
    }
}

#[tokio::test]
async fn our_client_against_coturn() {
    let dir = std::env::temp_dir().join(format!("dtn-nat-coturn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_udp_port();
    let Some(_server) = start_turnserver(port, &dir) else { return };
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (client, _loop, local) = client().await;
    // turnserver takes a moment to open its listener; ask until it answers (bounded).
    let mut answer = None;
    for _ in 0..20 {
        if let Ok(b) = client.binding(server).await {
            answer = Some(b);
            break;
        }
    }
    let b = answer.expect("coturn answered a Binding request within the retries");
    assert_eq!(b.mapped, local, "coturn reports our socket's address in XOR-MAPPED-ADDRESS");
    assert_eq!(b.server, server);
    // coturn mirrors our FINGERPRINT (no `--fingerprint` flag needed), so its answers pass `is_stun` and
    // would be told apart from WireGuard on a shared socket.
    assert_eq!(client.stats().malformed, 0);
    assert!(client.stats().responses >= 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A relay's answer carries its identity key when asked; a plain responder's does not, and asking it costs
/// no error.
#[tokio::test]
async fn the_identity_question_is_answered_by_relays_only() {
    let key = [0x5a; 32];
    let relay = UdpSocket::bind(LOCALHOST).await.unwrap();
    let relay_addr = relay.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = relay.recv_from(&mut buf).await {
            if let Some(reply) = dtn_nat::wire::answer_as(&buf[..n], from, Some(&key)) {
                let _ = relay.send_to(&reply, from).await;
            }
        }
    });
    let plain = Responder::bind(LOCALHOST.parse().unwrap()).await.unwrap();
    let (client, _loop, local) = client().await;
    let b = client.binding_identity(relay_addr, quick()).await.expect("the relay answers");
    assert_eq!((b.mapped, b.identity), (local, Some(key)));
    let b = client.binding(relay_addr).await.expect("the relay answers a plain request too");
    assert_eq!(b.identity, None, "a key is given only when asked for");
    let b = client.binding_identity(plain.local_addr(), quick()).await.expect("a plain responder answers");
    assert_eq!((b.mapped, b.identity), (local, None));
}
