//! The van's drain benchmark; bench/drain.sh runs it and documents what it measures.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use dtn_collector::Collector;
use dtn_core::bpv7::Eid;
use dtn_core::engine::Submission;
use dtn_core::routing::RoutingConfig;
use dtn_demo::net::{self, unix_ms};
use dtn_sensor::{Batch, Clock, Reading, SensorKind};
use tokio::sync::Mutex;

const ENDPOINT: &str = "dtn://collector/~drain";

struct Opts {
    gb: f64,
    stations: usize,
    still_bytes: usize,
    sensor_share: f64,
    dir: PathBuf,
    spread: bool,
    timeout: Duration,
}

fn parse() -> Result<Opts> {
    let mut o = Opts {
        gb: 1.0,
        stations: 3,
        still_bytes: 1_000_000,
        sensor_share: 0.05,
        dir: PathBuf::from("."),
        spread: false,
        timeout: Duration::from_secs(600),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--gb" => o.gb = val()?.parse()?,
            "--stations" => o.stations = val()?.parse()?,
            "--still-bytes" => o.still_bytes = val()?.parse()?,
            "--sensor-share" => o.sensor_share = val()?.parse()?,
            "--dir" => o.dir = val()?.into(),
            "--timeout" => o.timeout = Duration::from_secs(val()?.parse()?),
            "--spread" => o.spread = true,
            other => bail!("unknown option {other} (see bench/drain.sh)"),
        }
    }
    if !(o.gb.is_finite() && o.gb > 0.0)
        || o.stations < 1
        || o.still_bytes < 1024
        || !(0.0..=1.0).contains(&o.sensor_share)
    {
        bail!("--gb > 0, --stations >= 1, --still-bytes >= 1024, --sensor-share in 0..=1");
    }
    Ok(o)
}

