//! Credentials, login tokens and their revocation: who is calling and may they.

use std::collections::{HashMap, HashSet};

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::config::{EmulatedUser, FeatureSet, API_VERSION};
use super::envelope::ApiError;
use super::ids::new_id;
use super::jwt::{self, Claims, Identity, JwtError};

/// Cookie the web app stores the token in (open-source name); accepted like a bearer token.
pub const AUTH_COOKIE: &str = "clearml_token_basic";

/// The credential table plus the sessions issued from it.
pub struct Auth {
    secret: Vec<u8>,
    /// Claimed in every token (`feature_set`, `server_version`).
    feature_set: FeatureSet,
    users: Vec<EmulatedUser>,
    /// session id -> user id, for every token this emulator minted.
    sessions: HashMap<String, String>,
    revoked: HashSet<String>,
}

impl Auth {
    pub fn new(secret: Vec<u8>, first_user: EmulatedUser, feature_set: FeatureSet) -> Self {
        Self {
            secret,
            feature_set,
            users: vec![first_user],
            sessions: HashMap::new(),
            revoked: HashSet::new(),
        }
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Adds a user, replacing any with the same id or access key.
    pub fn add_user(&mut self, user: EmulatedUser) {
        self.users.retain(|u| u.id != user.id && u.access_key != user.access_key);
        self.users.push(user);
    }

    pub fn user(&self, id: &str) -> Option<&EmulatedUser> {
        self.users.iter().find(|u| u.id == id)
    }

    /// Signs a token for `user` valid for `ttl_secs` from `now` and records its session.
    pub fn mint(&mut self, user: &EmulatedUser, now: i64, ttl_secs: i64) -> String {
        let session_id = new_id();
        self.sessions.insert(session_id.clone(), user.id.clone());
        let claims = Claims {
            identity: identity(user),
            exp: now + ttl_secs,
            iat: now,
            session_id,
            feature_set: self.feature_set.as_str().into(),
            env: "emulator".into(),
            api_version: API_VERSION.into(),
            server_version: self.feature_set.server_version().into(),
        };
        jwt::encode(&claims, &self.secret)
    }

    /// Logs out every session `user_id` has now; tokens minted later still work.
    pub fn revoke_sessions_of(&mut self, user_id: &str) {
        let ids =
            self.sessions.iter().filter(|(_, owner)| owner.as_str() == user_id).map(|(id, _)| id.clone());
        self.revoked.extend(ids.collect::<Vec<_>>());
    }

    pub fn revoke_session(&mut self, session_id: &str) {
        self.revoked.insert(session_id.to_string());
    }

    /// `auth.login`: basic credentials, or a still valid token exchanged for a fresh one.
    pub fn login_user(&self, headers: &HeaderMap, now: i64) -> Result<EmulatedUser, ApiError> {
        match credentials(headers)? {
            Credentials::Basic(raw) => self.check_basic(&raw),
            Credentials::Bearer(token) => {
                let claims = self.verify(&token, now)?;
                self.user(&claims.identity.user)
                    .cloned()
                    .ok_or_else(|| ApiError::unauthorized(22, "Invalid user id (user no longer exists)"))
            }
        }
    }

    /// Any other endpoint: a valid token (header or cookie), or basic credentials like the
    /// real server accepts.
    pub fn authenticate(&self, headers: &HeaderMap, now: i64) -> Result<Identity, ApiError> {
        match credentials(headers)? {
            Credentials::Basic(raw) => self.check_basic(&raw).map(|u| identity(&u)),
            Credentials::Bearer(token) => self.verify(&token, now).map(|c| c.identity),
        }
    }

    /// Signature, expiry and revocation check; returns the claims of a usable token.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, ApiError> {
        let claims = jwt::decode(token, &self.secret, now).map_err(|err| match err {
            JwtError::Expired => ApiError::unauthorized(30, "Invalid token: token expired"),
            other => ApiError::unauthorized(30, format!("Invalid token: {other}")),
        })?;
        if self.revoked.contains(&claims.session_id) {
            return Err(ApiError::unauthorized(31, "Token is blocked: session revoked"));
        }
        Ok(claims)
    }

