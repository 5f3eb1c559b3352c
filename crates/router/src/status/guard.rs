//! The gate in front of the status server and operator API. The router often runs on the host
//! network, so a browser page on any site could reach it (DNS rebinding, cross-site POSTs):
//! - `Host` must name this server (loopback names, the bound IP, the `ROUTER_URL` host);
//! - an `Origin`, when sent, must name one of those hosts too;
//! - writes, the self-test and any request from off loopback need the operator token
//!   (`Authorization: Bearer <token>`, `ROUTER_OPERATOR_TOKEN_FILE`) or the session cookie of a
//!   page sign-in (session.rs); a wrong token is always 401;
//! - a write authorised by the cookie must carry an `Origin` (of this server): with SameSite=Strict
//!   that keeps other sites' forms out even in browsers that send no `Origin` on some requests.
//!
//! Reads from loopback stay open: GET never changes state. The page itself and sign-in are open
//! everywhere: off loopback the page shows only the sign-in form until the operator signs in.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sha2::{Digest, Sha256};

use gateway_core::secret::Secret;

pub struct Guard {
    token: Option<Secret>,
    hosts: Vec<String>,
    pub sessions: super::sessions::Sessions,
}

/// What the guard let through: set on every request that passes, for the handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// The operator token or a live session came with the request.
    pub operator: bool,
    /// A read from loopback (open without credentials).
    pub loopback: bool,
}

/// Paths open without credentials (Host and Origin are still checked): sign-in, and the page
/// and its script (which then show only the sign-in form off loopback).
fn open_path(method: &Method, path: &str) -> bool {
    let read = method == Method::GET || method == Method::HEAD;
    path == "/api/session" || (read && matches!(path, "/" | "/console.js"))
}

/// Why a request is refused: status and a message naming the fix.
pub type Refusal = (StatusCode, String);

impl Guard {
    pub fn new(
        token: Option<Secret>,
        status_address: SocketAddr,
        router_url: &str,
        secure_cookies: bool,
    ) -> Arc<Self> {
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).into();
        if !status_address.ip().is_unspecified() {
            hosts.push(status_address.ip().to_string());
        }
        if let Some(host) = router_url.split_once("://").and_then(|(_, rest)| rest.split('/').next()) {
            hosts.push(host_name(host).to_owned());
        }
        Arc::new(Self { token, hosts, sessions: super::sessions::Sessions::new(secure_cookies) })
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    fn host_allowed(&self, authority: &str) -> bool {
        let host = host_name(authority);
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    pub fn token_matches(&self, given: &str) -> bool {
        // Equal-length digests compared without an early exit: no timing hint about the token.
        self.token.as_ref().is_some_and(|t| {
            let (a, b) = (Sha256::digest(t.expose()), Sha256::digest(given));
            a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        })
    }

    /// The decision for one request from `peer` (`None`: unknown, judged as remote).
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Access, Refusal> {
        let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or("\u{0}"));
        match text(header::HOST) {
            Some(host) if self.host_allowed(host) => {}
            _ => {
                return Err((
                    StatusCode::MISDIRECTED_REQUEST,
                    "unexpected Host header: use the router's address".into(),
                ))
            }
        }
        let origin = text(header::ORIGIN);
        if let Some(origin) = origin {
            let host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
            if !self.host_allowed(host) {
                return Err((StatusCode::FORBIDDEN, "cross-origin requests are refused".into()));
            }
        }
        let given = text(header::AUTHORIZATION)
            .map(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).unwrap_or("").trim());
        let read_only = method == Method::GET || method == Method::HEAD;
        let loopback = read_only && peer.is_some_and(|ip| ip.is_loopback());
        match given {
            Some(token) if self.token_matches(token) => return Ok(Access { operator: true, loopback }),
            Some(_) => return Err((StatusCode::UNAUTHORIZED, "wrong operator token".into())),
            None => {}
        }
        if self.sessions.valid(headers) {
            if !read_only && origin.is_none() {
                return Err((
                    StatusCode::FORBIDDEN,
                    "a write from the page must carry an Origin header".into(),
                ));
            }
            return Ok(Access { operator: true, loopback });
        }
        if loopback || open_path(method, path) {
            return Ok(Access { operator: false, loopback });
        }
        let var = gateway_core::env::ROUTER_OPERATOR_TOKEN_FILE;
        let message = match (&self.token, read_only) {
            (None, false) => {
                format!("operator API writes are disabled: set {var} and send Authorization: Bearer <token>")
            }
            (None, true) => format!("reads from off loopback need the operator token: set {var}"),
            (Some(_), _) => "send the operator token: Authorization: Bearer <token>".to_owned(),
        };
        Err((StatusCode::UNAUTHORIZED, message))
    }
}

