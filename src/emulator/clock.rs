//! Wall-clock helpers: unix seconds for JWT claims and ISO-8601 strings for task documents
//! (the SDK parses task times with dateutil, so the real server's `+00:00` form is used).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`, like the ClearML server.
pub fn now_iso() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format_iso(now.as_secs() as i64, now.subsec_micros())
}

/// Formats unix seconds plus microseconds as an ISO-8601 UTC timestamp.
pub fn format_iso(secs: i64, micros: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}+00:00",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day), computed per
/// 400-year era so no calendar tables are needed.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468; // days since 0000-03-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // March = 0
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_iso(0, 0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(format_iso(951_782_400, 5), "2000-02-29T00:00:00.000005+00:00");
        assert_eq!(format_iso(1_700_000_000, 123_456), "2023-11-14T22:13:20.123456+00:00");
    }
}
