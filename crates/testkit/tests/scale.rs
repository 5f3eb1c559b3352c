//! The router at the real server's limits: `tasks.get_all` answers at most 500 tasks (the
//! emulator enforces the open-source server's `max_page_size`), so a poll must page.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_behind_the_page_cap_is_routed() {
    const TASKS: usize = 1_200;
    let gw = Gateway::start(Options::default()).await;
    let app = sample_app("scale").await;
    let ids: Vec<String> = (0..TASKS).map(|i| gw.http_task(&format!("scale-{i}"), app)).collect();

    // All of them get their endpoint written back (the write-back follows the confirmed apply).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let published = ids.iter().filter(|id| gw.runtime(id).get("endpoint").is_some()).count();
        if published == TASKS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{published} of {TASKS} tasks were routed\nrouter log:\n{}",
            gw.router_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The first, a middle one and the last created are served through the proxy.
    for id in [&ids[0], &ids[TASKS / 2], &ids[TASKS - 1]] {
        gw.wait_for_status(&format!("{}/service/{id}/", gw.router_url), 200, Duration::from_secs(10)).await;
    }
    // The poll pages: the next polls ask for page 2 (tasks 1,000..1,200) too. (The emulator's
    // call log keeps recent calls only, so wait for a poll after the write-backs.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !gw
        .emulator
        .calls()
        .iter()
        .any(|c| c.endpoint == "tasks.get_all" && c.body.get("page").and_then(Value::as_u64) == Some(2))
    {
        assert!(tokio::time::Instant::now() < deadline, "no tasks.get_all asked for a third page");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
