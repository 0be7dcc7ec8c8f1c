//! LAN neighbour discovery for the DTN router: IPND-style beacons over UDP multicast, interoperable with
//! dtn7-rs 0.21.
//!
//! Every interval each node multicasts a beacon naming its node ID and TCPCL endpoint; every node listens,
//! keeps a [`NeighbourTable`], and reports [`DiscoveryEvent`]s: a neighbour came up, moved, or went silent.
//! Two wire formats are understood: dtn7-rs's CBOR beacon ([`dtn7`]) and our own fixed binary beacon
//! ([`Beacon::encode`]); both are documented byte for byte in the crate README, with the defaults and what
//! was verified against dtn7-rs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use dtn_discovery::{Discovery, DiscoveryConfig, DiscoveryEvent};
//! let cfg = DiscoveryConfig::new("dtn://station-1/".parse()?, 4556);
//! let (_handle, mut events) = Discovery::start(cfg)?;
//! while let Some(ev) = events.recv().await {
//!     if let DiscoveryEvent::NeighbourUp { node_id, tcpcl, .. } = ev {
//!         println!("{node_id} at {tcpcl}");
//!     }
//! }
//! # Ok(()) }
//! ```

mod beacon;
pub mod dtn7;
mod service;
mod table;

pub use beacon::{
    Beacon, BeaconError, BeaconFormat, MAGIC, MAX_DATAGRAM_LEN, MAX_ENDPOINTS, MAX_NODE_ID_LEN, MAX_OURS_LEN,
    MAX_PERIOD_MS, MIN_PERIOD_MS, TcpclEndpoint, VERSION, decode_any,
};
pub use service::{
    DTN7_GROUP_V4, DTN7_GROUP_V6, DTN7_PORT, Discovery, DiscoveryConfig, DiscoveryError, DiscoveryHandle,
    DiscoveryStats, SendFormat,
};
pub use table::{DiscoveryEvent, Ignored, Neighbour, NeighbourTable, TableConfig, Update};
