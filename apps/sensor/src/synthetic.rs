//! Synthetic weather and mast motion for one station, for demos and tests without hardware.
//!
//! Every value is a function of (seed, time) alone: the same time gives the same value, calls can come in
//! any order, and two stations with different seeds see different weather. Slow parts (daily cycle, drift,
//! fronts) are continuous in time; only the sensor noise added on top jumps from one sample to the next.

use std::f64::consts::{PI, TAU};

use crate::format::SensorKind;
use crate::rng::{gaussian, hash, signed, smooth_noise, unit};

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;

// Streams: one per random quantity, so that no two quantities share their randomness.
const S_TEMP_DRIFT: u64 = 1;
const S_TEMP_DRIFT_FAST: u64 = 2;
const S_TEMP_AMPLITUDE: u64 = 3;
const S_DEW_SPREAD: u64 = 4;
const S_PRESSURE_SLOW: u64 = 5;
const S_PRESSURE_DAY: u64 = 6;
const S_PRESSURE_FAST: u64 = 7;
const S_FRONT: u64 = 8;
const S_WIND: u64 = 9;
const S_GUST: u64 = 10;
const S_STATION: u64 = 11;
const S_NOISE: u64 = 100;

/// Where a station is and what its climate is like. The defaults are a temperate lowland in spring.
#[derive(Debug, Clone, PartialEq)]
pub struct WeatherParams {
    /// Mean air temperature, °C.
    pub mean_temp_c: f64,
    /// Half the typical difference between the afternoon maximum and the early-morning minimum, °C.
    pub diurnal_amplitude_c: f64,
    /// Local time minus UTC, minutes: the daily cycle follows local solar time.
    pub utc_offset_min: i32,
    /// Height above sea level, m: lowers the pressure a barometer sees.
    pub altitude_m: f64,
    /// Which way the sensor's x axis points, degrees clockwise from magnetic north; `None` picks one from
    /// the seed.
    pub mast_heading_deg: Option<f64>,
}

impl Default for WeatherParams {
    fn default() -> Self {
        WeatherParams {
            mean_temp_c: 11.0,
            diurnal_amplitude_c: 4.0,
            utc_offset_min: 0,
            altitude_m: 0.0,
            mast_heading_deg: None,
        }
    }
}

/// The weather at one station, and the motion of the mast its sensors sit on.
#[derive(Debug, Clone)]
pub struct WeatherModel {
    seed: u64,
    params: WeatherParams,
    heading_rad: f64,
    // The mast is never quite vertical, so gravity leaks a little into x and y.
    tilt_rad: [f64; 2],
    gyro_bias: [f64; 3],
    // Each station's long-term mean sea-level pressure differs a little.
    pressure_offset_hpa: f64,
}

impl WeatherModel {
    /// A station with default parameters.
    pub fn new(seed: u64) -> Self {
        Self::with_params(seed, WeatherParams::default())
    }

    /// A station with the given parameters.
    pub fn with_params(seed: u64, params: WeatherParams) -> Self {
        let r = |i: u64| signed(hash(seed, &[S_STATION, i]));
        let heading_deg = params.mast_heading_deg.unwrap_or_else(|| unit(hash(seed, &[S_STATION, 0])) * 360.0);
        WeatherModel {
            seed,
            heading_rad: heading_deg.to_radians(),
            tilt_rad: [r(1) * 1.5f64.to_radians(), r(2) * 1.5f64.to_radians()],
            gyro_bias: [r(3) * 0.003, r(4) * 0.003, r(5) * 0.003],
            pressure_offset_hpa: r(6) * 4.0,
            params,
        }
    }

    /// The parameters it was made with.
    pub fn params(&self) -> &WeatherParams {
        &self.params
    }

    /// Hours since local midnight, in [0, 24).
    fn local_hour(&self, t_ms: u64) -> f64 {
        let local = t_ms as i128 + self.params.utc_offset_min as i128 * 60_000;
        local.rem_euclid(DAY_MS as i128) as f64 / HOUR_MS as f64
    }

    /// The daily cycle in [-1, 1]: lowest at 05:00, highest at 15:00. Two half cosines (10 h rising, 14 h
    /// falling) because air warms faster after sunrise than it cools at night; both have zero slope at the
    /// extremes, so the joins are smooth.
    fn diurnal(hour: f64) -> f64 {
        if (5.0..15.0).contains(&hour) {
            -(PI * (hour - 5.0) / 10.0).cos()
        } else {
            let since_max = (hour - 15.0).rem_euclid(24.0);
            (PI * since_max / 14.0).cos()
        }
    }

