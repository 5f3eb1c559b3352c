//! The operator surface against a running router: JSON API, the page in real headless Chromium,
//! Prometheus metrics, health/readiness, and the self-test with a simulated agent.

mod common;

use std::time::Duration;

use clearml_emulator::{EmulatorHandle, NewTask};
use common::*;
use gateway_testkit::process::ProcessGroup;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);
const HOSTILE_NAME: &str = "<script>alert('x')</script> notebook";

/// A gateway with a routed task, a refused task and two static routes (one routing, one disabled).
async fn gateway_with_tasks() -> (Gateway, String, String, tempfile::TempDir) {
    let app = sample_app("nb").await;
    let files = tempfile::tempdir().unwrap();
    let routes = files.path().join("routes.json");
    let definitions = json!({"routes": [
        {"name": "models", "path": "/models", "groups": ["ml"], "targets": [app.to_string()]},
        {"name": "docs", "subdomain": "docs", "access": "public", "targets": [app.to_string()], "enabled": false},
    ]});
    std::fs::write(&routes, definitions.to_string()).unwrap();
    let env = vec![("ROUTER_STATIC_ROUTES_FILE", routes.display().to_string())];
    let gw = Gateway::start(Options { env, ..Default::default() }).await;
    let good = gw.http_task(HOSTILE_NAME, app);
    let refused = gw.emulator.create_task(NewTask {
        name: "metadata grabber".into(),
        runtime: json!({"_SERVICE": "EXTERNAL", "_ADDRESS": "169.254.169.254", "_PORT": 80}),
        system_tags: vec!["external_service".into()],
        ..Default::default()
    });
    gw.wait_for_key(&good, "endpoint", T).await;
    (gw, good, refused, files)
}

async fn get_json(url: &str) -> Value {
    http_client().get(url).fetch_json().await
}

