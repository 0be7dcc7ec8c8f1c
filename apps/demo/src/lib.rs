//! `dtn demo`: the whole story on one machine, with real nodes.
//!
//! Every node is a full [`dtn_node::Node`] (the same runtime `dtnd` runs) with its own LMDB store in a
//! temporary directory, talking TCPCLv4 over loopback. Who meets whom, and when, is played by cutting and
//! restoring the links between them ([`dtn_node::NodeHandle::set_link`]), which ends live sessions exactly as
//! driving out of Wi-Fi range does.

pub mod camera;
pub mod net;
pub mod weather;

pub use camera::{CameraOptions, CameraSummary, run_camera};
pub use weather::{WeatherOptions, WeatherSummary, run_weather};
