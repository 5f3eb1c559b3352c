//! Rate limits, the real client address and the allowed target networks, through the real router
//! binary and real nginx + Lua: 429 with Retry-After once a client's burst is spent (per header
//! value, per client address, across all targets of a route), a limit changed without a reload,
//! the client address through a trusted proxy (X-Forwarded-For and PROXY protocol) and not from
//! an untrusted one, targets outside ROUTER_TASK_TARGET_NETWORKS refused with the reason, and the
//! accuracy of a limit over ten seconds of steady overload.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(20);

async fn gateway(env: &[(&'static str, &str)]) -> Gateway {
    Gateway::start(Options {
        env: env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        ..Default::default()
    })
    .await
}

/// GET `url` with `headers`: status, Retry-After and the JSON body (Null if not JSON).
async fn get(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> (u16, Option<String>, Value) {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (status, retry, response.json().await.unwrap_or(Value::Null))
}

/// Sends `n` requests and returns their statuses.
async fn statuses(client: &reqwest::Client, url: &str, headers: &[(&str, &str)], n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(get(client, url, headers).await.0);
    }
    out
}

/// Asserts a 429 that says when to come back: Retry-After whole seconds in 1..=`max`.
fn assert_limited((status, retry, body): &(u16, Option<String>, Value), max: u64) {
    assert_eq!(*status, 429, "{body}");
    let seconds: u64 = retry.as_deref().expect("Retry-After").parse().expect("whole seconds");
    assert!((1..=max).contains(&seconds), "Retry-After {seconds}");
    assert_eq!(body["error"], "rate_limited", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn task_endpoints_answer_429_once_the_burst_is_spent_per_key() {
    let gw = gateway(&[("ROUTER_TASK_RATE_LIMIT", "rps=0.2,burst=3,key=header:X-Api-Key")]).await;
    let (_, url) = gw.routed_task("limited").await;
    let http = http_client();
    assert_eq!(statuses(&http, &url, &[("x-api-key", "alice")], 3).await, [200, 200, 200]);
    assert_limited(&get(&http, &url, &[("x-api-key", "alice")]).await, 5);
    // Another key has its own burst; alice is still limited.
    assert_eq!(statuses(&http, &url, &[("x-api-key", "bob")], 3).await, [200, 200, 200]);
    assert_limited(&get(&http, &url, &[("x-api-key", "bob")]).await, 5);
    assert_limited(&get(&http, &url, &[("x-api-key", "alice")]).await, 5);
}

/// A public load-balanced static route `/lb` over `targets`, limited to a burst of `burst` per
/// X-Test header value.
fn balanced_route(targets: &[SocketAddr], burst: u32) -> Value {
    let targets: Vec<String> = targets.iter().map(ToString::to_string).collect();
    json!({"routes": [{"name": "lb", "path": "/lb", "access": "public", "load_balanced": true,
        "targets": targets,
        "rate_limit": {"requests_per_second": 0.2, "burst": burst, "key": "header:X-Test"}}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_static_route_limit_holds_across_its_targets_and_changes_without_a_reload() {
    let mut gw = Gateway::start(Options { no_router: true, ..Default::default() }).await;
    let targets = [sample_app("a").await, sample_app("b").await];
    gw.write_static_routes(&balanced_route(&targets, 4));
    gw.extra_env.push(("ROUTER_STATIC_ROUTES_FILE".into(), gw.static_routes_file().display().to_string()));
    gw.start_router();
    let url = format!("{}/lb/echo", gw.router_url);
    gw.wait_for_status(&url, 200, T).await;

    // Without a cookie the balancer alternates: the four allowed requests reach both targets,
    // and the fifth is refused whichever target is next.
    let http = http_client();
    let mut apps = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let (status, _, body) = get(&http, &url, &[("x-test", "k1")]).await;
        assert_eq!(status, 200, "{body}");
        apps.insert(body["app"].as_str().unwrap().to_owned());
    }
    assert_eq!(apps.len(), 2, "both targets served: {apps:?}");
    assert_limited(&get(&http, &url, &[("x-test", "k1")]).await, 5);

    // The operator API shows the limit; a new limit is data: no reload.
    let listed: Value = http_client().get(gw.status_url("/api/static-routes")).fetch_json().await;
    assert_eq!(
        listed["routes"][0]["rate_limit"],
        json!({"requests_per_second": 0.2, "burst": 4, "key": "header:X-Test"})
    );
    let reloads = gw.nginx_reloads();
    let before = gw.routes_version().await;
    gw.write_static_routes(&balanced_route(&targets, 8));
    gw.wait_for_routes_change(&before, T).await;
    assert_eq!(statuses(&http, &url, &[("x-test", "k2")], 8).await, [200; 8]);
    assert_limited(&get(&http, &url, &[("x-test", "k2")]).await, 5);
    assert_eq!(gw.nginx_reloads(), reloads, "changing a limit reloaded nginx");

    // A limit that does not validate refuses the file, naming the route and field.
    gw.write_static_routes(
        &json!({"routes": [{"name": "lb", "path": "/lb", "rate_limit": {"requests_per_second": 0}}]}),
    );
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let status: Value = http_client().get(gw.status_url("/api/status")).fetch_json().await;
        let errors = status["static_errors"].to_string();
        if errors.contains("route lb: rate_limit: requests_per_second") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Floods `url` from four keep-alive clients for `seconds`; returns (allowed, refused).
async fn flood(url: &str, headers: &'static [(&'static str, &'static str)], seconds: u64) -> (u64, u64) {
    let allowed = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let mut loops = Vec::new();
    for _ in 0..4 {
        let (url, allowed, refused) = (url.to_owned(), allowed.clone(), refused.clone());
        loops.push(tokio::spawn(async move {
            let http = http_client();
            while tokio::time::Instant::now() < end {
                match get(&http, &url, headers).await.0 {
                    200 => allowed.fetch_add(1, Ordering::Relaxed),
                    429 => refused.fetch_add(1, Ordering::Relaxed),
                    other => panic!("unexpected status {other}"),
                };
            }
        }));
    }
    for l in loops {
        l.await.unwrap();
    }
    (allowed.load(Ordering::Relaxed), refused.load(Ordering::Relaxed))
}

/// Ten seconds of steady overload against a route limited to `rps` with burst `burst`: the
/// allowed count against rps * 10 + burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limit_accuracy_over_ten_seconds() {
    let (rps, burst) = (50u64, 20u64);
    let limit = format!("rps={rps},burst={burst},key=header:X-Load");
    let gw = gateway(&[("ROUTER_TASK_RATE_LIMIT", &limit)]).await;
    let (_, url) = gw.routed_task("accuracy").await;
    let (allowed, refused) = flood(&url, &[("x-load", "flood")], 10).await;
    let configured = rps * 10 + burst;
    let ratio = allowed as f64 / configured as f64;
    println!(
        "rate limit accuracy: {allowed} allowed, {refused} refused in 10 s at {rps} rps burst {burst}: \
         configured {configured}, ratio {ratio:.3}"
    );
    assert!(refused > allowed, "the flood was not above the limit: {refused} refused");
    assert!((0.95..=1.05).contains(&ratio), "allowed {allowed} of {configured}");
}

/// The headers the sample app received for a GET of `url` with `headers`.
async fn seen_headers(url: &str, headers: &[(&str, &str)]) -> Value {
    let (status, _, body) = get(&http_client(), url, headers).await;
    assert_eq!(status, 200, "{body}");
    body["headers"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trusted_proxy_names_the_client_and_an_untrusted_one_cannot() {
    let limit = ("ROUTER_TASK_RATE_LIMIT", "rps=0.2,burst=2,key=client");
    let trusting = gateway(&[("ROUTER_TRUSTED_PROXIES", "127.0.0.1/32"), limit]).await;
    let (_, url) = trusting.routed_task("trusting").await;
    let url = format!("{url}echo");
    let seen = seen_headers(&url, &[("x-forwarded-for", "198.51.100.1, 203.0.113.9")]).await;
    assert_eq!(seen["x-real-ip"], "203.0.113.9", "{seen}");
    assert_eq!(seen["x-forwarded-for"], "203.0.113.9", "no forged entry is passed on: {seen}");
    // The limit counts the real client: 203.0.113.9 has one request left, another client two.
    let http = http_client();
    let other = [("x-forwarded-for", "203.0.113.10")];
    assert_eq!(get(&http, &url, &[("x-forwarded-for", "203.0.113.9")]).await.0, 200);
    assert_limited(&get(&http, &url, &[("x-forwarded-for", "203.0.113.9")]).await, 5);
    assert_eq!(statuses(&http, &url, &other, 2).await, [200, 200]);

    // 127.0.0.1 is not trusted here: its X-Forwarded-For is not believed, and changing it does
    // not escape the limit.
    let untrusting = gateway(&[("ROUTER_TRUSTED_PROXIES", "10.0.0.0/8"), limit]).await;
    let (_, url) = untrusting.routed_task("untrusting").await;
    let url = format!("{url}echo");
    // routed_task's check took the first request of 127.0.0.1's burst.
    let seen = seen_headers(&url, &[("x-forwarded-for", "203.0.113.9"), ("x-real-ip", "203.0.113.9")]).await;
    assert_eq!(seen["x-real-ip"], "127.0.0.1", "{seen}");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1", "{seen}");
    assert_limited(&get(&http, &url, &[("x-forwarded-for", "203.0.113.77")]).await, 5);
}

/// One HTTP/1.1 request over a new connection that starts with `proxy_line` (if any): the
/// status code and the body.
async fn raw_request(port: u16, proxy_line: Option<&str>, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!(
        "{}GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n",
        proxy_line.unwrap_or("")
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // nginx may reset a connection it refuses; what was read until then is the answer.
    let _ = tokio::time::timeout(T, stream.read_to_end(&mut answer)).await.expect("answer in time");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn proxy_v1(client: &str, port: u16) -> String {
    format!("PROXY TCP4 {client} 127.0.0.1 40001 {port}\r\n")
}

/// The JSON in a possibly chunked body.
fn json_body(body: &str) -> Value {
    let start = body.find('{').unwrap_or(0);
    let end = body.rfind('}').map_or(body.len(), |i| i + 1);
    serde_json::from_str(&body[start..end]).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_proxy_protocol_of_a_trusted_proxy_names_the_client() {
    let gw = gateway(&[
        ("ROUTER_PROXY_PROTOCOL", "true"),
        ("ROUTER_TRUSTED_PROXIES", "127.0.0.1/32"),
        ("ROUTER_TASK_RATE_LIMIT", "rps=0.2,burst=1,key=client"),
    ])
    .await;
    let app = sample_app("pp").await;
    let task = gw.http_task("pp", app);
    gw.wait_for_key(&task, "endpoint", T).await;
    let path = format!("/service/{task}/echo");
    // Until the router's config (with proxy_protocol) is loaded; each try from its own client.
    let deadline = tokio::time::Instant::now() + T;
    for i in 1.. {
        let (status, _) =
            raw_request(gw.http_port, Some(&proxy_v1(&format!("192.0.2.{i}"), gw.http_port)), &path).await;
        if status == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline && i < 250, "never answered 200 (last {status})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = proxy_v1("198.51.100.4", gw.http_port);
    let (status, body) = raw_request(gw.http_port, Some(&client), &path).await;
    assert_eq!(status, 200, "{body}");
    let seen = &json_body(&body)["headers"];
    assert_eq!(seen["x-real-ip"], "198.51.100.4", "{body}");
    assert_eq!(seen["x-forwarded-for"], "198.51.100.4", "{body}");
    // The limit counts the client the PROXY header names, not the proxy.
    let (status, body) = raw_request(gw.http_port, Some(&client), &path).await;
    assert_eq!(status, 429, "{body}");
    let (status, _) = raw_request(gw.http_port, Some(&proxy_v1("198.51.100.5", gw.http_port)), &path).await;
    assert_eq!(status, 200);
    // A connection without the PROXY header is not served.
    let (status, _) = raw_request(gw.http_port, None, &path).await;
    assert_ne!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_outside_the_allowed_networks_is_refused_with_the_reason() {
    let mut gw = Gateway::start(Options {
        no_router: true,
        env: vec![("ROUTER_TASK_TARGET_NETWORKS", "127.0.0.1/32".into())],
        ..Default::default()
    })
    .await;
    let inside_app = sample_app("inside").await;
    gw.write_static_routes(
        &json!({"routes": [{"name": "out", "path": "/out", "access": "public", "targets": ["127.0.0.2:8000"]}]}),
    );
    gw.extra_env.push(("ROUTER_STATIC_ROUTES_FILE".into(), gw.static_routes_file().display().to_string()));
    gw.start_router();
    let (inside, _) = gw.routed_task("inside").await;
    let outside = gw.http_task("outside", SocketAddr::new("127.0.0.2".parse().unwrap(), inside_app.port()));
    let reason = "address 127.0.0.2 is outside ROUTER_TASK_TARGET_NETWORKS (127.0.0.1/32); refused";
    let deadline = tokio::time::Instant::now() + T;
    let status = loop {
        let status: Value = http_client().get(gw.status_url("/api/status")).fetch_json().await;
        let refused = status["refused"].as_array().unwrap();
        if refused
            .iter()
            .any(|r| r["task"] == outside.as_str() && r["reason"].as_str().unwrap().contains(reason))
        {
            break status;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status}\n{}", gw.router_log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The static route's fixed target is refused too, naming the route and field.
    let errors = status["static_errors"].to_string();
    assert!(
        errors.contains("route out: targets: address 127.0.0.2 is outside ROUTER_TASK_TARGET_NETWORKS"),
        "{errors}"
    );
    // Refused tasks never reach the routing table; the one inside is served.
    let routes = std::fs::read_to_string(gw.dir.path().join("lua/routes.json")).unwrap();
    assert!(routes.contains(&inside) && !routes.contains(&outside), "{routes}");
    let (code, _, _) = get(&http_client(), &format!("{}/service/{outside}/", gw.router_url), &[]).await;
    assert_eq!(code, 404);
    let logged = gw.router_log().lines().any(|l| l.contains(&outside) && l.contains(reason));
    assert!(logged, "the refusal is logged:\n{}", gw.router_log());
}
