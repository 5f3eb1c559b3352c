//! The data plane against plain nginx, HAProxy and Caddy, printed (not asserted):
//! `cargo bench -p gateway-testkit --bench dataplane` (add `--profile dev` to skip the release
//! build: every figure is nginx's, wrk's or the peers', none is Rust code's).
//!
//! 1. Throughput and latency, one worker each, on the same backend (nginx `return 200`), wrk -c32,
//!    interleaved rounds, medians: the gateway with auth (login cache hit) against plain nginx with
//!    upstream keep-alive, that nginx with empty Lua access and balancer phases (the floor of
//!    routing with Lua), HAProxy (`http-reuse always`) and Caddy (GOMAXPROCS=1).
//! 2. p99 of a served route while 10,000 routes churn (one changed every 0.25 s) against idle.
//! 3. Failed requests of keep-alive clients (wrk) on another route during 100 TCP and 100 HTTP
//!    endpoint starts/stops, and nginx reloads meanwhile.
//! 4. Failed requests of keep-alive clients during 10 nginx reloads (what a listener change costs).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use gateway_core::routes_file::{HttpEntry, RoutesDoc, StaticDoc};
use gateway_testkit::cpu;
use gateway_testkit::process::{self, ProcessGroup};
use gateway_testkit::wrk::{self, WrkResult};
use serde_json::Value;

const ROUNDS: usize = 3;
const SECONDS: u32 = 5;
const CONNECTIONS: u32 = 32;
const T: Duration = Duration::from_secs(30);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::Builder::new().prefix("gw-dataplane").tempdir().unwrap();
    let backend_port = free_port();
    let _backend = start_backend(dir.path(), backend_port).await;
    let backend: SocketAddr = format!("127.0.0.1:{backend_port}").parse().unwrap();
    println!("data-plane benchmark: one worker per proxy, backend nginx `return 200` on {backend}");
    // `DATAPLANE_SECTIONS=1,3` runs only those sections (all by default).
    let sections = std::env::var("DATAPLANE_SECTIONS").unwrap_or_else(|_| "1,2,3".into());
    let wanted = |n: &str| sections.split(',').any(|s| s.trim() == n);
    if wanted("1") {
        peers_side_by_side(dir.path(), backend).await;
    }
    if wanted("2") {
        churn_p99(backend).await;
    }
    if wanted("3") {
        endpoint_churn_and_reloads(backend).await;
    }
}

// --- 1. peers ------------------------------------------------------------------------------

struct Peer {
    name: &'static str,
    url: String,
    headers: Vec<String>,
    /// The process whose CPU time (with its children's: nginx workers) the peer costs.
    pid: u32,
    _process: Option<ProcessGroup>,
}

impl Peer {
    /// A peer process serving plain HTTP on loopback `port`.
    fn local(name: &'static str, port: u16, process: ProcessGroup) -> Peer {
        Peer {
            name,
            url: format!("http://127.0.0.1:{port}/"),
            headers: vec![],
            pid: process.id(),
            _process: Some(process),
        }
    }
}

/// A peer process in its own process group, stopped with `stop` (workers included) when dropped.
fn spawn(program: &str, args: &[&str], env: &[(&str, String)], stop: &'static [i32]) -> ProcessGroup {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    ProcessGroup::spawn(&mut cmd, stop, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("{program} runs (scripts/setup.sh installs it): {e}"))
}

/// An nginx with `http` as its http block, one worker, logs in `dir`.
fn nginx(dir: &Path, name: &str, http: &str) -> ProcessGroup {
    nginx_with(dir, name, "", http)
}

/// The same with main-level directives first (e.g. `load_module`, with absolute paths).
fn nginx_with(dir: &Path, name: &str, main: &str, http: &str) -> ProcessGroup {
    let prefix = dir.join(name);
    std::fs::create_dir_all(&prefix).unwrap();
    let conf = format!(
        "{main}\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log warn;\nevents {{ worker_connections 4096; }}\n\
         http {{\n access_log off;\n client_body_temp_path {p};\n proxy_temp_path {p};\n {http}\n}}\n",
        p = prefix.display()
    );
    let path = prefix.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let (p, c, e) = (prefix.display().to_string(), path.display().to_string(), prefix.join("error.log"));
    let args = ["-p", &p, "-e", &e.display().to_string(), "-c", &c, "-g", "daemon off;"];
    spawn("nginx", &args, &[], process::NGINX_STOP)
}

async fn start_backend(dir: &Path, port: u16) -> ProcessGroup {
    let child = nginx(
        dir,
        "backend",
        &format!(
            "keepalive_requests 1000000;\n server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"ok\\n\"; }} }}"
        ),
    );
    wait_ok(&format!("http://127.0.0.1:{port}/"), &[]).await;
    child
}

