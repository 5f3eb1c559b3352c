//! A small HTTP app standing in for a task's notebook or model server, in the demo and tests:
//! it echoes requests, echoes websocket messages, streams server-sent events and counts uploads.
//! `/v1/models` stands in for an OpenAI-style model server with its own API key.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, Request};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Starts the app on `bind` (port 0 picks one) with `name` shown in its answers.
pub async fn start(bind: SocketAddr, name: &str) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let app = router(name.to_owned());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    Ok(addr)
}

fn router(name: String) -> Router {
    let page_name = name.clone();
    Router::new()
        .route("/", get(move || async move { home_page(&page_name) }))
        .route("/ws", get(websocket))
        .route("/ws-headers", get(websocket_headers))
        .route("/v1/models", get(models))
        .route("/sse", get(events))
        .route("/upload", post(upload))
        .fallback(any(move |request: Request| async move { echo(&name, request) }))
}

fn home_page(name: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><title>{name}</title></head><body><h1>Hello from {name}</h1>\
         <p>This page is served by a task through the ClearML gateway.</p>\
         <ul><li><a href=\"echo/anything?x=1\">echo/anything</a> (request as the task sees it)</li>\
         <li><a href=\"sse\">sse</a> (server-sent events)</li></ul></body></html>"
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// The API key the model server stand-in accepts (`Authorization: Bearer <key>`).
pub const SAMPLE_API_KEY: &str = "sk-sample-app-own-key";

/// Headers as a JSON object, names lowercase (as the app received them).
fn headers_json(headers: &HeaderMap) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), json!(String::from_utf8_lossy(v.as_bytes()))))
        .collect();
    serde_json::Value::Object(map)
}

/// Answers with the request as the app received it: method, raw URI, headers and the peer
/// address of the connection it came on (one address per connection: shows reuse).
fn echo(name: &str, request: Request) -> Response {
    Json(json!({
        "app": name,
        "method": request.method().as_str(),
        "uri": request.uri().to_string(),
        "headers": headers_json(request.headers()),
        "peer": request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.to_string()),
    }))
    .into_response()
}

/// A model server's own check: its API key in Authorization, else 401 (as OpenAI answers).
async fn models(headers: HeaderMap) -> Response {
    let expected = format!("Bearer {SAMPLE_API_KEY}");
    if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        let error = json!({"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}});
        return (axum::http::StatusCode::UNAUTHORIZED, Json(error)).into_response();
    }
    Json(json!({"object": "list", "data": [{"id": "sample-model", "object": "model"}]})).into_response()
}

/// A websocket whose first message is the upgrade request's headers, as the app received them.
async fn websocket_headers(headers: HeaderMap, upgrade: WebSocketUpgrade) -> Response {
    let text = headers_json(&headers).to_string();
    upgrade.on_upgrade(move |mut socket| async move {
        let _ = socket.send(Message::Text(text)).await;
        echo_messages(socket).await
    })
}

async fn websocket(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(echo_messages)
}

async fn echo_messages(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(text) => Message::Text(text),
            Message::Binary(bytes) => Message::Binary(bytes),
            Message::Ping(p) => Message::Pong(p),
            Message::Close(_) => break,
            Message::Pong(_) => continue,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}

#[derive(Deserialize)]
struct EventsQuery {
    n: Option<u32>,
    interval_ms: Option<u64>,
}

/// Streams `n` events `interval_ms` apart; a buffering proxy would deliver them all at the end.
async fn events(Query(q): Query<EventsQuery>) -> Response {
    let n = q.n.unwrap_or(5).min(1000);
    let interval = Duration::from_millis(q.interval_ms.unwrap_or(200).min(10_000));
    let stream = futures_util::stream::unfold(0u32, move |i| async move {
        if i >= n {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        Some((Ok::<_, std::convert::Infallible>(format!("id: {i}\ndata: event {i}\n\n")), i + 1))
    });
    (
        [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Reads the whole body as a stream and reports its size and SHA-256.
async fn upload(_headers: HeaderMap, body: Body) -> Response {
    let mut stream = body.into_data_stream();
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                bytes += chunk.len() as u64;
                hasher.update(&chunk);
            }
            Err(e) => return (axum::http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        }
    }
    Json(json!({ "bytes": bytes, "sha256": hex::encode(hasher.finalize()) })).into_response()
}

/// A TCP echo server standing in for a task's SSH or other raw TCP service.
pub async fn start_tcp_echo(bind: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = socket.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    Ok(addr)
}
