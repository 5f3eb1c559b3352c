//! Structural changes: validated, swapped, reloaded and confirmed; an invalid render is refused
//! and the old config keeps serving; a restarted router picks up where the last one left off.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(15);

async fn wait_for_log(gw: &Gateway, needle: &str) {
    let deadline = tokio::time::Instant::now() + T;
    while !gw.router_log().contains(needle) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "router log never said {needle:?}:\n{}",
            gw.router_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn structural_change_reloads_once_and_keeps_open_websockets() {
    let mut gw = Gateway::start(Options::default()).await;
    let app = sample_app("a").await;
    let task = gw.http_task("a", app);
    let url = gw.wait_for_key(&task, "endpoint", T).await;
    gw.wait_for_status(&url, 200, T).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("{}ws", url.replacen("http", "ws", 1))).await.unwrap();
    assert_eq!(gw.nginx_reloads(), 0);

    // A new router name changes the rendered config: one validated reload, confirmed by hash.
    gw.stop_router().await;
    gw.extra_env.push(("ROUTER_NAME".into(), "renamed".into()));
    gw.start_router();
    wait_for_log(&gw, "reloaded: true").await;
    assert_eq!(gw.nginx_reloads(), 1, "exactly one reload for one structural change");
    let conf = std::fs::read_to_string(gw.dir.path().join("conf.d/clearml-router.conf")).unwrap();
    assert!(conf.contains("router \"renamed\""));

    // The websocket opened before the reload still works (graceful reload), and so does routing.
    ws.send(Message::Text("still there".into())).await.unwrap();
    let reply = tokio::time::timeout(T, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(reply, Message::Text("still there".into()));
    gw.wait_for_status(&url, 200, T).await;
    // The renamed router takes its own endpoints over (same URL): the owner key follows.
    let deadline = tokio::time::Instant::now() + T;
    while gw.runtime(&task)["_ROUTER_OWNER"] != "renamed" {
        assert!(tokio::time::Instant::now() < deadline, "{}", gw.runtime(&task));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gw.runtime(&task)["endpoint"], url.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_config_is_refused_and_the_old_one_keeps_serving() {
    let mut gw = Gateway::start(Options::default()).await;
    let app = sample_app("a").await;
    let task = gw.http_task("a", app);
    let url = gw.wait_for_key(&task, "endpoint", T).await;
    let conf_path = gw.dir.path().join("conf.d/clearml-router.conf");
    let before = std::fs::read(&conf_path).unwrap();

    // The validating nginx cannot load the Lua module: real `nginx -t` fails on the new render.
    gw.stop_router().await;
    let empty = tempfile::tempdir().unwrap();
    gw.extra_env.push(("ROUTER_NAME".into(), "renamed".into()));
    gw.extra_env.push(("ROUTER_NGINX_MODULES_INCLUDE".into(), format!("{}/*.conf", empty.path().display())));
    gw.start_router();
    wait_for_log(&gw, "new config is invalid").await;
    assert!(gw.router_log().contains("nginx -t failed"), "{}", gw.router_log());
    assert_eq!(std::fs::read(&conf_path).unwrap(), before, "live config untouched");
    assert_eq!(gw.nginx_reloads(), 0);
    gw.wait_for_status(&url, 200, T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_router_retracts_endpoints_of_tasks_that_stopped_meanwhile() {
    let mut gw = Gateway::start(Options::default()).await;
    let app = sample_app("a").await;
    let stays = gw.http_task("stays", app);
    let leaves = gw.http_task("leaves", app);
    let stays_url = gw.wait_for_key(&stays, "endpoint", T).await;
    gw.wait_for_key(&leaves, "endpoint", T).await;

    gw.stop_router().await;
    gw.emulator.set_status(&leaves, "stopped");
    // The proxy keeps serving while the router is down (data plane independent of control plane).
    gw.wait_for_status(&stays_url, 200, T).await;
    gw.start_router();
    gw.wait_for_key_gone(&leaves, "endpoint", T).await;
    gw.wait_for_status(&format!("{}/service/{leaves}/", gw.router_url), 404, T).await;
    assert_eq!(gw.runtime(&stays)["endpoint"], stays_url.as_str());
    assert_eq!(gw.nginx_reloads(), 0);
}
