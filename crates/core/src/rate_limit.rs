//! Rate limits of routes: requests per second, a burst, and what tells clients apart (their
//! address, or a request header such as an API key). They are data: the proxy reads them from
//! routes.json (`clearml_ratelimit.lua` enforces them), so changing one never reloads nginx.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{display_untrusted, invalid, Invalid};

/// Bounds of a limit: a lower rate would lock a client out for hours after one request, a higher
/// one or a larger burst is no limit at all.
pub const MIN_RATE: f64 = 0.001;
pub const MAX_RATE: f64 = 1_000_000.0;
pub const MAX_BURST: u32 = 1_000_000;
const MAX_HEADER_NAME: usize = 64;

/// What tells the clients of a route apart: each has its own allowance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateKey {
    /// The client's address (the real one, when it comes through a trusted proxy).
    Client,
    /// The value of this request header (e.g. an API key); a request without it is counted by
    /// its client address.
    Header(String),
}

/// A validated limit. Built by [`RateLimit::from_raw`] (or serde, which calls it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawRateLimit", into = "RawRateLimit")]
pub struct RateLimit {
    pub requests_per_second: f64,
    /// Requests a client may send at once before the rate applies (at least 1).
    pub burst: u32,
    pub key: RateKey,
}

// Validated rates are finite numbers, so equality is total.
impl Eq for RateLimit {}

/// A limit as written in a static routes file, the admin API and routes.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub requests_per_second: f64,
    /// Default: one second's worth of requests (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// `client` (default) or `header:<Name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// An HTTP header name (RFC 9110 token) nginx passes on: no '_' (nginx drops such headers).
fn header_name(raw: &str) -> Result<String, Invalid> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^`|~".contains(c);
    if raw.is_empty() || raw.len() > MAX_HEADER_NAME {
        return Err(invalid(format!("key: the header name must be 1-{MAX_HEADER_NAME} characters")));
    }
    if raw.contains('_') {
        return Err(invalid("key: nginx ignores header names with '_'; use '-' (e.g. header:X-Api-Key)"));
    }
    if let Some(bad) = raw.chars().find(|c| !token(*c)) {
        return Err(invalid(format!(
            "key: the header name contains {:?}; allowed: letters, digits and !#$%&'*+-.^`|~",
            display_untrusted(&bad.to_string())
        )));
    }
    Ok(raw.to_owned())
}

impl RateKey {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw.split_once(':') {
            None if raw == "client" => Ok(RateKey::Client),
            Some(("header", name)) => Ok(RateKey::Header(header_name(name)?)),
            _ => Err(invalid(format!(
                "key: {:?} is neither client nor header:<Name> (e.g. header:X-Api-Key)",
                display_untrusted(raw)
            ))),
        }
    }
}

impl fmt::Display for RateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateKey::Client => f.write_str("client"),
            RateKey::Header(name) => write!(f, "header:{name}"),
        }
    }
}

impl RateLimit {
    /// Validates a limit; errors are `<field>: <rule>`.
    pub fn from_raw(raw: &RawRateLimit) -> Result<Self, Invalid> {
        let rate = raw.requests_per_second;
        if !(MIN_RATE..=MAX_RATE).contains(&rate) {
            return Err(invalid(format!(
                "requests_per_second: {rate} is outside {MIN_RATE}-{MAX_RATE} (a positive number)"
            )));
        }
        let burst = raw.burst.unwrap_or_else(|| (rate.ceil() as u32).max(1));
        if !(1..=MAX_BURST).contains(&burst) {
            return Err(invalid(format!("burst: {burst} is outside 1-{MAX_BURST}")));
        }
        let key = RateKey::parse(raw.key.as_deref().unwrap_or("client"))?;
        Ok(Self { requests_per_second: rate, burst, key })
    }

