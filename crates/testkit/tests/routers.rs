//! Several routers on one ClearML: each routes the tasks of its own queues, records itself as the
//! owner of what it serves, and never overwrites endpoints another router published.

mod common;

use std::time::Duration;

use clearml_emulator::NewTask;
use common::*;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_routers_split_tasks_by_queue_and_respect_ownership() {
    let a = Gateway::start(Options {
        env: vec![("ROUTER_NAME", "router-a".into()), ("LISTEN_QUEUE_NAME", "team-a".into())],
        ..Default::default()
    })
    .await;
    let mut b = Gateway::start(Options {
        env: vec![("ROUTER_NAME", "router-b".into()), ("LISTEN_QUEUE_NAME", "team-b".into())],
        emulator: Some(a.emulator.clone()),
        ..Default::default()
    })
    .await;
    let emulator = &a.emulator;
    let app = sample_app("shared").await;
    let task_on = |queue: &str| {
        let queue_id = emulator.create_queue(queue);
        emulator.create_task(NewTask {
            name: format!("on {queue}"),
            status: "in_progress".into(),
            queue: Some(queue_id),
            runtime: json!({"_SERVICE": "EXTERNAL", "_ADDRESS": "127.0.0.1", "_PORT": app.port()}),
            system_tags: vec!["external_service".into()],
            ..Default::default()
        })
    };
    let (on_a, on_b) = (task_on("team-a"), task_on("team-b"));
    assert_eq!(a.wait_for_key(&on_a, "endpoint", T).await, format!("{}/service/{on_a}/", a.router_url));
    assert_eq!(b.wait_for_key(&on_b, "endpoint", T).await, format!("{}/service/{on_b}/", b.router_url));
    assert_eq!(a.runtime(&on_a)["_ROUTER_OWNER"], "router-a");
    assert_eq!(b.runtime(&on_b)["_ROUTER_OWNER"], "router-b");
    a.wait_for_status(&format!("{}/service/{on_a}/", a.router_url), 200, T).await;
    b.wait_for_status(&format!("{}/service/{on_b}/", b.router_url), 200, T).await;
    // Each proxy serves only its router's tasks.
    let r = http_client().get(format!("{}/service/{on_b}/", a.router_url)).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // Router B now also listens to A's queue: it leaves A's endpoint alone, A's URL stays.
    b.stop_router().await;
    b.extra_env.push(("LISTEN_QUEUE_NAME".into(), "team-b team-a".into()));
    b.start_router();
    let deadline = tokio::time::Instant::now() + T;
    while !b.router_log().contains("served by router \"router-a\"") {
        assert!(tokio::time::Instant::now() < deadline, "{}", b.router_log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Another round, in which B would (wrongly) take A's task over.
    b.wait_for_polls(2, T).await;
    assert_eq!(
        emulator.task(&on_a).unwrap()["runtime"]["endpoint"],
        format!("{}/service/{on_a}/", a.router_url)
    );
    assert_eq!(emulator.task(&on_a).unwrap()["runtime"]["_ROUTER_OWNER"], "router-a");
}
