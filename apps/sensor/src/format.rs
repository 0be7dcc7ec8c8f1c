//! The batch record.
//!
//! One bundle carries one [`Batch`]: readings of one sensor of one station, in time order. Batches are
//! numbered per (station, sensor) from 0 without holes, so whoever collects them can report what is missing
//! and drop what arrived twice. The encoding is CBOR (an array per record, fields by position, see the
//! `#[n(..)]` indices), versioned by [`FORMAT_VERSION`] so older collectors refuse what they cannot read
//! instead of misreading it.
//!
//! Times: a station with a real-time clock stamps readings in Unix milliseconds ([`Clock::Unix`]). A station
//! without one stamps them in milliseconds since it booted ([`Clock::Uptime`]) and records when the batch was
//! made on the same clock; the bundle then has creation time 0 and a bundle-age block, so a collector that
//! knows when it received the bundle (and its age) can place every reading in real time
//! ([`Batch::unix_times`]).

use minicbor::{Decode, Encode};

/// The version written into every batch.
pub const FORMAT_VERSION: u8 = 1;

/// Largest batch accepted when decoding (a camera still included).
pub const MAX_BATCH_BYTES: usize = 64 << 20;

/// What a sensor measures; each kind has one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
#[cbor(index_only)]
pub enum SensorKind {
    /// Air pressure, hPa.
    #[n(0)]
    Barometer,
    /// Magnetic field, µT, three axes.
    #[n(1)]
    Magnetometer,
    /// Acceleration, m/s², three axes.
    #[n(2)]
    Accelerometer,
    /// Angular rate, rad/s, three axes.
    #[n(3)]
    Gyroscope,
    /// Air temperature, °C.
    #[n(4)]
    Temperature,
    /// Relative humidity, %.
    #[n(5)]
    Humidity,
    /// A still image (JPEG) in [`Batch::image`]; its reading holds width and height.
    #[n(6)]
    CameraStill,
}

impl SensorKind {
    /// Every kind, in a fixed order.
    pub const ALL: [SensorKind; 7] = [
        SensorKind::Barometer,
        SensorKind::Magnetometer,
        SensorKind::Accelerometer,
        SensorKind::Gyroscope,
        SensorKind::Temperature,
        SensorKind::Humidity,
        SensorKind::CameraStill,
    ];

    /// The unit of its values.
    pub fn unit(self) -> &'static str {
        match self {
            SensorKind::Barometer => "hPa",
            SensorKind::Magnetometer => "uT",
            SensorKind::Accelerometer => "m/s2",
            SensorKind::Gyroscope => "rad/s",
            SensorKind::Temperature => "degC",
            SensorKind::Humidity => "%RH",
            SensorKind::CameraStill => "px",
        }
    }

    /// Names of its values, in order.
    pub fn axes(self) -> &'static [&'static str] {
        match self {
            SensorKind::Magnetometer | SensorKind::Accelerometer | SensorKind::Gyroscope => &["x", "y", "z"],
            SensorKind::CameraStill => &["width", "height"],
            _ => &["value"],
        }
    }

    /// A short lowercase name (file names, command lines).
    pub fn name(self) -> &'static str {
        match self {
            SensorKind::Barometer => "barometer",
            SensorKind::Magnetometer => "magnetometer",
            SensorKind::Accelerometer => "accelerometer",
            SensorKind::Gyroscope => "gyroscope",
            SensorKind::Temperature => "temperature",
            SensorKind::Humidity => "humidity",
            SensorKind::CameraStill => "camera",
        }
    }
}

impl std::str::FromStr for SensorKind {
    type Err = FormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SensorKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| FormatError::UnknownKind(s.to_string()))
    }
}

/// The clock a batch's times are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(index_only)]
pub enum Clock {
    /// Unix time, milliseconds.
    #[n(0)]
    Unix,
    /// Milliseconds since the station booted (no real-time clock).
    #[n(1)]
    Uptime,
}

/// One reading: when, and its values (one per axis of the sensor kind).
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Reading {
    /// Milliseconds on the batch's clock.
    #[n(0)]
    pub t: u64,
    /// Values, in the kind's unit and axis order.
    #[n(1)]
    pub values: Vec<f32>,
}

