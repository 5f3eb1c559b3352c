//! Operator sign-in for the status page: `POST /api/session` trades the operator token for a
//! session cookie (sessions.rs), so that the page never holds the token itself (no token in a URL
//! or in script-readable storage). `DELETE` signs out; `GET` tells whether the request is signed
//! in. Failed sign-ins are rate limited.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::guard::Guard;
use super::sessions::TTL;

pub fn routes(guard: Arc<Guard>) -> Router {
    Router::new().route("/api/session", get(show).post(sign_in).delete(sign_out)).with_state(guard)
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// The body as JSON (`{"token": ...}`) or, from the page without JavaScript, a form.
fn parse(headers: &HeaderMap, body: &[u8]) -> Result<(SignIn, bool), String> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let parsed = if form {
        form_token(body).map(|token| SignIn { token })
    } else {
        serde_json::from_slice::<SignIn>(body)
            .map_err(|e| format!("token: send {{\"token\": \"...\"}} ({e})"))
    };
    parsed.map(|s| (s, form))
}

/// `token=...` from a urlencoded form.
fn form_token(body: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(body).map_err(|_| "token: the form is not UTF-8".to_owned())?;
    let value = text
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v)
        .ok_or("token: the form has no token field")?;
    percent_decode(&value.replace('+', " ")).ok_or_else(|| "token: bad percent-encoding".to_owned())
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn show(State(guard): State<Arc<Guard>>, headers: HeaderMap) -> Response {
    let signed_in = guard.sessions.valid(&headers);
    Json(json!({"signed_in": signed_in, "sign_in_enabled": guard.has_token()})).into_response()
}

async fn sign_in(State(guard): State<Arc<Guard>>, headers: HeaderMap, body: Bytes) -> Response {
    let sessions = &guard.sessions;
    if sessions.limited(false) {
        let mut response =
            error(StatusCode::TOO_MANY_REQUESTS, "too many failed sign-ins: try again in a minute");
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return response;
    }
    let (request, form) = match parse(&headers, &body) {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    if !guard.has_token() {
        let var = gateway_core::env::ROUTER_OPERATOR_TOKEN_FILE;
        return error(StatusCode::UNAUTHORIZED, format!("operator sign-in is disabled: set {var}"));
    }
    if !guard.token_matches(request.token.trim()) {
        sessions.limited(true);
        tracing::warn!("operator sign-in with a wrong token");
        return error(StatusCode::UNAUTHORIZED, "token: wrong operator token");
    }
    let id = sessions.create();
    tracing::info!("operator signed in to the status page");
    let mut response = if form {
        // The page without JavaScript: back to it, signed in.
        (StatusCode::SEE_OTHER, [(header::LOCATION, "./")]).into_response()
    } else {
        Json(json!({"signed_in": true, "expires_in_seconds": TTL.as_secs()})).into_response()
    };
    response.headers_mut().insert(header::SET_COOKIE, sessions.set_cookie(&id, TTL.as_secs()));
    response
}

async fn sign_out(State(guard): State<Arc<Guard>>, headers: HeaderMap) -> Response {
    guard.sessions.remove(&headers);
    let mut response = Json(json!({"signed_in": false})).into_response();
    response.headers_mut().insert(header::SET_COOKIE, guard.sessions.set_cookie("", 0));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_json_bodies_are_read() {
        let mut form = HeaderMap::new();
        form.insert(header::CONTENT_TYPE, "application/x-www-form-urlencoded".parse().unwrap());
        let (s, is_form) = parse(&form, b"x=1&token=a%2Bb+c").unwrap();
        assert_eq!((s.token.as_str(), is_form), ("a+b c", true));
        let (s, is_form) = parse(&HeaderMap::new(), br#"{"token":"t"}"#).unwrap();
        assert_eq!((s.token.as_str(), is_form), ("t", false));
        // (No Debug on SignIn: it holds the token; match instead of unwrap_err.)
        assert!(matches!(parse(&HeaderMap::new(), b"nope"), Err(e) if e.starts_with("token:")));
        assert!(parse(&form, b"token=%zz").is_err());
    }
}