async fn wait_ok(url: &str, headers: &[String]) {
    let http = http_client();
    let deadline = Instant::now() + T;
    loop {
        let mut req = http.get(url);
        for h in headers {
            let (k, v) = h.split_once(": ").unwrap();
            req = req.header(k, v);
        }
        if req.send().await.is_ok_and(|r| r.status() == 200) {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never answered 200");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn peers_side_by_side(dir: &Path, backend: SocketAddr) {
    let mut peers = Vec::new();

    let port = free_port();
    let child = nginx(
        dir,
        "plain",
        &format!(
            "upstream backend {{ server {backend}; keepalive 64; }}\n server {{ listen 127.0.0.1:{port};\n  location / {{ \
             proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}"
        ),
    );
    peers.push(Peer::local("nginx (keep-alive)", port, child));

    // The floor of any design that routes with Lua: the same nginx with an access phase that only
    // names a fixed peer and a balancer phase that sets it (what the gateway needs per request to
    // keep task addresses as data with per-target keep-alive pools), and nothing else.
    let port = free_port();
    let child = nginx_with(
        dir,
        "lua-floor",
        "load_module /usr/lib/nginx/modules/ndk_http_module.so;\n\
         load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;",
        &format!(
            // `keepalive` after the balancer, as the gateway has it: before, the balancer would
            // replace the connection cache.
            "upstream backend {{ server 0.0.0.1:1;\n  balancer_by_lua_block {{ \
             require(\"ngx.balancer\").set_current_peer(ngx.ctx.host, ngx.ctx.port) }}\n  keepalive 64; }}\n \
             server {{ listen 127.0.0.1:{port};\n  location / {{ access_by_lua_block {{ local c = ngx.ctx; \
             c.host = \"{ip}\"; c.port = {backend_port} }}\n   proxy_pass http://backend; proxy_http_version 1.1; \
             proxy_set_header Connection \"\"; }} }}",
            ip = backend.ip(),
            backend_port = backend.port(),
        ),
    );
    peers.push(Peer::local("nginx + empty Lua access and balancer", port, child));

    let port = free_port();
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  nbthread 1\n  maxconn 4096\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  \
             timeout server 30s\n  http-reuse always\nfrontend f\n  bind 127.0.0.1:{port}\n  default_backend b\n\
             backend b\n  server s1 {backend}\n"
        ),
    )
    .unwrap();
    let child = spawn("haproxy", &["-db", "-f", &cfg.display().to_string()], &[], process::TERMINATE);
    peers.push(Peer::local("HAProxy", port, child));

    let port = free_port();
    let caddyfile = dir.join("Caddyfile");
    std::fs::write(
        &caddyfile,
        format!("{{\n  admin off\n  auto_https off\n}}\nhttp://127.0.0.1:{port} {{\n  reverse_proxy {backend}\n}}\n"),
    )
    .unwrap();
    let caddy_args = ["run", "--config", &caddyfile.display().to_string(), "--adapter", "caddyfile"];
    let home = dir.display().to_string();
    let caddy_env = [
        ("GOMAXPROCS", "1".to_owned()),
        ("HOME", home.clone()),
        ("XDG_DATA_HOME", home.clone()),
        ("XDG_CONFIG_HOME", home),
    ];
    let child = spawn("caddy", &caddy_args, &caddy_env, process::TERMINATE);
    peers.push(Peer::local("Caddy", port, child));

    // The gateway: auth on, the login decision cached after the first request.
    let env = vec![("AUTH_ENABLED", "true".to_owned()), ("LOGGER_LEVEL", "warning".into())];
    let gw =
        Gateway::start(Options { env, proxy_workers: Some(1), no_access_log: true, ..Default::default() })
            .await;
    let task = gw.http_task("backend", backend);
    let url = gw.wait_for_key(&task, "endpoint", T).await;
    let token = gw.emulator.mint_token("user-1", Duration::from_secs(3600));
    let pid_file = gw.proxy.as_ref().unwrap().pid_file();
    let gateway = Peer {
        name: "gateway (auth, cache hit)",
        url,
        headers: vec![format!("Authorization: Bearer {token}")],
        pid: std::fs::read_to_string(pid_file).unwrap().trim().parse().unwrap(),
        _process: None,
    };

    for peer in peers.iter().chain([&gateway]) {
        wait_ok(&peer.url, &peer.headers).await;
        wrk::run(&peer.url, CONNECTIONS, 1, &peer.headers).await;
    }
    let mut results: BTreeMap<&str, Vec<WrkResult>> = BTreeMap::new();
    // CPU microseconds the proxy's processes spent per request, per round.
    let mut cpu: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for _ in 0..ROUNDS {
        for peer in peers.iter().chain([&gateway]) {
            let before = cpu::tree_seconds(peer.pid);
            let r = wrk::run(&peer.url, CONNECTIONS, SECONDS, &peer.headers).await;
            let used = cpu::tree_seconds(peer.pid) - before;
            assert_eq!(r.errors, 0, "{}: wrk saw errors", peer.name);
            cpu.entry(peer.name).or_default().push(used * 1e6 / r.requests as f64);
            results.entry(peer.name).or_default().push(r);
        }
    }
    let med = |name: &str, f: fn(&WrkResult) -> f64| median(results[name].iter().map(f).collect());
    let med_cpu = |name: &str| median(cpu[name].clone());
    let g = gateway.name;
    println!(
        "\n1. throughput, wrk -t1 -c{CONNECTIONS} -d{SECONDS}s, {ROUNDS} interleaved rounds, medians\n\
         | proxy | req/s | p50 ms | p99 ms | CPU us/request | gateway / this (req/s) | this / gateway (CPU per request) | gateway's added p50 / p99 ms |\n|---|---|---|---|---|---|---|---|"
    );
    for peer in peers.iter().chain([&gateway]) {
        let n = peer.name;
        println!(
            "| {n} | {:.0} | {:.3} | {:.3} | {:.1} | {:.2} | {:.2} | {:+.3} / {:+.3} |",
            med(n, |r| r.requests_per_second),
            med(n, |r| r.p50_ms),
            med(n, |r| r.p99_ms),
            med_cpu(n),
            med(g, |r| r.requests_per_second) / med(n, |r| r.requests_per_second),
            med_cpu(n) / med_cpu(g),
            med(g, |r| r.p50_ms) - med(n, |r| r.p50_ms),
            med(g, |r| r.p99_ms) - med(n, |r| r.p99_ms),
        );
    }
    let checks = gw.emulator.stats().per_endpoint.get("users.get_current_user").map(|s| s.calls).unwrap_or(0);
    println!("(ClearML login checks during the gateway's runs: {checks})");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

// --- 2. a large table churning -------------------------------------------------------------

const TABLE: usize = 10_000;

fn table_doc(backend: SocketAddr, version: usize) -> RoutesDoc {
    let routes = (0..TABLE)
        .map(|i| {
            let (host, port) = match i {
                0 => (backend.ip().to_string(), backend.port()),
                // The churning route: another port each version.
                5000 => ("10.1.0.1".to_owned(), 1000 + (version % 50_000) as u16),
                _ => {
                    (format!("10.{}.{}.{}", i / 62_500, i / 250 % 250, i % 250 + 1), 8000 + (i % 1000) as u16)
                }
            };
            (
                format!("{:032x}", i + 1),
                HttpEntry {
                    host,
                    port,
                    task: format!("{:032x}", i + 1),
                    strip_prefix: true,
                    rate_limit: None,
                },
            )
        })
        .collect();
    RoutesDoc {
        version: format!("churn-{version}"),
        routes,
        static_routes: StaticDoc::default(),
        tcp: BTreeMap::new(),
    }
}

fn write_routes(lua_dir: &Path, bytes: &[u8]) {
    let tmp = lua_dir.join(".routes.json.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, lua_dir.join("routes.json")).unwrap();
}

async fn churn_p99(backend: SocketAddr) {
    // The proxy alone (no router): the benchmark writes routes.json itself, as the router would.
    let gw = Gateway::start(Options {
        no_router: true,
        proxy_workers: Some(1),
        no_access_log: true,
        ..Default::default()
    })
    .await;
    let lua_dir = gw.dir.path().join("lua");
    // The versions are rendered up front (and cycled), so the benchmark's own CPU use while
    // churning is a file write, as for a router on another core.
    let versions: Arc<Vec<Vec<u8>>> = Arc::new((0..24).map(|v| table_doc(backend, v).to_bytes()).collect());
    write_routes(&lua_dir, &versions[0]);
    let url = format!("{}/service/{:032x}/", gw.router_url, 1);
    wait_ok(&url, &[]).await;
    let before = gw.proxy_status().await;

    let mut idle = Vec::new();
    let mut churning = Vec::new();
    let mut version = 0;
    for _ in 0..ROUNDS {
        idle.push(wrk::run(&url, CONNECTIONS, SECONDS, &[]).await);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (stop, lua_dir, versions) = (stop.clone(), lua_dir.clone(), versions.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    version += 1;
                    write_routes(&lua_dir, &versions[version % versions.len()]);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                version
            })
        };
        churning.push(wrk::run(&url, CONNECTIONS, SECONDS, &[]).await);
        stop.store(true, Ordering::Relaxed);
        version = writer.await.unwrap();
    }
    for r in idle.iter().chain(&churning) {
        assert_eq!(r.errors, 0, "wrk saw errors");
    }
    let after = gw.proxy_status().await;
    let stat = |v: &Value, k: &str| v["routes_stats"][k].as_u64().unwrap_or(0);
    let (idle_p99, churn_p99) = (
        median(idle.iter().map(|r| r.p99_ms).collect()),
        median(churning.iter().map(|r| r.p99_ms).collect()),
    );
    println!(
        "\n2. a served route's p99 with {TABLE} routes, idle vs one route changed every 0.25 s (routes.json rewritten), \
         wrk -c{CONNECTIONS} -d{SECONDS}s, {ROUNDS} rounds, medians\n\
         | idle p99 ms | churn p99 ms | ratio | table versions | dict entries touched | diff loads | whole-file loads |\n|---|---|---|---|---|---|---|\n\
         | {idle_p99:.3} | {churn_p99:.3} | {:.2} | {version} | {} | {} | {} |",
        churn_p99 / idle_p99,
        stat(&after, "touched") - stat(&before, "touched"),
        stat(&after, "diff_loads") - stat(&before, "diff_loads"),
        stat(&after, "full_loads") - stat(&before, "full_loads"),
    );
}