/// Readings of one sensor of one station.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Batch {
    /// [`FORMAT_VERSION`] when written.
    #[n(0)]
    pub version: u8,
    /// The station's name (its node name, e.g. `hill-3`).
    #[n(1)]
    pub station: String,
    /// The sensor's name on that station (e.g. `bme280-0/temperature`, `cam0`).
    #[n(2)]
    pub sensor: String,
    /// What it measures.
    #[n(3)]
    pub kind: SensorKind,
    /// Per (station, sensor): 0, 1, 2, … without holes.
    #[n(4)]
    pub seq: u64,
    /// The clock of `created` and every reading's time.
    #[n(5)]
    pub clock: Clock,
    /// When the batch was closed, on `clock`.
    #[n(6)]
    pub created: u64,
    /// Readings in time order.
    #[n(7)]
    pub readings: Vec<Reading>,
    /// The still image (JPEG) of a camera batch.
    #[n(8)]
    #[cbor(with = "minicbor::bytes")]
    pub image: Option<Vec<u8>>,
}

/// Why a batch could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FormatError {
    /// Not CBOR of the expected shape.
    #[error("not a sensor batch: {0}")]
    Malformed(String),
    /// Written by a newer format.
    #[error("sensor batch format version {0} is not supported (this build reads version {FORMAT_VERSION})")]
    Version(u8),
    /// Larger than [`MAX_BATCH_BYTES`].
    #[error("sensor batch of {0} bytes is larger than the {MAX_BATCH_BYTES} bytes accepted")]
    TooLarge(usize),
    /// Values that do not fit the kind.
    #[error("sensor batch {station}/{sensor} #{seq}: {what}")]
    Invalid {
        /// Station.
        station: String,
        /// Sensor.
        sensor: String,
        /// Batch number.
        seq: u64,
        /// What is wrong.
        what: String,
    },
    /// A sensor kind name nobody knows.
    #[error(
        "unknown sensor kind {0:?} (known: barometer, magnetometer, accelerometer, gyroscope, temperature, humidity, camera)"
    )]
    UnknownKind(String),
}

impl Batch {
    /// An empty batch, to be filled with readings.
    pub fn new(
        station: impl Into<String>,
        sensor: impl Into<String>,
        kind: SensorKind,
        seq: u64,
        clock: Clock,
    ) -> Self {
        Batch {
            version: FORMAT_VERSION,
            station: station.into(),
            sensor: sensor.into(),
            kind,
            seq,
            clock,
            created: 0,
            readings: Vec::new(),
            image: None,
        }
    }

    /// The CBOR encoding (a bundle's payload).
    pub fn encode(&self) -> Vec<u8> {
        // Writing into a Vec cannot fail.
        minicbor::to_vec(self).unwrap_or_default()
    }

    /// Reads and checks a batch.
    pub fn decode(bytes: &[u8]) -> Result<Batch, FormatError> {
        if bytes.len() > MAX_BATCH_BYTES {
            return Err(FormatError::TooLarge(bytes.len()));
        }
        // The version comes first: refuse a newer format before trying to read its fields.
        let mut d = minicbor::Decoder::new(bytes);
        d.array().map_err(|e| FormatError::Malformed(e.to_string()))?;
        let version = d.u8().map_err(|e| FormatError::Malformed(e.to_string()))?;
        if version != FORMAT_VERSION {
            return Err(FormatError::Version(version));
        }
        let b: Batch = minicbor::decode(bytes).map_err(|e| FormatError::Malformed(e.to_string()))?;
        b.check()?;
        Ok(b)
    }

    fn check(&self) -> Result<(), FormatError> {
        let invalid = |what: String| FormatError::Invalid {
            station: self.station.clone(),
            sensor: self.sensor.clone(),
            seq: self.seq,
            what,
        };
        if self.station.is_empty() || self.sensor.is_empty() {
            return Err(invalid("empty station or sensor name".into()));
        }
        let bad_name =
            |s: &str| s.contains("..") || s.starts_with('/') || s.chars().any(|c| c.is_control() || c == '\\');
        if bad_name(&self.station) || bad_name(&self.sensor) {
            // The names become directory and file names in a collector's archive.
            return Err(invalid("station or sensor name is not usable as a file name".into()));
        }
        let axes = self.kind.axes().len();
        if let Some(r) = self.readings.iter().find(|r| r.values.len() != axes) {
            return Err(invalid(format!("a {} reading has {} values, not {axes}", self.kind.name(), r.values.len())));
        }
        if self.readings.windows(2).any(|w| w[1].t < w[0].t) {
            return Err(invalid("readings are not in time order".into()));
        }
        if (self.kind == SensorKind::CameraStill) != self.image.is_some() {
            return Err(invalid("an image belongs to a camera batch, and a camera batch has one".into()));
        }
        Ok(())
    }

