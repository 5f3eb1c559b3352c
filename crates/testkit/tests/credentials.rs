//! What reaches a task: route kind (/service, static public, static authenticated, the static
//! routes' websocket relay) x auth mode (remote, local, off) x credentials. Asserts the status and
//! exactly which credential headers and cookies the backend received: the ClearML login never
//! reaches a task, the app's own `Authorization` always does. Also dot segments and the router's
//! own port as a target.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use futures_util::StreamExt;
use gateway_testkit::sample_apps::SAMPLE_API_KEY;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const T: Duration = Duration::from_secs(20);
const COOKIE: &str = "clearml_token_basic";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Remote,
    Local,
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Service,
    StaticPublic,
    StaticAuthenticated,
    /// The relay of the authenticated static route.
    WebsocketRelay,
    /// The relay of the public static route.
    WebsocketRelayPublic,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Credential {
    /// The ClearML login cookie next to the app's own cookie.
    Cookie,
    /// `Authorization: Bearer <ClearML token>`.
    ClearmlBearer,
    /// `X-ClearML-Gateway-Token: <ClearML token>` plus the app's own Authorization.
    GatewayHeader,
    /// Only the app's own `Authorization: Bearer sk-...`.
    AppOwn,
    /// The login cookie plus the app's own Authorization (a browser-logged-in script).
    CookieAndAppOwn,
    /// `Authorization: Bearer <gateway user token>`.
    GatewayUserToken,
    /// `X-ClearML-Gateway-Token: <endpoint token>` plus the app's own Authorization.
    EndpointToken,
}

const CREDENTIALS: [Credential; 7] = [
    Credential::Cookie,
    Credential::ClearmlBearer,
    Credential::GatewayHeader,
    Credential::AppOwn,
    Credential::CookieAndAppOwn,
    Credential::GatewayUserToken,
    Credential::EndpointToken,
];

/// The tokens a client may hold.
struct Tokens {
    /// A ClearML login of user-1.
    login: String,
    /// Gateway tokens: acting as user-1; granting the three test endpoints.
    user: String,
    endpoint: String,
    endpoint_id: String,
}

/// Request headers for `credential`.
fn headers(credential: Credential, t: &Tokens) -> Vec<(&'static str, String)> {
    let token = &t.login;
    let own = ("authorization", format!("Bearer {SAMPLE_API_KEY}"));
    let cookie = ("cookie", format!("app_session=1; {COOKIE}={token}; theme=dark"));
    let mut h = vec![("x-clearml-user-id", "spoofed".to_owned())];
    match credential {
        Credential::Cookie => h.push(cookie),
        Credential::ClearmlBearer => {
            h.push(("authorization", format!("Bearer {token}")));
            h.push(("cookie", "app_session=1; theme=dark".into()));
        }
        Credential::GatewayHeader => {
            h.push(("x-clearml-gateway-token", token.to_owned()));
            h.push(own);
        }
        Credential::AppOwn => h.push(own),
        Credential::CookieAndAppOwn => {
            h.push(cookie);
            h.push(own);
        }
        Credential::GatewayUserToken => {
            h.push(("authorization", format!("Bearer {}", t.user)));
            h.push(("cookie", "app_session=1; theme=dark".into()));
        }
        Credential::EndpointToken => {
            h.push(("x-clearml-gateway-token", t.endpoint.clone()));
            h.push(own);
        }
    }
    h
}

/// The status the client gets.
fn expected_status(mode: Mode, kind: Kind, credential: Credential) -> u16 {
    let protected = mode != Mode::Off && !matches!(kind, Kind::StaticPublic | Kind::WebsocketRelayPublic);
    if protected && credential == Credential::AppOwn {
        401
    } else {
        200
    }
}

/// Checks the headers the backend received: no ClearML credential, the app's own ones intact,
/// identity only from the proxy.
fn check_received(cell: &str, received: &Value, mode: Mode, kind: Kind, credential: Credential, t: &Tokens) {
    let text = received.to_string();
    for token in [&t.login, &t.user, &t.endpoint] {
        assert!(!text.contains(token.as_str()), "{cell}: a gateway credential reached the backend: {text}");
    }
    assert!(received.get("x-clearml-gateway-token").is_none(), "{cell}: {text}");
    let cookie = received["cookie"].as_str().unwrap_or_default();
    let own = matches!(
        credential,
        Credential::GatewayHeader
            | Credential::AppOwn
            | Credential::CookieAndAppOwn
            | Credential::EndpointToken
    );
    if matches!(credential, Credential::AppOwn | Credential::GatewayHeader | Credential::EndpointToken) {
        assert_eq!(cookie, "", "{cell}: {text}");
    } else {
        assert_eq!(cookie, "app_session=1; theme=dark", "{cell}: the app's own cookies are kept: {text}");
    }
    let authorization = received.get("authorization").and_then(Value::as_str);
    let want = own.then(|| format!("Bearer {SAMPLE_API_KEY}"));
    assert_eq!(authorization, want.as_deref(), "{cell}: the app's own Authorization, untouched: {text}");
    let identity = received.get("x-clearml-user-id").and_then(Value::as_str);
    let verified = mode != Mode::Off && !matches!(kind, Kind::StaticPublic | Kind::WebsocketRelayPublic);
    let endpoint_identity = format!("gateway-token:{}", t.endpoint_id);
    let who = if credential == Credential::EndpointToken { endpoint_identity.as_str() } else { "user-1" };
    assert_eq!(identity, verified.then_some(who), "{cell}: identity only from the proxy: {text}");
}

