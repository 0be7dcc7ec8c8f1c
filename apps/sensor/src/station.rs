//! A station's sensors on a schedule: each sampled at its own period, its readings batched.
//!
//! [`StationSources::tick`] is called with the station's time whenever convenient (a timer, a loop with
//! sleeps); it samples every sensor that is due and returns the batches that closed. Nothing here reads a
//! clock or draws randomness of its own, so a run is a function of its configuration and the ticks' times.

use std::collections::{BTreeMap, VecDeque};

use crate::batcher::{BatchSettings, Batcher};
use crate::format::{Batch, Clock, SensorKind};
use crate::iio::{IioError, IioSensor};
use crate::stills::{ImageDir, Scene, StillError};
use crate::synthetic::{WeatherModel, WeatherParams};

/// How many source errors are kept for [`StationSources::take_errors`]; older ones are dropped, so a sensor
/// that fails every second cannot fill memory when nobody collects them.
pub const MAX_KEPT_ERRORS: usize = 256;

/// The synthetic camera's picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CameraSettings {
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// JPEG quality, 1–100.
    pub quality: u8,
    /// Someone crosses the view and back this often (ms), for motion detection to find; `None`: nobody.
    pub walker_period_ms: Option<u64>,
}

impl Default for CameraSettings {
    fn default() -> Self {
        CameraSettings { width: 640, height: 480, quality: 80, walker_period_ms: Some(120_000) }
    }
}

/// What a station has and how it batches.
#[derive(Debug, Clone, PartialEq)]
pub struct StationConfig {
    /// The station's name (its node name).
    pub station: String,
    /// Seed of the synthetic weather and scene.
    pub seed: u64,
    /// The clock of the times given to [`StationSources::tick`] and written into batches.
    pub clock: Clock,
    /// Sensors as (kind, sample period ms); each kind once (later repeats are ignored).
    pub sensors: Vec<(SensorKind, u64)>,
    /// When batches close.
    pub batch: BatchSettings,
    /// After a pause (the station slept, or the caller was late) at most this many missed samples per sensor
    /// are made up, the latest ones; the rest are skipped. Only synthetic sensors catch up: a real sensor
    /// can only be read now.
    pub max_catch_up: u32,
    /// With an uptime clock: the Unix time (ms) at uptime 0, which places the synthetic weather's daily
    /// cycle. Ignored with a Unix clock.
    pub boot_unix_ms: u64,
    /// The synthetic weather's climate.
    pub weather: WeatherParams,
    /// The synthetic camera's picture.
    pub camera: CameraSettings,
}

impl StationConfig {
    /// A configuration with default batching, weather and camera.
    pub fn new(station: impl Into<String>, seed: u64, clock: Clock, sensors: &[(SensorKind, u64)]) -> Self {
        StationConfig {
            station: station.into(),
            seed,
            clock,
            sensors: sensors.to_vec(),
            batch: BatchSettings::default(),
            max_catch_up: 60,
            boot_unix_ms: 0,
            weather: WeatherParams::default(),
            camera: CameraSettings::default(),
        }
    }
}

/// A sample a sensor could not give. The station carries on; the sensor is tried again at its next period.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// An IIO sensor could not be read.
    #[error("{sensor} at {t}: {source}")]
    Iio {
        /// The sensor's name.
        sensor: String,
        /// When, on the station's clock.
        t: u64,
        /// Why.
        source: IioError,
    },
    /// A camera still could not be had.
    #[error("{sensor} at {t}: {source}")]
    Still {
        /// The sensor's name.
        sensor: String,
        /// When, on the station's clock.
        t: u64,
        /// Why.
        source: StillError,
    },
}

#[derive(Debug)]
enum Source {
    Synthetic,
    Iio(IioSensor),
    Scene(Scene),
    Dir(ImageDir),
}

#[derive(Debug)]
struct Slot {
    source: Source,
    period_ms: u64,
    // None until the first tick: the first tick samples at once.
    next_due: Option<u64>,
    batcher: Batcher,
}

