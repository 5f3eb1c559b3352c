//! Cost of authentication at the gateway, printed (not asserted): `cargo bench --bench auth`.
//!
//! wrk drives two gateways that differ only in AUTH_ENABLED, proxying to the same fast backend:
//! authenticated requests (cache hit: one check at ClearML, then the shared-dict decision) against
//! unauthenticated proxying, interleaved rounds, as a throughput ratio and added latency.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use gateway_testkit::wrk::WrkResult;

const ROUNDS: usize = 3;
const SECONDS: u32 = 5;

async fn wrk(url: &str, token: Option<&str>) -> WrkResult {
    let headers: Vec<String> = token.map(|t| format!("Authorization: Bearer {t}")).into_iter().collect();
    let result = gateway_testkit::wrk::run(url, 16, SECONDS, &headers).await;
    assert_eq!(result.errors, 0, "wrk saw errors");
    result
}

async fn gateway(auth: bool) -> (Gateway, String) {
    let env = vec![("AUTH_ENABLED", auth.to_string()), ("LOGGER_LEVEL", "warning".into())];
    let gw = Gateway::start(Options { env, ..Default::default() }).await;
    let app = sample_app("fast").await;
    let task = gw.http_task("fast", app);
    let url = gw.wait_for_key(&task, "endpoint", Duration::from_secs(20)).await;
    (gw, url)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (open_gw, open_url) = gateway(false).await;
    let (auth_gw, auth_url) = gateway(true).await;
    let token = auth_gw.emulator.mint_token("user-1", Duration::from_secs(3600));
    // Warm both (and put the login decision in the cache).
    assert_eq!(http_client().get(&auth_url).bearer_auth(&token).send().await.unwrap().status(), 200);
    let _ = wrk(&open_url, None).await;
    auth_gw.emulator.reset_stats();
    let mut open = Vec::new();
    let mut authed = Vec::new();
    for _ in 0..ROUNDS {
        open.push(wrk(&open_url, None).await);
        authed.push(wrk(&auth_url, Some(&token)).await);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let open_rps = median(&mut open.iter().map(|r| r.requests_per_second).collect());
    let auth_rps = median(&mut authed.iter().map(|r| r.requests_per_second).collect());
    let open_lat = median(&mut open.iter().map(|r| r.mean_ms).collect());
    let auth_lat = median(&mut authed.iter().map(|r| r.mean_ms).collect());
    let auth_requests: f64 = authed.iter().map(|r| r.requests_per_second * f64::from(SECONDS)).sum();
    let checks =
        auth_gw.emulator.stats().per_endpoint.get("users.get_current_user").map(|s| s.calls).unwrap_or(0);
    println!("auth benchmark: wrk -t1 -c16 -d{SECONDS}s, {ROUNDS} interleaved rounds, medians");
    println!("  no auth:             {open_rps:>9.0} req/s, mean latency {open_lat:.3} ms");
    println!("  auth (cache hit):    {auth_rps:>9.0} req/s, mean latency {auth_lat:.3} ms");
    println!(
        "  throughput ratio auth/no-auth: {:.3}; latency added per request: {:.3} ms",
        auth_rps / open_rps,
        auth_lat - open_lat
    );
    println!("  ClearML login checks during ~{auth_requests:.0} authenticated requests: {checks}");
    drop(open_gw);
}
