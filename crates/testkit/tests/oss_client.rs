//! Open-source ClearML servers: the real SDK refuses endpoint requests there (`feature_set:
//! basic`), and the Python client of clients/python (pip-installed into a throwaway venv) gets
//! http, tcp and static-route endpoints from the real router through real nginx instead. On an
//! enterprise server it writes exactly what the SDK writes.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::Duration;

use clearml_emulator::{EmulatorConfig, EmulatorHandle, FeatureSet, NewTask};
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

const T: Duration = Duration::from_secs(20);

async fn emulator(feature_set: FeatureSet) -> EmulatorHandle {
    let config = EmulatorConfig { feature_set, ..EmulatorConfig::default() };
    clearml_emulator::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

/// A gateway on an emulated open-source server, with `env` for the router.
async fn basic_gateway(env: Vec<(&'static str, String)>, no_router: bool) -> Gateway {
    let emulator = Some(emulator(FeatureSet::Basic).await);
    Gateway::start(Options { env, no_router, emulator, ..Default::default() }).await
}

fn running_task(emulator: &EmulatorHandle, name: &str) -> String {
    emulator.create_task(NewTask { name: name.into(), status: "in_progress".into(), ..Default::default() })
}

fn check(what: &str, out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn run_blocking(what: &str, command: &mut std::process::Command) -> String {
    check(what, command.output().unwrap_or_else(|e| panic!("{what}: {e}")))
}

/// The client pip-installed (with its console script) into a fresh venv, once per test binary.
/// The venv gets the SDK venv's packages through a .pth file: `--system-site-packages` on a venv
/// made from a venv only sees the base interpreter's packages.
fn installed_client() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("oss-client");
        let _ = std::fs::remove_dir_all(&root);
        // A copy, so that the build leaves nothing in the source tree.
        let source = root.join("clearml-gateway-client");
        copy_sources(&gateway_testkit::paths::repo_root().join("clients/python"), &source);
        let venv = root.join("venv");
        let sdk = sdk_python();
        run_blocking(
            "venv",
            std::process::Command::new(&sdk).args(["-m", "venv", "--without-pip"]).arg(&venv),
        );
        let purelib = ["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"];
        let sdk_packages = run_blocking("SDK site-packages", std::process::Command::new(&sdk).args(purelib));
        let venv_python = venv.join("bin/python");
        let venv_packages =
            run_blocking("venv site-packages", std::process::Command::new(&venv_python).args(purelib));
        std::fs::write(Path::new(venv_packages.trim()).join("clearml-sdk.pth"), sdk_packages).unwrap();
        run_blocking(
            "pip install ./clients/python",
            std::process::Command::new(&sdk)
                .args(["-m", "pip", "--python"])
                .arg(&venv_python)
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(&source),
        );
        venv
    })
}

