//! Camera frames at the house node.
//!
//! Cameras send JPEG frames as bundles; the house node keeps them and looks at them.
//!
//! * [`motion`]: motion detection by frame differencing, one [`MotionDetector`] per camera.
//! * [`thumb`]: small JPEG thumbnails, optionally with the motion box drawn in.
//! * [`archive`]: the long-term store of frames, thumbnails and motion events, with an `index.html` to browse.
//! * [`synth`]: synthetic frames (a noisy outdoor scene with objects) for tests and demos.
//!
//! Nothing here reads the clock: times are passed in, as Unix milliseconds.

pub mod archive;
mod atomic;
pub mod camera;
pub mod civil;
pub mod decode;
pub mod eventlog;
mod index_html;
pub mod motion;
mod regions;
pub mod synth;
pub mod thumb;
mod workframe;

pub use archive::{Archive, ArchiveError};
pub use camera::{CameraNameError, check_camera_name};
pub use civil::UtcTime;
pub use decode::{DecodeError, decode_jpeg};
pub use eventlog::EventRecord;
pub use motion::{BBox, MotionConfig, MotionDetector, MotionEvent, Outcome};
pub use thumb::{DEFAULT_THUMB_SIDE, ThumbError, thumbnail, thumbnail_image};
