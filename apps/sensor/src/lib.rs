//! Sensor readings as bundles.
//!
//! * [`format`]: the batch record — readings of one sensor, CBOR-encoded, one bundle per batch, numbered per
//!   station and sensor so a collector can tell gaps from duplicates. Stations, the collector, the demos and
//!   the phone app all use it.

pub mod format;

pub use format::{Batch, Clock, FormatError, Reading, SensorKind};