    /// The setting form, `rps=20,burst=40,key=client` (burst and key optional, as in a file).
    pub fn parse_setting(raw: &str) -> Result<Self, Invalid> {
        let mut limit = RawRateLimit::default();
        let mut rate = None;
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, value) = item
                .split_once('=')
                .ok_or_else(|| invalid(format!("{:?} is not name=value", display_untrusted(item))))?;
            let number = || invalid(format!("{name}: {:?} is not a number", display_untrusted(value)));
            match name.trim() {
                "rps" => rate = Some(value.trim().parse::<f64>().map_err(|_| number())?),
                "burst" => limit.burst = Some(value.trim().parse::<u32>().map_err(|_| number())?),
                "key" => limit.key = Some(value.trim().to_owned()),
                other => {
                    return Err(invalid(format!("{:?} is not rps, burst or key", display_untrusted(other))))
                }
            }
        }
        limit.requests_per_second = rate.ok_or_else(|| invalid("rps: missing (requests per second)"))?;
        Self::from_raw(&limit)
    }
}

impl TryFrom<RawRateLimit> for RateLimit {
    type Error = Invalid;
    fn try_from(raw: RawRateLimit) -> Result<Self, Invalid> {
        Self::from_raw(&raw)
    }
}

impl From<RateLimit> for RawRateLimit {
    fn from(limit: RateLimit) -> Self {
        Self {
            requests_per_second: limit.requests_per_second,
            burst: Some(limit.burst),
            key: Some(limit.key.to_string()),
        }
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s, burst {}, per {}", self.requests_per_second, self.burst, self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(rps: f64, burst: Option<u32>, key: Option<&str>) -> RawRateLimit {
        RawRateLimit { requests_per_second: rps, burst, key: key.map(str::to_owned) }
    }

    #[test]
    fn limits_validate_with_defaults() {
        let limit = RateLimit::from_raw(&raw(2.5, None, None)).unwrap();
        assert_eq!((limit.burst, &limit.key), (3, &RateKey::Client));
        let limit = RateLimit::from_raw(&raw(10.0, Some(20), Some("header:X-Api-Key"))).unwrap();
        assert_eq!(limit.key, RateKey::Header("X-Api-Key".into()));
        for (bad, field) in [
            (raw(0.0, None, None), "requests_per_second"),
            (raw(-1.0, None, None), "requests_per_second"),
            (raw(f64::NAN, None, None), "requests_per_second"),
            (raw(2e6, None, None), "requests_per_second"),
            (raw(1.0, Some(0), None), "burst"),
            (raw(1.0, Some(2_000_000), None), "burst"),
            (raw(1.0, None, Some("ip")), "key"),
            (raw(1.0, None, Some("header:")), "key"),
            (raw(1.0, None, Some("header:X_Key")), "key"),
            (raw(1.0, None, Some("header:X Key")), "key"),
        ] {
            let err = RateLimit::from_raw(&bad).unwrap_err().0;
            assert!(err.starts_with(field), "{err}");
        }
    }

    #[test]
    fn the_setting_form_parses() {
        let limit = RateLimit::parse_setting("rps=20, burst=40, key=header:X-Api-Key").unwrap();
        assert_eq!((limit.requests_per_second, limit.burst), (20.0, 40));
        assert_eq!(limit.key, RateKey::Header("X-Api-Key".into()));
        for bad in ["burst=4", "rps=x", "rps=1,speed=2", "rps", "rps=0"] {
            assert!(RateLimit::parse_setting(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_json_form_round_trips_and_refuses_bad_values() {
        let limit = RateLimit::parse_setting("rps=5").unwrap();
        let text = serde_json::to_string(&limit).unwrap();
        assert_eq!(text, r#"{"requests_per_second":5.0,"burst":5,"key":"client"}"#);
        assert_eq!(serde_json::from_str::<RateLimit>(&text).unwrap(), limit);
        assert!(serde_json::from_str::<RateLimit>(r#"{"requests_per_second":0}"#).is_err());
        assert!(serde_json::from_str::<RateLimit>(r#"{"requests_per_second":1,"rps":1}"#).is_err());
    }
}