/// The payloads of one station: camera stills of `still_bytes` and one-minute IMU batches, interleaved.
fn payloads(station: &str, bytes: u64, o: &Opts, seed: u64) -> Vec<Vec<u8>> {
    let sensor_bytes = (bytes as f64 * o.sensor_share) as u64;
    let mut out = Vec::new();
    let mut state = seed;
    let mut rnd = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z ^ (z >> 27)
    };
    let (mut stills, mut batches, mut made_s, mut made_b) = (0u64, 0u64, 0u64, 0u64);
    let t0 = 1_719_835_512_000u64;
    while made_s + made_b < bytes {
        let want_sensor =
            made_b < sensor_bytes && (made_b * bytes <= made_s.max(1) * sensor_bytes || made_s >= bytes - sensor_bytes);
        let p = if want_sensor || o.sensor_share >= 1.0 {
            let mut b = Batch::new(station, "imu/accel", SensorKind::Accelerometer, batches, Clock::Unix);
            b.readings = (0..60)
                .map(|i| Reading {
                    t: t0 + batches * 60_000 + i * 1000,
                    values: vec![(rnd() % 1000) as f32 / 100.0, 0.01, 9.81],
                })
                .collect();
            b.created = t0 + batches * 60_000 + 60_000;
            batches += 1;
            let p = b.encode();
            made_b += p.len() as u64;
            p
        } else {
            let mut b = Batch::new(station, "cam0", SensorKind::CameraStill, stills, Clock::Unix);
            b.readings = vec![Reading { t: t0 + stills * 60_000, values: vec![1920.0, 1080.0] }];
            // Incompressible, like a JPEG's entropy-coded data.
            let mut img: Vec<u8> = (0..o.still_bytes / 8).flat_map(|_| rnd().to_le_bytes()).collect();
            img[..2].copy_from_slice(&[0xFF, 0xD8]);
            b.image = Some(img);
            stills += 1;
            let p = b.encode();
            made_s += p.len() as u64;
            p
        };
        out.push(p);
    }
    out
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> bool) -> Result<Duration> {
    let t = Instant::now();
    while !done().await {
        if t.elapsed() > timeout {
            bail!("{what}: not done after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(t.elapsed())
}

/// Plain TCP over loopback into one file on the same disk: each payload length-prefixed; the receiver syncs
/// after every payload of 64 KiB or more and once per MiB of smaller ones, and at the end.
fn plain_tcp(all: &[Vec<u8>], dir: &std::path::Path) -> Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let path = dir.join("plain-tcp.bin");
    let total: usize = all.len();
    let receiver = std::thread::spawn(move || -> Result<()> {
        let (mut s, _) = listener.accept()?;
        let mut f = std::fs::File::create(&path)?;
        let mut buf = Vec::new();
        let mut unsynced = 0usize;
        for _ in 0..total {
            let mut len = [0u8; 4];
            s.read_exact(&mut len)?;
            buf.resize(u32::from_be_bytes(len) as usize, 0);
            s.read_exact(&mut buf)?;
            f.write_all(&buf)?;
            unsynced += buf.len();
            if buf.len() >= 64 << 10 || unsynced >= 1 << 20 {
                f.sync_data()?;
                unsynced = 0;
            }
        }
        f.sync_data()?;
        s.write_all(b"k")?;
        drop(f);
        std::fs::remove_file(&path)?;
        Ok(())
    });
    let t = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    for p in all {
        s.write_all(&(p.len() as u32).to_be_bytes())?;
        s.write_all(p)?;
    }
    let mut k = [0u8; 1];
    s.read_exact(&mut k)?;
    let took = t.elapsed();
    receiver.join().map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    Ok(took)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let o = parse()?;
    std::fs::create_dir_all(&o.dir)?;
    let tmp = tempfile::Builder::new().prefix("drain-bench").tempdir_in(&o.dir)?;
    let dir = tmp.path();
    let n = o.stations;
    let total_bytes = (o.gb * 1e9) as u64;
    let to: Eid = ENDPOINT.parse()?;
    let ports = net::free_ports(n + 1)?;
    let mut stations = Vec::new();
    for i in 0..n {
        let peers = if i + 1 < n { vec![ports[i + 1]] } else { Vec::new() };
        let s =
            net::start(dir, &format!("s{}", i + 1), ports[i], peers, RoutingConfig::Epidemic, 64 << 30, 1 + i as u64)
                .await?;
        stations.push(s);
    }
    let van = net::start(dir, "van", ports[n], vec![ports[n - 1]], RoutingConfig::Epidemic, 64 << 30, 99).await?;
    for i in 0..n.saturating_sub(1) {
        net::set_link(&stations[i], &stations[i + 1], false)?;
    }
    net::set_link(&van, &stations[n - 1], false)?;

    // Fill: each station its share, submitted in groups so commits are shared.
    let t = Instant::now();
    let mut all = Vec::new();
    let mut count = 0u64;
    let mut payload_bytes = 0u64;
    for (i, s) in stations.iter().enumerate() {
        let ps = payloads(&s.name, total_bytes / n as u64, &o, 7 + i as u64);
        for group in ps.chunks(64) {
            let subs = group.iter().map(|p| Submission::new(0, to.clone(), p.clone())).collect();
            for w in s.handle.submit_batch_now(subs)? {
                w.await?;
            }
        }
        count += ps.len() as u64;
        payload_bytes += ps.iter().map(|p| p.len() as u64).sum::<u64>();
        all.extend(ps);
    }
    let stills = all.iter().filter(|p| p.len() >= o.still_bytes).count();
    println!(
        "filled {n} stations with {count} bundles ({stills} stills of {} B, {} sensor batches), {:.3} GB of payload in {:.1} s",
        o.still_bytes,
        count as usize - stills,
        payload_bytes as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );
    let end = &stations[n - 1];
    if !o.spread && n > 1 {
        for i in 0..n - 1 {
            net::set_link(&stations[i], &stations[i + 1], true)?;
        }
        let took =
            wait_until("gathering at the end station", o.timeout, async || net::held(end).await >= count).await?;
        for i in 0..n - 1 {
            net::set_link(&stations[i], &stations[i + 1], false)?;
        }
        println!(
            "the chain gathered everything at {} in {:.1} s (not part of the measurement)",
            end.name,
            took.as_secs_f64()
        );
    }

    // The van: its collector writes and syncs the archive, then acknowledges.
    let collector = Arc::new(Mutex::new(Collector::open(dir.join("van-archive"))?));
    van.handle.register(to.clone())?;
    let archived = Arc::new(AtomicU64::new(0));
    // Where the collector's time goes: rounds taken, and microseconds spent writing and syncing.
    let busy = Arc::new((AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)));
    let collect = {
        let (handle, collector, to, archived) = (van.handle.clone(), collector.clone(), to.clone(), archived.clone());
        let busy = busy.clone();
        tokio::spawn(async move {
            let _reading = handle.reading(to.clone());
            loop {
                let Ok(batch) = handle.next_deliveries(to.clone(), true, 256).await else { break };
                let started = Instant::now();
                let mut c = collector.lock().await;
                // Reading payloads and writing files block: the whole round runs off the runtime's workers'
                // task queue, so the nodes in this process go on meanwhile.
                let (got, synced) = tokio::task::block_in_place(|| {
                    let mut got = Vec::with_capacity(batch.len());
                    for inc in batch {
                        let id = inc.id.clone();
                        let ok = match inc.into_delivery() {
                            Ok(d) => c.add(&d.payload, unix_ms(), None).is_ok(),
                            Err(_) => false,
                        };
                        got.push((id, ok));
                    }
                    let writing = started.elapsed();
                    let synced = c.sync().is_ok();
                    busy.2.fetch_add((started.elapsed() - writing).as_micros() as u64, Ordering::Relaxed);
                    (got, synced)
                });
                drop(c);
                let n_ok = got.iter().filter(|(_, ok)| *ok).count() as u64;
                for (id, ok) in got {
                    handle.taken(id, ok && synced);
                }
                if synced {
                    archived.fetch_add(n_ok, Ordering::Relaxed);
                }
                busy.0.fetch_add(1, Ordering::Relaxed);
                busy.1.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
        })
    };
    if o.spread {
        for i in 0..n.saturating_sub(1) {
            net::set_link(&stations[i], &stations[i + 1], true)?;
        }
    }
    let t0 = Instant::now();
    net::set_link(&van, end, true)?;
    let mut in_store = None;
    let vh = van.handle.clone();
    let until_archived = wait_until("draining into the van's archive", o.timeout, async || {
        if in_store.is_none() && vh.stats().await.map(|s| s.stored).unwrap_or(0) >= count {
            in_store = Some(t0.elapsed());
        }
        archived.load(Ordering::Relaxed) >= count
    })
    .await?;
    let van_stats = vh.stats().await?;
    collect.abort();
    net::shutdown(stations.into_iter().chain(std::iter::once(van))).await;

    let plain = tokio::task::spawn_blocking({
        let dir = dir.to_path_buf();
        move || plain_tcp(&all, &dir)
    })
    .await??;

    let rate = |d: Duration| payload_bytes as f64 / d.as_secs_f64() / 1e6;
    let base = rate(plain);
    println!();
    println!("{:<44} {:>9} {:>9} {:>7}", "", "seconds", "MB/s", "ratio");
    // With direct delivery the van stores only what its collector could not take at once.
    if let Some(in_store) = in_store {
        println!(
            "{:<44} {:>9.2} {:>9.1} {:>7.2}",
            "van: link-up to last bundle in its store",
            in_store.as_secs_f64(),
            rate(in_store),
            rate(in_store) / base
        );
    }
    println!(
        "{:<44} {:>9.2} {:>9.1} {:>7.2}",
        "van: link-up to last bundle in its archive",
        until_archived.as_secs_f64(),
        rate(until_archived),
        rate(until_archived) / base
    );
    println!("{:<44} {:>9.2} {:>9.1} {:>7}", "plain TCP + write + sync_data", plain.as_secs_f64(), base, "1.00");
    let ratio = rate(until_archived) / base;
    println!();
    println!(
        "van: {} of {count} bundles delivered directly to the collector as they arrived, {} stored first",
        van_stats.direct, van_stats.stored
    );
    let (rounds, busy_us, sync_us) =
        (busy.0.load(Ordering::Relaxed), busy.1.load(Ordering::Relaxed), busy.2.load(Ordering::Relaxed));
    println!(
        "collector: {rounds} rounds of {:.0} bundles on average, busy {:.2} s of the {:.2} s ({:.2} s of it syncing)",
        count as f64 / rounds.max(1) as f64,
        busy_us as f64 / 1e6,
        until_archived.as_secs_f64(),
        sync_us as f64 / 1e6
    );
    println!(
        "target: van archive drain >= 0.6 x plain TCP + sync_data: {} ({ratio:.2})",
        if ratio >= 0.6 { "PASS" } else { "FAIL" }
    );
    Ok(())
}
