//! Timestamps as the route API shows them: ISO 8601 UTC with milliseconds and `Z`
//! (`2026-11-23T10:51:16.658Z`), and the looser forms accepted by `inactive_since`.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDate, NaiveDateTime};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Appends `ms` as `YYYY-MM-DDTHH:MM:SS.mmmZ` to `out`. Written by hand because listing
/// 100,000 routes formats 100,000 timestamps.
pub fn write_iso_ms(out: &mut String, ms: i64) {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let mut buf = [0u8; 24];
    let year = year.clamp(0, 9999);
    digits(&mut buf[0..4], year);
    buf[4] = b'-';
    digits(&mut buf[5..7], month);
    buf[7] = b'-';
    digits(&mut buf[8..10], day);
    buf[10] = b'T';
    digits(&mut buf[11..13], h);
    buf[13] = b':';
    digits(&mut buf[14..16], m);
    buf[16] = b':';
    digits(&mut buf[17..19], s);
    buf[19] = b'.';
    digits(&mut buf[20..23], millis);
    buf[23] = b'Z';
    // Every byte written above is ASCII.
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
}

fn digits(buf: &mut [u8], mut v: i64) {
    for b in buf.iter_mut().rev() {
        *b = b'0' + u8::try_from(v % 10).unwrap_or(0);
        v /= 10;
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's well-known civil-from-days algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses an `inactive_since` value: RFC 3339 / ISO 8601 date-times with or without offset
/// (no offset means UTC), fractional seconds, a date alone (UTC midnight), or milliseconds
/// since the epoch.
pub fn parse_datestamp(value: &str) -> Option<i64> {
    let v = value.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(v) {
        return Some(dt.timestamp_millis());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
    ] {
        if let Ok(dt) = DateTime::parse_from_str(v, fmt) {
            return Some(dt.timestamp_millis());
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(v, fmt) {
            return Some(dt.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|dt| dt.and_utc().timestamp_millis());
    }
    if let Ok(dt) = DateTime::parse_from_rfc2822(v) {
        return Some(dt.timestamp_millis());
    }
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse().ok();
    }
    None
}

/// `ms` formatted with chrono, for tests and logs.
pub fn iso_ms(ms: i64) -> String {
    let mut s = String::with_capacity(24);
    write_iso_ms(&mut s, ms);
    s
}

#[cfg(test)]
fn chrono_iso_ms(ms: i64) -> String {
    DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(iso_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_ms(1_795_344_676_658), "2026-11-22T10:51:16.658Z");
    }

    #[test]
    fn datestamps() {
        assert_eq!(parse_datestamp("1970-01-01"), Some(0));
        assert_eq!(parse_datestamp("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_datestamp("1970-01-01T00:00:01.5+00:00"), Some(1500));
        assert_eq!(parse_datestamp("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_datestamp("1970-01-01T00:00:02"), Some(2000));
        assert_eq!(
            parse_datestamp("2026-11-23T10:51:16.658Z"),
            Some(1_795_344_676_658 + 86_400_000)
        );
        assert_eq!(parse_datestamp("not a date"), None);
        assert_eq!(parse_datestamp(""), None);
    }

    proptest! {
        #[test]
        fn matches_chrono(ms in 0i64..253_402_300_799_999) {
            prop_assert_eq!(iso_ms(ms), chrono_iso_ms(ms));
            prop_assert_eq!(parse_datestamp(&iso_ms(ms)), Some(ms));
        }
    }
}
