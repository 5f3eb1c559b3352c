//! Gradio/FastAPI-style apps that take the `/service/<id>` prefix as `root_path` work through the
//! gateway: the prefix is stripped on the way in, and the links the app builds include it.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fastapi_app_with_root_path_builds_links_that_work_through_the_gateway() {
    let gw = Gateway::start(Options::default()).await;
    let port = free_port();
    // The task id is known before the app starts, as it is for a real task.
    let task = gw.http_task("fastapi", format!("127.0.0.1:{port}").parse().unwrap());
    let prefix = format!("/service/{task}");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/root_path_app.py");
    // scripts/setup.sh installs fastapi and uvicorn in .venv.
    let _app =
        spawn_helper(std::process::Command::new(sdk_python()).arg(script).arg(port.to_string()).arg(&prefix));

    let url = gw.wait_for_key(&task, "endpoint", Duration::from_secs(20)).await;
    gw.wait_for_status(&url, 200, Duration::from_secs(30)).await;
    let index: Value = http_client().get(&url).fetch_json().await;
    assert_eq!(index["root_path"], prefix.as_str());
    let link = index["hello_link"].as_str().unwrap();
    assert_eq!(link, format!("{}{prefix}/hello", gw.router_url), "the app's own link carries the prefix");
    let hello: Value = http_client().get(link).fetch_json().await;
    assert_eq!(hello["hello"], "from the task");
}
