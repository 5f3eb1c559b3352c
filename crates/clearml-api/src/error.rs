use std::fmt;

use gateway_core::env;

/// A failed ClearML API call, typed by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("ClearML {endpoint}: cannot reach the server: {detail}")]
    Transport { endpoint: String, detail: String },
    #[error("ClearML {endpoint}: no answer within {seconds:.1}s")]
    Timeout { endpoint: String, seconds: f64 },
    #[error(
        "ClearML {endpoint}: login refused ({subcode}: {message}); check {} and {}",
        env::CLEARML_API_ACCESS_KEY,
        env::CLEARML_API_SECRET_KEY
    )]
    BadCredentials { endpoint: String, subcode: u32, message: String },
    #[error("ClearML {endpoint}: unauthorized ({subcode}: {message})")]
    Unauthorized { endpoint: String, subcode: u32, message: String },
    #[error("ClearML {endpoint}: error {code}/{subcode}: {message}")]
    Server { endpoint: String, code: u16, subcode: u32, message: String },
    #[error("ClearML {endpoint}: unreadable answer: {detail}")]
    Decode { endpoint: String, detail: String },
}

impl ApiError {
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ApiError::Unauthorized { .. })
    }
}

/// The subset of the envelope's `meta` the client needs.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Meta {
    #[serde(default)]
    pub result_code: u16,
    #[serde(default)]
    pub result_subcode: u32,
    #[serde(default)]
    pub result_msg: String,
}

impl fmt::Display for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} {}", self.result_code, self.result_subcode, self.result_msg)
    }
}
