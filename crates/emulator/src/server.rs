//! The HTTP side: `/[vX.Y/]service.action` API calls (faults, stats, envelope) plus the
//! `/_emulator/` admin API.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{Map, Value};

use super::admin;
use super::config::API_VERSION;
use super::envelope::{self, ApiError, EndpointInfo};
use super::faults::Fault;
use super::handlers::{self, Call};
use super::state::Shared;
use super::stats::CallRecord;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().nest("/_emulator", admin::router()).fallback(api).with_state(shared)
}

/// Splits `/v2.23/tasks.get_all` into (`Some("2.23")`, `"tasks.get_all"`).
fn parse_path(path: &str) -> (Option<String>, String) {
    let path = path.trim_matches('/');
    if let Some((first, rest)) = path.split_once('/') {
        if let Some(version) = first.strip_prefix('v') {
            if version.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
                return (Some(version.to_string()), rest.to_string());
            }
        }
    }
    (None, path.to_string())
}

async fn api(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (version, endpoint) = parse_path(uri.path());
    let parsed = parse_body(&body, query.as_deref());
    let mut record = CallRecord {
        method: method.to_string(),
        version,
        endpoint,
        body: parsed.clone().map(Value::Object).unwrap_or(Value::Null),
        result_code: 0,
    };

    if !shared.is_up() {
        // Emulated outage: no HTTP answer at all; the gate closes the client's connection and
        // this handler is dropped with it. Counted with result code 0.
        finish(&shared, record, body.len(), 0);
        if shared.connections.cut(peer) {
            std::future::pending::<()>().await;
        }
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }

    let endpoint = record.endpoint.clone();
    let version = record.version.clone().unwrap_or_else(|| API_VERSION.to_string());
    let call = (endpoint.as_str(), version.as_str());
    let fault = shared.lock().faults.take_for(&endpoint);
    let outcome = match fault {
        Some(Fault::Status { code, subcode, .. }) => {
            Outcome::Error(ApiError::new(code, subcode, "Injected fault"))
        }
        Some(Fault::GarbageBody { .. }) => Outcome::Garbage,
        Some(Fault::Delay { duration, .. }) => {
            tokio::time::sleep(duration).await;
            run(&shared, call, &headers, &parsed)
        }
        None => run(&shared, call, &headers, &parsed),
    };

    let info = EndpointInfo { name: endpoint, requested_version: version.clone(), actual_version: version };
    let (status, payload) = match &outcome {
        Outcome::Data(data) => (200, envelope::success(&info, data.clone()).to_string()),
        Outcome::Error(err) => (err.code, envelope::failure(&info, err).to_string()),
        Outcome::Garbage => (200, "<html>this is not json".to_string()),
    };
    record.result_code = status;
    finish(&shared, record, body.len(), payload.len());
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], payload).into_response()
}

/// Logs the call and adds it to the counters and the call log.
fn finish(shared: &Shared, record: CallRecord, request_bytes: usize, response_bytes: usize) {
    tracing::debug!(
        method = %record.method,
        endpoint = %record.endpoint,
        status = record.result_code,
        body = %record.body,
        "ClearML API call"
    );
    let mut state = shared.lock();
    state.stats.record(&record.endpoint, request_bytes, response_bytes);
    state.calls.push(record);
}

enum Outcome {
    Data(Value),
    Error(ApiError),
    Garbage,
}

/// Runs `(endpoint, version)` with `body`.
fn run(
    shared: &Shared,
    (endpoint, version): (&str, &str),
    headers: &HeaderMap,
    body: &Result<Map<String, Value>, ApiError>,
) -> Outcome {
    let feature_set = shared.lock().config.feature_set;
    if !handlers::is_known(endpoint, feature_set) {
        tracing::warn!(endpoint, %feature_set, "unknown ClearML endpoint called: answering 404/0");
        return Outcome::Error(ApiError::unknown_endpoint(endpoint, version));
    }
    let mut body = match body {
        Ok(body) => body.clone(),
        Err(err) => return Outcome::Error(err.clone()),
    };
    // SDK request models serialize their `method` property ("get") into every body.
    body.remove("method");
    let call = Call { endpoint, version, headers, body: &body };
    match handlers::handle(&mut shared.lock(), &call) {
        Ok(data) => Outcome::Data(data),
        Err(err) => Outcome::Error(err),
    }
}

/// The JSON object body (empty = `{}`) with query parameters added for keys it lacks: the SDK
/// sends `auth.login?expiration_sec=N` and `users.get_vaults?types=config&...` that way.
fn parse_body(body: &[u8], query: Option<&str>) -> Result<Map<String, Value>, ApiError> {
    let mut map = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice(body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(ApiError::validation("request body must be a JSON object")),
            Err(err) => return Err(ApiError::validation(format!("invalid JSON body: {err}"))),
        }
    };
    let mut from_query: Map<String, Value> = Map::new();
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = (percent_decode(key), Value::String(percent_decode(value)));
        match from_query.get_mut(&key) {
            Some(Value::Array(items)) => items.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
            None => {
                from_query.insert(key, value);
            }
        }
    }
    for (key, value) in from_query {
        map.entry(key).or_insert(value);
    }
    Ok(map)
}

fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_with_and_without_version() {
        assert_eq!(parse_path("/v2.23/tasks.get_all"), (Some("2.23".into()), "tasks.get_all".into()));
        assert_eq!(parse_path("/auth.login"), (None, "auth.login".into()));
        assert_eq!(parse_path("/vx/auth.login"), (None, "vx/auth.login".into()));
    }

    #[test]
    fn body_and_query_merge() {
        let map = parse_body(b"", Some("expiration_sec=60&types=config&types=a%2Fb+c")).unwrap();
        assert_eq!(Value::Object(map), json!({"expiration_sec": "60", "types": ["config", "a/b c"]}));
        let map = parse_body(br#"{"task": "t"}"#, Some("task=other")).unwrap();
        assert_eq!(map["task"], "t");
        assert_eq!(parse_body(b"[1]", None).unwrap_err().subcode, 12);
        assert_eq!(parse_body(b"{", None).unwrap_err().subcode, 12);
    }
}
