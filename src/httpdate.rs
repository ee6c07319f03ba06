//! Calendar dates from `SystemTime`: stderr timestamps, the access log's
//! `[24/Nov/2026:10:00:00 +0000]`, and HTTP dates for `Last-Modified` and
//! `If-Modified-Since` [S][L]. Some arithmetic instead of a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 → (year, month 1–12, day 1–31). Howard Hinnant's
/// `civil_from_days`, valid for every date after the epoch.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "day and month are computed in 1..=31 and 1..=12"
)]
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365
    let mp = (5 * doy + 2) / 153; // March-based month, 0..=11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day, hour, minute, second) in UTC.
pub fn utc_parts(t: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = unix_secs(t);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = u32::try_from(secs.rem_euclid(86_400)).unwrap_or(0); // below 86 400
    (y, mo, d, s / 3600, s / 60 % 60, s % 60)
}

/// Seconds since the epoch (0 before it).
fn unix_secs(t: SystemTime) -> i64 {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// `2026-11-24T10:00:00Z`, for stderr lines.
pub fn iso8601(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]; // 1970-01-01 was a Thursday

/// `24/Nov/2026:10:00:00 +0000`, the access log's time (always UTC).
pub fn common_log(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(t);
    format!(
        "{d:02}/{}/{y:04}:{h:02}:{mi:02}:{s:02} +0000",
        MONTHS[mo as usize - 1]
    )
}

/// `Tue, 24 Nov 2026 10:00:00 GMT`, RFC 9110's IMF-fixdate.
pub fn http_date(t: SystemTime) -> String {
    let day = unix_secs(t).div_euclid(86_400);
    let weekday = WEEKDAYS[usize::try_from(day.rem_euclid(7)).unwrap_or(0)];
    let (y, mo, d, h, mi, s) = utc_parts(t);
    format!(
        "{weekday}, {d:02} {} {y:04} {h:02}:{mi:02}:{s:02} GMT",
        MONTHS[mo as usize - 1]
    )
}

/// Parses an IMF-fixdate (the only form RFC 9110 lets senders generate): its day,
/// hour, minute and second have two digits and its year four, so no date it accepts
/// overflows the arithmetic. `None` for anything else, which a conditional request
/// then ignores.
pub fn parse_http_date(text: &str) -> Option<SystemTime> {
    let rest = text.trim().split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let digits = |s: &str, n: usize| -> Option<u32> {
        (s.len() == n && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    let day = digits(parts.next()?, 2)?;
    let month = parts.next()?;
    let month = u32::try_from(MONTHS.iter().position(|m| *m == month)?).ok()? + 1;
    let year = i64::from(digits(parts.next()?, 4)?);
    let mut clock = parts.next()?.split(':').map(|p| digits(p, 2));
    let (h, mi, s) = (clock.next()??, clock.next()??, clock.next()??);
    if clock.next().is_some()
        || parts.next() != Some("GMT")
        || parts.next().is_some()
        || h > 23
        || mi > 59
        || s > 60
        || !(1..=31).contains(&day)
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + s);
    Some(UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).ok()?))
}

/// The inverse of `civil_from_days` (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn epoch_and_known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_416), (2025, 11, 24));
    }

    #[test]
    fn http_dates_round_trip() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_478_400 + 36_000);
        assert_eq!(http_date(t), "Tue, 24 Nov 2026 10:00:00 GMT");
        assert_eq!(common_log(t), "24/Nov/2026:10:00:00 +0000");
        assert_eq!(parse_http_date("Tue, 24 Nov 2026 10:00:00 GMT"), Some(t));
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        for days in [0, 59, 60, 11_016, 20_416, 40_000] {
            assert_eq!(days_from_civil_of(days), days);
        }
        assert_eq!(parse_http_date("Tuesday, 24-Nov-26 10:00:00 GMT"), None);
        assert_eq!(parse_http_date("Tue, 24 Nov 2026 10:00:00 UTC"), None);
        assert_eq!(parse_http_date("garbage"), None);
        for absurd in [
            "Tue, 24 Nov 99999999999999 10:00:00 GMT",
            "Tue, 24 Nov -9223372036854775808 10:00:00 GMT",
            "Tue, 24 Nov 02026 10:00:00 GMT",
            "Tue, 4 Nov 2026 10:00:00 GMT",
            "Tue, 24 Nov 2026 10:00:00:00 GMT",
            "Tue, 24 Nov 2026 +1:00:00 GMT",
        ] {
            assert_eq!(parse_http_date(absurd), None, "{absurd}");
        }
        let last = parse_http_date("Fri, 31 Dec 9999 23:59:60 GMT").unwrap();
        assert!(last > t);
    }

    fn days_from_civil_of(days: i64) -> i64 {
        let (y, m, d) = civil_from_days(days);
        days_from_civil(y, m, d)
    }

    #[test]
    fn iso8601_formats_seconds() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_478_400 + 3_661);
        assert_eq!(iso8601(t), "2026-11-24T01:01:01Z");
    }
}
