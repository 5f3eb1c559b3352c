//! The real `clearml` Python SDK against the in-process ClearML emulator.
//!
//! Needs the SDK venv: `<crate>/.venv/bin/python` or `CLEARML_SDK_PYTHON` (see scripts/setup.sh).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use clearml_emulator::{self as emulator, EmulatorConfig, EmulatorHandle, Fault, NewTask};
use serde_json::{json, Value};

const AGENT_IP: &str = "10.1.2.3";

fn python() -> PathBuf {
    let python = std::env::var_os("CLEARML_SDK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| gateway_testkit::paths::repo_root().join(".venv/bin/python"));
    assert!(
        python.exists(),
        "no Python with the clearml SDK at {} (set CLEARML_SDK_PYTHON or run scripts/setup.sh)",
        python.display()
    );
    python
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/request_endpoint.py")
}

async fn start() -> EmulatorHandle {
    emulator::start(EmulatorConfig::default(), "127.0.0.1:0".parse().unwrap()).await.expect("emulator starts")
}

fn new_task(emu: &EmulatorHandle) -> String {
    let queue = emu.create_queue("services");
    emu.create_task(NewTask { name: "sdk-test".into(), queue: Some(queue), ..NewTask::default() })
}

/// Runs `tests/sdk/request_endpoint.py` with a clean environment pointing at the emulator and
/// returns its `SDK_RESULT` report.
async fn run_sdk(emu: &EmulatorHandle, args: &[&str]) -> Value {
    let home = tempfile::tempdir().unwrap();
    let config = emu.config();
    let url = emu.url();
    let output = tokio::process::Command::new(python())
        .arg(script())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("CLEARML_API_HOST", &url)
        .env("CLEARML_WEB_HOST", &url)
        .env("CLEARML_FILES_HOST", &url)
        .env("CLEARML_API_ACCESS_KEY", &config.access_key)
        .env("CLEARML_API_SECRET_KEY", &config.secret_key)
        .env("CLEARML_AGENT_HOST_IP", AGENT_IP)
        .env("CLEARML_LOG_LEVEL", "WARNING")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SDK script failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("SDK_RESULT="))
        .unwrap_or_else(|| panic!("no SDK_RESULT line:\nstdout:\n{stdout}\nstderr:\n{stderr}"));
    serde_json::from_str(line).expect("SDK_RESULT is JSON")
}

fn system_tags(emu: &EmulatorHandle, id: &str) -> Vec<String> {
    serde_json::from_value(emu.task(id).unwrap()["system_tags"].clone()).unwrap()
}

