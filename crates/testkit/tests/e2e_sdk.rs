//! End to end with the real clearml SDK: a task asks for an endpoint, the router routes it
//! through real nginx + Lua, the URL serves the task's app (HTTP, websocket, streaming, upload),
//! and when the task stops the URL answers 404 and the endpoint keys are retracted.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// `request_external_endpoint(port, wait=True)` through the real SDK; returns what the SDK reported.
async fn request_endpoint(gw: &Gateway, task: &str, port: u16, name: Option<&str>) -> Value {
    let port = port.to_string();
    let mut args = vec![task, "--port", &port, "--wait", "--interval", "0.5", "--timeout", "30"];
    if let Some(name) = name {
        args.extend(["--name", name]);
    }
    let out = run_sdk_script(&gw.emulator, "request_endpoint.py", &args).await;
    let line = out.lines().find_map(|l| l.strip_prefix("SDK_RESULT=")).expect("the script reports a result");
    serde_json::from_str(line).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sdk_request_is_served_through_the_proxy_then_404_after_stop() {
    let gw = Gateway::start(Options::default()).await;
    let app = sample_app("notebook").await;
    // A running task that has not asked yet: the SDK writes the keys and the tag itself.
    let task = gw.emulator.create_task(clearml_emulator::NewTask {
        name: "notebook".into(),
        status: "in_progress".into(),
        ..Default::default()
    });

    let reply = request_endpoint(&gw, &task, app.port(), None).await;
    let expected = format!("{}/service/{task}/", gw.router_url);
    assert_eq!(reply["result"]["endpoint"], Value::String(expected.clone()), "{reply}");
    assert_eq!(reply["result"]["browser_endpoint"], Value::String(expected.clone()));

    let http = http_client();
    // Plain request: the /service/<id> prefix is stripped, the raw path and query reach the app
    // byte for byte, and the prefix is announced in X-Forwarded-Prefix.
    let echo: Value = http.get(format!("{expected}api/contents/a%2Fb%20c?x=1&y=%2F")).fetch_json().await;
    assert_eq!(echo["uri"], "/api/contents/a%2Fb%20c?x=1&y=%2F");
    assert_eq!(echo["headers"]["x-forwarded-prefix"], format!("/service/{task}"));
    assert_eq!(echo["headers"]["host"], format!("127.0.0.1:{}", gw.http_port));

    // Without the trailing slash: redirected to the canonical URL.
    let no_slash =
        reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = no_slash.get(format!("{}/service/{task}?q=1", gw.router_url)).send().await.unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"].to_str().unwrap(), format!("/service/{task}/?q=1"));

    // Websocket echo round-trip through the proxy.
    let ws_url = format!("{}ws", expected.replacen("http", "ws", 1));
    let (mut ws, _) =
        tokio_tungstenite::connect_async(&ws_url).await.expect("websocket upgrade through the proxy");
    ws.send(Message::Text("hello through the gateway".into())).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed, Message::Text("hello through the gateway".into()));

    // Server-sent events arrive as they are produced, not buffered until the end.
    let started = Instant::now();
    let mut response = http.get(format!("{expected}sse?n=5&interval_ms=300")).send().await.unwrap();
    let first = response.chunk().await.unwrap().unwrap();
    let first_after = started.elapsed();
    assert!(String::from_utf8_lossy(&first).contains("event 0"));
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    let total = started.elapsed();
    assert!(String::from_utf8_lossy(&rest).contains("event 4"));
    assert!(total >= Duration::from_millis(1200), "stream took {total:?}");
    assert!(
        first_after < total - Duration::from_millis(900),
        "first event after {first_after:?} of {total:?}: buffered"
    );

    // A large upload streams through unchanged (nginx has no body size limit for tasks).
    let body: Vec<u8> = (0..40 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&body))
    };
    let upload: Value = http.post(format!("{expected}upload")).body(body).fetch_json().await;
    assert_eq!(upload["bytes"], 40 * 1024 * 1024);
    assert_eq!(upload["sha256"], sha);

    // The task stops: its URL answers a clear 404 and the endpoint keys are retracted.
    gw.emulator.set_status(&task, "stopped");
    gw.wait_for_status(&expected, 404, Duration::from_secs(10)).await;
    let page = http.get(&expected).header("accept", "text/html").send().await.unwrap();
    assert_eq!(page.status(), 404);
    assert!(page.text().await.unwrap().contains("No such endpoint"));
    gw.wait_for_key_gone(&task, "endpoint", Duration::from_secs(10)).await;
    assert!(gw.runtime(&task).get("browser_endpoint").is_none());
    assert_eq!(gw.runtime(&task)["_PORT"], app.port(), "the SDK's own keys are kept");
    assert_eq!(gw.nginx_reloads(), 0, "task start and stop must not reload nginx");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn named_endpoints_get_their_own_url() {
    let gw = Gateway::start(Options::default()).await;
    let app = sample_app("model").await;
    let task = gw.emulator.create_task(clearml_emulator::NewTask {
        name: "model server".into(),
        status: "in_progress".into(),
        ..Default::default()
    });
    let reply = request_endpoint(&gw, &task, app.port(), Some("api")).await;
    let expected = format!("{}/service/{task}__api/", gw.router_url);
    assert_eq!(reply["result"]["endpoint"], Value::String(expected.clone()), "{reply}");
    assert_eq!(reply["result"]["name"], "api");
    let echo: Value = http_client().get(format!("{expected}v1/predict")).fetch_json().await;
    assert_eq!(echo["uri"], "/v1/predict");
    assert_eq!(echo["app"], "model");
    // The unnamed URL of the same task is not routed.
    let r = http_client().get(format!("{}/service/{task}/", gw.router_url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_endpoint_can_keep_the_prefix_for_apps_that_serve_under_it() {
    let gw = Gateway::start(Options::default()).await;
    let app = sample_app("jupyter-like").await;
    // Jupyter with `--ServerApp.base_url=/service/<id>/` serves under the prefix itself.
    let task = gw.emulator.create_task(clearml_emulator::NewTask {
        name: "notebook".into(),
        status: "in_progress".into(),
        runtime: serde_json::json!({"_SERVICE": "EXTERNAL", "_ADDRESS": "127.0.0.1", "_PORT": app.port(),
            "_ROUTER_STRIP_PREFIX": false}),
        system_tags: vec!["external_service".into()],
        ..Default::default()
    });
    let url = gw.wait_for_key(&task, "endpoint", Duration::from_secs(15)).await;
    let echo: Value = http_client().get(format!("{url}api/kernels?x=%2F")).fetch_json().await;
    assert_eq!(echo["uri"], format!("/service/{task}/api/kernels?x=%2F"));
    assert_eq!(echo["headers"]["x-forwarded-prefix"], format!("/service/{task}"));
}
