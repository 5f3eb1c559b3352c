//! Upstream keep-alive: the proxy reuses its connection to a task for many requests, and the
//! cache is per target address, so two tasks on one host never see each other's requests.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

/// The echo of `url`: the app's name, the URI it saw and the peer address of its connection.
async fn echo(http: &reqwest::Client, url: &str) -> (String, String, String) {
    let v: Value = http.get(url).fetch_json().await;
    let field = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("no {k} in {v}")).to_owned();
    (field("app"), field("uri"), field("peer"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_backend_connection_serves_many_requests() {
    let gw = Gateway::start(Options::default()).await;
    let (_task, url) = gw.routed_task("kept").await;
    // One client connection: every request lands on the same nginx worker and its pool.
    let http = http_client();
    let mut peers = BTreeSet::new();
    for i in 0..50 {
        let (app, uri, peer) = echo(&http, &format!("{url}echo/{i}")).await;
        assert_eq!((app.as_str(), uri), ("kept", format!("/echo/{i}")));
        peers.insert(peer);
    }
    // The first request opened it (the wait above may have left one more in the other worker).
    assert!(peers.len() <= 2, "50 requests used {} upstream connections: {peers:?}", peers.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_tasks_on_one_host_never_receive_each_others_requests() {
    let gw = Gateway::start(Options::default()).await;
    let (_a, url_a) = gw.routed_task("alpha").await;
    let (_b, url_b) = gw.routed_task("beta").await;
    let http = http_client();
    let mut peers = [BTreeSet::new(), BTreeSet::new()];
    // Four waves of ten concurrent requests per task: both tasks' requests interleave within a
    // wave, and between waves the proxy holds idle connections it can reuse (all 40 at once could
    // need 40 connections however the pool is keyed).
    for wave in 0..4 {
        let mut calls = Vec::new();
        for i in wave * 10..wave * 10 + 10 {
            for (k, (name, url)) in [("alpha", &url_a), ("beta", &url_b)].into_iter().enumerate() {
                let (http, url) = (http.clone(), format!("{url}echo/{name}/{i}"));
                calls.push(tokio::spawn(async move { (k, name, i, echo(&http, &url).await) }));
            }
        }
        for call in calls {
            let (k, name, i, (app, uri, peer)) = tokio::time::timeout(T, call).await.unwrap().unwrap();
            assert_eq!((app.as_str(), uri), (name, format!("/echo/{name}/{i}")), "request {i} for {name}");
            peers[k].insert(peer);
        }
    }
    // Connections were reused meanwhile, so a cache keyed wrongly would have shown above.
    for (name, p) in ["alpha", "beta"].iter().zip(&peers) {
        assert!(p.len() < 40, "{name}: 40 requests on {} connections, none reused", p.len());
    }
}