    fn check_basic(&self, encoded: &str) -> Result<EmulatedUser, ApiError> {
        let malformed = || ApiError::unauthorized(21, "Malformed basic credentials");
        let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
        let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
        let (key, secret) = decoded.split_once(':').ok_or_else(malformed)?;
        self.users
            .iter()
            .find(|u| u.access_key == key && u.secret_key == secret)
            .cloned()
            .ok_or_else(|| ApiError::unauthorized(22, "Invalid credentials"))
    }
}

/// The token identity of a user row.
pub fn identity(user: &EmulatedUser) -> Identity {
    Identity {
        user: user.id.clone(),
        company: user.company_id.clone(),
        role: user.role.clone(),
        user_name: user.name.clone(),
        company_name: user.company_name.clone(),
    }
}

enum Credentials {
    Basic(String),
    Bearer(String),
}

fn credentials(headers: &HeaderMap) -> Result<Credentials, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value =
            value.to_str().map_err(|_| ApiError::unauthorized(21, "Malformed authorization header"))?;
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        return match scheme.to_ascii_lowercase().as_str() {
            "basic" => Ok(Credentials::Basic(rest.trim().to_string())),
            "bearer" => Ok(Credentials::Bearer(rest.trim().to_string())),
            _ => Err(ApiError::unauthorized(10, "Bad authentication header type")),
        };
    }
    cookie(headers, AUTH_COOKIE)
        .map(Credentials::Bearer)
        .ok_or_else(|| ApiError::unauthorized(20, "Missing credentials"))
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let values = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok());
    gateway_core::cookie::value(values, name).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EmulatorConfig;
    use axum::http::HeaderValue;

    fn auth() -> Auth {
        let config = EmulatorConfig::default();
        Auth::new(config.token_secret.clone(), config.default_user(), config.feature_set)
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        headers.insert(header::AUTHORIZATION, value);
        headers
    }

    #[test]
    fn basic_login_and_bearer_use() {
        let auth = auth();
        let mut headers = HeaderMap::new();
        let basic = STANDARD.encode("emulator-access-key:emulator-secret-key");
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {basic}")).unwrap());
        let user = auth.login_user(&headers, 100).unwrap();
        assert_eq!(user.id, "user-1");

        let wrong = STANDARD.encode("emulator-access-key:nope");
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {wrong}")).unwrap());
        assert_eq!(auth.login_user(&headers, 100).unwrap_err().subcode, 22);
        assert_eq!(auth.authenticate(&HeaderMap::new(), 100).unwrap_err().subcode, 20);
    }

    #[test]
    fn tokens_expire_and_get_revoked() {
        let mut auth = auth();
        let user = auth.user("user-1").unwrap().clone();
        let token = auth.mint(&user, 100, 60);
        assert_eq!(auth.authenticate(&bearer(&token), 159).unwrap().user, "user-1");
        assert_eq!(auth.authenticate(&bearer(&token), 160).unwrap_err().subcode, 30);

        auth.revoke_sessions_of("user-1");
        assert_eq!(auth.authenticate(&bearer(&token), 120).unwrap_err().subcode, 31);
        let fresh = auth.mint(&user, 100, 60);
        assert!(auth.authenticate(&bearer(&fresh), 120).is_ok());
    }

    #[test]
    fn cookie_is_a_bearer_token() {
        let mut auth = auth();
        let user = auth.user("user-1").unwrap().clone();
        let token = auth.mint(&user, 100, 60);
        let mut headers = HeaderMap::new();
        headers
            .insert(header::COOKIE, HeaderValue::from_str(&format!("a=b; {AUTH_COOKIE}={token}")).unwrap());
        assert_eq!(auth.authenticate(&headers, 120).unwrap().company, "company-1");
    }
}