impl Slot {
    /// The times to sample at `t`, and moves `next_due` past `t`. The due times stay on the grid of the first
    /// sample, so late ticks do not make the schedule drift.
    fn due(&mut self, t: u64, catch_up: u32) -> Vec<u64> {
        let Some(due) = self.next_due else {
            self.next_due = Some(t.saturating_add(self.period_ms));
            return vec![t];
        };
        if due > t {
            return Vec::new();
        }
        let missed = (t - due) / self.period_ms + 1;
        self.next_due = Some(due.saturating_add(missed.saturating_mul(self.period_ms)));
        let take = missed.min(u64::from(catch_up.max(1)));
        let first = due + (missed - take) * self.period_ms;
        (0..take).map(|i| first + i * self.period_ms).collect()
    }
}

/// A station's sources and batchers.
#[derive(Debug)]
pub struct StationSources {
    clock: Clock,
    boot_unix_ms: u64,
    max_catch_up: u32,
    model: WeatherModel,
    slots: Vec<Slot>,
    errors: VecDeque<SourceError>,
}

impl StationSources {
    /// Synthetic weather, mast motion and camera for every configured sensor. Sensors are named
    /// `sim/<kind>`, the camera `cam0`.
    pub fn synthetic(config: StationConfig) -> Self {
        let mut s = Self::empty(&config);
        for (kind, period_ms) in kinds_once(&config.sensors) {
            match kind {
                SensorKind::CameraStill => s.add_camera(&config, period_ms),
                _ => s.add(&config, format!("sim/{}", kind.name()), kind, period_ms, Source::Synthetic),
            }
        }
        s
    }

    /// Real sensors: each discovered IIO sensor whose kind is configured, at that kind's period, named by
    /// [`IioSensor::sensor_name`]. A configured kind no IIO sensor has is left out (no made-up values next
    /// to real ones), except a camera, which is the synthetic scene until [`StationSources::with_camera_dir`].
    pub fn with_iio(config: StationConfig, sensors: Vec<IioSensor>) -> Self {
        let mut s = Self::empty(&config);
        let periods = kinds_once(&config.sensors);
        for sensor in sensors {
            if let Some(&(_, period_ms)) = periods.iter().find(|(k, _)| *k == sensor.kind) {
                s.add(&config, sensor.sensor_name(), sensor.kind, period_ms, Source::Iio(sensor));
            }
        }
        if let Some(&(_, period_ms)) = periods.iter().find(|(k, _)| *k == SensorKind::CameraStill) {
            s.add_camera(&config, period_ms);
        }
        s
    }

    /// Takes the camera's stills from a directory of images instead of the synthetic scene (if a camera is
    /// configured; otherwise the directory is not used).
    pub fn with_camera_dir(mut self, dir: ImageDir) -> Self {
        if let Some(slot) = self.slots.iter_mut().find(|s| matches!(s.source, Source::Scene(_) | Source::Dir(_))) {
            slot.source = Source::Dir(dir);
        }
        self
    }

    /// Continues numbering from persisted [`StationSources::next_seqs`]; sensors not in `seqs` start at 0.
    /// Meant for before the first tick: readings already waiting would be numbered from here too.
    pub fn with_next_seqs(mut self, seqs: &BTreeMap<String, u64>) -> Self {
        for slot in &mut self.slots {
            if let Some(&seq) = seqs.get(slot.batcher.sensor()) {
                slot.batcher.set_next_seq(seq);
            }
        }
        self
    }

    /// Per sensor name, the number its next batch gets: persist this (after [`StationSources::flush`] on
    /// shutdown) and give it to [`StationSources::with_next_seqs`] after a restart.
    pub fn next_seqs(&self) -> BTreeMap<String, u64> {
        self.slots.iter().map(|s| (s.batcher.sensor().to_string(), s.batcher.next_seq())).collect()
    }

