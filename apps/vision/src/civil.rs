//! UTC calendar dates and clock times from Unix milliseconds.
//!
//! Archive paths and the index page need dates; the day arithmetic is dtn-core's `civil_from_days`, so no
//! calendar crate. No time zones: paths stay unambiguous across daylight-saving changes, and the page says
//! UTC.

use dtn_core::bpv7::civil_from_days;

/// A UTC instant broken into calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    /// Year (proleptic Gregorian).
    pub year: i64,
    /// Month, 1..=12.
    pub month: u32,
    /// Day of month, 1..=31.
    pub day: u32,
    /// Hour, 0..=23.
    pub hour: u32,
    /// Minute, 0..=59.
    pub minute: u32,
    /// Second, 0..=59 (Unix time has no leap seconds).
    pub second: u32,
    /// Millisecond, 0..=999.
    pub millis: u32,
}

impl UtcTime {
    /// The instant `ms` milliseconds after 1970-01-01T00:00:00Z.
    pub fn from_unix_ms(ms: u64) -> UtcTime {
        let days = (ms / 86_400_000) as i64;
        let in_day = ms % 86_400_000;
        let (year, month, day) = civil_from_days(days);
        UtcTime {
            year,
            month,
            day,
            hour: (in_day / 3_600_000) as u32,
            minute: (in_day / 60_000 % 60) as u32,
            second: (in_day / 1000 % 60) as u32,
            millis: (in_day % 1000) as u32,
        }
    }

    /// `YYYY-MM-DD`.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `HHMMSS.mmm`, which sorts in time order as a file name.
    pub fn compact_time(&self) -> String {
        format!("{:02}{:02}{:02}.{:03}", self.hour, self.minute, self.second, self.millis)
    }

    /// ISO 8601, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub fn iso8601(&self) -> String {
        format!("{}T{:02}:{:02}:{:02}.{:03}Z", self.date(), self.hour, self.minute, self.second, self.millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(UtcTime::from_unix_ms(0).iso8601(), "1970-01-01T00:00:00.000Z");
        assert_eq!(UtcTime::from_unix_ms(951_782_400_000).date(), "2000-02-29");
        assert_eq!(UtcTime::from_unix_ms(1_709_251_199_999).iso8601(), "2024-02-29T23:59:59.999Z");
        let t = UtcTime::from_unix_ms(1_719_835_512_345);
        assert_eq!(t.iso8601(), "2024-07-01T12:05:12.345Z");
        assert_eq!(t.compact_time(), "120512.345");
        assert_eq!(UtcTime::from_unix_ms(4_102_444_800_000).date(), "2100-01-01");
    }

    #[test]
    fn days_advance_one_at_a_time() {
        let mut prev = civil_from_days(0);
        for d in 1..200_000 {
            let cur = civil_from_days(d);
            let next_day = (prev.0, prev.1, prev.2 + 1);
            let next_month = (prev.0, prev.1 + 1, 1);
            let next_year = (prev.0 + 1, 1, 1);
            assert!(cur == next_day || cur == next_month || cur == next_year, "{prev:?} -> {cur:?}");
            prev = cur;
        }
    }

    #[test]
    fn the_largest_time_does_not_overflow() {
        assert!(UtcTime::from_unix_ms(u64::MAX).year > 500_000_000);
    }
}
