//! The gate in front of the status server and operator API. The router often runs on the host
//! network, so a browser page on any site could reach it (DNS rebinding, cross-site POSTs):
//! - `Host` must name this server (loopback names, the bound IP, the `ROUTER_URL` host);
//! - an `Origin`, when sent, must name one of those hosts too;
//! - writes, the self-test and any request from off loopback need the operator token
//!   (`Authorization: Bearer <token>`, `ROUTER_OPERATOR_TOKEN_FILE`); a wrong token is always 401.
//!
//! Reads from loopback stay open: GET never changes state.

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
}

/// Why a request is refused: status and a message naming the fix.
pub type Refusal = (StatusCode, String);

impl Guard {
    pub fn new(token: Option<Secret>, status_address: SocketAddr, router_url: &str) -> Arc<Self> {
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).into();
        if !status_address.ip().is_unspecified() {
            hosts.push(status_address.ip().to_string());
        }
        if let Some(host) = router_url.split_once("://").and_then(|(_, rest)| rest.split('/').next()) {
            hosts.push(host_name(host).to_owned());
        }
        Arc::new(Self { token, hosts })
    }

    fn host_allowed(&self, authority: &str) -> bool {
        let host = host_name(authority);
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    fn token_matches(&self, given: &str) -> bool {
        // Equal-length digests compared without an early exit: no timing hint about the token.
        self.token.as_ref().is_some_and(|t| {
            let (a, b) = (Sha256::digest(t.expose()), Sha256::digest(given));
            a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        })
    }

    /// The decision for one request from `peer` (`None`: unknown, judged as remote).
    pub fn check(&self, method: &Method, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<(), Refusal> {
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
        if let Some(origin) = text(header::ORIGIN) {
            let host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
            if !self.host_allowed(host) {
                return Err((StatusCode::FORBIDDEN, "cross-origin requests are refused".into()));
            }
        }
        let given = text(header::AUTHORIZATION)
            .map(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).unwrap_or("").trim());
        match given {
            Some(token) if self.token_matches(token) => return Ok(()),
            Some(_) => return Err((StatusCode::UNAUTHORIZED, "wrong operator token".into())),
            None => {}
        }
        let read_only = method == Method::GET || method == Method::HEAD;
        if read_only && peer.is_some_and(|ip| ip.is_loopback()) {
            return Ok(());
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
    match guard.check(request.method(), request.headers(), peer) {
        Ok(()) => next.run(request).await,
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
        Guard::new(token.map(Secret::new), "127.0.0.1:18081".parse().unwrap(), "http://gw.example:8080")
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
        assert!(g.check(&Method::GET, &local, LOOPBACK).is_ok());
        assert_eq!(g.check(&Method::POST, &local, LOOPBACK).unwrap_err().0, StatusCode::UNAUTHORIZED);
        assert_eq!(g.check(&Method::GET, &local, REMOTE).unwrap_err().0, StatusCode::UNAUTHORIZED);
        assert_eq!(g.check(&Method::GET, &local, None).unwrap_err().0, StatusCode::UNAUTHORIZED);
        let bearer = format!("Bearer {TOKEN}");
        let authed = headers(&[("host", "gw.example:18081"), ("authorization", &bearer)]);
        assert!(g.check(&Method::POST, &authed, REMOTE).is_ok());
        let wrong = headers(&[("host", "localhost"), ("authorization", "Bearer nope")]);
        assert_eq!(g.check(&Method::GET, &wrong, LOOPBACK).unwrap_err().0, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn without_a_token_every_write_is_refused_naming_the_fix() {
        let g = guard(None);
        let (status, message) =
            g.check(&Method::DELETE, &headers(&[("host", "localhost")]), LOOPBACK).unwrap_err();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(message.contains("ROUTER_OPERATOR_TOKEN_FILE"), "{message}");
        let bearer = headers(&[("host", "localhost"), ("authorization", "Bearer anything")]);
        assert_eq!(g.check(&Method::GET, &bearer, LOOPBACK).unwrap_err().0, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn foreign_hosts_and_origins_are_refused_even_with_the_token() {
        let g = guard(Some(TOKEN));
        let bearer = format!("Bearer {TOKEN}");
        for host in ["evil.example", "evil.example:18081", "127.0.0.1.evil.example", ""] {
            let h = headers(&[("host", host), ("authorization", &bearer)]);
            assert_eq!(
                g.check(&Method::GET, &h, LOOPBACK).unwrap_err().0,
                StatusCode::MISDIRECTED_REQUEST,
                "{host}"
            );
        }
        assert!(g.check(&Method::GET, &HeaderMap::new(), LOOPBACK).is_err(), "no Host");
        for origin in ["http://evil.example", "null"] {
            let h = headers(&[("host", "localhost:18081"), ("origin", origin), ("authorization", &bearer)]);
            assert_eq!(
                g.check(&Method::POST, &h, LOOPBACK).unwrap_err().0,
                StatusCode::FORBIDDEN,
                "{origin}"
            );
        }
        let same = headers(&[("host", "[::1]:18081"), ("origin", "http://localhost:18081")]);
        assert!(g.check(&Method::GET, &same, LOOPBACK).is_ok());
    }
}
