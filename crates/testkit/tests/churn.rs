//! Task churn: 50 tasks start and stop (routed, then 404) while a websocket to another task stays
//! open and echoing. Route changes only touch the Lua routing table: nginx is never reloaded, so
//! the long-lived connection is never cut.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

const T: Duration = Duration::from_secs(15);
const BATCHES: usize = 5;
const BATCH_SIZE: usize = 10;

/// Sends `text` on the open websocket and asserts the very next data frame is its echo.
async fn roundtrip(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("sending {text:?} on the open websocket failed: {e}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next()).await;
        match next {
            Err(_) => panic!("no echo of {text:?} within 5s"),
            Ok(None) => panic!("websocket ended while waiting for {text:?}"),
            Ok(Some(Err(e))) => panic!("websocket error while waiting for {text:?}: {e}"),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(frame))) => {
                assert_eq!(frame, Message::Text(text.to_owned()), "echo of {text:?}");
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_tasks_churn_without_reload_and_an_open_websocket_survives() {
    let started = Instant::now();
    let gw = Gateway::start(Options::default()).await;
    let http = http_client();

    // Task A with a websocket that stays open for the whole test.
    let (task_a, url_a) = gw.routed_task("a").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}ws", url_a.replacen("http", "ws", 1)))
        .await
        .expect("websocket upgrade through the proxy");
    roundtrip(&mut ws, "hello before churn").await;
    let mut echoes = 1;

    let mut churned: Vec<(String, String)> = Vec::new();
    for batch in 0..BATCHES {
        // Start a batch: each task gets its own app, so a mix-up of targets would show.
        let mut tasks = Vec::new();
        for i in 0..BATCH_SIZE {
            let name = format!("churn-{batch}-{i}");
            let app = sample_app(&name).await;
            let id = gw.http_task(&name, app);
            tasks.push((id, name));
        }
        let mut urls = Vec::new();
        for (id, name) in &tasks {
            let url = gw.wait_for_key(id, "endpoint", T).await;
            assert_eq!(url, format!("{}/service/{id}/", gw.router_url));
            gw.wait_for_status(&url, 200, T).await;
            let echo: Value = http.get(format!("{url}whoami")).fetch_json().await;
            assert_eq!(echo["app"], name.as_str(), "{url} reached the wrong app: {echo}");
            assert_eq!(echo["uri"], "/whoami");
            assert_eq!(echo["headers"]["x-forwarded-prefix"], format!("/service/{id}"));
            urls.push(url);
        }
        roundtrip(&mut ws, &format!("batch {batch} live")).await;
        echoes += 1;

        // Stop the batch: every URL goes 404 and the keys are retracted.
        for (id, _) in &tasks {
            gw.emulator.set_status(id, "stopped");
        }
        for ((id, _), url) in tasks.iter().zip(&urls) {
            gw.wait_for_status(url, 404, T).await;
            gw.wait_for_key_gone(id, "endpoint", T).await;
        }
        roundtrip(&mut ws, &format!("batch {batch} stopped")).await;
        echoes += 1;

        // A is untouched by the churn.
        let r = http.get(&url_a).send().await.unwrap();
        assert_eq!(r.status(), 200, "task A after batch {batch}");
        churned.extend(tasks.into_iter().zip(urls).map(|((id, _), url)| (id, url)));
    }

    // The same connection (no reconnect) still echoes.
    roundtrip(&mut ws, "hello after churn").await;
    echoes += 1;
    assert_eq!(churned.len(), BATCHES * BATCH_SIZE);
    assert_eq!(gw.nginx_reloads(), 0, "task churn must not reload nginx\nrouter log:\n{}", gw.router_log());
    for (id, url) in &churned {
        let r = http.get(url).send().await.unwrap();
        assert_eq!(r.status(), 404, "{url} of stopped task {id}");
        let runtime = gw.runtime(id);
        assert!(runtime.get("endpoint").is_none(), "endpoint kept on {id}: {runtime}");
        assert!(runtime.get("browser_endpoint").is_none(), "browser_endpoint kept on {id}: {runtime}");
    }
    assert_eq!(gw.runtime(&task_a)["endpoint"], url_a.as_str());
    let r = http.get(&url_a).send().await.unwrap();
    assert_eq!(r.status(), 200);
    ws.close(None).await.unwrap();

    println!(
        "churn: tasks churned={}, nginx reloads={}, websocket echoes={echoes}, elapsed={:.1?}",
        churned.len(),
        gw.nginx_reloads(),
        started.elapsed()
    );
}

/// A change to a large table touches only the entries that changed: the proxy's counter of
/// shared-dict writes and deletes goes up by exactly the number of changed routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_table_change_touches_only_the_changed_entries() {
    const N: usize = 3000;
    let gw = Gateway::start(Options::default()).await;
    let tasks: Vec<String> = (0..N)
        .map(|i| {
            let target = format!("10.9.{}.{}:{}", i / 250, i % 250 + 1, 9000 + i % 1000).parse().unwrap();
            gw.http_task(&format!("bulk-{i}"), target)
        })
        .collect();
    let routes = |v: &Value| v["routes"].as_u64().unwrap_or(0) as usize;
    let stats = |v: &Value, k: &str| v["routes_stats"][k].as_u64().unwrap_or(0);
    let before = gw.wait_for_proxy("every route loaded", Duration::from_secs(120), |v| routes(v) == N).await;

    // One task moves to another port, one stops.
    gw.emulator.update_task(&tasks[10], |t| t["runtime"]["_PORT"] = 7.into());
    gw.emulator.set_status(&tasks[20], "stopped");
    let after = gw
        .wait_for_proxy("the move and the stop", Duration::from_secs(30), |v| {
            routes(v) == N - 1 && stats(v, "touched") >= stats(&before, "touched") + 2
        })
        .await;
    assert_eq!(stats(&after, "touched") - stats(&before, "touched"), 2, "before {before}\nafter {after}");
    assert!(stats(&after, "diff_loads") > stats(&before, "diff_loads"), "not diffed: {after}");
    assert_eq!(stats(&after, "full_loads"), stats(&before, "full_loads"), "whole file loaded: {after}");
}