/// `host`, `host:port`, `[v6]:port` -> the host alone.
fn host_name(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// Middleware: every request of the status server passes the guard first.
pub async fn gate(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let path = request.uri().path().to_owned();
    match guard.check(request.method(), &path, request.headers(), peer) {
        Ok(access) => {
            let mut request = request;
            request.extensions_mut().insert(access);
            next.run(request).await
        }
        Err((status, message)) => {
            let mut response = (status, Json(serde_json::json!({ "error": message }))).into_response();
            if status == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, "Bearer realm=\"clearml-router\"".parse().unwrap());
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(token: Option<&str>) -> Arc<Guard> {
        Guard::new(
            token.map(Secret::new),
            "127.0.0.1:18081".parse().unwrap(),
            "http://gw.example:8080",
            false,
        )
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const LOOPBACK: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    const REMOTE: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)));
    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn reads_from_loopback_are_open_writes_need_the_token() {
        let g = guard(Some(TOKEN));
        let local = headers(&[("host", "127.0.0.1:18081")]);
        assert!(g.check(&Method::GET, "/api/status", &local, LOOPBACK).is_ok());
        assert_eq!(
            g.check(&Method::POST, "/api/static-routes", &local, LOOPBACK).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            g.check(&Method::GET, "/api/status", &local, REMOTE).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            g.check(&Method::GET, "/api/status", &local, None).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        let bearer = format!("Bearer {TOKEN}");
        let authed = headers(&[("host", "gw.example:18081"), ("authorization", &bearer)]);
        assert!(g.check(&Method::POST, "/api/static-routes", &authed, REMOTE).is_ok());
        let wrong = headers(&[("host", "localhost"), ("authorization", "Bearer nope")]);
        assert_eq!(
            g.check(&Method::GET, "/api/status", &wrong, LOOPBACK).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn without_a_token_every_write_is_refused_naming_the_fix() {
        let g = guard(None);
        let (status, message) = g
            .check(&Method::DELETE, "/api/static-routes/x", &headers(&[("host", "localhost")]), LOOPBACK)
            .unwrap_err();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(message.contains("ROUTER_OPERATOR_TOKEN_FILE"), "{message}");
        let bearer = headers(&[("host", "localhost"), ("authorization", "Bearer anything")]);
        assert_eq!(
            g.check(&Method::GET, "/api/status", &bearer, LOOPBACK).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn foreign_hosts_and_origins_are_refused_even_with_the_token() {
        let g = guard(Some(TOKEN));
        let bearer = format!("Bearer {TOKEN}");
        for host in ["evil.example", "evil.example:18081", "127.0.0.1.evil.example", ""] {
            let h = headers(&[("host", host), ("authorization", &bearer)]);
            assert_eq!(
                g.check(&Method::GET, "/api/status", &h, LOOPBACK).unwrap_err().0,
                StatusCode::MISDIRECTED_REQUEST,
                "{host}"
            );
        }
        assert!(g.check(&Method::GET, "/api/status", &HeaderMap::new(), LOOPBACK).is_err(), "no Host");
        for origin in ["http://evil.example", "null"] {
            let h = headers(&[("host", "localhost:18081"), ("origin", origin), ("authorization", &bearer)]);
            assert_eq!(
                g.check(&Method::POST, "/api/static-routes", &h, LOOPBACK).unwrap_err().0,
                StatusCode::FORBIDDEN,
                "{origin}"
            );
        }
        let same = headers(&[("host", "[::1]:18081"), ("origin", "http://localhost:18081")]);
        assert!(g.check(&Method::GET, "/api/status", &same, LOOPBACK).is_ok());
    }

    #[test]
    fn the_page_and_sign_in_are_open_and_a_session_cookie_counts_as_the_token() {
        let g = guard(Some(TOKEN));
        let remote = headers(&[("host", "gw.example:18081")]);
        for (method, path) in
            [(Method::GET, "/"), (Method::GET, "/console.js"), (Method::POST, "/api/session")]
        {
            let access = g.check(&method, path, &remote, REMOTE).unwrap();
            assert_eq!(access, Access { operator: false, loopback: false }, "{method} {path}");
        }
        assert!(g.check(&Method::POST, "/api/self-test", &remote, REMOTE).is_err());
        let id = g.sessions.create();
        let cookie = format!("{}={id}", super::super::sessions::COOKIE);
        let reader = headers(&[("host", "gw.example:18081"), ("cookie", &cookie)]);
        assert!(g.check(&Method::GET, "/api/status", &reader, REMOTE).unwrap().operator);
        // A write with the cookie needs this server's Origin.
        let (status, _) = g.check(&Method::POST, "/api/self-test", &reader, REMOTE).unwrap_err();
        assert_eq!(status, StatusCode::FORBIDDEN);
        let writer = headers(&[
            ("host", "gw.example:18081"),
            ("cookie", &cookie),
            ("origin", "http://gw.example:18081"),
        ]);
        assert!(g.check(&Method::POST, "/api/self-test", &writer, REMOTE).unwrap().operator);
        let stale = headers(&[("host", "gw.example:18081"), ("cookie", "clearml_router_operator=nope")]);
        assert!(g.check(&Method::GET, "/api/status", &stale, REMOTE).is_err());
    }
}
