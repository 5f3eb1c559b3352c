//! Control-plane figures at scale, printed (not asserted): `cargo bench -p gateway-testkit --bench control_plane`.
//!
//! 1. Tasks routed and the time until all are routed (in the proxy) and published (keys on every
//!    task) with 100 / 1,000 / 5,000 / 10,000 routable tasks behind the emulator's 500-per-page cap.
//! 2. ClearML bytes per poll in steady state at each size; router RSS at 10,000 tasks.
//! 3. Route-live latency p50/p95 (runtime written -> first 200 through the proxy) with 1,000 tasks.
//! 4. ClearML calls per minute while one task's write-back fails for good (403 on every edit).
//! 5. Stale endpoint keys and leftover temporary files after 20+ kill -9 at random moments during
//!    churn (goal: 0 and 0).

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clearml_emulator::{Fault, NewTask};
use common::*;
use serde_json::{json, Value};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("control-plane benchmark (router poll interval 1 s, 500 tasks per tasks.get_all page)");
    let app = sample_app("bench").await;
    for size in [100, 1_000, 5_000, 10_000] {
        scale(size, app).await;
    }
    failing_write_back(app).await;
    kills_during_churn(app).await;
}

fn options(no_router: bool) -> Options {
    Options {
        env: vec![("ROUTER_POLL_INTERVAL_SECONDS", "1".into()), ("LOGGER_LEVEL", "info".into())],
        no_router,
        ..Default::default()
    }
}

fn create(gw: &Gateway, name: String, app: SocketAddr) -> String {
    gw.emulator.create_task(NewTask {
        name,
        status: "in_progress".into(),
        runtime: json!({"_SERVICE": "EXTERNAL", "_ADDRESS": "127.0.0.1", "_PORT": app.port()}),
        system_tags: vec!["external_service".into()],
        ..Default::default()
    })
}

/// Routes the proxy serves now (its control listener), 0 if it does not answer.
async fn proxy_routes(gw: &Gateway) -> u64 {
    let url = format!("http://127.0.0.1:{}/__clearml_router/status", gw.control_port);
    let status: Option<Value> = match http_client().get(url).send().await {
        Ok(r) => r.json().await.ok(),
        Err(_) => None,
    };
    status.and_then(|s| s["routes"].as_u64()).unwrap_or(0)
}