fn copy_sources(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "build" || name == "__pycache__" || name.ends_with(".egg-info") {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_sources(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// Runs `program` of the client's venv (`python`, `clearml-gateway-endpoint`) against the emulator.
async fn run_client(emulator: &EmulatorHandle, program: &str, args: &[&str]) -> String {
    let venv = tokio::task::spawn_blocking(installed_client).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut command = Command::new(venv.join("bin").join(program));
    command.args(args);
    clearml_env(&mut command, emulator, home.path());
    check(&format!("{program} {args:?}"), command.output().await.expect("the client runs"))
}

/// `request_endpoint(...)` through the library; prints `{"answer", "listed"}` as JSON.
const LIBRARY_REQUEST: &str = r#"
import json, sys
from clearml_gateway_client import list_endpoints, request_endpoint
task, kwargs = sys.argv[1], json.loads(sys.argv[2])
answer = request_endpoint(task=task, poll_interval=0.2, **kwargs)
print(json.dumps({"answer": answer, "listed": list_endpoints(task)}))
"#;

async fn library_request(emulator: &EmulatorHandle, task: &str, kwargs: Value) -> Value {
    let out = run_client(emulator, "python", &["-c", LIBRARY_REQUEST, task, &kwargs.to_string()]).await;
    serde_json::from_str(out.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_refuses_endpoint_requests_on_an_open_source_server() {
    let emulator = emulator(FeatureSet::Basic).await;
    let task = running_task(&emulator, "notebook");
    let out = sdk_script_output(&emulator, "request_endpoint.py", &[&task, "--port", "8888"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the SDK accepted a basic server: {stderr}");
    assert!(
        stderr.contains(
            "ClearML-server does not support requested feature set '['advanced']' (Enterprise license required)"
        ),
        "{stderr}"
    );
    // It refused before writing anything.
    let doc = emulator.task(&task).unwrap();
    assert_eq!(doc["runtime"], json!({}), "{doc}");
    assert!(!doc["system_tags"].to_string().contains("external_service"), "{doc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_client_gets_an_http_endpoint_served_through_the_proxy() {
    let gw = basic_gateway(Vec::new(), false).await;
    let app = sample_app("oss-notebook").await;
    let task = running_task(&gw.emulator, "oss-notebook");

    let reply = library_request(&gw.emulator, &task, json!({"port": app.port(), "wait": 30})).await;
    let url = format!("{}/service/{task}/", gw.router_url);
    let answer = &reply["answer"];
    assert_eq!(answer["endpoint"], url.as_str(), "{reply}");
    assert_eq!(answer["browser_endpoint"], url.as_str());
    assert_eq!(
        (answer["port"].as_u64(), &answer["protocol"], &answer["name"]),
        (Some(app.port().into()), &json!("http"), &Value::Null)
    );
    assert_eq!(reply["listed"], json!([answer]));

    // The keys and the tag the SDK writes.
    let doc = gw.emulator.task(&task).unwrap();
    let runtime = &doc["runtime"];
    assert_eq!((&runtime["_SERVICE"], &runtime["_ADDRESS"]), (&json!("EXTERNAL"), &json!("127.0.0.1")));
    assert_eq!(runtime["_PORT"], app.port());
    assert_eq!(doc["system_tags"], json!(["external_service"]));

    gw.wait_for_status(&url, 200, T).await;
    let echo: Value = http_client().get(format!("{url}hello")).fetch_json().await;
    assert_eq!((&echo["app"], &echo["uri"]), (&json!("oss-notebook"), &json!("/hello")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_gets_a_tcp_endpoint_with_the_routers_address() {
    let base = free_block(2);
    let env = vec![
        ("TCP_ROUTER_ADDRESS", "localhost".to_owned()),
        ("TCP_PORT_START", base.to_string()),
        ("TCP_PORT_END", (base + 1).to_string()),
    ];
    let gw = basic_gateway(env, false).await;
    let app: SocketAddr =
        gateway_testkit::sample_apps::start_tcp_echo("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let task = running_task(&gw.emulator, "ssh");
    let port = app.port().to_string();
    let args =
        ["request", "--port", &port, "--type", "tcp", "--name", "ssh", "--task-id", &task, "--wait", "30"];
    let out = run_client(&gw.emulator, "clearml-gateway-endpoint", &args).await;

    // The URL is the router's address and a port of its range, not the task's own.
    let printed = out.lines().last().unwrap_or_default();
    let (host, listen) = printed.split_once(':').unwrap_or_else(|| panic!("not host:port: {out}"));
    let listen: u16 = listen.parse().unwrap();
    assert_eq!(host, "localhost", "{out}");
    assert!((base..=base + 1).contains(&listen), "{listen} outside {base}..={}", base + 1);
    let runtime = gw.runtime(&task);
    assert_eq!(runtime["_SERVICE__ssh"], "EXTERNAL_TCP");
    assert_eq!(runtime["upstream_task_port__ssh"], app.port());
    assert_eq!(runtime["_ROUTER_TARGET_ADDRESS__ssh"], "127.0.0.1");

    // And it forwards to the task.
    let deadline = tokio::time::Instant::now() + T;
    let mut stream = loop {
        match TcpStream::connect(("127.0.0.1", listen)).await {
            Ok(stream) => break stream,
            Err(e) if tokio::time::Instant::now() > deadline => {
                panic!("proxy never listened on {listen}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    stream.write_all(b"ping over tcp").await.unwrap();
    let mut buf = [0u8; 13];
    tokio::time::timeout(T, stream.read_exact(&mut buf)).await.expect("echo in time").unwrap();
    assert_eq!(&buf, b"ping over tcp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_prints_a_static_route_url_and_lists_endpoints() {
    let mut gw = basic_gateway(Vec::new(), true).await;
    let routes = gw.dir.path().join("static-routes.json");
    let file = json!({"routes": [{"name": "oss-demo", "path": "/oss-demo", "access": "public"}]});
    std::fs::write(&routes, file.to_string()).unwrap();
    gw.extra_env.push(("ROUTER_STATIC_ROUTES_FILE".into(), routes.display().to_string()));
    gw.start_router();
    let app = sample_app("oss-static").await;
    let task = running_task(&gw.emulator, "oss-static");
    let port = app.port().to_string();

    // No --mode: the open-source server has no routers.get_routes (404), so `path`.
    let args = ["request", "--port", &port, "--static-route", "oss-demo", "--task-id", &task, "--wait", "30"];
    let out = run_client(&gw.emulator, "clearml-gateway-endpoint", &args).await;
    let url = format!("{}/oss-demo/", gw.router_url);
    assert_eq!(out.lines().last(), Some(url.as_str()), "{out}");
    let runtime = gw.runtime(&task);
    assert_eq!(
        (&runtime["_ROUTER_ENDPOINT_MODE"], &runtime["_ROUTER_ENDPOINT_MODE_PARAM"]),
        (&json!("path"), &json!("oss-demo"))
    );
    let lookups: Vec<u16> = gw
        .emulator
        .calls()
        .iter()
        .filter(|c| c.endpoint == "routers.get_routes")
        .map(|c| c.result_code)
        .collect();
    // The client asked (and the router, which looks for server-defined routes, too): the
    // open-source server has no routers.* service.
    assert!(!lookups.is_empty() && lookups.iter().all(|code| *code == 404), "{lookups:?}");
    gw.wait_for_status(&url, 200, T).await;
    let echo: Value = http_client().get(format!("{url}x")).fetch_json().await;
    assert_eq!(echo["app"], "oss-static");

    // A second, named endpoint, then the list: the served one and the pending one.
    let args = ["request", "--port", "9", "--name", "api", "--task-id", &task, "--wait", "0"];
    assert_eq!(run_client(&gw.emulator, "clearml-gateway-endpoint", &args).await, "");
    let listed = run_client(&gw.emulator, "clearml-gateway-endpoint", &["list", "--task-id", &task]).await;
    let first = format!("-\thttp\t{port}\t{url}");
    assert_eq!(listed.lines().next(), Some(first.as_str()), "{listed}");
    assert!(listed.lines().any(|l| l.starts_with("api\thttp\t9\t")), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_an_enterprise_server_the_client_writes_what_the_sdk_writes() {
    let emulator = emulator(FeatureSet::Advanced).await;
    emulator.set_routes(json!([{"name": "pool", "type": "subdomain", "enabled": true, "status": "active",
        "load_balancer": {"enabled": true}}]));
    // Each task already has an unnamed http endpoint, and the agent's docker port mapping.
    let before = json!({"_SERVICE": "EXTERNAL", "_ADDRESS": "10.0.0.9", "_PORT": 7000,
        "_external_host_tcp_port_mapping": "12000-12010:8000-8010"});
    let cases = [
        (
            vec!["--port", "8000", "--name", "api", "--static-route", "pool"],
            json!({"port": 8000, "name": "api", "static_route": "pool"}),
        ),
        (vec!["--port", "8001"], json!({"port": 8001})),
        (
            vec!["--port", "2222", "--protocol", "tcp", "--name", "ssh"],
            json!({"port": 2222, "protocol": "tcp", "name": "ssh"}),
        ),
    ];
    for (sdk_args, kwargs) in cases {
        let task = || {
            emulator.create_task(NewTask {
                status: "in_progress".into(),
                runtime: before.clone(),
                ..Default::default()
            })
        };
        let (by_sdk, by_client) = (task(), task());
        let mut args = vec![by_sdk.as_str()];
        args.extend(sdk_args);
        run_sdk_script(&emulator, "request_endpoint.py", &args).await;
        library_request(&emulator, &by_client, kwargs.clone()).await;
        let (sdk_doc, client_doc) = (emulator.task(&by_sdk).unwrap(), emulator.task(&by_client).unwrap());
        assert_ne!(sdk_doc["runtime"], before, "{kwargs}");
        assert_eq!(client_doc["runtime"], sdk_doc["runtime"], "{kwargs}");
        assert_eq!(client_doc["system_tags"], sdk_doc["system_tags"], "{kwargs}");
    }
}
