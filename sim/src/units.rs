//! Quantities in scenario files: durations, sizes and data rates, written with units (`"12h"`, `"500kB"`,
//! `"10Mbit/s"`) or as plain numbers (seconds, bytes, bytes per second).
//!
//! Parsing happens inside `Deserialize`, so a bad quantity is reported by the TOML reader with its line.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// Virtual time and durations, in microseconds.
pub type Micros = u64;

/// One second in [`Micros`].
pub const SECOND: Micros = 1_000_000;

/// Parses a duration: a number with an optional unit (`us`, `ms`, `s`, `m`/`min`, `h`, `d`), or several
/// joined (`1h30m`, `3m20s`); no unit means seconds.
pub fn parse_duration(s: &str) -> Result<Micros, String> {
    let t = s.trim();
    let mut rest = t;
    let mut total = 0u64;
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let u_end = rest[n_end..].find(|c: char| c.is_ascii_digit()).map_or(rest.len(), |i| n_end + i);
        let (num, unit) = (&rest[..n_end], rest[n_end..u_end].trim());
        let num: f64 = num.parse().map_err(|_| format!("expected a duration such as 90s, 1h30m or 2d, got {s:?}"))?;
        let scale = match unit {
            "us" | "µs" => 1.0,
            "ms" => 1e3,
            "" | "s" | "sec" => 1e6,
            "m" | "min" => 60e6,
            "h" => 3600e6,
            "d" => 86_400e6,
            _ => return Err(format!("unknown time unit {unit:?} in {s:?} (use us, ms, s, min, h or d)")),
        };
        total = total.saturating_add(to_int(num * scale, s)?);
        rest = &rest[u_end..];
    }
    if t.is_empty() {
        return Err("empty duration".into());
    }
    Ok(total)
}

/// Parses a size in bytes: `k`/`kB` = 1000, `M`/`MB` = 10^6, `G`/`GB` = 10^9, `KiB`/`MiB`/`GiB` binary, as the
/// ONE reads `500k` and `1M`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, unit) = split_number(s)?;
    let scale = match unit {
        "" | "B" => 1.0,
        "k" | "kB" | "KB" => 1e3,
        "M" | "MB" => 1e6,
        "G" | "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("unknown size unit {unit:?} in {s:?} (use B, kB, MB, GB, KiB, MiB or GiB)")),
    };
    to_int(num * scale, s)
}

/// Parses a data rate in bytes per second: `250kB/s`, `250k` (bytes, as the ONE's `transmitSpeed`),
/// `10Mbit/s` or `10Mbps` (bits).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (body, bits) = if let Some(b) = t.strip_suffix("bit/s").or_else(|| t.strip_suffix("bps")) {
        (b, true)
    } else {
        (t.strip_suffix("/s").unwrap_or(t), false)
    };
    let (num, unit) = split_number(body)?;
    let scale = match unit {
        "" | "B" => 1.0,
        "k" | "kB" | "K" => 1e3,
        "M" | "MB" => 1e6,
        "G" | "GB" => 1e9,
        _ => return Err(format!("unknown rate unit in {s:?} (use e.g. 250kB/s, 2MB/s or 10Mbit/s)")),
    };
    let v = num * scale / if bits { 8.0 } else { 1.0 };
    let r = to_int(v, s)?;
    if r == 0 {
        return Err(format!("rate {s:?} is zero"));
    }
    Ok(r)
}

fn split_number(s: &str) -> Result<(f64, &str), String> {
    let t = s.trim();
    let end = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (n, unit) = t.split_at(end);
    let num: f64 = n.parse().map_err(|_| format!("expected a number with an optional unit, got {s:?}"))?;
    Ok((num, unit.trim()))
}

fn to_int(v: f64, s: &str) -> Result<u64, String> {
    if !v.is_finite() || !(0.0..=1.8e19).contains(&v) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(v.round() as u64)
}

/// Formats microseconds for people: `12h`, `3m20s`, `1.5s`, `250ms`.
pub fn fmt_duration(us: Micros) -> String {
    if us >= 60 * SECOND {
        let s = us / SECOND;
        let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
        match (h, m, sec) {
            (0, m, 0) => format!("{m}m"),
            (0, m, s) => format!("{m}m{s}s"),
            (h, 0, 0) => format!("{h}h"),
            (h, m, 0) => format!("{h}h{m}m"),
            (h, m, s) => format!("{h}h{m}m{s}s"),
        }
    } else if us >= SECOND {
        format!("{}s", us as f64 / 1e6)
    } else {
        format!("{}ms", us as f64 / 1e3)
    }
}

macro_rules! quantity {
    ($name:ident, $parse:ident, $what:literal, $num_scale:expr) => {
        #[doc = concat!("A ", $what, " read from a string with a unit or a plain number.")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
        pub struct $name(pub u64);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        write!(f, "a {} (a number, or a string with a unit)", $what)
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$name, E> {
                        $parse(s).map($name).map_err(E::custom)
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$name, E> {
                        if v < 0 {
                            return Err(E::custom(concat!("a negative ", $what)));
                        }
                        Ok($name((v as f64 * $num_scale) as u64))
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$name, E> {
                        Ok($name((v as f64 * $num_scale) as u64))
                    }
                    fn visit_f64<E: de::Error>(self, v: f64) -> Result<$name, E> {
                        if !(v >= 0.0 && v.is_finite()) {
                            return Err(E::custom(concat!("a negative or infinite ", $what)));
                        }
                        Ok($name((v * $num_scale).round() as u64))
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

quantity!(Dur, parse_duration, "duration", 1e6);
quantity!(Size, parse_size, "size", 1.0);
quantity!(Rate, parse_rate, "data rate", 1.0);

/// A range `[low, high]` drawn from uniformly, or one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range<T>(pub T, pub T);

impl<'de, T: Deserialize<'de> + Copy + PartialOrd> Deserialize<'de> for Range<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either<T> {
            Pair([T; 2]),
            One(T),
        }
        match Either::<T>::deserialize(d)? {
            Either::Pair([a, b]) if b < a => Err(de::Error::custom("range [low, high] has low > high")),
            Either::Pair([a, b]) => Ok(Range(a, b)),
            Either::One(a) => Ok(Range(a, a)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse_as_the_one_writes_them() {
        assert_eq!(parse_duration("12h"), Ok(12 * 3600 * SECOND));
        assert_eq!(parse_duration("1.5"), Ok(1_500_000));
        assert_eq!(parse_duration("250ms"), Ok(250_000));
        assert_eq!(parse_duration("1h10m"), Ok(70 * 60 * SECOND));
        assert_eq!(parse_duration("3m20s"), Ok(200 * SECOND));
        assert_eq!(parse_size("500k"), Ok(500_000));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("5MiB"), Ok(5 << 20));
        assert_eq!(parse_rate("250kB/s"), Ok(250_000));
        assert_eq!(parse_rate("250k"), Ok(250_000));
        assert_eq!(parse_rate("10Mbit/s"), Ok(1_250_000));
        assert_eq!(parse_rate("2Mbps"), Ok(250_000));
        assert!(parse_size("5XB").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_rate("0").is_err());
    }

    #[test]
    fn durations_print_compactly() {
        assert_eq!(fmt_duration(12 * 3600 * SECOND), "12h");
        assert_eq!(fmt_duration(200 * SECOND), "3m20s");
        assert_eq!(fmt_duration(250_000), "250ms");
    }
}
