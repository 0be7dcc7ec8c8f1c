//! Linux Industrial I/O sensors, read through sysfs.
//!
//! The kernel lists IIO devices as `iio:deviceN` directories under `/sys/bus/iio/devices`, each with a
//! `name` file and one file per channel attribute (Documentation/ABI/testing/sysfs-bus-iio). A channel gives
//! either a processed value (`<channel>_input`) or a raw one with a scale and maybe an offset
//! (`<channel>_raw`, `_scale`, `_offset`: value = (raw + offset) × scale); the scale and offset may be per
//! axis (`in_accel_x_scale`) or shared (`in_accel_scale`). Units after scaling are the ABI's (milli °C, kPa,
//! milli %, m/s², rad/s, Gauss); [`IioSensor::read`] converts them to the batch format's.
//!
//! The root is a parameter so that tests can lay out a fake tree.

use std::path::{Path, PathBuf};

use crate::format::SensorKind;

/// Where the kernel lists IIO devices.
pub const DEFAULT_ROOT: &str = "/sys/bus/iio/devices";

/// Why discovery or a reading failed.
#[derive(Debug, thiserror::Error)]
pub enum IioError {
    /// The root directory, or a device directory, cannot be listed.
    #[error("cannot list IIO devices in {path}: {source}")]
    List {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A channel file cannot be read (gone, or the driver failed to talk to the chip).
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A channel file does not hold a finite number.
    #[error("{path} holds {text:?}, not a number")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it holds (at most 64 characters of it).
        text: String,
    },
}

/// How to get one value of a sensor.
#[derive(Debug, Clone, PartialEq)]
pub enum IioChannel {
    /// A processed value in the ABI's unit: the file's number × `factor`.
    Input {
        /// `<channel>_input`.
        path: PathBuf,
        /// From the ABI's unit to the batch format's.
        factor: f64,
    },
    /// (raw + offset) × scale × `factor`. Scale and offset are read with every reading, because changing a
    /// sensor's range changes its scale.
    Raw {
        /// `<channel>_raw`.
        raw: PathBuf,
        /// The per-axis or shared `_scale`; none means 1.
        scale: Option<PathBuf>,
        /// The per-axis or shared `_offset`; none means 0.
        offset: Option<PathBuf>,
        /// From the ABI's unit to the batch format's.
        factor: f64,
    },
}

impl IioChannel {
    /// The value, in the batch format's unit.
    pub fn read(&self) -> Result<f64, IioError> {
        match self {
            IioChannel::Input { path, factor } => Ok(read_number(path)? * factor),
            IioChannel::Raw { raw, scale, offset, factor } => {
                let raw = read_number(raw)?;
                let offset = offset.as_deref().map(read_number).transpose()?.unwrap_or(0.0);
                let scale = scale.as_deref().map(read_number).transpose()?.unwrap_or(1.0);
                Ok((raw + offset) * scale * factor)
            }
        }
    }
}

/// One sensor of an IIO device: one kind, one channel per axis.
#[derive(Debug, Clone, PartialEq)]
pub struct IioSensor {
    /// The device's directory (`…/iio:deviceN`).
    pub device_dir: PathBuf,
    /// The kernel's index N.
    pub device_index: u32,
    /// The driver's name for the device (its `name` file, e.g. `bme280`).
    pub device_name: String,
    /// What it measures.
    pub kind: SensorKind,
    /// One per axis, in the kind's axis order.
    pub channels: Vec<IioChannel>,
}

impl IioSensor {
    /// A name for batches: `<device name>-<index>/<kind>`, e.g. `bme280-0/temperature`.
    pub fn sensor_name(&self) -> String {
        format!("{}-{}/{}", self.device_name, self.device_index, self.kind.name())
    }

    /// A reading now: one value per axis, in the batch format's unit.
    pub fn read(&self) -> Result<Vec<f32>, IioError> {
        self.channels.iter().map(|c| c.read().map(|v| v as f32)).collect()
    }
}

