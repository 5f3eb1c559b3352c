//! Authentication at the gateway: ClearML logins checked in the proxy (real nginx + Lua) against
//! real JWTs from the emulator, in remote mode (ClearML asked, cached) and local mode (HS256 in Lua).

mod common;

use std::time::Duration;

use base64::Engine;
use clearml_emulator::{decode_token, encode_token, EmulatedUser};
use common::*;
use reqwest::StatusCode;
use serde_json::Value;

const T: Duration = Duration::from_secs(15);
const COOKIE: &str = "clearml_token_basic";

struct Tokens {
    valid: String,
    expired: String,
    wrong_key: String,
    alg_none: String,
    other_company: String,
    logged_out: String,
}

fn tokens(gw: &Gateway) -> Tokens {
    let e = &gw.emulator;
    e.add_user(EmulatedUser {
        access_key: "other-ak".into(),
        secret_key: "other-sk".into(),
        id: "user-9".into(),
        name: "Other Tenant".into(),
        company_id: "company-2".into(),
        company_name: "Other Company".into(),
        role: "user".into(),
    });
    e.add_user(EmulatedUser {
        access_key: "leaver-ak".into(),
        secret_key: "leaver-sk".into(),
        id: "user-2".into(),
        name: "Leaver".into(),
        company_id: "company-1".into(),
        company_name: "Emulated Company".into(),
        role: "user".into(),
    });
    let valid = e.mint_token("user-1", Duration::from_secs(3600));
    let claims = decode_token(&valid, &e.token_secret()).unwrap();
    let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = valid.split('.').nth(1).unwrap();
    let logged_out = e.mint_token("user-2", Duration::from_secs(3600));
    e.revoke_sessions_of("user-2");
    Tokens {
        expired: e.mint_expired_token("user-1"),
        wrong_key: encode_token(&claims, b"not the server secret"),
        alg_none: format!("{}.{payload}.", enc.encode(r#"{"alg":"none","typ":"JWT"}"#)),
        other_company: e.mint_token("user-9", Duration::from_secs(3600)),
        logged_out,
        valid,
    }
}

#[derive(Clone, Copy, Debug)]
enum Via {
    Cookie,
    Bearer,
}

#[derive(Clone, Copy, Debug)]
enum Client {
    Browser,
    Api,
}

async fn get(url: &str, token: Option<&str>, via: Via, client: Client) -> (StatusCode, String) {
    let mut request = http_client().get(url);
    request = match client {
        Client::Browser => request.header("accept", "text/html,application/xhtml+xml"),
        Client::Api => request.header("accept", "application/json"),
    };
    if let Some(token) = token {
        request = match via {
            Via::Cookie => request.header("cookie", format!("{COOKIE}={token}")),
            Via::Bearer => request.header("authorization", format!("Bearer {token}")),
        };
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

async fn routed_gateway(extra: Vec<(&'static str, String)>) -> (Gateway, String) {
    let mut env = vec![("AUTH_ENABLED", "true".to_owned())];
    env.extend(extra);
    let gw = Gateway::start(Options { env, ..Default::default() }).await;
    let app = sample_app("secured").await;
    let task = gw.http_task("secured", app);
    let url = gw.wait_for_key(&task, "endpoint", T).await;
    (gw, url)
}

async fn wait_until_served(url: &str, token: &str) {
    let deadline = tokio::time::Instant::now() + T;
    while get(url, Some(token), Via::Bearer, Client::Api).await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "{url} never served an authenticated request");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The whole matrix: credential kind x transport x client style -> status.
async fn check_matrix(gw: &Gateway, url: &str, logged_out_status: u16) {
    let t = tokens(gw);
    wait_until_served(url, &t.valid).await;
    let cases: Vec<(&str, Option<&str>, u16)> = vec![
        ("no credentials", None, 401),
        ("garbage", Some("garbage-token"), 401),
        ("three garbage parts", Some("aaa.bbb.ccc"), 401),
        ("expired", Some(&t.expired), 401),
        ("signed with the wrong key", Some(&t.wrong_key), 401),
        ("alg none", Some(&t.alg_none), 401),
        ("valid", Some(&t.valid), 200),
        ("valid, other company", Some(&t.other_company), 403),
        ("valid, logged out", Some(&t.logged_out), logged_out_status),
    ];
    for (name, token, want) in cases {
        for via in [Via::Cookie, Via::Bearer] {
            for client in [Client::Browser, Client::Api] {
                let (status, body) = get(url, token, via, client).await;
                assert_eq!(status.as_u16(), want, "{name} via {via:?} from {client:?}: {body}");
                if want == 401 {
                    match client {
                        Client::Browser => {
                            assert!(body.contains("Log in to ClearML"), "{name}: login link missing: {body}")
                        }
                        Client::Api => {
                            let json: Value = serde_json::from_str(&body).unwrap();
                            assert_eq!(json["error"], "unauthenticated", "{body}");
                        }
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remote_mode_matrix() {
    let (gw, url) = routed_gateway(vec![]).await;
    check_matrix(&gw, &url, 401).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_mode_matrix_cannot_see_logouts() {
    // The emulator signs with this secret; local mode gets it as AUTH_BASE64_JWKS_KEY.
    let secret = base64::engine::general_purpose::STANDARD
        .encode(clearml_emulator::EmulatorConfig::default().token_secret);
    let (gw, url) = routed_gateway(vec![("AUTH_BASE64_JWKS_KEY", secret.clone())]).await;
    // Documented limitation: a logged-out token stays valid in local mode until it expires.
    check_matrix(&gw, &url, 200).await;
    let key = gw.dir.path().join("lua/clearml_auth.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(key).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!gw.router_log().contains(&secret), "the secret must not be logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_task_never_sees_credentials_and_gets_a_verified_identity() {
    let (gw, url) = routed_gateway(vec![]).await;
    let t = tokens(&gw);
    wait_until_served(&url, &t.valid).await;
    for via in [Via::Cookie, Via::Bearer] {
        let mut request = http_client()
            .get(format!("{url}echo"))
            .header("x-clearml-user-id", "admin")
            .header("x-clearml-user-name", "Spoofed")
            .header("x-clearml-company-id", "company-2");
        request = match via {
            Via::Cookie => request.header("cookie", format!("_xsrf=abc; {COOKIE}={}; theme=dark", t.valid)),
            Via::Bearer => {
                request.header("authorization", format!("Bearer {}", t.valid)).header("cookie", "_xsrf=abc")
            }
        };
        let echo: Value = request.fetch_json().await;
        let headers = &echo["headers"];
        assert!(headers.get("authorization").is_none(), "{via:?}: {headers}");
        let cookie = headers["cookie"].as_str().unwrap_or_default();
        assert!(!cookie.contains(COOKIE) && !cookie.contains(&t.valid), "{via:?}: {cookie}");
        assert!(cookie.contains("_xsrf=abc"), "the task's own cookies are kept: {cookie}");
        assert_eq!(headers["x-clearml-user-id"], "user-1");
        assert_eq!(headers["x-clearml-user-name"], "Emulated User");
        assert_eq!(headers["x-clearml-company-id"], "company-1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decisions_are_cached_and_known_users_survive_a_clearml_outage() {
    let (gw, url) = routed_gateway(vec![("AUTH_CACHE_TTL_SECONDS", "1".into())]).await;
    let t = tokens(&gw);
    wait_until_served(&url, &t.valid).await;

    // Cache hit path: many requests, one check at ClearML.
    gw.emulator.reset_stats();
    for _ in 0..20 {
        assert_eq!(get(&url, Some(&t.valid), Via::Cookie, Client::Api).await.0, 200);
    }
    let checks = gw.emulator.stats().per_endpoint.get("users.get_current_user").map(|s| s.calls).unwrap_or(0);
    assert!(checks <= 1, "20 requests with one token made {checks} checks at ClearML");

    // ClearML goes down: the known user keeps access past the fresh TTL; a new user gets 503.
    let newcomer = gw.emulator.mint_token("user-1", Duration::from_secs(3600));
    let stale_before = gw.nginx_error_log().matches(STALE).count();
    gw.emulator.set_available(false);
    // Served throughout, until the proxy says it served the login stale and could not re-check it.
    let deadline = tokio::time::Instant::now() + T;
    while gw.nginx_error_log().matches(STALE).count() == stale_before {
        assert_eq!(get(&url, Some(&t.valid), Via::Cookie, Client::Api).await.0, 200);
        assert!(tokio::time::Instant::now() < deadline, "no stale decision was used within {T:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = get(&url, Some(&newcomer), Via::Cookie, Client::Browser).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("cannot be reached"), "{body}");
    gw.emulator.set_available(true);
    assert_eq!(get(&url, Some(&newcomer), Via::Cookie, Client::Api).await.0, 200);

    // A logout is seen once the fresh TTL has passed: the first request after it is still served
    // (stale-while-revalidate) while the background re-check learns of the logout.
    gw.emulator.revoke_sessions_of("user-1");
    let deadline = tokio::time::Instant::now() + T;
    loop {
        match get(&url, Some(&t.valid), Via::Cookie, Client::Api).await.0.as_u16() {
            401 => break,
            200 => {} // the cached decision, until the TTL passes
            other => panic!("a logged-out token got {other}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "the logout was not seen within {T:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the proxy logs when it served a cached login past its fresh TTL and the background
/// re-check could not reach ClearML (the login stays).
const STALE: &str = "background re-check failed";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disabled_auth_is_explicit_and_loud() {
    let gw = Gateway::start(Options::default()).await;
    let app = sample_app("open").await;
    let task = gw.http_task("open", app);
    let url = gw.wait_for_key(&task, "endpoint", T).await;
    gw.wait_for_status(&url, 200, T).await;
    assert!(gw.router_log().contains("AUTH_ENABLED=false"), "{}", gw.router_log());
    let status: Value = http_client()
        .get(format!("http://127.0.0.1:{}/__clearml_router/status", gw.control_port))
        .fetch_json()
        .await;
    assert_eq!(status["auth"], "disabled");
    // Spoofed identity headers never reach the task, even with authentication off.
    let echo: Value =
        http_client().get(format!("{url}echo")).header("x-clearml-user-id", "admin").fetch_json().await;
    assert!(echo["headers"].get("x-clearml-user-id").is_none(), "{}", echo["headers"]);
}
