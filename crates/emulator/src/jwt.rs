//! HS256 JSON Web Tokens shaped like the ClearML server's login tokens.
//!
//! The SDK decodes the token without verifying it and reads `api_version`, `server_version` and
//! `feature_set` from it; the emulator verifies every bearer token it receives.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Who a token speaks for (the `identity` claim of a ClearML token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub user: String,
    pub company: String,
    pub role: String,
    pub user_name: String,
    pub company_name: String,
}

/// The claims of a ClearML login token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub identity: Identity,
    pub exp: i64,
    pub iat: i64,
    pub session_id: String,
    pub feature_set: String,
    pub env: String,
    pub api_version: String,
    pub server_version: String,
}

/// Why a token was rejected; all map to 401/30 "invalid token".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported token algorithm")]
    Algorithm,
    #[error("bad token signature")]
    Signature,
    #[error("token expired")]
    Expired,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

fn mac(secret: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

/// Signs `claims` with HS256.
pub fn encode(claims: &Claims, secret: &[u8]) -> String {
    let header = Header { alg: "HS256".into(), typ: Some("JWT".into()) };
    let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("header serializes"));
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let signing_input = format!("{header}.{payload}");
    let mut mac = mac(secret);
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Checks the signature (constant time) and `exp` against `now` (unix seconds).
pub fn decode(token: &str, secret: &[u8], now: i64) -> Result<Claims, JwtError> {
    let (signing_input, signature) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
    let (header, payload) = signing_input
        .split_once('.')
        .filter(|(_, payload)| !payload.contains('.'))
        .ok_or(JwtError::Malformed)?;
    let header: Header = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or(JwtError::Malformed)?;
    if header.alg != "HS256" {
        return Err(JwtError::Algorithm);
    }
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| JwtError::Malformed)?;
    let mut mac = mac(secret);
    mac.update(signing_input.as_bytes());
    mac.verify_slice(&signature).map_err(|_| JwtError::Signature)?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or(JwtError::Malformed)?;
    if claims.exp <= now {
        return Err(JwtError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            identity: Identity {
                user: "u1".into(),
                company: "c1".into(),
                role: "admin".into(),
                user_name: "User One".into(),
                company_name: "Company One".into(),
            },
            exp,
            iat: 1_000,
            session_id: "s1".into(),
            feature_set: "advanced".into(),
            env: "emulator".into(),
            api_version: "2.23".into(),
            server_version: "3.26.0".into(),
        }
    }

    #[test]
    fn round_trips() {
        let token = encode(&claims(2_000), b"secret");
        assert_eq!(token.split('.').count(), 3);
        assert_eq!(decode(&token, b"secret", 1_500), Ok(claims(2_000)));
    }

    #[test]
    fn rejects_wrong_secret_expiry_and_tampering() {
        let token = encode(&claims(2_000), b"secret");
        assert_eq!(decode(&token, b"other", 1_500), Err(JwtError::Signature));
        assert_eq!(decode(&token, b"secret", 2_000), Err(JwtError::Expired));
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(9_999)).unwrap());
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = &forged_payload;
        assert_eq!(decode(&parts.join("."), b"secret", 1_500), Err(JwtError::Signature));
        assert_eq!(decode("a.b", b"secret", 0), Err(JwtError::Malformed));
        assert_eq!(decode("", b"secret", 0), Err(JwtError::Malformed));
    }

    #[test]
    fn rejects_other_algorithms() {
        let token = encode(&claims(2_000), b"secret");
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let rest = token.split_once('.').unwrap().1;
        assert_eq!(decode(&format!("{none_header}.{rest}"), b"secret", 0), Err(JwtError::Algorithm));
    }

    #[test]
    fn python_sdk_style_decoding_sees_claims() {
        // The payload is plain base64url JSON, which is all PyJWT needs without verification.
        let token = encode(&claims(2_000), b"secret");
        let payload = token.split('.').nth(1).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(json["feature_set"], "advanced");
        assert_eq!(json["identity"]["company"], "c1");
    }
}