// --- 3 and 4. endpoints coming and going, reloads ------------------------------------------

async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + T;
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn endpoint_churn_and_reloads(backend: SocketAddr) {
    const BATCHES: usize = 5;
    const BATCH: usize = 10;
    let base = free_block(2 * BATCH as u16);
    let env = vec![
        ("TCP_ROUTER_ADDRESS", "localhost".to_owned()),
        ("TCP_PORT_START", base.to_string()),
        ("TCP_PORT_END", (base + 2 * BATCH as u16 - 1).to_string()),
        ("LOGGER_LEVEL", "warning".into()),
    ];
    let gw =
        Gateway::start(Options { env, proxy_workers: Some(1), no_access_log: true, ..Default::default() })
            .await;
    let stable = gw.http_task("stable", backend);
    let url = gw.wait_for_key(&stable, "endpoint", T).await;
    wait_ok(&url, &[]).await;
    let echo = gateway_testkit::sample_apps::start_tcp_echo("127.0.0.1:0".parse().unwrap()).await.unwrap();

    // Keep-alive clients on the stable route for the whole churn (wrk never retries).
    let reloads_before = gw.nginx_reloads();
    let load = tokio::spawn({
        let url = url.clone();
        async move { wrk::run(&url, 8, 60, &[]).await }
    });
    let started = Instant::now();
    let mut events = (0, 0);
    for batch in 0..BATCHES {
        let http: Vec<String> = (0..BATCH).map(|i| gw.http_task(&format!("h{batch}-{i}"), backend)).collect();
        let tcp: Vec<String> = (0..BATCH).map(|i| gw.tcp_task(&format!("t{batch}-{i}"), echo)).collect();
        for t in &http {
            gw.wait_for_key(t, "endpoint", T).await;
        }
        for t in &tcp {
            wait_for("TCP port published", || gw.runtime(t)["external_address"] == "localhost").await;
        }
        for t in http.iter().chain(&tcp) {
            gw.emulator.set_status(t, "stopped");
        }
        for t in &http {
            gw.wait_for_key_gone(t, "endpoint", T).await;
        }
        for t in &tcp {
            wait_for("TCP port released", || gw.runtime(t).get("_ROUTER_TARGET_ADDRESS").is_none()).await;
        }
        events.0 += 2 * BATCH;
        events.1 += 2 * BATCH;
    }
    let churn_seconds = started.elapsed().as_secs_f64();
    let reloads = gw.nginx_reloads() - reloads_before;
    let during_churn = load.await.unwrap();

    // 4. Reloads (what a listener or TLS change costs), keep-alive clients meanwhile.
    let pid: i32 =
        std::fs::read_to_string(gw.proxy.as_ref().unwrap().pid_file()).unwrap().trim().parse().unwrap();
    let load = tokio::spawn({
        let url = url.clone();
        async move { wrk::run(&url, 8, 12, &[]).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..10 {
        // SAFETY: signalling the nginx master this benchmark started.
        unsafe { libc::kill(pid, libc::SIGHUP) };
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let during_reloads = load.await.unwrap();
    println!(
        "\n3. keep-alive clients (wrk -c8, 60 s) on a stable route while {} HTTP and {} TCP endpoint starts/stops happen ({churn_seconds:.1} s)\n\
         | requests | failed | nginx reloads |\n|---|---|---|\n| {:.0} | {} | {reloads} |",
        events.0,
        events.1,
        during_churn.requests_per_second * 60.0,
        during_churn.errors,
    );
    println!(
        "\n4. keep-alive clients (wrk -c8, 12 s) during 10 nginx reloads (SIGHUP)\n| requests | failed |\n|---|---|\n| {:.0} | {} |",
        during_reloads.requests_per_second * 12.0,
        during_reloads.errors,
    );
}
