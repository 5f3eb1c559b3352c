//! The login token and when to renew it. There is no refresh call: the client logs in again
//! before `exp`, keeping a margin like the SDK does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;

/// Renew this long before expiry (the SDK keeps 360 s).
const RENEW_MARGIN: Duration = Duration::from_secs(360);

#[derive(Clone)]
pub(crate) struct Token {
    pub bearer: String,
    renew_at: SystemTime,
}

impl Token {
    pub fn new(bearer: String, now: SystemTime) -> Self {
        let renew_at = match jwt_times(&bearer) {
            Some((iat, exp)) if exp > iat => {
                let lifetime = Duration::from_secs(exp - iat);
                // Short-lived tokens renew at half-life instead of never.
                let margin = RENEW_MARGIN.min(lifetime / 2);
                UNIX_EPOCH + Duration::from_secs(exp) - margin
            }
            // Opaque token: renew hourly; a 401 also triggers a new login.
            _ => now + Duration::from_secs(3600),
        };
        Self { bearer, renew_at }
    }
    pub fn needs_renewal(&self, now: SystemTime) -> bool {
        now >= self.renew_at
    }
}

/// Reads `iat` and `exp` from a JWT payload without verifying it (the server verifies).
fn jwt_times(jwt: &str) -> Option<(u64, u64)> {
    let payload = jwt.split('.').nth(1)?;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_u64()?;
    let iat = claims.get("iat").and_then(|v| v.as_u64()).unwrap_or(exp.saturating_sub(3600));
    Some((iat, exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(iat: u64, exp: u64) -> String {
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = enc.encode(format!(r#"{{"iat":{iat},"exp":{exp}}}"#));
        format!("{}.{payload}.sig", enc.encode(r#"{"alg":"HS256"}"#))
    }

    #[test]
    fn renews_before_expiry() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let token = Token::new(jwt(1_000_000, 1_000_000 + 86_400), t0);
        assert!(!token.needs_renewal(t0 + Duration::from_secs(86_400 - 361)));
        assert!(token.needs_renewal(t0 + Duration::from_secs(86_400 - 359)));
        let short = Token::new(jwt(1_000_000, 1_000_060), t0);
        assert!(!short.needs_renewal(t0 + Duration::from_secs(29)));
        assert!(short.needs_renewal(t0 + Duration::from_secs(30)));
    }
}