    /// The day's mean temperature: the climate mean plus a slow drift (warm spells, cold spells).
    fn daily_mean_c(&self, t_ms: u64) -> f64 {
        self.params.mean_temp_c
            + 1.5 * smooth_noise(self.seed, S_TEMP_DRIFT, t_ms, DAY_MS)
            + 0.5 * smooth_noise(self.seed, S_TEMP_DRIFT_FAST, t_ms, 6 * HOUR_MS)
    }

    /// Today's half-range: cloudy days have a smaller swing than clear ones.
    fn amplitude_c(&self, t_ms: u64) -> f64 {
        self.params.diurnal_amplitude_c * (1.0 + 0.2 * smooth_noise(self.seed, S_TEMP_AMPLITUDE, t_ms, DAY_MS))
    }

    /// Air temperature, °C, without sensor noise.
    pub fn air_temperature_c(&self, t_ms: u64) -> f64 {
        self.daily_mean_c(t_ms) + self.amplitude_c(t_ms) * Self::diurnal(self.local_hour(t_ms))
    }

    /// Relative humidity, %, without sensor noise. The moisture in the air (its dew point) changes slowly
    /// while the temperature swings, so humidity is highest in the early morning (often near 100 %, fog) and
    /// lowest in the afternoon.
    pub fn relative_humidity_pct(&self, t_ms: u64) -> f64 {
        let spread = 0.5 + 5.5 * (0.5 + 0.5 * smooth_noise(self.seed, S_DEW_SPREAD, t_ms, 18 * HOUR_MS));
        let dew_point = self.daily_mean_c(t_ms) - 0.8 * self.amplitude_c(t_ms) - spread;
        let t = self.air_temperature_c(t_ms);
        // Magnus approximation of saturation vapour pressure; its constant factor cancels in the ratio.
        let es = |c: f64| (17.625 * c / (243.04 + c)).exp();
        (100.0 * es(dew_point) / es(t)).clamp(5.0, 100.0)
    }

    /// A passing front: a dip of a few hPa over some hours. Fronts are placed one chance per two-day slot,
    /// and last at most 12 h either side of their centre, so only the neighbouring slots can reach `t_ms`.
    fn fronts_hpa(&self, t_ms: u64) -> f64 {
        const SLOT_MS: u64 = 2 * DAY_MS;
        let slot = t_ms / SLOT_MS;
        (slot.saturating_sub(1)..=slot + 1)
            .map(|s| {
                let h = |i: u64| unit(hash(self.seed, &[S_FRONT, s, i]));
                if h(0) < 0.5 {
                    return 0.0;
                }
                let centre = (s * SLOT_MS) as f64 + h(1) * SLOT_MS as f64;
                let half_width = (3.0 + 9.0 * h(2)) * HOUR_MS as f64;
                let depth = 2.0 + 4.0 * h(3);
                let x = (t_ms as f64 - centre) / half_width;
                if x.abs() >= 1.0 { 0.0 } else { -depth * (PI / 2.0 * x).cos().powi(2) }
            })
            .sum()
    }

    /// Air pressure at the station, hPa, without sensor noise.
    pub fn pressure_hpa(&self, t_ms: u64) -> f64 {
        let sea_level = 1013.25
            + self.pressure_offset_hpa
            + 8.0 * smooth_noise(self.seed, S_PRESSURE_SLOW, t_ms, 4 * DAY_MS)
            + 3.0 * smooth_noise(self.seed, S_PRESSURE_DAY, t_ms, DAY_MS)
            + 0.4 * smooth_noise(self.seed, S_PRESSURE_FAST, t_ms, 3 * HOUR_MS)
            + self.fronts_hpa(t_ms)
            // The atmospheric tide: two small peaks a day, near 10:00 and 22:00.
            + 0.6 * (TAU * (self.local_hour(t_ms) - 10.0) / 12.0).cos();
        // International barometric formula.
        sea_level * (1.0 - 2.25577e-5 * self.params.altitude_m).max(0.0).powf(5.25588)
    }

