//! Cameras and the house node.
//!
//! * [`frames`]: a camera's frames as bundles — one camera-still batch of the shared sensor format
//!   (`dtn-sensor`) per frame — from a synthetic scene with a known moving object, or a directory of images.
//! * [`house`]: the house node's side: each delivered frame stored durably in the `dtn-vision` archive, then
//!   motion detection per camera in frame order; corrupt payloads kept aside.
//! * [`serve`]: the house fed by a node's WebSocket, each delivery acknowledged once the archive holds it.

pub mod frames;
pub mod house;
pub mod serve;

pub use frames::{FrameSource, SyntheticCamera, camera_name, frame_batch};
pub use house::{CameraCounts, House, HouseConfig, HouseError, Received, Seen};
pub use serve::{Note, serve};
