//! `auth.*` and `users.*`: tokens and who the caller is.

use axum::http::HeaderMap;
use serde_json::{json, Map, Value};

use super::super::config::DEFAULT_TOKEN_TTL_SECS;
use super::super::envelope::ApiError;
use super::super::jwt::Identity;
use super::super::state::State;

/// `auth.login` (basic credentials or a valid token) -> `{token}`; `expiration_sec` comes in
/// the body or, as the SDK sends it, in the query string.
pub fn login(
    state: &mut State,
    headers: &HeaderMap,
    body: &Map<String, Value>,
    now: i64,
) -> Result<Value, ApiError> {
    let user = state.auth.login_user(headers, now)?;
    let ttl = match body.get("expiration_sec") {
        None | Some(Value::Null) => DEFAULT_TOKEN_TTL_SECS,
        Some(Value::Number(n)) => n.as_i64().unwrap_or(DEFAULT_TOKEN_TTL_SECS),
        Some(Value::String(s)) => {
            s.parse().map_err(|_| ApiError::validation("expiration_sec must be an integer"))?
        }
        Some(_) => return Err(ApiError::validation("expiration_sec must be an integer")),
    };
    if ttl <= 0 {
        return Err(ApiError::validation("expiration_sec must be positive"));
    }
    Ok(json!({ "token": state.auth.mint(&user, now, ttl) }))
}

/// `auth.logout`: revokes the session of the presented token.
pub fn logout(state: &mut State, headers: &HeaderMap, now: i64) -> Result<Value, ApiError> {
    let token = bearer(headers).ok_or_else(|| ApiError::unauthorized(20, "Missing credentials"))?;
    let claims = state.auth.verify(&token, now)?;
    state.auth.revoke_session(&claims.session_id);
    Ok(json!({}))
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
}

/// `users.get_current_user` -> `{user: {id, name, role, company: {id, name}, ...}}`.
pub fn get_current_user(
    _state: &mut State,
    caller: &Identity,
    _body: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let (given, family) = caller.user_name.split_once(' ').unwrap_or((&caller.user_name, ""));
    Ok(json!({
        "user": {
            "id": caller.user,
            "name": caller.user_name,
            "given_name": given,
            "family_name": family,
            "role": caller.role,
            "company": { "id": caller.company, "name": caller.company_name },
            "email": format!("{}@emulator.invalid", caller.user),
            "avatar": null,
            "preferences": {},
        },
        "getting_started": {},
        "settings": {},
    }))
}

/// `users.get_vaults`: the SDK merges config vaults into its settings; none here.
pub fn get_vaults(
    _state: &mut State,
    _caller: &Identity,
    _body: &Map<String, Value>,
) -> Result<Value, ApiError> {
    Ok(json!({ "total": 0, "vaults": [] }))
}
