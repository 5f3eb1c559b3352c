//! Wall-clock helpers: unix seconds for JWT claims and ISO-8601 strings for task documents
//! (the SDK parses task times with dateutil, so the real server's `+00:00` form is used).

use std::time::{SystemTime, UNIX_EPOCH};

use gateway_core::time::civil_from_days;

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