    /// The sensors: name, kind and sample period (ms).
    pub fn sensors(&self) -> Vec<(String, SensorKind, u64)> {
        self.slots.iter().map(|s| (s.batcher.sensor().to_string(), s.batcher.kind(), s.period_ms)).collect()
    }

    /// Samples every sensor that is due at `t_ms` (on the station's clock) and returns the batches that
    /// closed, by sensor and then in time order. Samples that fail are kept for
    /// [`StationSources::take_errors`].
    pub fn tick(&mut self, t_ms: u64) -> Vec<Batch> {
        let mut out = Vec::new();
        let world = |t: u64| match self.clock {
            Clock::Unix => t,
            Clock::Uptime => self.boot_unix_ms.saturating_add(t),
        };
        for slot in &mut self.slots {
            let times = match slot.source {
                Source::Synthetic => slot.due(t_ms, self.max_catch_up),
                // A real source can only be read now, and its reading is stamped now.
                _ => slot.due(t_ms, 1).into_iter().map(|_| t_ms).collect(),
            };
            for t in times {
                let sensor = || slot.batcher.sensor().to_string();
                match &mut slot.source {
                    Source::Synthetic => {
                        out.extend(slot.batcher.push(t, self.model.sample(slot.batcher.kind(), world(t))));
                    }
                    Source::Iio(sensor_io) => match sensor_io.read() {
                        Ok(values) => out.extend(slot.batcher.push(t, values)),
                        Err(source) => push_error(&mut self.errors, SourceError::Iio { sensor: sensor(), t, source }),
                    },
                    Source::Scene(scene) => match scene.still(world(t)) {
                        Ok(still) => out.push(slot.batcher.push_still(t, still)),
                        Err(source) => push_error(&mut self.errors, SourceError::Still { sensor: sensor(), t, source }),
                    },
                    Source::Dir(dir) => match dir.next_still() {
                        Ok(still) => out.push(slot.batcher.push_still(t, still)),
                        Err(source) => push_error(&mut self.errors, SourceError::Still { sensor: sensor(), t, source }),
                    },
                }
            }
            out.extend(slot.batcher.poll(t_ms));
        }
        out
    }

    /// One step of a station's loop: samples what is due at `t_ms` and, on the `last` step, closes every
    /// partial batch too. The batches returned are numbered: persist [`StationSources::next_seqs`] before
    /// handing them on, so a restart never reuses a number.
    pub fn step(&mut self, t_ms: u64, last: bool) -> Vec<Batch> {
        let mut out = self.tick(t_ms);
        if last {
            out.extend(self.flush(t_ms));
        }
        out
    }

    /// Closes every partial batch (on shutdown, or before persisting [`StationSources::next_seqs`]).
    pub fn flush(&mut self, t_ms: u64) -> Vec<Batch> {
        self.slots.iter_mut().filter_map(|s| s.batcher.flush(t_ms)).collect()
    }

    /// The samples that failed since the last call, oldest first (at most [`MAX_KEPT_ERRORS`]).
    pub fn take_errors(&mut self) -> Vec<SourceError> {
        self.errors.drain(..).collect()
    }

    fn empty(config: &StationConfig) -> Self {
        StationSources {
            clock: config.clock,
            boot_unix_ms: config.boot_unix_ms,
            max_catch_up: config.max_catch_up,
            model: WeatherModel::with_params(config.seed, config.weather.clone()),
            slots: Vec::new(),
            errors: VecDeque::new(),
        }
    }

    fn add(&mut self, config: &StationConfig, sensor: String, kind: SensorKind, period_ms: u64, source: Source) {
        let batcher = Batcher::new(&config.station, sensor, kind, config.clock, config.batch, 0);
        self.slots.push(Slot { source, period_ms: period_ms.max(1), next_due: None, batcher });
    }