/// The channel families read, with their channel names per axis and the factor from the ABI's unit to the
/// batch format's.
const FAMILIES: [(SensorKind, &str, &[&str], f64); 6] = [
    // kPa to hPa.
    (SensorKind::Barometer, "in_pressure", &[""], 10.0),
    // Gauss to µT.
    (SensorKind::Magnetometer, "in_magn", &["_x", "_y", "_z"], 100.0),
    (SensorKind::Accelerometer, "in_accel", &["_x", "_y", "_z"], 1.0),
    (SensorKind::Gyroscope, "in_anglvel", &["_x", "_y", "_z"], 1.0),
    // Milli °C to °C.
    (SensorKind::Temperature, "in_temp", &[""], 0.001),
    // Milli percent to percent.
    (SensorKind::Humidity, "in_humidityrelative", &[""], 0.001),
];

/// Every sensor of every IIO device under `root` ([`DEFAULT_ROOT`] on a real system), by device index and
/// then in [`SensorKind`] order. Other entries (triggers) are passed over. A device with an IMU's die
/// temperature shows up with a [`SensorKind::Temperature`] sensor too.
pub fn discover(root: &Path) -> Result<Vec<IioSensor>, IioError> {
    let list_err = |source| IioError::List { path: root.to_path_buf(), source };
    let mut devices = Vec::new();
    for entry in std::fs::read_dir(root).map_err(list_err)? {
        let entry = entry.map_err(list_err)?;
        let name = entry.file_name();
        let Some(index) = name.to_str().and_then(|n| n.strip_prefix("iio:device")).and_then(|n| n.parse().ok()) else {
            continue;
        };
        devices.push((index, entry.path()));
    }
    devices.sort();

    let mut sensors = Vec::new();
    for (device_index, dir) in devices {
        let files = list_files(&dir)?;
        let has = |f: &str| files.iter().any(|x| x == f);
        let device_name = match std::fs::read_to_string(dir.join("name")) {
            Ok(n) if !n.trim().is_empty() => n.trim().to_string(),
            // Every driver has a name file; without one, the directory's name still tells devices apart.
            _ => format!("iio:device{device_index}"),
        };
        for (kind, family, axes, factor) in FAMILIES {
            let channels: Option<Vec<IioChannel>> = axes
                .iter()
                .map(|axis| {
                    let ch = format!("{family}{axis}");
                    if has(&format!("{ch}_input")) {
                        return Some(IioChannel::Input { path: dir.join(format!("{ch}_input")), factor });
                    }
                    if !has(&format!("{ch}_raw")) {
                        return None;
                    }
                    // A per-axis attribute wins over the shared one.
                    let attr = |a: &str| {
                        [format!("{ch}_{a}"), format!("{family}_{a}")].into_iter().find(|f| has(f)).map(|f| dir.join(f))
                    };
                    Some(IioChannel::Raw {
                        raw: dir.join(format!("{ch}_raw")),
                        scale: attr("scale"),
                        offset: attr("offset"),
                        factor,
                    })
                })
                .collect();
            if let Some(channels) = channels {
                sensors.push(IioSensor {
                    device_dir: dir.clone(),
                    device_index,
                    device_name: device_name.clone(),
                    kind,
                    channels,
                });
            }
        }
    }
    Ok(sensors)
}

