//! LISTEN_QUEUE_NAME: a router routes only the tasks of its queues (names, wildcards).

mod common;

use std::time::Duration;

use clearml_emulator::NewTask;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_tasks_on_listened_queues_are_routed() {
    let mut gw = Gateway::start(Options {
        env: vec![("LISTEN_QUEUE_NAME", "gpu-* services".into())],
        no_router: true,
        ..Default::default()
    })
    .await;
    let app = sample_app("a").await;
    let gpu = gw.emulator.create_queue("gpu-a100");
    let services = gw.emulator.create_queue("services");
    let cpu = gw.emulator.create_queue("cpu");
    let task_on = |queue: &str| {
        gw.emulator.create_task(NewTask {
            name: format!("on {queue}"),
            status: "in_progress".into(),
            queue: Some(queue.to_owned()),
            runtime: json!({"_SERVICE": "EXTERNAL", "_ADDRESS": "127.0.0.1", "_PORT": app.port()}),
            system_tags: vec!["external_service".into()],
            ..Default::default()
        })
    };
    let (on_gpu, on_services, on_cpu) = (task_on(&gpu), task_on(&services), task_on(&cpu));
    gw.start_router();

    let t = Duration::from_secs(15);
    gw.wait_for_key(&on_gpu, "endpoint", t).await;
    gw.wait_for_key(&on_services, "endpoint", t).await;
    gw.wait_for_status(&format!("{}/service/{on_gpu}/", gw.router_url), 200, t).await;
    // Another round, in which the router would (wrongly) pick up the cpu task.
    gw.wait_for_polls(2, t).await;
    assert!(gw.runtime(&on_cpu).get("endpoint").is_none());
    let r = http_client().get(format!("{}/service/{on_cpu}/", gw.router_url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
}
