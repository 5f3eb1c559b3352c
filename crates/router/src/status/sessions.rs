//! Operator sessions of the status page: random ids in memory (a restart signs everyone out)
//! with an expiry, the HttpOnly, SameSite=Strict cookie that carries one, and the failed sign-in
//! limit. The sign-in endpoints are in sign_in.rs; the guard accepts a live session's cookie.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue};

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
    pub fn create(&self) -> String {
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

    /// True if the request carries the cookie of a live session.
    pub fn valid(&self, headers: &HeaderMap) -> bool {
        let Some(id) = cookie(headers) else { return false };
        self.ids.lock().expect("sessions lock").get(id).is_some_and(|expires| *expires > Instant::now())
    }

    pub fn remove(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers) {
            self.ids.lock().expect("sessions lock").remove(id);
        }
    }

    /// Records a failed sign-in; true if the limit is reached.
    pub fn limited(&self, record: bool) -> bool {
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

    pub fn set_cookie(&self, id: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}")
            .parse()
            .expect("cookie header")
    }
}

/// The session id the request's `Cookie` header carries, if any.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    let values = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok());
    gateway_core::cookie::value(values, COOKIE)
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
}