/// Plays the router: once the task asks for an endpoint (keys + tag), waits `delay` and
/// writes the answer.
fn spawn_router(emu: EmulatorHandle, id: String, delay: Duration, answer: Value) {
    tokio::spawn(async move {
        loop {
            let doc = emu.task(&id).expect("task exists");
            let tagged = doc["system_tags"]
                .as_array()
                .is_some_and(|tags| tags.iter().any(|t| t == "external_service"));
            if tagged && doc["runtime"].get("_PORT").is_some() {
                tokio::time::sleep(delay).await;
                emu.merge_runtime(&id, answer);
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_requests_http_endpoint() {
    let emu = start().await;
    let id = new_task(&emu);

    let report = run_sdk(&emu, &[&id, "--port", "8000"]).await;

    let runtime = &emu.task(&id).unwrap()["runtime"];
    assert_eq!(*runtime, json!({"_SERVICE": "EXTERNAL", "_ADDRESS": AGENT_IP, "_PORT": 8000}));
    assert_eq!(system_tags(&emu, &id), ["external_service"]);
    assert_eq!(report["result"], Value::Null);
    assert_eq!(report["runtime"], *runtime);
    assert_eq!(report["session"]["feature_set"], "advanced");

    // The exact conversation, which the router's view of the protocol relies on.
    let calls: Vec<(String, Option<String>, String)> =
        emu.calls().into_iter().map(|c| (c.method, c.version, c.endpoint)).collect();
    let v = Some("2.23".to_string());
    let expected = [
        ("GET", None, "auth.login"),
        ("GET", None, "users.get_vaults"),
        ("GET", v.clone(), "tasks.get_by_id"), // Task.get_task
        ("GET", v.clone(), "tasks.get_by_id"), // reload() in request_external_endpoint
        ("GET", v.clone(), "tasks.get_by_id"), // reload() in _set_runtime_properties
        ("GET", v.clone(), "tasks.edit"),      // {task, force, runtime}
        ("GET", v.clone(), "tasks.edit"),      // {task, force, system_tags}
    ];
    let expected: Vec<_> =
        expected.iter().map(|(m, v, e)| (m.to_string(), v.clone(), e.to_string())).collect();
    assert_eq!(calls[..expected.len()], expected[..], "calls: {calls:#?}");
    assert!(emu.calls().iter().all(|c| c.result_code == 200));
    let edits: Vec<Value> =
        emu.calls().into_iter().filter(|c| c.endpoint == "tasks.edit").map(|c| c.body).collect();
    assert_eq!(edits[0]["force"], true);
    assert!(edits[0].get("runtime").is_some() && edits[0].get("system_tags").is_none());
    assert!(edits[1].get("system_tags").is_some() && edits[1].get("runtime").is_none());
    emu.shutdown().await;
}

/// `request_external_endpoint(wait=True)` polls `tasks.get_by_id` every `wait_interval_seconds`,
/// the first poll right after its tag edit: an answer that lands after that poll is seen one
/// interval later.
async fn wait_for_router(router_delay: Duration, interval: &str) -> f64 {
    let emu = start().await;
    let id = new_task(&emu);
    let endpoint = format!("http://gateway.example:8080/service/{id}/");
    let answer = json!({"endpoint": endpoint, "browser_endpoint": endpoint});
    spawn_router(emu.clone(), id.clone(), router_delay, answer);

    let report = run_sdk(&emu, &[&id, "--port", "8000", "--wait", "--interval", interval]).await;

    assert_eq!(
        report["result"],
        json!({"endpoint": endpoint, "browser_endpoint": endpoint, "port": 8000, "protocol": "http", "name": null})
    );
    assert_eq!(report["endpoints"], json!([report["result"]]));
    let elapsed = report["elapsed_sec"].as_f64().unwrap();
    eprintln!(
        "router answered {router_delay:?} after the request, interval {interval} s: \
         request_external_endpoint(wait=True) returned after {elapsed:.2} s, \
         {} tasks.get_by_id calls",
        emu.stats().calls("tasks.get_by_id")
    );
    emu.shutdown().await;
    elapsed
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_waits_for_the_router_answer() {
    // Answer after the SDK's first poll: seen at the second poll, one interval later.
    let elapsed = wait_for_router(Duration::from_millis(300), "1.0").await;
    assert!((1.0..2.0).contains(&elapsed), "elapsed {elapsed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_waits_with_default_interval() {
    // The SDK's default 3 s interval; the router answers as fast as it can, which may or may
    // not beat the first poll.
    let elapsed = wait_for_router(Duration::ZERO, "3.0").await;
    assert!(elapsed < 4.0, "elapsed {elapsed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_requests_named_tcp_endpoint() {
    let emu = start().await;
    let id = new_task(&emu);

    let report = run_sdk(&emu, &[&id, "--port", "22", "--protocol", "tcp", "--name", "ssh"]).await;

    let runtime = emu.task(&id).unwrap()["runtime"].clone();
    assert_eq!(
        runtime,
        json!({
            "_SERVICE__ssh": "EXTERNAL_TCP",
            "external_address__ssh": AGENT_IP,
            "external_tcp_port__ssh": 22,
            "upstream_task_port__ssh": 22,
        })
    );
    assert_eq!(system_tags(&emu, &id), ["external_service"]);
    // tcp is "ready" as soon as upstream_task_port is set, i.e. with the task's own address.
    assert_eq!(
        report["endpoints"],
        json!([{"endpoint": "10.1.2.3:22", "browser_endpoint": null, "port": 22, "protocol": "tcp", "name": "ssh"}])
    );

    // The router overwrites address and port; the SDK then reports the gateway's.
    emu.merge_runtime(
        &id,
        json!({"external_address__ssh": "gateway.example", "external_tcp_port__ssh": 10022}),
    );
    let report =
        run_sdk(&emu, &[&id, "--protocol", "tcp", "--name", "ssh", "--wait-only", "--timeout", "5"]).await;
    assert_eq!(report["result"]["endpoint"], "gateway.example:10022");
    assert_eq!(report["result"]["port"], 10022);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_relogs_in_after_an_injected_401() {
    let emu = start().await;
    let id = new_task(&emu);
    emu.inject_faults(vec![Fault::Status { code: 401, subcode: 30, endpoint: Some("tasks.edit".into()) }]);

    run_sdk(&emu, &[&id, "--port", "8080"]).await;

    assert_eq!(emu.task(&id).unwrap()["runtime"]["_PORT"], 8080);
    assert_eq!(emu.stats().calls("auth.login"), 2);
    let codes: Vec<u16> =
        emu.calls().iter().filter(|c| c.endpoint == "tasks.edit").map(|c| c.result_code).collect();
    assert_eq!(codes, [401, 200, 200]);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_requests_static_route() {
    let emu = start().await;
    let id = new_task(&emu);
    emu.set_routes(json!([
        {"name": "demo", "type": "subdomain", "enabled": true, "status": "active", "load_balancer": {"enabled": true}},
    ]));

    run_sdk(&emu, &[&id, "--port", "7860", "--static-route", "demo"]).await;

    let runtime = emu.task(&id).unwrap()["runtime"].clone();
    assert_eq!(runtime["_ROUTER_ENDPOINT_MODE"], "subdomain");
    assert_eq!(runtime["_ROUTER_ENDPOINT_MODE_PARAM"], "demo");
    assert_eq!(runtime["_PORT"], 7860);
    // validate_static_route() and get_route_type() each ask, unversioned, for "^demo$".
    let route_calls: Vec<_> = emu
        .calls()
        .into_iter()
        .filter(|c| c.endpoint == "routers.get_routes")
        .map(|c| (c.version, c.body))
        .collect();
    assert_eq!(route_calls.len(), 2, "{route_calls:?}");
    assert!(route_calls.iter().all(|(v, body)| v.is_none() && body["name"] == "^demo$"));
    emu.shutdown().await;
}
