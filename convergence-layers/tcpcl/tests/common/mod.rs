//! Helpers shared by the session tests: configurations with short timeouts, a listener loop, a raw TCPCL
//! peer that can say anything, and a way to wait for conditions.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dtn_tcpcl::msg::{ContactHeader, Decoded, Extensions, Limits, Message, SessInit, decode_message};
use dtn_tcpcl::{Event, Outcome, SessionConfig, SessionError, SessionEvents, SessionHandle, accept, connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

pub const T: Duration = Duration::from_secs(10);

pub fn cfg(node: &str) -> SessionConfig {
    SessionConfig {
        negotiation_timeout: Duration::from_millis(500),
        socket_buffer: Some(1 << 20),
        ..SessionConfig::new(node)
    }
}

pub type Accepted = Result<(SessionHandle, SessionEvents), SessionError>;

/// A listener that accepts forever, running `accept` for each connection concurrently.
pub struct Server {
    pub addr: SocketAddr,
    pub results: mpsc::UnboundedReceiver<Accepted>,
}

impl Server {
    pub async fn start(cfg: SessionConfig) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, results) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let (cfg, tx) = (cfg.clone(), tx.clone());
                tokio::spawn(async move {
                    let _ = tx.send(accept(s, cfg).await);
                });
            }
        });
        Server { addr, results }
    }

    pub async fn next(&mut self) -> Accepted {
        timeout(T, self.results.recv()).await.expect("accept result in time").expect("listener alive")
    }

    /// A well-behaved session still works: connect, send one bundle, have it acknowledged.
    pub async fn assert_serves(&mut self) {
        let (client, _cev) = connect(self.addr, cfg("dtn://good-client/")).await.expect("good session");
        let (server, mut sev) = self.next().await.expect("server side of the good session");
        assert_eq!(server.peer_node_id(), "dtn://good-client/");
        let out = client.send(Bytes::from_static(b"still serving"));
        let seg = next_segment(&mut sev).await;
        assert_eq!(&seg.data[..], b"still serving");
        server.ack(seg.transfer_id, seg.len_so_far(), true).await.unwrap();
        assert_eq!(timeout(T, out).await.unwrap(), Outcome::Acked);
    }
}

pub async fn pair(
    a: SessionConfig,
    b: SessionConfig,
) -> ((SessionHandle, SessionEvents), (SessionHandle, SessionEvents)) {
    let mut server = Server::start(b).await;
    let client = connect(server.addr, a).await.expect("connect");
    let passive = server.next().await.expect("accept");
    (client, passive)
}

pub async fn next_event(ev: &mut SessionEvents) -> Event {
    timeout(T, ev.recv()).await.expect("event in time").expect("events open")
}

pub async fn next_segment(ev: &mut SessionEvents) -> dtn_tcpcl::Segment {
    loop {
        match next_event(ev).await {
            Event::Segment(s) => return s,
            Event::Ended(e) => panic!("session ended while waiting for a segment: {e:?}"),
            _ => {}
        }
    }
}

pub async fn ended(ev: &mut SessionEvents) -> dtn_tcpcl::Ended {
    loop {
        if let Event::Ended(e) = next_event(ev).await {
            return e;
        }
    }
}

pub async fn wait_until(mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + T;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "condition not reached in time");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A TCPCL peer driven by hand: it sends exactly what the test says and decodes what it gets.
pub struct Raw {
    pub s: TcpStream,
    pub buf: BytesMut,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw { s: TcpStream::connect(addr).await.unwrap(), buf: BytesMut::new() }
    }

    pub async fn send_bytes(&mut self, b: &[u8]) {
        self.s.write_all(b).await.unwrap();
    }

    pub async fn send(&mut self, m: &Message) {
        self.send_bytes(&m.to_bytes()).await;
    }

    pub async fn send_ch(&mut self, version: u8) {
        let mut b = BytesMut::new();
        ContactHeader { version, flags: 0 }.encode(&mut b);
        self.send_bytes(&b).await;
    }

    async fn fill(&mut self) -> bool {
        let n = timeout(T, self.s.read_buf(&mut self.buf)).await.expect("read in time").unwrap_or(0);
        n > 0
    }

    pub async fn recv_ch(&mut self) -> ContactHeader {
        loop {
            if let Some(ch) = ContactHeader::decode(&self.buf).unwrap() {
                let _ = self.buf.split_to(ContactHeader::LEN);
                return ch;
            }
            assert!(self.fill().await, "EOF before contact header");
        }
    }

    /// The next message, or `None` at EOF.
    pub async fn recv(&mut self) -> Option<Message> {
        let limits = Limits { max_segment_len: 1 << 30, max_extensions_len: 1 << 20 };
        loop {
            match decode_message(&mut self.buf, &limits).unwrap() {
                Decoded::Message(m) => return Some(m),
                Decoded::NeedMore(_) => {
                    if !self.fill().await {
                        return None;
                    }
                }
            }
        }
    }

    /// The next message that is not a KEEPALIVE.
    pub async fn recv_non_keepalive(&mut self) -> Option<Message> {
        loop {
            match self.recv().await {
                Some(Message::Keepalive) => {}
                m => return m,
            }
        }
    }

    /// Reads until EOF (or reset), asserting nothing but keepalives arrive first, then closes our side.
    pub async fn expect_eof(mut self) -> BytesMut {
        if let Some(m) = self.recv_non_keepalive().await {
            panic!("expected EOF, got {m:?}");
        }
        self.buf
    }

    /// Contact headers and SESS_INITs both ways, as the active side.
    pub async fn handshake(addr: SocketAddr, keepalive: u16, segment_mru: u64) -> Raw {
        let mut r = Raw::connect(addr).await;
        r.send_ch(4).await;
        assert_eq!(r.recv_ch().await.version, 4);
        r.send(&sess_init(keepalive, segment_mru, Extensions::empty())).await;
        match r.recv().await {
            Some(Message::SessInit(_)) => r,
            m => panic!("expected SESS_INIT, got {m:?}"),
        }
    }
}

pub fn sess_init(keepalive: u16, segment_mru: u64, extensions: Extensions) -> Message {
    Message::SessInit(SessInit {
        keepalive,
        segment_mru,
        transfer_mru: 1 << 40,
        node_id: "dtn://raw/".into(),
        extensions,
    })
}
