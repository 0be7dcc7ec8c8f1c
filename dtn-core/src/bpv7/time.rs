//! DTN time (milliseconds since 2000-01-01T00:00:00Z, RFC 9171 §4.2.6) and creation timestamps.

use std::fmt;

/// Milliseconds between the Unix epoch and the DTN epoch (2000-01-01T00:00:00Z).
pub const DTN_EPOCH_UNIX_MS: u64 = 946_684_800_000;

/// A DTN time: milliseconds since 2000-01-01T00:00:00Z. Zero means "no clock" (RFC 9171 §4.2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct DtnTime(pub u64);

impl DtnTime {
    /// From milliseconds since the Unix epoch; times before 2000 saturate to 0.
    pub fn from_unix_ms(ms: u64) -> Self {
        DtnTime(ms.saturating_sub(DTN_EPOCH_UNIX_MS))
    }

    /// To milliseconds since the Unix epoch.
    pub fn to_unix_ms(self) -> u64 {
        self.0.saturating_add(DTN_EPOCH_UNIX_MS)
    }
}

impl fmt::Display for DtnTime {
    /// ISO 8601 UTC with milliseconds, or "0 (no clock)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0 (no clock)");
        }
        let unix_ms = self.to_unix_ms();
        let secs = unix_ms / 1000;
        let (days, sod) = (secs / 86_400, secs % 86_400);
        let (y, m, d) = civil_from_days(days as i64);
        write!(f, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", sod / 3600, sod / 60 % 60, sod % 60, unix_ms % 1000)
    }
}

/// (year, month, day) of the day `z` days after 1970-01-01: Howard Hinnant's days-to-civil conversion
/// (proleptic Gregorian). Public so that applications naming files and rows by date need no calendar crate.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Creation timestamp: DTN time plus a sequence number that makes it unique per source (RFC 9171 §4.2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CreationTimestamp {
    /// Creation time, 0 when the source has no clock.
    pub time: DtnTime,
    /// Sequence number.
    pub sequence: u64,
}

impl CreationTimestamp {
    /// Builds a timestamp.
    pub fn new(time_ms: u64, sequence: u64) -> Self {
        CreationTimestamp { time: DtnTime(time_ms), sequence }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(DtnTime(1).to_string(), "2000-01-01T00:00:00.001Z");
        // 2024-02-29T12:34:56.789Z = Unix 1709210096789 ms.
        assert_eq!(DtnTime::from_unix_ms(1_709_210_096_789).to_string(), "2024-02-29T12:34:56.789Z");
        assert_eq!(DtnTime(0).to_string(), "0 (no clock)");
    }
}