fn published(gw: &Gateway) -> usize {
    gw.emulator.tasks().iter().filter(|t| t["runtime"].get("endpoint").is_some()).count()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: 0 kB");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Waits until ClearML saw no `tasks.edit` for `quiet` (write-backs done).
async fn settle(gw: &Gateway, quiet: Duration) {
    let mut last = (gw.emulator.stats().calls("tasks.edit"), Instant::now());
    while last.1.elapsed() < quiet {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let edits = gw.emulator.stats().calls("tasks.edit");
        if edits != last.0 {
            last = (edits, Instant::now());
        }
    }
}

async fn scale(size: usize, app: SocketAddr) {
    let mut gw = Gateway::start(options(true)).await;
    for i in 0..size {
        create(&gw, format!("scale-{i}"), app);
    }
    let started = Instant::now();
    gw.start_router();
    let limit = Duration::from_secs(300);
    while proxy_routes(&gw).await < size as u64 {
        assert!(started.elapsed() < limit, "{size} tasks never routed\n{}", gw.router_log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let routed = started.elapsed();
    while published(&gw) < size {
        assert!(started.elapsed() < limit, "{size} endpoints never published");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_published = started.elapsed();
    // Quiet for longer than a change poll's look-back after the last write (2 s, twice): what
    // follows is the steady state of change polls (plus a full poll if the minute's one falls in).
    settle(&gw, Duration::from_secs(5)).await;
    gw.emulator.reset_stats();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let stats = gw.emulator.stats();
    let polls = stats.calls("tasks.get_all").max(1);
    let bytes: u64 = stats.per_endpoint.values().map(|s| s.request_bytes + s.response_bytes).sum();
    let pid = gw.router.as_ref().map_or(0, |c| c.id());
    println!(
        "{size:>6} tasks: routed in the proxy after {:.2} s, all published after {:.2} s; steady state \
         {:.0} bytes per poll ({} ClearML calls in 10 s); router RSS {} MiB",
        routed.as_secs_f64(),
        all_published.as_secs_f64(),
        bytes as f64 / polls as f64,
        stats.total.calls,
        rss_kib(pid) / 1024
    );
    if size == 1_000 {
        route_live(&gw, app).await;
    }
    gw.stop_router().await;
}

/// 20 tasks started at random moments, all measured at once.
async fn route_live(gw: &Gateway, app: SocketAddr) {
    let samples = futures_util::future::join_all((0..20).map(|i| async move {
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 3000)).await;
        let started = Instant::now();
        let task = create(gw, format!("live-{i}"), app);
        let url = format!("{}/service/{task}/", gw.router_url);
        let http = http_client();
        while !http.get(&url).send().await.map(|r| r.status() == 200).unwrap_or(false) {
            assert!(started.elapsed() < Duration::from_secs(30), "{task} never went live");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        started.elapsed()
    }))
    .await;
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    println!("route-live with 1,000 tasks (20 samples): p50 {:.0} ms, p95 {:.0} ms", ms[9], ms[18]);
}

async fn failing_write_back(app: SocketAddr) {
    let gw = Gateway::start(options(false)).await;
    let task = create(&gw, "warm-up".into(), app);
    gw.wait_for_key(&task, "endpoint", Duration::from_secs(20)).await;
    gw.emulator.inject_faults(vec![
        Fault::Status {
            code: 403,
            subcode: 0,
            endpoint: Some("tasks.edit".into())
        };
        10_000
    ]);
    gw.emulator.reset_stats();
    create(&gw, "refused".into(), app);
    let window = Duration::from_secs(60);
    tokio::time::sleep(window).await;
    let stats = gw.emulator.stats();
    let per_endpoint: Vec<String> =
        stats.per_endpoint.iter().map(|(e, s)| format!("{e} {}", s.calls)).collect();
    println!(
        "one write-back refused for good (403), over {} s: {} ClearML calls ({})",
        window.as_secs(),
        stats.total.calls,
        per_endpoint.join(", ")
    );
}

/// Temporary files beside the live ones, and staging folders of `pids`.
fn leftovers(gw: &Gateway, pids: &[u32]) -> usize {
    let mut found = 0;
    for dir in ["conf.d", "lua"] {
        for entry in std::fs::read_dir(gw.dir.path().join(dir)).unwrap().flatten() {
            found += usize::from(entry.file_name().to_string_lossy().contains(".tmp-"));
        }
    }
    let staging = |pid: &u32| std::env::temp_dir().join(format!("clearml-router-staging-{pid}")).exists();
    found + pids.iter().filter(|p| staging(p)).count()
}

async fn kills_during_churn(app: SocketAddr) {
    const KILLS: usize = 24;
    let mut gw = Gateway::start(options(true)).await;
    let mut running: Vec<String> = (0..30).map(|i| create(&gw, format!("churn-{i}"), app)).collect();
    let mut stopped: Vec<String> = Vec::new();
    let mut pids = Vec::new();
    for round in 0..KILLS {
        gw.start_router();
        pids.push(gw.router.as_ref().map_or(0, |c| c.id()));
        // Churn while the router runs: some tasks stop, new ones start.
        for _ in 0..4 {
            let victim = running.swap_remove(rand::random::<usize>() % running.len());
            gw.emulator.set_status(&victim, "stopped");
            stopped.push(victim);
            running.push(create(&gw, format!("churn-r{round}"), app));
        }
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 2500)).await;
        gw.stop_router().await; // SIGKILL
    }
    gw.start_router();
    let started = Instant::now();
    let has_keys = |t: &String| gw.runtime(t).get("endpoint").is_some();
    let stale = || stopped.iter().filter(|t| has_keys(t)).count();
    let missing = || running.iter().filter(|t| !has_keys(t)).count();
    while (stale() > 0 || missing() > 0) && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "{KILLS} kill -9 at random moments during churn ({} tasks stopped, {} running): {} stale endpoint \
         keys, {} running tasks without keys after {:.1} s; {} leftover temporary files",
        stopped.len(),
        running.len(),
        stale(),
        missing(),
        started.elapsed().as_secs_f64(),
        leftovers(&gw, &pids)
    );
}