/// Polls `/api/status` until `done` holds for it; returns that status.
async fn wait_for_api_status(gw: &Gateway, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let status = get_json(&gw.status_url("/api/status")).await;
        if done(&status) {
            return status;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_api_reports_routes_refusals_and_apply() {
    let (gw, good, refused, _files) = gateway_with_tasks().await;
    // The published route is in the status once the write-back happened.
    let status =
        wait_for_api_status(&gw, |s| s["http_routes"].as_array().is_some_and(|r| !r.is_empty())).await;
    assert_eq!(status["router"]["name"], "test");
    assert_eq!(status["router"]["url"], gw.router_url);
    assert_eq!(status["router"]["auth"], "disabled");
    assert_eq!(status["ready"], true);
    assert!(status["last_update"].as_str().unwrap().ends_with('Z'));
    assert_eq!(status["last_apply"]["ok"], true);
    assert_eq!(status["last_apply"]["config_hash"].as_str().unwrap().len(), 64);
    let route = &status["http_routes"][0];
    assert_eq!(route["task_id"], good.as_str());
    assert_eq!(route["url"], format!("{}/service/{good}/", gw.router_url));
    assert!(route["task_link"].as_str().unwrap().ends_with(&format!("/experiments/{good}")));
    let refusal =
        status["refused"].as_array().unwrap().iter().find(|r| r["task"] == refused.as_str()).unwrap();
    assert!(refusal["reason"].as_str().unwrap().contains("link-local"), "{refusal}");

    let statics = status["static_routes"].as_array().unwrap();
    let models = statics.iter().find(|r| r["name"] == "models").unwrap();
    assert_eq!(models["status"], "Routing", "{models}");
    assert_eq!(models["url"], format!("{}/models/", gw.router_url));
    assert_eq!(models["access"], "authenticated");
    assert_eq!(models["groups"], json!(["ml"]));
    assert_eq!(models["targets"].as_array().unwrap().len(), 1);
    let docs = statics.iter().find(|r| r["name"] == "docs").unwrap();
    assert_eq!(docs["status"], "Not In Use", "{docs}");
    assert_eq!(docs["access"], "public");

    assert_eq!(http_client().get(gw.status_url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(http_client().get(gw.status_url("/readyz")).send().await.unwrap().status(), 200);
}

/// Prometheus text: `name{labels} value` lines, parsed.
fn series(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad metrics line {l:?}"));
            (name.to_owned(), value.parse().unwrap_or_else(|_| panic!("bad value in {l:?}")))
        })
        .collect()
}

fn value(series: &[(String, f64)], name: &str) -> f64 {
    series.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no series {name}")).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_expose_routes_applies_clearml_calls_and_per_route_requests() {
    let (gw, good, _, _files) = gateway_with_tasks().await;
    let url = format!("{}/service/{good}/", gw.router_url);
    for _ in 0..3 {
        assert_eq!(http_client().get(&url).send().await.unwrap().status(), 200);
    }
    // The proxy adds its per-worker counts to the totals once a second: wait for them.
    let requests = format!("clearml_gateway_route_requests_total{{route=\"{good}\"}}");
    let deadline = tokio::time::Instant::now() + T;
    let text = loop {
        let text = http_client().get(gw.status_url("/metrics")).send().await.unwrap().text().await.unwrap();
        if series(&text).iter().any(|(n, v)| *n == requests && *v >= 3.0) {
            break text;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let s = series(&text);
    assert_eq!(value(&s, "clearml_gateway_routes{kind=\"http\"}"), 1.0);
    assert_eq!(value(&s, "clearml_gateway_routes{kind=\"static\"}"), 1.0, "one routing, one disabled");
    assert_eq!(value(&s, "clearml_gateway_refused_endpoints"), 1.0);
    assert_eq!(value(&s, "clearml_gateway_ready"), 1.0);
    assert!(value(&s, "clearml_gateway_applies_total{result=\"ok\"}") >= 1.0);
    assert_eq!(value(&s, "clearml_gateway_applies_total{result=\"failed\"}"), 0.0);
    assert_eq!(value(&s, "clearml_gateway_reloads_total"), 0.0);
    assert!(
        value(&s, "clearml_gateway_clearml_requests_total{endpoint=\"tasks.get_all\",result=\"ok\"}") >= 1.0
    );
    assert!(value(&s, "clearml_gateway_clearml_request_seconds_count{endpoint=\"tasks.get_all\"}") >= 1.0);
    assert_eq!(value(&s, "clearml_gateway_proxy_up"), 1.0);
    assert_eq!(value(&s, &requests), 3.0);
    assert!(text.contains("clearml_gateway_auth_cache_total{result=\"hit\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_page_renders_in_headless_chromium() {
    let (gw, good, refused, _files) = gateway_with_tasks().await;
    gw.wait_for_status(&format!("{}/service/{good}/", gw.router_url), 200, T).await;
    // The page shows what the status API holds: wait until that has the route and the refusal.
    wait_for_api_status(&gw, |status| {
        let has = |list: &str, key: &str, id: &str| {
            status[list].as_array().is_some_and(|items| items.iter().any(|i| i[key] == id))
        };
        has("http_routes", "task_id", &good) && has("refused", "task", &refused)
    })
    .await;
    let url = gw.status_url("/");
    let profile = tempfile::tempdir().unwrap();
    let mut dump = headless_chromium(profile.path());
    let out = dump.args(["--dump-dom", &url]).output().await.unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dom.contains("Application Gateway"), "{dom}");
    assert!(dom.contains("id=\"router-name\">test<"), "{dom}");
    assert!(dom.contains(&format!("{}/service/{good}/", gw.router_url)));
    assert!(
        dom.contains(&refused) && dom.contains("link-local"),
        "the refused task and its reason are shown"
    );
    assert!(dom.contains("models") && dom.contains("Routing") && dom.contains("Disabled"), "{dom}");
    // The hostile task name is text, not markup.
    assert!(dom.contains("&lt;script&gt;alert('x')&lt;/script&gt; notebook"), "{dom}");
    assert!(!dom.contains("<script>alert"), "{dom}");

    screenshot(profile.path(), &url, "status-page.png", "1280,1000").await;
}

async fn run_test_command(gw: &Gateway, queue: &str, pickup: &str) -> (bool, String) {
    let out = tokio::process::Command::new(gateway_testkit::paths::router_bin())
        .args(["test", "--queue", queue, "--pickup-timeout", pickup])
        .env_clear()
        .envs(gw.router_env())
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn self_test_passes_with_an_agent_and_fails_clearly_without() {
    let gw = Gateway::start(Options::default()).await;
    let served = gw.emulator.create_queue("gateway-test");
    let _idle = gw.emulator.create_queue("nobody-serves-this");
    let agent = simulated_agent(gw.emulator.clone(), served);
    // Wait for the router's status server.
    let deadline = tokio::time::Instant::now() + T;
    while http_client().get(gw.status_url("/healthz")).send().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (passed, out) = run_test_command(&gw, "gateway-test", "20").await;
    assert!(passed, "{out}");
    assert!(out.contains("status:           passed"), "{out}");
    assert!(out.contains("worker:           sim-agent:0"), "{out}");
    assert!(out.contains(&format!("endpoint:         {}/service/", gw.router_url)), "{out}");
    assert!(out.contains("removed the test task"), "{out}");
    let report = get_json(&gw.status_url("/api/self-test")).await;
    assert_eq!(report["status"], "passed");
    let task_id = report["task_id"].as_str().unwrap();
    assert!(gw.emulator.task(task_id).is_none(), "the test task is cleaned up");

    let (passed, out) = run_test_command(&gw, "nobody-serves-this", "2").await;
    assert!(!passed, "{out}");
    assert!(out.contains("status:           failed"), "{out}");
    assert!(out.contains("no agent picked up the test task"), "{out}");
    assert!(out.contains("is a clearml-agent serving queue \"nobody-serves-this\"?"), "{out}");

    let (passed, out) = run_test_command(&gw, "no-such-queue", "2").await;
    assert!(!passed);
    assert!(out.contains("queue \"no-such-queue\" does not exist"), "{out}");
    agent.abort();
}

/// What the stand-in agent of [`python_agent`] saw: the script it ran and the task's runtime once
/// the router had routed it.
struct AgentRun {
    script: ProcessGroup,
    output: std::path::PathBuf,
    task: String,
    runtime: Value,
    _dir: tempfile::TempDir,
}

/// An agent stand-in that runs the self-test's real task script: takes the first task queued on
/// `queue`, marks it running and starts the script the router put in it (`script.diff`) with the
/// real Python and clearml SDK, attached to the task through CLEARML_TASK_ID as clearml-agent
/// does. Returns once the router has published the task's endpoint.
fn python_agent(emulator: EmulatorHandle, queue: String) -> tokio::task::JoinHandle<AgentRun> {
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + T;
        let task = loop {
            let queued = emulator
                .tasks()
                .into_iter()
                .find(|t| t["status"] == "queued" && t["execution"]["queue"] == queue.as_str());
            if let Some(task) = queued {
                break task;
            }
            assert!(tokio::time::Instant::now() < deadline, "no task was queued on {queue}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let id = task["id"].as_str().unwrap().to_owned();
        let entry_point = task["script"]["entry_point"].as_str().expect("script.entry_point");
        let code = task["script"]["diff"].as_str().expect("the task carries its script");
        emulator.update_task(&id, |t| {
            t["status"] = json!("in_progress");
            t["last_worker"] = json!("python-agent:0");
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(entry_point);
        std::fs::write(&path, code).unwrap();
        let output = dir.path().join("output.txt");
        let log = std::fs::File::create(&output).unwrap();
        let script = spawn_helper(
            std::process::Command::new(sdk_python())
                .arg(&path)
                .current_dir(dir.path())
                .envs(sdk_env(&emulator, dir.path()))
                .env("CLEARML_TASK_ID", &id)
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let runtime = loop {
            let runtime = emulator.task(&id).map(|t| t["runtime"].clone()).unwrap_or(Value::Null);
            if runtime.get("endpoint").is_some() {
                break runtime;
            }
            let printed = std::fs::read_to_string(&output).unwrap_or_default();
            assert!(
                tokio::time::Instant::now() < deadline,
                "the task was not routed; script output:\n{printed}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        AgentRun { script, output, task: id, runtime, _dir: dir }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn self_test_task_script_runs_under_the_real_sdk_and_is_routed() {
    let gw = Gateway::start(Options::default()).await;
    let queue = gw.emulator.create_queue("gateway-test");
    let agent = python_agent(gw.emulator.clone(), queue);
    gw.wait_for_status(&gw.status_url("/healthz"), 200, T).await;

    let (passed, out) = run_test_command(&gw, "gateway-test", "60").await;
    let mut run = agent.await.expect("the agent stand-in ran the script");
    let printed = std::fs::read_to_string(&run.output).unwrap_or_default();
    assert!(passed, "{out}\nscript output:\n{printed}");
    assert!(out.contains("worker:           python-agent:0"), "{out}");
    assert!(out.contains("served by the test task"), "{out}");

    // What the script asked for, as the SDK wrote it, and what the router answered.
    let port = printed
        .lines()
        .find_map(|l| l.strip_prefix("serving on port "))
        .and_then(|p| p.trim().parse::<u16>().ok())
        .unwrap_or_else(|| panic!("the script did not print its port:\n{printed}"));
    let runtime = &run.runtime;
    assert_eq!(runtime["_SERVICE"], "EXTERNAL", "{runtime}");
    assert_eq!(runtime["_ADDRESS"], "127.0.0.1", "{runtime}");
    assert_eq!(runtime["_PORT"].to_string().trim_matches('"'), port.to_string(), "{runtime}");
    assert_eq!(runtime["endpoint"], format!("{}/service/{}/", gw.router_url, run.task), "{runtime}");
    assert!(gw.emulator.task(&run.task).is_none(), "the self-test removed its task");
    assert!(run.script.stop().is_some(), "the script is stopped and reaped");
}

/// The operator API: writes and the self-test need the operator token; a foreign Host (DNS
/// rebinding) or Origin is refused even with it; reads stay open on loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_api_needs_the_token_and_its_own_host() {
    let gw = Gateway::start(Options::default()).await;
    let deadline = tokio::time::Instant::now() + T;
    while http_client().get(gw.status_url("/healthz")).send().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let selftest = gw.status_url("/api/self-test");
    let routes = gw.status_url("/api/static-routes");
    let body = json!({"queue": ""});
    let anon = http_client();
    let status_of = |r: reqwest::Response| r.status().as_u16();

    // Without credentials: refused, naming the header to send.
    let r = anon.post(&selftest).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("Authorization: Bearer"));
    assert_eq!(status_of(anon.post(&routes).json(&json!({"name": "x"})).send().await.unwrap()), 401);
    assert_eq!(status_of(anon.delete(format!("{routes}/x")).send().await.unwrap()), 401);
    // Wrong credentials: refused, reads too.
    let wrong = |r: reqwest::RequestBuilder| r.bearer_auth("not-the-operator-token-at-all");
    assert_eq!(status_of(wrong(anon.post(&selftest)).json(&body).send().await.unwrap()), 401);
    assert_eq!(status_of(wrong(anon.get(gw.status_url("/api/status"))).send().await.unwrap()), 401);
    // Valid credentials: the request is handled (an empty queue name is a 400 from the handler).
    let op = operator_http();
    assert_eq!(status_of(op.post(&selftest).json(&body).send().await.unwrap()), 400);
    // A foreign Host (a rebinding DNS name pointing at loopback) or Origin: refused, token or not.
    let foreign = op.post(&selftest).header("host", "attacker.example").json(&body).send().await.unwrap();
    assert_eq!(foreign.status(), 421);
    let foreign = anon.get(gw.status_url("/api/status")).header("host", "attacker.example:80").send().await;
    assert_eq!(status_of(foreign.unwrap()), 421);
    let origin = op.post(&selftest).header("origin", "http://attacker.example").json(&body).send().await;
    assert_eq!(status_of(origin.unwrap()), 403);
    // Read-only status stays open on loopback; GET changes nothing.
    assert_eq!(status_of(anon.get(gw.status_url("/api/status")).send().await.unwrap()), 200);
    assert_eq!(status_of(anon.get(gw.status_url("/metrics")).send().await.unwrap()), 200);
}
