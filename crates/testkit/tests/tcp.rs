//! TCP endpoints: ports from TCP_PORT_START..TCP_PORT_END on the proxy (nginx stream, the range
//! bound once), forwarded to the task by routing data; write-back for the real SDK and
//! clearml-session; stable ports; endpoints come and go without a reload.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use clearml_emulator::NewTask;
use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(20);

async fn tcp_gateway(ports: u16) -> (Gateway, u16) {
    let base = free_block(ports);
    let env = vec![
        ("TCP_ROUTER_ADDRESS", "localhost".to_owned()),
        ("TCP_PORT_START", base.to_string()),
        ("TCP_PORT_END", (base + ports - 1).to_string()),
    ];
    (Gateway::start(Options { env, ..Default::default() }).await, base)
}

async fn echo_app() -> SocketAddr {
    gateway_testkit::sample_apps::start_tcp_echo("127.0.0.1:0".parse().unwrap()).await.unwrap()
}

/// A connected client that checks every round trip through the proxy.
async fn round_trip(stream: &mut TcpStream, text: &str) {
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; text.len()];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(String::from_utf8(buf).unwrap(), text);
}

async fn published_port(gw: &Gateway, task: &str, suffix: &str) -> u16 {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let runtime = gw.runtime(task);
        if runtime[format!("external_address{suffix}")] == "localhost" {
            return runtime[format!("external_tcp_port{suffix}")].as_u64().unwrap() as u16;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no TCP port published on {task}\n{}",
            gw.router_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connect(port: u16) -> TcpStream {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)).await {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "proxy never listened on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sdk_tcp_endpoint_is_published_and_forwards() {
    let (gw, base) = tcp_gateway(4).await;
    let app = echo_app().await;
    let task = gw.emulator.create_task(NewTask {
        name: "ssh".into(),
        status: "in_progress".into(),
        ..Default::default()
    });
    let port = app.port().to_string();
    let out = run_sdk_script(
        &gw.emulator,
        "request_endpoint.py",
        &[&task, "--port", &port, "--protocol", "tcp", "--name", "ssh"],
    )
    .await;
    assert!(out.contains("SDK_RESULT="), "{out}");

    let listen = published_port(&gw, &task, "__ssh").await;
    assert!((base..base + 4).contains(&listen), "{listen} outside the range");
    let runtime = gw.runtime(&task);
    assert_eq!(runtime["_ROUTER_TARGET_ADDRESS__ssh"], "127.0.0.1", "{runtime}");
    assert_eq!(runtime["_ROUTER_TARGET_PORT__ssh"], app.port());
    assert_eq!(runtime["upstream_task_port__ssh"], app.port(), "the SDK's key is kept");

    // What the SDK reports once the router answered (its tcp wait returns at once, see README).
    let out = run_sdk_script(
        &gw.emulator,
        "request_endpoint.py",
        &[&task, "--protocol", "tcp", "--name", "ssh", "--wait-only"],
    )
    .await;
    let line = out.lines().find_map(|l| l.strip_prefix("SDK_RESULT=")).unwrap();
    let reply: Value = serde_json::from_str(line).unwrap();
    assert_eq!(reply["result"]["endpoint"], format!("localhost:{listen}"), "{reply}");

    let mut stream = connect(listen).await;
    round_trip(&mut stream, "SSH-2.0-test\r\n").await;

    // The task stops: the port is released and the task's own keys are put back.
    gw.emulator.set_status(&task, "stopped");
    let deadline = tokio::time::Instant::now() + T;
    while gw.runtime(&task).get("_ROUTER_TARGET_ADDRESS__ssh").is_some() {
        assert!(tokio::time::Instant::now() < deadline, "keys not restored\n{}", gw.router_log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let runtime = gw.runtime(&task);
    assert_eq!(runtime["external_address__ssh"], "127.0.0.1");
    assert_eq!(runtime["external_tcp_port__ssh"], app.port());
    wait_until_closed_at_once(listen).await;
}

/// Waits until a new connection to `port` is closed by the proxy without being forwarded (the
/// range stays bound; a port without an endpoint answers nothing).
async fn wait_until_closed_at_once(port: u16) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let mut stream = connect(port).await;
        let _ = stream.write_all(b"anyone?").await;
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
        if matches!(read, Ok(Ok(0)) | Ok(Err(_))) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "port {port} still forwards: {read:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn ws_round_trip(ws: &mut Ws, text: &str) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::Text(text.into())).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("echo in time");
    assert_eq!(echo.unwrap().unwrap(), Message::Text(text.into()));
}

/// A TCP endpoint added and removed reloads nothing: a TCP stream and a websocket of other tasks
/// stay open throughout, and a restarted router keeps the port.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tcp_endpoints_come_and_go_without_a_reload_while_other_connections_stay_open() {
    let (mut gw, _) = tcp_gateway(4).await;
    let (app_a, app_b) = (echo_app().await, echo_app().await);
    let a = gw.tcp_task("session-a", app_a);
    let port_a = published_port(&gw, &a, "").await;
    let mut long_lived = connect(port_a).await;
    round_trip(&mut long_lived, "before").await;
    let (_web, url) = gw.routed_task("web").await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("{}ws", url.replacen("http", "ws", 1))).await.unwrap();
    ws_round_trip(&mut ws, "before").await;
    let reloads_before = gw.nginx_reloads();

    let b = gw.tcp_task("session-b", app_b);
    let port_b = published_port(&gw, &b, "").await;
    assert_ne!(port_a, port_b);
    let mut other = connect(port_b).await;
    round_trip(&mut other, "b").await;
    round_trip(&mut long_lived, "after b was added").await;
    ws_round_trip(&mut ws, "after b was added").await;
    gw.emulator.set_status(&b, "stopped");
    let deadline = tokio::time::Instant::now() + T;
    while gw.runtime(&b).get("_ROUTER_TARGET_ADDRESS").is_some() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_until_closed_at_once(port_b).await;
    round_trip(&mut long_lived, "after b was removed").await;
    ws_round_trip(&mut ws, "after b was removed").await;
    assert_eq!(gw.nginx_reloads() - reloads_before, 0, "TCP endpoints must not reload nginx");

    // A restarted router keeps the same port, also when its own record on disk is gone.
    gw.stop_router().await;
    std::fs::remove_file(gw.dir.path().join("lua/routes.json")).unwrap();
    gw.start_router();
    // A whole round of the restarted router: it has applied its table by then.
    gw.wait_for_polls(2, T).await;
    assert_eq!(published_port(&gw, &a, "").await, port_a);
    let routes = gw.dir.path().join("lua/routes.json");
    let deadline = tokio::time::Instant::now() + T;
    while !std::fs::read_to_string(&routes).unwrap_or_default().contains(&format!("\"listen\":{port_a}")) {
        assert!(tokio::time::Instant::now() < deadline, "{} has no port {port_a}", routes.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    round_trip(&mut connect(port_a).await, "a new connection after the restart").await;
    round_trip(&mut long_lived, "after the router restarted").await;
    ws_round_trip(&mut ws, "after the router restarted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_exhausted_range_refuses_only_the_extra_task() {
    let (gw, base) = tcp_gateway(2).await;
    let app = echo_app().await;
    let tasks: Vec<String> = (0..3).map(|i| gw.tcp_task(&format!("s{i}"), app)).collect();
    let published = |gw: &Gateway| -> Vec<String> {
        tasks.iter().filter(|t| gw.runtime(t)["external_address"] == "localhost").cloned().collect()
    };
    let deadline = tokio::time::Instant::now() + T;
    while published(&gw).len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "{}", gw.router_log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Another round, in which the third task would (wrongly) get a port.
    gw.wait_for_polls(2, T).await;
    let served = published(&gw);
    assert_eq!(served.len(), 2, "only two ports in the range");
    let mut ports: Vec<u16> =
        served.iter().map(|t| gw.runtime(t)["external_tcp_port"].as_u64().unwrap() as u16).collect();
    ports.sort();
    assert_eq!(ports, vec![base, base + 1]);
    let refused = tasks.iter().find(|t| !served.contains(t)).unwrap();
    let log = gw.router_log();
    assert!(log.contains(&format!("task {refused} endpoint (default): no free TCP port")), "{log}");
    for task in &served {
        round_trip(&mut connect(gw.runtime(task)["external_tcp_port"].as_u64().unwrap() as u16).await, "ok")
            .await;
    }
}

#[tokio::test]
async fn bad_port_ranges_fail_at_start_with_the_fix() {
    for (start, end, expected) in
        [("10100", "10000", "inverted"), ("8000", "8100", "ROUTER__WEBSERVER__SERVER_PORT=8080")]
    {
        let out = tokio::process::Command::new(gateway_testkit::paths::router_bin())
            .env_clear()
            .env("ROUTER_URL", "http://gw:8080")
            .env("CLEARML_API_HOST", "http://clearml:8008")
            .env("CLEARML_API_ACCESS_KEY", "a")
            .env("CLEARML_API_SECRET_KEY", "b")
            .env("TCP_PORT_START", start)
            .env("TCP_PORT_END", end)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("TCP_PORT_START") && stderr.contains(expected) && stderr.contains("fix:"),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

/// Agent and gateway on one host: the task's own address is `TCP_ROUTER_ADDRESS`. It is routed
/// (not refused as a loop), and a restarted router reads its own answer back from the owned keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tcp_task_on_the_gateways_own_host_is_routed_and_survives_a_restart() {
    let base = free_block(2);
    let env = vec![
        ("TCP_ROUTER_ADDRESS", "127.0.0.1".to_owned()),
        ("TCP_PORT_START", base.to_string()),
        ("TCP_PORT_END", (base + 1).to_string()),
    ];
    let mut gw = Gateway::start(Options { env, ..Default::default() }).await;
    let app = echo_app().await;
    let task = gw.tcp_task("same-host", app);
    let answered = |runtime: &Value| {
        runtime["_ROUTER_TARGET_PORT"] == app.port()
            && runtime["external_tcp_port"].as_u64().is_some_and(|p| p as u16 >= base)
    };
    let deadline = tokio::time::Instant::now() + T;
    while !answered(&gw.runtime(&task)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not published: {}\n{}",
            gw.runtime(&task),
            gw.router_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let runtime = gw.runtime(&task);
    assert_eq!(runtime["external_address"], "127.0.0.1");
    let listen = runtime["external_tcp_port"].as_u64().unwrap() as u16;
    let mut stream = connect(listen).await;
    round_trip(&mut stream, "before restart\n").await;

    // A new router process reads the task's answered keys: same port, same target.
    gw.stop_router().await;
    gw.start_router();
    let mut again = connect(listen).await;
    round_trip(&mut again, "after restart\n").await;
    let runtime = gw.runtime(&task);
    assert!(answered(&runtime), "{runtime}");
    assert_eq!(runtime["external_tcp_port"], listen, "{runtime}");
    assert!(!gw.router_log().contains("refusing"), "{}", gw.router_log());
}