    fn add_camera(&mut self, config: &StationConfig, period_ms: u64) {
        let c = config.camera;
        let mut scene = Scene::new(config.seed, c.width, c.height)
            .with_quality(c.quality)
            .with_utc_offset_min(config.weather.utc_offset_min);
        if let Some(p) = c.walker_period_ms {
            scene = scene.with_walker(p);
        }
        self.add(config, "cam0".to_string(), SensorKind::CameraStill, period_ms, Source::Scene(scene));
    }
}

/// The configured sensors with each kind once, first entry winning: two sensors of one kind would share a
/// name, and so their batch numbers.
fn kinds_once(sensors: &[(SensorKind, u64)]) -> Vec<(SensorKind, u64)> {
    let mut out: Vec<(SensorKind, u64)> = Vec::new();
    for &(kind, period) in sensors {
        if !out.iter().any(|(k, _)| *k == kind) {
            out.push((kind, period));
        }
    }
    out
}

fn push_error(errors: &mut VecDeque<SourceError>, e: SourceError) {
    if errors.len() >= MAX_KEPT_ERRORS {
        errors.pop_front();
    }
    errors.push_back(e);
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-03-20 00:00 UTC.
    const DAY0: u64 = 1_710_892_800_000;
    const DAY_MS: u64 = 86_400_000;

    fn by_sensor(batches: &[Batch]) -> BTreeMap<String, Vec<&Batch>> {
        let mut m: BTreeMap<String, Vec<&Batch>> = BTreeMap::new();
        for b in batches {
            m.entry(b.sensor.clone()).or_default().push(b);
        }
        m
    }

    /// Numbers run from `first` without holes or repeats, and readings are in time order across batches.
    fn assert_contiguous(batches: &[&Batch], first: u64) {
        for (i, b) in batches.iter().enumerate() {
            assert_eq!(b.seq, first + i as u64, "{}", b.sensor);
        }
        let times: Vec<u64> = batches.iter().flat_map(|b| b.readings.iter().map(|r| r.t)).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{}", batches[0].sensor);
    }

    #[test]
    fn one_day_of_temperature_and_pressure() {
        let config = StationConfig::new(
            "hill-1",
            42,
            Clock::Unix,
            &[(SensorKind::Temperature, 1000), (SensorKind::Barometer, 10_000)],
        );
        let amplitude = config.weather.diurnal_amplitude_c;
        let mut s = StationSources::synthetic(config);
        let mut batches = Vec::new();
        for i in 0..DAY_MS / 1000 {
            batches.extend(s.tick(DAY0 + i * 1000));
        }
        batches.extend(s.flush(DAY0 + DAY_MS));
        assert!(s.take_errors().is_empty());
        let m = by_sensor(&batches);
        let temp = &m["sim/temperature"];
        let baro = &m["sim/barometer"];
        // 86,400 readings in 60s, 8,640 in 60s: every batch closes full, none is left for the flush.
        assert_eq!((temp.len(), baro.len()), (1440, 144));
        assert!(batches.iter().all(|b| b.readings.len() == 60 && b.station == "hill-1"));
        assert_contiguous(temp, 0);
        assert_contiguous(baro, 0);
        assert_eq!(temp[0].readings[0].t, DAY0);
        assert_eq!(baro[143].readings[59].t, DAY0 + DAY_MS - 10_000);
        assert!(batches.iter().all(|b| Batch::decode(&b.encode()).as_ref() == Ok(b)));

        let readings: Vec<(u64, f32)> =
            temp.iter().flat_map(|b| b.readings.iter().map(|r| (r.t, r.values[0]))).collect();
        let max = readings.iter().max_by(|a, b| a.1.total_cmp(&b.1)).copied().unwrap_or_default();
        let min = readings.iter().min_by(|a, b| a.1.total_cmp(&b.1)).copied().unwrap_or_default();
        assert!((max.1 - min.1) as f64 >= amplitude / 2.0, "{min:?} {max:?}");
        let hour = |t: u64| (t - DAY0) / 3_600_000;
        assert!((12..19).contains(&hour(max.0)) && (2..9).contains(&hour(min.0)), "{min:?} {max:?}");
        let pressures = baro.iter().flat_map(|b| b.readings.iter().map(|r| r.values[0]));
        assert!(pressures.clone().all(|p| (980.0..1045.0).contains(&p)));
    }

    #[test]
    fn late_ticks_catch_up_on_the_grid_within_a_bound() {
        let mut config = StationConfig::new("hill-2", 1, Clock::Unix, &[(SensorKind::Humidity, 1000)]);
        config.max_catch_up = 10;
        config.batch = BatchSettings { batch_readings: 1000, max_age_ms: u64::MAX };
        let mut s = StationSources::synthetic(config);
        let mut batches = s.tick(DAY0);
        // Every 7 s: all missed samples are made up.
        for i in 1..=10 {
            batches.extend(s.tick(DAY0 + i * 7000 + 300));
        }
        // A long pause: only the last 10 are.
        batches.extend(s.tick(DAY0 + 200_000));
        batches.extend(s.flush(DAY0 + 200_000));
        let times: Vec<u64> = batches.iter().flat_map(|b| b.readings.iter().map(|r| r.t - DAY0)).collect();
        let mut want: Vec<u64> = (0..=70).map(|i| i * 1000).collect();
        want.extend((191..=200).map(|i| i * 1000));
        assert_eq!(times, want);
    }

    #[test]
    fn numbering_continues_after_a_restart() {
        let config = StationConfig::new(
            "hill-3",
            7,
            Clock::Uptime,
            &[(SensorKind::Accelerometer, 500), (SensorKind::Magnetometer, 2000)],
        );
        let mut first = StationSources::synthetic(config.clone());
        let mut batches = Vec::new();
        for t in (0..600_000).step_by(500) {
            batches.extend(first.tick(t));
        }
        batches.extend(first.flush(600_000));
        let saved = first.next_seqs();
        assert_eq!(saved.keys().map(String::as_str).collect::<Vec<_>>(), ["sim/accelerometer", "sim/magnetometer"]);

        // After a reboot the uptime starts again from 0.
        let mut second = StationSources::synthetic(config).with_next_seqs(&saved);
        for t in (0..300_000).step_by(500) {
            batches.extend(second.tick(t));
        }
        batches.extend(second.flush(300_000));
        for (sensor, list) in by_sensor(&batches) {
            let seqs: Vec<u64> = list.iter().map(|b| b.seq).collect();
            assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>(), "{sensor}");
        }
        let accel: usize =
            batches.iter().filter(|b| b.kind == SensorKind::Accelerometer).map(|b| b.readings.len()).sum();
        assert_eq!(accel, 1200 + 600);
    }

    #[test]
    fn runs_are_deterministic_and_an_uptime_clock_sees_the_same_weather() {
        let sensors = [(SensorKind::Temperature, 1000), (SensorKind::Gyroscope, 250)];
        let run = |clock: Clock, start: u64| {
            let mut config = StationConfig::new("hill-4", 3, clock, &sensors);
            config.boot_unix_ms = DAY0;
            let mut s = StationSources::synthetic(config);
            let mut out = Vec::new();
            for i in 0..3600 {
                out.extend(s.tick(start + i * 1000));
            }
            out
        };
        let unix = run(Clock::Unix, DAY0);
        assert_eq!(unix, run(Clock::Unix, DAY0));
        let uptime = run(Clock::Uptime, 0);
        assert_eq!(unix.len(), uptime.len());
        for (a, b) in unix.iter().zip(&uptime) {
            assert_eq!(
                a.readings.iter().map(|r| &r.values).collect::<Vec<_>>(),
                b.readings.iter().map(|r| &r.values).collect::<Vec<_>>()
            );
            assert_eq!(a.created - DAY0, b.created);
        }
    }

    #[test]
    fn a_camera_gives_one_still_per_period() {
        let mut config = StationConfig::new("house", 5, Clock::Unix, &[(SensorKind::CameraStill, 60_000)]);
        config.camera = CameraSettings { width: 64, height: 48, quality: 60, walker_period_ms: Some(30_000) };
        let mut s = StationSources::synthetic(config);
        let mut batches = Vec::new();
        for i in 0..300 {
            batches.extend(s.tick(DAY0 + 12 * 3_600_000 + i * 1000));
        }
        assert_eq!(batches.len(), 5);
        for (i, b) in batches.iter().enumerate() {
            assert_eq!((b.sensor.as_str(), b.seq, b.readings.len()), ("cam0", i as u64, 1));
            assert_eq!(b.readings[0].values, [64.0, 48.0]);
            assert!(b.image.as_ref().is_some_and(|j| j.starts_with(&[0xff, 0xd8])));
            assert_eq!(Batch::decode(&b.encode()).as_ref(), Ok(b));
        }
    }

    #[test]
    fn iio_sensors_are_read_and_their_failures_kept() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dev = tmp.path().join("iio:device0");
        std::fs::create_dir_all(&dev).expect("mkdir");
        for (f, v) in [("name", "bme280"), ("in_temp_input", "23450"), ("in_pressure_input", "101.325")] {
            std::fs::write(dev.join(f), format!("{v}\n")).expect("write");
        }
        let sensors = crate::iio::discover(tmp.path()).expect("discover");
        let mut config = StationConfig::new(
            "hill-5",
            0,
            Clock::Uptime,
            // No humidity channel on the device: no humidity sensor, rather than a made-up one.
            &[(SensorKind::Temperature, 1000), (SensorKind::Humidity, 1000)],
        );
        config.batch = BatchSettings { batch_readings: 5, max_age_ms: 60_000 };
        let mut s = StationSources::with_iio(config, sensors);
        assert_eq!(s.sensors(), [("bme280-0/temperature".to_string(), SensorKind::Temperature, 1000)]);

        let mut batches = Vec::new();
        for t in (0..5000).step_by(1000) {
            batches.extend(s.tick(t));
        }
        assert_eq!(batches.len(), 1);
        assert!(batches[0].readings.iter().all(|r| (r.values[0] - 23.45).abs() < 1e-4));

        std::fs::write(dev.join("in_temp_input"), "oops\n").expect("write");
        // A late tick reads once, now.
        assert!(s.tick(9500).is_empty());
        let errors = s.take_errors();
        assert_eq!(errors.len(), 1);
        assert!(matches!(&errors[0], SourceError::Iio { t: 9500, source: IioError::Parse { .. }, .. }));
        assert!(errors[0].to_string().contains("in_temp_input"));
        std::fs::write(dev.join("in_temp_input"), "24000\n").expect("write");
        assert!(s.tick(10_000).is_empty());
        let b = s.flush(10_000);
        assert_eq!(b[0].readings.iter().map(|r| r.t).collect::<Vec<_>>(), [10_000]);
        assert_eq!(b[0].seq, 1);
    }

    #[test]
    fn a_camera_directory_with_a_bad_file_skips_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let jpeg = Scene::new(1, 32, 24).still(DAY0).expect("jpeg").jpeg;
        std::fs::write(tmp.path().join("1.jpg"), &jpeg).expect("write");
        std::fs::write(tmp.path().join("2.jpg"), b"broken").expect("write");
        let config = StationConfig::new("house", 5, Clock::Unix, &[(SensorKind::CameraStill, 1000)]);
        let mut s = StationSources::synthetic(config).with_camera_dir(ImageDir::open(tmp.path()).expect("open"));
        let batches: Vec<Batch> = (0..4).flat_map(|i| s.tick(DAY0 + i * 1000)).collect();
        assert_eq!(batches.iter().map(|b| b.seq).collect::<Vec<_>>(), [0, 1]);
        assert!(batches.iter().all(|b| b.image.as_deref() == Some(&jpeg[..])));
        assert_eq!(s.take_errors().len(), 2);
    }
}
