//! What an operator asks for when minting a gateway access token (`POST /api/gateway-tokens`),
//! validated field by field: the label, user and endpoints end up in signed tokens and in
//! identity headers, so only bounded, control-free text and plain identifiers are accepted.

use serde::{Deserialize, Serialize};

/// The longest lifetime a token may be given.
pub const MAX_LIFETIME_SECONDS: u64 = 366 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    User,
    Endpoint,
}

/// What the operator asks for (`POST /api/gateway-tokens`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    pub kind: Kind,
    pub label: String,
    /// User tokens: the ClearML user id to act as, and optionally its name.
    pub user: Option<String>,
    pub user_name: Option<String>,
    /// Endpoint tokens: the endpoints granted.
    #[serde(default)]
    pub endpoints: Vec<String>,
    pub expires_in_seconds: u64,
}

fn ident_ok(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn text_ok(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

impl MintRequest {
    /// The request's problem, one line naming the field, or `Ok`.
    pub fn validate(&self) -> Result<(), String> {
        if !text_ok(&self.label, 100) {
            return Err("label: 1 to 100 characters, no control characters".into());
        }
        if !(60..=MAX_LIFETIME_SECONDS).contains(&self.expires_in_seconds) {
            return Err(format!("expires_in_seconds: between 60 and {MAX_LIFETIME_SECONDS}"));
        }
        if let Some(name) = &self.user_name {
            if !text_ok(name, 128) {
                return Err("user_name: 1 to 128 characters, no control characters".into());
            }
        }
        match self.kind {
            Kind::User if !self.user.as_deref().is_some_and(|u| ident_ok(u, 64)) => {
                Err("user: a ClearML user id (letters, digits, - _ .) is required for a user token".into())
            }
            Kind::User if !self.endpoints.is_empty() => Err("endpoints: only for endpoint tokens".into()),
            Kind::Endpoint if self.user.is_some() => Err("user: only for user tokens".into()),
            Kind::Endpoint
                if self.endpoints.is_empty()
                    || self.endpoints.len() > 100
                    || !self.endpoints.iter().all(|e| ident_ok(e, 128)) =>
            {
                Err("endpoints: 1 to 100 route ids or static route names (letters, digits, - _ .)".into())
            }
            _ => Ok(()),
        }
    }
}
