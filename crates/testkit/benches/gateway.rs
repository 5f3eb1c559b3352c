//! Gateway figures, printed (not asserted): `cargo bench --bench gateway`.
//!
//! 1. Route-live latency: task runtime set -> first 200 through the proxy, p50/p95 over 20 tasks,
//!    against the SDK's own poll interval (3 s) as the baseline a user waits anyway.
//! 2. nginx reloads per 100 task starts/stops (counted from nginx's own log).
//! 3. One poll's ClearML API calls and bytes with 1,000 tasks, against an unfiltered
//!    `tasks.get_all` without `only_fields` (what a naive poller would fetch) in the same run.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use clearml_emulator::NewTask;
use common::*;
use serde_json::json;

const SDK_POLL_INTERVAL: Duration = Duration::from_secs(3);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let poll = std::env::var("BENCH_POLL_SECONDS").unwrap_or_else(|_| "1".into());
    println!("gateway benchmark (router poll interval {poll} s, the production default is 1 s)");
    let gw = Gateway::start(Options {
        env: vec![("ROUTER_POLL_INTERVAL_SECONDS", poll.clone()), ("LOGGER_LEVEL", "info".into())],
        ..Default::default()
    })
    .await;
    route_live_latency(&gw).await;
    reloads_per_churn(&gw).await;
    poll_cost(&gw).await;
}

async fn route_live_latency(gw: &Gateway) {
    let app = sample_app("bench").await;
    let http = http_client();
    let mut samples = Vec::new();
    for i in 0..20 {
        let task = gw.emulator.create_task(NewTask {
            name: format!("latency-{i}"),
            status: "in_progress".into(),
            ..Default::default()
        });
        let url = format!("{}/service/{task}/", gw.router_url);
        // A random start phase, so samples are not locked to the router's poll cycle.
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 1000)).await;
        // What the SDK does: runtime keys, then the tag (two edits).
        let started = Instant::now();
        gw.emulator.update_task(&task, |t| {
            t["runtime"] = json!({"_SERVICE": "EXTERNAL", "_ADDRESS": "127.0.0.1", "_PORT": app.port()});
            t["system_tags"] = json!(["external_service"]);
        });
        loop {
            if http.get(&url).send().await.map(|r| r.status() == 200).unwrap_or(false) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "task {i} never went live");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        samples.push(started.elapsed());
        gw.emulator.set_status(&task, "stopped");
    }
    samples.sort();
    let p50 = samples[samples.len() / 2];
    let p95 = samples[(samples.len() * 95).div_ceil(100) - 1];
    println!(
        "route-live latency over {} tasks: p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms; p95 / SDK poll interval (3 s) = {:.2}",
        samples.len(),
        p50.as_secs_f64() * 1000.0,
        p95.as_secs_f64() * 1000.0,
        samples.last().unwrap().as_secs_f64() * 1000.0,
        p95.as_secs_f64() / SDK_POLL_INTERVAL.as_secs_f64()
    );
}

async fn reloads_per_churn(gw: &Gateway) {
    let app = sample_app("churn").await;
    let before = gw.nginx_reloads();
    let mut events = 0;
    for batch in 0..5 {
        let tasks: Vec<String> = (0..10).map(|i| gw.http_task(&format!("churn-{batch}-{i}"), app)).collect();
        for task in &tasks {
            gw.wait_for_status(&format!("{}/service/{task}/", gw.router_url), 200, Duration::from_secs(30))
                .await;
        }
        events += tasks.len();
        for task in &tasks {
            gw.emulator.set_status(task, "stopped");
        }
        for task in &tasks {
            gw.wait_for_status(&format!("{}/service/{task}/", gw.router_url), 404, Duration::from_secs(30))
                .await;
        }
        events += tasks.len();
    }
    let reloads = gw.nginx_reloads() - before;
    println!(
        "nginx reloads per 100 task starts/stops: {:.1} ({reloads} reloads over {events} events)",
        reloads as f64 * 100.0 / events as f64
    );
}

async fn poll_cost(gw: &Gateway) {
    let started = Instant::now();
    let mut asking = Vec::new();
    for i in 0..1000 {
        let status = if i % 2 == 0 { "in_progress" } else { "completed" };
        let tagged = i % 4 < 2;
        let id = gw.emulator.create_task(NewTask {
            name: format!("bulk-{i}"),
            status: status.into(),
            runtime: json!({"_SERVICE": "EXTERNAL", "_ADDRESS": "10.9.0.1", "_PORT": 9000 + i % 1000, "notes": "x".repeat(200)}),
            system_tags: if tagged { vec!["external_service".into()] } else { vec![] },
            ..Default::default()
        });
        if tagged && status == "in_progress" {
            asking.push(id);
        }
    }
    // All new endpoints published (routed, confirmed, written back to each task).
    while !asking.iter().all(|t| gw.runtime(t).get("endpoint").is_some()) {
        assert!(started.elapsed() < Duration::from_secs(120), "bulk endpoints never published");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{} endpoints requested at once (among 1,000 tasks) all published in {:.2} s",
        asking.len(),
        started.elapsed().as_secs_f64()
    );
    // Let the router settle: a whole round with no write-back (tasks.edit) left to do; then
    // measure steady-state polls.
    loop {
        gw.emulator.reset_stats();
        gw.wait_for_polls(2, Duration::from_secs(60)).await;
        if !gw.emulator.stats().per_endpoint.contains_key("tasks.edit") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "the router never settled");
    }
    gw.emulator.reset_stats();
    let window = Duration::from_secs(5);
    tokio::time::sleep(window).await;
    let stats = gw.emulator.stats();
    let polls = stats.per_endpoint.get("tasks.get_all").map(|s| s.calls).unwrap_or(0).max(1);
    let calls: u64 = stats.per_endpoint.values().map(|s| s.calls).sum();
    let bytes: u64 = stats.per_endpoint.values().map(|s| s.request_bytes + s.response_bytes).sum();
    let calls_per_poll = calls as f64 / polls as f64;
    let bytes_per_poll = bytes as f64 / polls as f64;

    // Baseline in the same run: every task, every field, filtered client-side.
    let client = clearml_api::ClearmlClient::new(
        &gw.emulator.url(),
        clearml_api::Credentials {
            access_key: clearml_router::config::Secret::new(
                clearml_emulator::EmulatorConfig::default().access_key,
            ),
            secret_key: clearml_router::config::Secret::new(
                clearml_emulator::EmulatorConfig::default().secret_key,
            ),
        },
        Duration::from_secs(30),
        true,
    )
    .unwrap();
    client.call("tasks.get_all", json!({})).await.unwrap();
    gw.emulator.reset_stats();
    let naive = client.call("tasks.get_all", json!({})).await.unwrap();
    let naive_stats = gw.emulator.stats();
    let naive_bytes: u64 =
        naive_stats.per_endpoint.values().map(|s| s.request_bytes + s.response_bytes).sum();
    println!(
        "one poll with 1,000 tasks in ClearML (500 running, 250 of those asking): {calls_per_poll:.1} API calls, {:.1} kB \
         ({polls} polls in {}s); naive unfiltered get_all: {:.1} kB for {} tasks; ratio {:.3}",
        bytes_per_poll / 1000.0,
        window.as_secs(),
        naive_bytes as f64 / 1000.0,
        naive["tasks"].as_array().map(|a| a.len()).unwrap_or(0),
        bytes_per_poll / naive_bytes as f64
    );
}
