//! Runs discovery with the defaults (dtn7's group and port) and prints every event; for trying it out
//! against dtn7-rs or another node on the LAN.
//!
//!     cargo run -p dtn-discovery --example listen -- dtn://me/ 4556 [interface-ipv4] [dtn7|ours|both] [tcpcl-addr]

use std::time::Duration;

use dtn_discovery::{Discovery, DiscoveryConfig, SendFormat};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let node_id = args.first().map_or("dtn://listener/", String::as_str).parse()?;
    let port = args.get(1).map_or(Ok(4556), |p| p.parse())?;
    let mut cfg = DiscoveryConfig::new(node_id, port);
    if let Some(iface) = args.get(2) {
        cfg.interface_v4 = iface.parse()?;
    }
    cfg.send = match args.get(3).map(String::as_str) {
        None | Some("dtn7") => SendFormat::Dtn7,
        Some("ours") => SendFormat::Ours,
        Some("both") => SendFormat::Both,
        Some(other) => return Err(format!("unknown format {other}").into()),
    };
    if let Some(addr) = args.get(4) {
        cfg.tcpcl_addr = Some(addr.parse()?);
    }
    let (handle, mut events) = Discovery::start(cfg)?;
    let mut stats = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => println!("{ev:?}"),
                None => return Ok(()),
            },
            _ = stats.tick() => println!("{:?}", handle.stats()),
        }
    }
}
