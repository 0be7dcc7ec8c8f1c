//! `dtn-sim`: a delay-tolerant network simulator that runs the real router engine of `dtn-core`, one per
//! node, in virtual time.
//!
//! * [`scenario`]: TOML scenario files (nodes, interfaces, routing, buffers, movement, traffic, contacts);
//! * [`trace`]: contact traces in the ONE's connection-event format;
//! * [`mobility`]: stationary stations, vehicles on routes, random waypoint;
//! * [`store`]: the in-memory store with virtual payload sizes;
//! * [`sim`]: the discrete-event core;
//! * [`report`] and [`plot`]: the ONE's message statistics, occupancy, JSON, CSV and SVG;
//! * [`sweep`]: runs over seeds and settings on several threads.
//!
//! See `docs/sim.md`.

pub mod fasthash;
pub mod mobility;
pub mod plot;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod store;
pub mod sweep;
pub mod trace;
pub mod units;

pub use report::Report;
pub use scenario::Scenario;
pub use sim::{Options, Sim, run};
