//! Operator sign-in for the status page: `POST /api/session` trades the operator token for an
//! HttpOnly, SameSite=Strict session cookie, so that the page never holds the token itself (no
//! token in a URL or in script-readable storage). Sessions live in memory (a restart signs
//! everyone out) and expire. Failed sign-ins are rate limited.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::guard::Guard;

/// The session cookie's name.
pub const COOKIE: &str = "clearml_router_operator";
/// How long a sign-in lasts.
pub const TTL: Duration = Duration::from_secs(12 * 3600);
/// Failed sign-ins allowed per [`FAILURE_WINDOW`]; more answer 429 until the window moves on.
const MAX_FAILURES: usize = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Bounds the session map (each sign-in adds one; expired ones are dropped first).
const MAX_SESSIONS: usize = 1000;

pub struct Sessions {
    ids: Mutex<HashMap<String, Instant>>,
    failures: Mutex<VecDeque<Instant>>,
    /// `Secure` on the cookie (AUTH_SECURE_ENABLED: the page is reached over https).
    secure: bool,
}

impl Sessions {
    pub fn new(secure: bool) -> Self {
        Self { ids: Default::default(), failures: Default::default(), secure }
    }

    /// A new session id (256 random bits, hex).
    fn create(&self) -> String {
        let id: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
        let now = Instant::now();
        let mut ids = self.ids.lock().expect("sessions lock");
        ids.retain(|_, expires| *expires > now);
        if ids.len() >= MAX_SESSIONS {
            // The oldest goes: a flood of sign-ins cannot grow memory without bound.
            if let Some(oldest) = ids.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone()) {
                ids.remove(&oldest);
            }
        }
        ids.insert(id.clone(), now + TTL);
        id
    }

    #[cfg(test)]
    pub fn create_for_test(&self) -> String {
        self.create()
    }

    /// True if the request carries the cookie of a live session.
    pub fn valid(&self, headers: &HeaderMap) -> bool {
        let Some(id) = cookie(headers) else { return false };
        self.ids.lock().expect("sessions lock").get(id).is_some_and(|expires| *expires > Instant::now())
    }

    fn remove(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers) {
            self.ids.lock().expect("sessions lock").remove(id);
        }
    }

    /// Records a failed sign-in; true if the limit is reached.
    fn limited(&self, record: bool) -> bool {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("sessions lock");
        while failures.front().is_some_and(|t| now.duration_since(*t) > FAILURE_WINDOW) {
            failures.pop_front();
        }
        if record && failures.len() < MAX_FAILURES {
            failures.push_back(now);
        }
        failures.len() >= MAX_FAILURES
    }

    fn set_cookie(&self, id: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}")
            .parse()
            .expect("cookie header")
    }
}

/// The session id the request's `Cookie` header carries, if any.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

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

    fn with_cookie(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, value.parse().unwrap());
        h
    }

    #[test]
    fn a_session_is_valid_until_removed_and_only_with_its_own_id() {
        let sessions = Sessions::new(false);
        let id = sessions.create();
        assert_eq!(id.len(), 64);
        let headers = with_cookie(&format!("other=1; {COOKIE}={id}"));
        assert!(sessions.valid(&headers));
        assert!(!sessions.valid(&with_cookie(&format!("{COOKIE}=x{id}"))));
        assert!(!sessions.valid(&HeaderMap::new()));
        sessions.remove(&headers);
        assert!(!sessions.valid(&headers));
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_when_asked() {
        let plain = Sessions::new(false).set_cookie("abc", 60);
        assert_eq!(plain, "clearml_router_operator=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=60");
        assert!(Sessions::new(true).set_cookie("abc", 60).to_str().unwrap().ends_with("; Secure"));
    }

    #[test]
    fn failed_sign_ins_are_limited() {
        let sessions = Sessions::new(false);
        for _ in 0..MAX_FAILURES - 1 {
            assert!(!sessions.limited(true));
        }
        assert!(sessions.limited(true));
        assert!(sessions.limited(false));
    }

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