struct Setup {
    gw: Gateway,
    service: String,
    tokens: Tokens,
}

/// Mints a gateway token through the operator API: (token, id).
async fn mint(gw: &Gateway, request: Value) -> (String, String) {
    let r = operator_http().post(gw.status_url("/api/gateway-tokens")).json(&request).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let body: Value = r.json().await.unwrap();
    (body["token"].as_str().unwrap().to_owned(), body["id"].as_str().unwrap().to_owned())
}

async fn setup(mode: Mode) -> Setup {
    let mut gw = Gateway::start(Options { no_router: true, ..Default::default() }).await;
    let app = sample_app("backend").await;
    let routes = json!({"routes": [
        {"name": "pub", "path": "/pub", "access": "public", "targets": [app.to_string()]},
        {"name": "authd", "path": "/authd", "access": "authenticated", "targets": [app.to_string()]},
    ]});
    let file = gw.dir.path().join("static-routes.json");
    std::fs::write(&file, routes.to_string()).unwrap();
    gw.extra_env.push(("ROUTER_STATIC_ROUTES_FILE".into(), file.display().to_string()));
    let registry = gw.dir.path().join("gateway-tokens.json");
    gw.extra_env.push(("ROUTER_GATEWAY_TOKENS_FILE".into(), registry.display().to_string()));
    match mode {
        Mode::Off => {}
        Mode::Remote => gw.extra_env.push(("AUTH_ENABLED".into(), "true".into())),
        Mode::Local => {
            let secret = base64::engine::general_purpose::STANDARD
                .encode(clearml_emulator::EmulatorConfig::default().token_secret);
            gw.extra_env.push(("AUTH_ENABLED".into(), "true".into()));
            gw.extra_env.push(("AUTH_BASE64_JWKS_KEY".into(), secret));
        }
    }
    gw.start_router();
    let task = gw.http_task("backend", app);
    let service = gw.wait_for_key(&task, "endpoint", T).await;
    let token = gw.emulator.mint_token("user-1", Duration::from_secs(3600));
    // Served once the router has applied (and learned its company, with authentication on).
    for url in [format!("{service}echo"), format!("{}/authd/echo", gw.router_url)] {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let r = http_client().get(&url).header("cookie", format!("{COOKIE}={token}")).send().await;
            if r.map(|r| r.status() == 200).unwrap_or(false) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{url} never served\n{}", gw.router_log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let route = service.trim_end_matches('/').rsplit('/').next().unwrap().to_owned();
    let (user, _) =
        mint(&gw, json!({"kind": "user", "label": "notebook", "user": "user-1", "expires_in_seconds": 600}))
            .await;
    let grant = json!({"kind": "endpoint", "label": "ci", "endpoints": [route, "pub", "authd"], "expires_in_seconds": 600});
    let (endpoint, endpoint_id) = mint(&gw, grant).await;
    Setup { gw, service, tokens: Tokens { login: token, user, endpoint, endpoint_id } }
}

/// One HTTP cell: status, and the headers the backend echoed (None when refused).
async fn http_cell(url: &str, credential: Credential, t: &Tokens) -> (u16, Option<Value>) {
    let mut request = http_client().get(url).header("accept", "application/json");
    for (k, v) in headers(credential, t) {
        request = request.header(k, v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, (status == 200).then(|| body["headers"].clone()))
}

/// One websocket cell through the relay: the upgrade's status, and the headers the backend
/// received with the upgrade request (its first message).
async fn websocket_cell(url: &str, credential: Credential, t: &Tokens) -> (u16, Option<Value>) {
    let mut request = url.into_client_request().unwrap();
    for (k, v) in headers(credential, t) {
        request.headers_mut().insert(k, v.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((mut socket, response)) => {
            let first = tokio::time::timeout(T, socket.next()).await.unwrap().unwrap().unwrap();
            (response.status().as_u16(), Some(serde_json::from_str(first.to_text().unwrap()).unwrap()))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => (response.status().as_u16(), None),
        Err(e) => panic!("{url}: {e}"),
    }
}

async fn check_mode(mode: Mode) {
    let s = setup(mode).await;
    let base = &s.gw.router_url;
    let ws_base = base.replacen("http", "ws", 1);
    let kinds = [
        Kind::Service,
        Kind::StaticPublic,
        Kind::StaticAuthenticated,
        Kind::WebsocketRelay,
        Kind::WebsocketRelayPublic,
    ];
    for kind in kinds {
        for credential in CREDENTIALS {
            let cell = format!("{mode:?} x {kind:?} x {credential:?}");
            let (status, received) = match kind {
                Kind::Service => http_cell(&format!("{}echo", s.service), credential, &s.tokens).await,
                Kind::StaticPublic => http_cell(&format!("{base}/pub/echo"), credential, &s.tokens).await,
                Kind::StaticAuthenticated => {
                    http_cell(&format!("{base}/authd/echo"), credential, &s.tokens).await
                }
                Kind::WebsocketRelay => {
                    websocket_cell(&format!("{ws_base}/authd/ws-headers"), credential, &s.tokens).await
                }
                Kind::WebsocketRelayPublic => {
                    websocket_cell(&format!("{ws_base}/pub/ws-headers"), credential, &s.tokens).await
                }
            };
            let status = if status == 101 { 200 } else { status };
            assert_eq!(status, expected_status(mode, kind, credential), "{cell}");
            if let Some(received) = received {
                check_received(&cell, &received, mode, kind, credential, &s.tokens);
            }
        }
    }
    // A model server with its own key behind the gateway: cookie login + its key -> 200.
    let (status, _) =
        http_cell(&format!("{}v1/models", s.service), Credential::CookieAndAppOwn, &s.tokens).await;
    assert_eq!(status, 200, "{mode:?}: the app's own key reaches the model server");
    let (status, _) = http_cell(&format!("{}v1/models", s.service), Credential::Cookie, &s.tokens).await;
    assert_eq!(status, 401, "{mode:?}: the ClearML login is not the app's key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn matrix_remote() {
    check_mode(Mode::Remote).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn matrix_local() {
    check_mode(Mode::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn matrix_auth_off() {
    check_mode(Mode::Off).await;
}

/// The status of `GET <path>` sent byte for byte (HTTP clients normalise dot segments away).
async fn raw_status(port: u16, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// `/service/<A>/../<B>/x` must not reach A as `/../B/x`, in any spelling; static routes alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dot_segments_are_refused_before_routing() {
    let gw = Gateway::start(Options::default()).await;
    let (task, url) = gw.routed_task("dots").await;
    for rest in ["../other/x", "./x", "%2e%2e/other/x", "%2E%2e%2fother/x", "x/..%5cother", "a/%2e/b", ".."] {
        let path = format!("/service/{task}/{rest}");
        assert_eq!(raw_status(gw.http_port, &path).await, 400, "{path}");
    }
    assert_eq!(raw_status(gw.http_port, "/pub/../service/x/").await, 400);
    assert_eq!(raw_status(gw.http_port, &format!("/service/{task}/a/..b/.c")).await, 200);
    let echo: Value = http_client().get(format!("{url}a/..b/.c")).fetch_json().await;
    assert_eq!(echo["uri"], "/a/..b/.c", "dots inside a name are fine");
}

/// Gateway tokens through the operator API: an endpoint token opens only its endpoints; the list
/// shows neither token nor hash; a revoked token is refused within a second, with no reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateway_tokens_grant_their_endpoints_and_are_revocable() {
    let s = setup(Mode::Remote).await;
    let base = &s.gw.router_url;
    let (narrow, narrow_id) = mint(
        &s.gw,
        json!({"kind": "endpoint", "label": "pub only", "endpoints": ["pub"], "expires_in_seconds": 600}),
    )
    .await;
    let with = |token: &str| {
        http_client().get(format!("{base}/authd/echo")).header("x-clearml-gateway-token", token)
    };
    assert_eq!(with(&narrow).send().await.unwrap().status(), 403, "not granted");
    assert_eq!(with(&s.tokens.endpoint).send().await.unwrap().status(), 200);

    let list: Value = operator_http().get(s.gw.status_url("/api/gateway-tokens")).fetch_json().await;
    let text = list.to_string();
    assert_eq!(list["tokens"].as_array().unwrap().len(), 3, "{text}");
    assert!(!text.contains(&narrow) && !text.contains("sha256"), "{text}");
    let registry = std::fs::read_to_string(s.gw.dir.path().join("gateway-tokens.json")).unwrap();
    assert!(!registry.contains(&s.tokens.endpoint), "never stored in clear");
    let refused = http_client().post(s.gw.status_url("/api/gateway-tokens")).json(&json!({})).send().await;
    assert_eq!(refused.unwrap().status(), 401, "minting needs the operator token");

    let reloads = s.gw.nginx_reloads();
    let revoke = format!("/api/gateway-tokens/{}", s.tokens.endpoint_id);
    assert_eq!(operator_http().delete(s.gw.status_url(&revoke)).send().await.unwrap().status(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while with(&s.tokens.endpoint).send().await.unwrap().status() != 401 {
        assert!(tokio::time::Instant::now() < deadline, "a revoked token still works");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.gw.nginx_reloads(), reloads, "revocation needs no reload");
    let missing =
        operator_http().delete(s.gw.status_url(&format!("/api/gateway-tokens/{narrow_id}x"))).send();
    assert_eq!(missing.await.unwrap().status(), 404);
}
