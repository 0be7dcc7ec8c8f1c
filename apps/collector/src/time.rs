//! UTC timestamps for the archive's rows, without a date library.

use dtn_core::bpv7::civil_from_days;

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for Unix milliseconds.
#[cfg(test)]
pub(crate) fn iso8601(unix_ms: u64) -> String {
    let mut s = String::with_capacity(24);
    push_iso8601(&mut s, unix_ms);
    s
}

/// Appends `YYYY-MM-DDTHH:MM:SS.mmmZ` for Unix milliseconds to `out`. A van's archive writes one per
/// reading, millions of them, so digits are pushed directly rather than through `format!`.
pub(crate) fn push_iso8601(out: &mut String, unix_ms: u64) {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    push_digits(out, y.max(0) as u64, 4);
    out.push('-');
    push_digits(out, u64::from(m), 2);
    out.push('-');
    push_digits(out, u64::from(d), 2);
    out.push('T');
    push_digits(out, rem / 3600, 2);
    out.push(':');
    push_digits(out, (rem % 3600) / 60, 2);
    out.push(':');
    push_digits(out, rem % 60, 2);
    out.push('.');
    push_digits(out, unix_ms % 1000, 3);
    out.push('Z');
}

/// Appends `n` with at least `width` digits, zero-padded.
pub(crate) fn push_digits(out: &mut String, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    i = i.min(buf.len().saturating_sub(width));
    out.extend(buf[i..].iter().map(|&b| b as char));
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_instants() {
        assert_eq!(super::iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::iso8601(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(super::iso8601(1_795_000_000_000), "2026-11-18T11:06:40.000Z");
        assert_eq!(super::iso8601(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        let mut s = String::new();
        super::push_digits(&mut s, 1_795_000_000_000, 1);
        super::push_digits(&mut s, 7, 3);
        assert_eq!(s, "1795000000000007");
    }
}
