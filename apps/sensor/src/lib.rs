//! Sensor readings as bundles.
//!
//! * [`format`](mod@format): the batch record — readings of one sensor, CBOR-encoded, one bundle per batch,
//!   numbered per station and sensor so a collector can tell gaps from duplicates. Stations, the collector,
//!   the demos and the phone app all use it.
//! * [`batcher`]: one sensor's readings into numbered batches, closed by count or by age.
//! * [`station`]: a station's sensors on a schedule, sampled and batched; [`seqfile`] keeps its batch
//!   numbers across restarts.
//! * Sources: [`synthetic`] weather and mast motion, [`stills`] for cameras (a synthetic scene or a directory
//!   of images), [`iio`] for Linux Industrial I/O sensors.
//!
//! Nothing here reads the clock or draws unseeded randomness: times and seeds are arguments, so runs repeat.

pub mod batcher;
pub mod format;
pub mod iio;
mod rng;
pub mod seqfile;
pub mod station;
pub mod stills;
pub mod synthetic;

pub use batcher::{BatchSettings, Batcher};
pub use format::{Batch, Clock, FormatError, Reading, SensorKind};
pub use iio::{IioChannel, IioError, IioSensor};
pub use seqfile::{SeqFile, SeqFileError};
pub use station::{CameraSettings, SourceError, StationConfig, StationSources};
pub use stills::{ImageDir, Rect, Scene, Still, StillError};
pub use synthetic::{WeatherModel, WeatherParams};