    /// Every reading's time as Unix milliseconds. For an [`Clock::Uptime`] batch this needs when the bundle
    /// was received (`received_unix_ms`) and its age then (`age_ms`, from the bundle-age block): the batch was
    /// closed `age_ms` before it was received.
    pub fn unix_times(&self, received_unix_ms: u64, age_ms: Option<u64>) -> Option<Vec<u64>> {
        match self.clock {
            Clock::Unix => Some(self.readings.iter().map(|r| r.t).collect()),
            Clock::Uptime => {
                let created_unix = received_unix_ms.checked_sub(age_ms?)?;
                Some(
                    self.readings
                        .iter()
                        .map(|r| created_unix.saturating_sub(self.created.saturating_sub(r.t)))
                        .collect(),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Batch {
        let mut b = Batch::new("hill-1", "bme280/temperature", SensorKind::Temperature, 7, Clock::Unix);
        b.created = 1_700_000_060_000;
        b.readings = (0..60)
            .map(|i| Reading { t: 1_700_000_000_000 + i * 1000, values: vec![12.5 + i as f32 * 0.01] })
            .collect();
        b
    }

    #[test]
    fn a_batch_round_trips() {
        let b = sample();
        assert_eq!(Batch::decode(&b.encode()), Ok(b));
        let mut cam = Batch::new("house", "cam0", SensorKind::CameraStill, 0, Clock::Uptime);
        cam.readings = vec![Reading { t: 5, values: vec![640.0, 480.0] }];
        cam.image = Some(vec![0xff, 0xd8, 0xff, 0xd9]);
        assert_eq!(Batch::decode(&cam.encode()), Ok(cam));
    }

    #[test]
    fn a_newer_version_is_refused_by_number() {
        let mut b = sample();
        b.version = 2;
        assert_eq!(Batch::decode(&b.encode()), Err(FormatError::Version(2)));
    }

    #[test]
    fn garbage_and_misfits_are_refused_with_a_reason() {
        for bad in [&[][..], &[0xff], &[0x83, 0x01, 0x02], b"hello"] {
            assert!(matches!(Batch::decode(bad), Err(FormatError::Malformed(_))), "{bad:?}");
        }
        let mut b = sample();
        b.readings[3].values.push(1.0);
        assert!(matches!(Batch::decode(&b.encode()), Err(FormatError::Invalid { .. })));
        let mut b = sample();
        b.readings.swap(1, 2);
        assert!(matches!(Batch::decode(&b.encode()), Err(FormatError::Invalid { .. })));
        let mut b = sample();
        b.station = "../etc".into();
        assert!(matches!(Batch::decode(&b.encode()), Err(FormatError::Invalid { .. })));
        let mut b = sample();
        b.image = Some(vec![1]);
        assert!(matches!(Batch::decode(&b.encode()), Err(FormatError::Invalid { .. })));
    }

    #[test]
    fn uptime_batches_are_placed_by_bundle_age() {
        let mut b = Batch::new("hill-2", "baro", SensorKind::Barometer, 0, Clock::Uptime);
        b.created = 100_000;
        b.readings = vec![Reading { t: 40_000, values: vec![1013.0] }, Reading { t: 100_000, values: vec![1012.9] }];
        // Received at unix 10,000,000 ms with an age of 5 s: closed at 9,995,000.
        assert_eq!(b.unix_times(10_000_000, Some(5_000)), Some(vec![9_935_000, 9_995_000]));
        assert_eq!(b.unix_times(10_000_000, None), None);
        assert_eq!(sample().unix_times(0, None).map(|t| t[0]), Some(1_700_000_000_000));
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = Batch::decode(&bytes);
        }
    }
}