fn list_files(dir: &Path) -> Result<Vec<String>, IioError> {
    let list_err = |source| IioError::List { path: dir.to_path_buf(), source };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(list_err)? {
        if let Some(name) = entry.map_err(list_err)?.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

fn read_number(path: &Path) -> Result<f64, IioError> {
    let text = std::fs::read_to_string(path).map_err(|source| IioError::Read { path: path.to_path_buf(), source })?;
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(IioError::Parse { path: path.to_path_buf(), text: text.trim().chars().take(64).collect() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(root: &Path, dir: &str, files: &[(&str, &str)]) -> PathBuf {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).expect("mkdir");
        for (name, value) in files {
            // The kernel ends every attribute with a newline.
            std::fs::write(d.join(name), format!("{value}\n")).expect("write");
        }
        d
    }

    /// A tree as a board with a BME280, an MPU-6050, an AK8975, an LPS25H and an HTS221 shows it.
    fn fake_tree(root: &Path) {
        device(
            root,
            "iio:device0",
            &[
                ("name", "bme280"),
                ("in_temp_input", "23450"),
                ("in_temp_oversampling_ratio", "2"),
                ("in_pressure_input", "101.325000000"),
                ("in_pressure_oversampling_ratio", "16"),
                ("in_humidityrelative_input", "45123"),
                ("in_humidityrelative_oversampling_ratio", "16"),
                ("uevent", "OF_NAME=bme280"),
            ],
        );
        device(
            root,
            "iio:device1",
            &[
                ("name", "mpu6050"),
                ("in_accel_x_raw", "-120"),
                ("in_accel_y_raw", "340"),
                ("in_accel_z_raw", "16390"),
                ("in_accel_x_calibbias", "-1542"),
                ("in_accel_scale", "0.000598"),
                ("in_accel_scale_available", "0.000598 0.001196 0.002392 0.004785"),
                ("in_accel_mount_matrix", "1, 0, 0; 0, 1, 0; 0, 0, 1"),
                ("in_anglvel_x_raw", "12"),
                ("in_anglvel_y_raw", "-7"),
                ("in_anglvel_z_raw", "3"),
                ("in_anglvel_scale", "0.000133090"),
                ("in_temp_raw", "-3500"),
                ("in_temp_offset", "12420"),
                ("in_temp_scale", "2.941176"),
                ("sampling_frequency", "50"),
            ],
        );
        device(
            root,
            "iio:device2",
            &[
                ("name", "ak8975"),
                ("in_magn_x_raw", "100"),
                ("in_magn_y_raw", "-50"),
                ("in_magn_z_raw", "-150"),
                ("in_magn_x_scale", "0.003008"),
                ("in_magn_y_scale", "0.003027"),
                ("in_magn_z_scale", "0.003150"),
                ("in_magn_mount_matrix", "1, 0, 0; 0, 1, 0; 0, 0, 1"),
            ],
        );
        device(
            root,
            "iio:device10",
            &[
                ("name", "lps25h"),
                ("in_pressure_raw", "4150272"),
                ("in_pressure_scale", "0.000024414"),
                ("in_temp_raw", "2400"),
                ("in_temp_offset", "42500"),
                ("in_temp_scale", "2.083333333"),
            ],
        );
        device(
            root,
            "iio:device3",
            &[
                ("name", "hts221"),
                ("in_humidityrelative_raw", "-6000"),
                ("in_humidityrelative_offset", "8000.5"),
                ("in_humidityrelative_scale", "25.5"),
            ],
        );
        // Triggers live next to the devices.
        device(root, "trigger0", &[("name", "mpu6050-dev1")]);
    }

    fn close(got: &[f32], want: &[f64]) -> bool {
        got.len() == want.len() && got.iter().zip(want).all(|(g, w)| (*g as f64 - w).abs() <= 1e-4 * w.abs().max(1.0))
    }

    #[test]
    fn a_board_is_discovered_and_read_in_the_batch_units() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fake_tree(tmp.path());
        let sensors = discover(tmp.path()).expect("discover");
        let found: Vec<(String, SensorKind)> = sensors.iter().map(|s| (s.sensor_name(), s.kind)).collect();
        use SensorKind::*;
        let want = [
            ("bme280-0/barometer", Barometer),
            ("bme280-0/temperature", Temperature),
            ("bme280-0/humidity", Humidity),
            ("mpu6050-1/accelerometer", Accelerometer),
            ("mpu6050-1/gyroscope", Gyroscope),
            ("mpu6050-1/temperature", Temperature),
            ("ak8975-2/magnetometer", Magnetometer),
            ("hts221-3/humidity", Humidity),
            ("lps25h-10/barometer", Barometer),
            ("lps25h-10/temperature", Temperature),
        ];
        assert_eq!(found, want.map(|(n, k)| (n.to_string(), k)));

        let value = |name: &str| {
            let s = sensors.iter().find(|s| s.sensor_name() == name).expect(name);
            s.read().expect("read")
        };
        let checks: [(&str, Vec<f64>); 10] = [
            ("bme280-0/barometer", vec![1013.25]),
            ("bme280-0/temperature", vec![23.45]),
            ("bme280-0/humidity", vec![45.123]),
            ("mpu6050-1/accelerometer", vec![-120.0 * 0.000598, 340.0 * 0.000598, 16390.0 * 0.000598]),
            ("mpu6050-1/gyroscope", vec![12.0 * 0.00013309, -7.0 * 0.00013309, 3.0 * 0.00013309]),
            ("mpu6050-1/temperature", vec![(-3500.0 + 12420.0) * 2.941176 / 1000.0]),
            ("ak8975-2/magnetometer", vec![30.08, -50.0 * 0.3027, -150.0 * 0.3150]),
            ("hts221-3/humidity", vec![(-6000.0 + 8000.5) * 25.5 / 1000.0]),
            ("lps25h-10/barometer", vec![4150272.0 * 0.000024414 * 10.0]),
            ("lps25h-10/temperature", vec![(2400.0 + 42500.0) * 2.083333333 / 1000.0]),
        ];
        for (name, want) in checks {
            let got = value(name);
            assert!(close(&got, &want), "{name}: {got:?} != {want:?}");
        }
        // Plausible, as a sanity check of the conversions.
        assert!((value("mpu6050-1/accelerometer")[2] - 9.8).abs() < 0.1);
        assert!((value("lps25h-10/barometer")[0] - 1013.2).abs() < 0.5);
    }

    #[test]
    fn a_garbage_or_missing_value_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fake_tree(tmp.path());
        let sensors = discover(tmp.path()).expect("discover");
        let find = |name: &str| sensors.iter().find(|s| s.sensor_name() == name).expect(name);

        let file = tmp.path().join("iio:device0/in_temp_input");
        std::fs::write(&file, "garbage\n").expect("write");
        match find("bme280-0/temperature").read() {
            Err(IioError::Parse { path, text }) => assert_eq!((path, text.as_str()), (file.clone(), "garbage")),
            other => panic!("{other:?}"),
        }
        let err = find("bme280-0/temperature").read().expect_err("garbage");
        assert!(err.to_string().contains("iio:device0/in_temp_input"), "{err}");

        std::fs::write(tmp.path().join("iio:device2/in_magn_y_scale"), "nan\n").expect("write");
        assert!(matches!(find("ak8975-2/magnetometer").read(), Err(IioError::Parse { .. })));

        let gone = tmp.path().join("iio:device1/in_anglvel_scale");
        std::fs::remove_file(&gone).expect("remove");
        match find("mpu6050-1/gyroscope").read() {
            Err(IioError::Read { path, .. }) => assert_eq!(path, gone),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_root_is_an_error_and_an_empty_one_has_no_sensors() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert!(discover(tmp.path()).expect("empty").is_empty());
        let missing = tmp.path().join("nope");
        match discover(&missing) {
            Err(IioError::List { path, .. }) => assert_eq!(path, missing),
            other => panic!("{other:?}"),
        }
        // A device missing one axis offers no sensor of that kind.
        device(tmp.path(), "iio:device0", &[("name", "half"), ("in_accel_x_raw", "1"), ("in_accel_y_raw", "2")]);
        assert!(discover(tmp.path()).expect("discover").is_empty());
    }
}