    /// Wind strength in [0, 1]: drives how much the mast shakes.
    fn wind(&self, t_ms: u64) -> f64 {
        let base = 0.5 + 0.5 * smooth_noise(self.seed, S_WIND, t_ms, 2 * HOUR_MS);
        let gust = 0.2 * smooth_noise(self.seed, S_GUST, t_ms, 20_000);
        (base * base + gust).clamp(0.0, 1.0)
    }

    /// The mast's sway, a few Hz, scaled by the wind; per axis.
    fn sway(&self, t_ms: u64, axis: u64) -> f64 {
        let freq_hz = [1.7, 2.3][axis as usize];
        let phase = unit(hash(self.seed, &[S_STATION, 10 + axis])) * TAU;
        // Whole cycles are dropped before scaling by 2π, which keeps the angle small enough for sin.
        let angle = TAU * (t_ms as f64 * freq_hz / 1000.0).fract() + phase;
        self.wind(t_ms) * angle.sin()
    }

    fn noise(&self, kind: SensorKind, axis: u64, t_ms: u64) -> f64 {
        gaussian(self.seed, &[S_NOISE, kind as u64, axis, t_ms])
    }

    /// What a sensor of `kind` on this station reads at `t_ms` (Unix ms), in the kind's unit and axis order,
    /// noise included. A camera's reading is its image size, which stills carry themselves, so
    /// [`SensorKind::CameraStill`] gives an empty vector.
    pub fn sample(&self, kind: SensorKind, t_ms: u64) -> Vec<f32> {
        let n = |axis| self.noise(kind, axis, t_ms);
        let values: Vec<f64> = match kind {
            SensorKind::Temperature => vec![self.air_temperature_c(t_ms) + 0.1 * n(0)],
            SensorKind::Humidity => vec![(self.relative_humidity_pct(t_ms) + 0.3 * n(0)).clamp(5.0, 100.0)],
            SensorKind::Barometer => vec![self.pressure_hpa(t_ms) + 0.05 * n(0)],
            SensorKind::Accelerometer => {
                const G: f64 = 9.806_65;
                let [tx, ty] = self.tilt_rad;
                let wind = self.wind(t_ms);
                vec![
                    G * tx.sin() + 0.15 * self.sway(t_ms, 0) + (0.03 + 0.05 * wind) * n(0),
                    G * ty.sin() + 0.15 * self.sway(t_ms, 1) + (0.03 + 0.05 * wind) * n(1),
                    G * tx.cos() * ty.cos() + (0.03 + 0.02 * wind) * n(2),
                ]
            }
            SensorKind::Gyroscope => {
                let b = self.gyro_bias;
                vec![
                    b[0] + 0.01 * self.sway(t_ms, 1) + 0.002 * n(0),
                    b[1] + 0.01 * self.sway(t_ms, 0) + 0.002 * n(1),
                    b[2] + 0.002 * n(2),
                ]
            }
            SensorKind::Magnetometer => {
                // Earth's field at mid latitude: 20 µT north, 45 µT down (z points up), seen from an x axis
                // turned `heading` clockwise from north.
                let h = self.heading_rad;
                vec![20.0 * h.cos() + 0.3 * n(0), -20.0 * h.sin() + 0.3 * n(1), -45.0 + 0.3 * n(2)]
            }
            SensorKind::CameraStill => Vec::new(),
        };
        values.into_iter().map(|v| v as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-03-20 00:00 UTC.
    const DAY0: u64 = 1_710_892_800_000;

    #[test]
    fn the_same_time_gives_the_same_values_and_seeds_differ() {
        let a = WeatherModel::new(1);
        let b = WeatherModel::new(2);
        for kind in SensorKind::ALL {
            let t = DAY0 + 12_345_678;
            assert_eq!(a.sample(kind, t), WeatherModel::new(1).sample(kind, t));
            assert_eq!(a.sample(kind, t).len(), if kind == SensorKind::CameraStill { 0 } else { kind.axes().len() });
            if kind != SensorKind::CameraStill {
                assert_ne!(a.sample(kind, t), b.sample(kind, t), "{kind:?}");
            }
        }
    }

    #[test]
    fn temperature_follows_the_day() {
        for seed in 0..20 {
            let m = WeatherModel::new(seed);
            let at = |h: u64| m.air_temperature_c(DAY0 + h * HOUR_MS);
            assert!(at(15) > at(5) + 4.0, "seed {seed}: 05:00 {} 15:00 {}", at(5), at(15));
            assert!(at(15) > at(23) && at(23) > at(29), "seed {seed}");
        }
        // The minimum follows local time.
        let east = WeatherModel::with_params(3, WeatherParams { utc_offset_min: 120, ..Default::default() });
        let west = WeatherModel::with_params(3, WeatherParams { utc_offset_min: -120, ..Default::default() });
        let argmin = |m: &WeatherModel| {
            (0..24 * 60).min_by(|&a, &b| {
                m.air_temperature_c(DAY0 + a * 60_000).total_cmp(&m.air_temperature_c(DAY0 + b * 60_000))
            })
        };
        let (e, w) = (argmin(&east).unwrap_or(0), argmin(&west).unwrap_or(0));
        // 03:00 and 07:00 UTC, give or take what the day-to-day drift shifts the minimum by.
        assert!((120..=240).contains(&e) && (360..=480).contains(&w), "{e} {w}");
    }

    #[test]
    fn slow_values_are_continuous() {
        let m = WeatherModel::new(9);
        let mut prev = (m.air_temperature_c(DAY0), m.relative_humidity_pct(DAY0), m.pressure_hpa(DAY0));
        // A week in 10 s steps.
        for i in 1..7 * 8640 {
            let t = DAY0 + i * 10_000;
            let now = (m.air_temperature_c(t), m.relative_humidity_pct(t), m.pressure_hpa(t));
            assert!((now.0 - prev.0).abs() < 0.02, "temperature jumps at {t}: {prev:?} {now:?}");
            assert!((now.1 - prev.1).abs() < 0.2, "humidity jumps at {t}: {prev:?} {now:?}");
            assert!((now.2 - prev.2).abs() < 0.02, "pressure jumps at {t}: {prev:?} {now:?}");
            prev = now;
        }
    }

    #[test]
    fn values_are_plausible() {
        let m = WeatherModel::with_params(4, WeatherParams { mast_heading_deg: Some(90.0), ..Default::default() });
        let mut humid: Vec<f64> = Vec::new();
        let mut temps: Vec<f64> = Vec::new();
        for i in 0..30 * 24 {
            let t = DAY0 + i * HOUR_MS;
            let p = m.pressure_hpa(t);
            assert!((985.0..1040.0).contains(&p), "{p}");
            humid.push(m.relative_humidity_pct(t));
            temps.push(m.air_temperature_c(t));
        }
        assert!(humid.iter().all(|h| (5.0..=100.0).contains(h)));
        // Humidity falls as temperature rises.
        let n = temps.len() as f64;
        let (mt, mh) = (temps.iter().sum::<f64>() / n, humid.iter().sum::<f64>() / n);
        let cov: f64 = temps.iter().zip(&humid).map(|(t, h)| (t - mt) * (h - mh)).sum();
        assert!(cov < 0.0);

        let acc = m.sample(SensorKind::Accelerometer, DAY0);
        let g = acc.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((g - 9.81).abs() < 0.5 && acc[2] > 9.5, "{acc:?}");
        let gyro = m.sample(SensorKind::Gyroscope, DAY0);
        assert!(gyro.iter().all(|w| w.abs() < 0.05), "{gyro:?}");
        // Facing east, north lies to the -y side.
        let mag = m.sample(SensorKind::Magnetometer, DAY0);
        assert!(mag[0].abs() < 2.0 && (mag[1] + 20.0).abs() < 2.0 && (mag[2] + 45.0).abs() < 2.0, "{mag:?}");

        let high = WeatherModel::with_params(4, WeatherParams { altitude_m: 800.0, ..Default::default() });
        let drop = m.pressure_hpa(DAY0) - high.pressure_hpa(DAY0);
        assert!((85.0..100.0).contains(&drop), "{drop}");
    }

    #[test]
    fn noise_is_small_and_centred() {
        let m = WeatherModel::new(5);
        let n = 2000;
        let t0 = DAY0 + 15 * HOUR_MS;
        let errs: Vec<f64> =
            (0..n).map(|i| m.sample(SensorKind::Temperature, t0 + i)[0] as f64 - m.air_temperature_c(t0 + i)).collect();
        let mean = errs.iter().sum::<f64>() / n as f64;
        let sd = (errs.iter().map(|e| e * e).sum::<f64>() / n as f64).sqrt();
        assert!(mean.abs() < 0.02 && (0.07..0.13).contains(&sd), "{mean} {sd}");
    }
}
