//! Throughput of 1 MB bundles through TCPCL over the WireGuard tunnel on loopback, against TCPCL over plain
//! loopback TCP in the same run, and the bytes the tunnel puts on the UDP socket per bundle byte.
//! Run through bench/wg.sh.

use std::time::{Duration, Instant};

use bytes::Bytes;
use dtn_tcpcl::{Event, Outcome, SessionConfig, SessionEvents, SessionHandle};
use dtn_wg::tcpcl::TCPCL_PORT;
use dtn_wg::{Endpoint, EndpointConfig, Identity, PeerConfig};

struct Args {
    bundles: usize,
    size: usize,
    rounds: usize,
    mtu: usize,
}

fn args() -> Args {
    let mut a = Args { bundles: 200, size: 1_000_000, rounds: 3, mtu: 1420 };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let v = argv.get(i + 1).and_then(|v| v.parse().ok());
        match (argv[i].as_str(), v) {
            ("--bundles", Some(v)) => a.bundles = v,
            ("--size", Some(v)) => a.size = v,
            ("--rounds", Some(v)) => a.rounds = v,
            ("--mtu", Some(v)) => a.mtu = v,
            (o, _) => {
                eprintln!("usage: wg_bench [--bundles N] [--size BYTES] [--rounds N] [--mtu BYTES]  (bad: {o})");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    a
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let bundle = Bytes::from((0..a.size).map(|i| (i * 13) as u8).collect::<Vec<u8>>());
    let cfg = |n: &str| SessionConfig { keepalive: 0, ..SessionConfig::new(n) };

    // The tunnel.
    let (ia, ib) = (Identity::generate().expect("rng"), Identity::generate().expect("rng"));
    let mut cb = EndpointConfig::new("127.0.0.1:0".parse().unwrap());
    cb.mtu = a.mtu;
    cb.peers.push(PeerConfig::new(ia.public(), None));
    let b = Endpoint::bind(&ib, cb).await.expect("bind b");
    let mut ca = EndpointConfig::new("127.0.0.1:0".parse().unwrap());
    ca.mtu = a.mtu;
    ca.peers.push(PeerConfig::new(ib.public(), Some(b.local_addr())));
    let ea = Endpoint::bind(&ia, ca).await.expect("bind a");
    let listener = b.listen(TCPCL_PORT).expect("listen");
    let (ra, rb) = tokio::join!(
        dtn_wg::tcpcl::connect(&ea, b.public_key(), TCPCL_PORT, cfg("dtn://a/")),
        dtn_wg::tcpcl::accept(&listener, cfg("dtn://b/"))
    );
    let ((wa, _wa_ev), (_, wb, wb_ev)) = (ra.expect("tcpcl connect"), rb.expect("tcpcl accept"));
    let mut wb_ev = Some(wb_ev);

    // Plain loopback TCP, same TCPCL.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (ta, tb) = tokio::join!(dtn_tcpcl::connect(addr, cfg("dtn://a/")), async {
        let (s, _) = l.accept().await.unwrap();
        dtn_tcpcl::accept(s, cfg("dtn://b/")).await
    });
    let ((pa, _pa_ev), (pb, pb_ev)) = (ta.expect("tcp connect"), tb.expect("tcp accept"));
    let mut pb_ev = Some(pb_ev);

    // One warm-up bundle each (handshakes, windows), then rounds alternating the two.
    let mut wg_secs = Vec::new();
    let mut tcp_secs = Vec::new();
    let (mut tx0, mut rx0) = (ea.stats().tx_bytes + b.stats().tx_bytes, 0u64);
    let mut datagrams = 0u64;
    let (ev_w, ev_p) = (wb_ev.take().unwrap(), pb_ev.take().unwrap());
    // Sessions' event receivers must live across rounds: move them into forwarding channels.
    let (wtx, mut wrx) = tokio::sync::mpsc::channel(64);
    let (ptx, mut prx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(forward(ev_w, wtx));
    tokio::spawn(forward(ev_p, ptx));
    for round in 0..=a.rounds {
        let n = if round == 0 { 1 } else { a.bundles };
        let d0 = ea.stats().tx_datagrams + b.stats().tx_datagrams;
        let s = run_ch(&wa, wb.clone(), &mut wrx, n, &bundle).await;
        let d1 = ea.stats().tx_datagrams + b.stats().tx_datagrams;
        let t = run_ch(&pa, pb.clone(), &mut prx, n, &bundle).await;
        if round == 0 {
            tx0 = ea.stats().tx_bytes + b.stats().tx_bytes;
            continue;
        }
        datagrams += d1 - d0;
        rx0 += (n * a.size) as u64;
        wg_secs.push(s);
        tcp_secs.push(t);
    }
    let wire = ea.stats().tx_bytes + b.stats().tx_bytes - tx0;
    let bits = (a.bundles * a.size * 8) as f64;
    let (ws, ts) = (median(wg_secs), median(tcp_secs));
    let (wm, tm) = (bits / ws / 1e6, bits / ts / 1e6);
    let per_bundle = (wire as f64 - rx0 as f64) / (a.rounds * a.bundles) as f64;
    println!("{} bundles of {} bytes, {} rounds (median), tunnel MTU {}", a.bundles, a.size, a.rounds, a.mtu);
    println!("tcpcl over wireguard   {wm:8.0} Mbit/s");
    println!("tcpcl over loopback tcp{tm:8.0} Mbit/s   (ratio {:.2})", wm / tm);
    println!(
        "udp payload bytes / bundle bytes  {:.4}   ({:.0} bytes of overhead per bundle; {} datagrams, \
         +{:.0} bytes per bundle of IPv4+UDP headers)",
        wire as f64 / rx0 as f64,
        per_bundle,
        datagrams,
        (datagrams * 28) as f64 / (a.rounds * a.bundles) as f64
    );
    let s = b.stats();
    println!(
        "receiver drops: garbage {} replayed {} tampered {} rejected {} spoofed {}",
        s.garbage, s.replayed, s.tampered, s.rejected, s.spoofed
    );
    let target = 300.0;
    println!("{} throughput >= {target} Mbit/s", if wm >= target { "PASS" } else { "FAIL" });
    // Leave the sessions to end with the process.
    tokio::time::sleep(Duration::from_millis(10)).await;
}

async fn forward(mut ev: SessionEvents, tx: tokio::sync::mpsc::Sender<Event>) {
    while let Some(e) = ev.recv().await {
        if tx.send(e).await.is_err() {
            return;
        }
    }
}

/// Sends `n` bundles pipelined, acknowledging every segment on the receiving side (as a store does once
/// durable), and returns the seconds from the first send to the last acknowledgement.
async fn run_ch(
    tx: &SessionHandle,
    rx: SessionHandle,
    ev: &mut tokio::sync::mpsc::Receiver<Event>,
    n: usize,
    bundle: &Bytes,
) -> f64 {
    let t0 = Instant::now();
    let sends: Vec<_> = (0..n).map(|_| tx.send(bundle.clone())).collect();
    let mut done = 0;
    while done < n {
        match ev.recv().await {
            Some(Event::Segment(s)) => {
                let _ = rx.ack(s.transfer_id, s.len_so_far(), s.end).await;
                done += usize::from(s.end);
            }
            Some(Event::Ended(e)) => panic!("receiving session ended: {e:?}"),
            Some(_) => {}
            None => panic!("events closed"),
        }
    }
    for s in sends {
        assert_eq!(s.await, Outcome::Acked);
    }
    t0.elapsed().as_secs_f64()
}
