//! UTC timestamps for the status API (RFC 3339, second precision) without a date library.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("{}Z", iso_seconds(secs as i64))
}

/// Unix seconds of an ISO-8601 UTC time as ClearML writes it (`2026-11-29T10:00:00.123456+00:00`,
/// also with `Z` or no zone; fractions are dropped). `None` if it is not such a time.
pub fn parse_utc_seconds(text: &str) -> Option<i64> {
    parse_utc_micros(text).map(|micros| micros.div_euclid(1_000_000))
}

/// Unix microseconds of such a time (fractions beyond microseconds are dropped).
pub fn parse_utc_micros(text: &str) -> Option<i64> {
    let field = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (field(0..4)?, field(5..7)?, field(8..10)?);
    let (hour, minute, second) = (field(11..13)?, field(14..16)?, field(17..19)?);
    let separators_ok = text.as_bytes().get(4) == Some(&b'-')
        && text.as_bytes().get(10).is_some_and(|c| *c == b'T' || *c == b' ');
    let zone = text.get(19..).unwrap_or_default();
    let zone = zone.split_once(['+', 'Z']).map_or(zone, |(fraction, _)| fraction);
    if !separators_ok
        || !(zone.is_empty() || zone.starts_with('.'))
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
    {
        return None;
    }
    let digits: String = zone.trim_start_matches('.').chars().take(6).collect();
    let micros = if digits.is_empty() { 0 } else { format!("{digits:0<6}").parse::<i64>().ok()? };
    let seconds =
        days_from_civil(year, month as u32, day as u32) * 86_400 + hour * 3600 + minute * 60 + second;
    Some(seconds * 1_000_000 + micros)
}

/// Unix microseconds as `YYYY-MM-DDTHH:MM:SS.ffffff` (UTC, no zone).
pub fn iso_micros(micros: i64) -> String {
    format!("{}.{:06}", iso_seconds(micros.div_euclid(1_000_000)), micros.rem_euclid(1_000_000))
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SS` (UTC, no zone: how ClearML date filters take it).
pub fn iso_seconds(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// (year, month, day) to days since 1970-01-01: the inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar, computed per
/// 400-year era so no calendar tables are needed.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_506_547)), "2026-11-24T07:49:07Z");
    }

    #[test]
    fn parses_what_clearml_writes_and_round_trips() {
        assert_eq!(parse_utc_seconds("1970-01-01T00:00:00"), Some(0));
        assert_eq!(parse_utc_seconds("2000-02-29T00:00:00.000005+00:00"), Some(951_782_400));
        assert_eq!(parse_utc_seconds("2026-11-24T07:49:07Z"), Some(1_795_506_547));
        assert_eq!(parse_utc_seconds("2026-13-01T00:00:00"), None);
        assert_eq!(parse_utc_seconds("yesterday"), None);
        assert_eq!(parse_utc_micros("2000-02-29T00:00:00.000005+00:00"), Some(951_782_400_000_005));
        assert_eq!(iso_micros(951_782_400_000_005), "2000-02-29T00:00:00.000005");
        for secs in [0, 951_782_400, 1_795_506_547, 4_102_444_800] {
            assert_eq!(parse_utc_seconds(&iso_seconds(secs)), Some(secs));
        }
    }
}
