//! The proxy's login cache with real nginx + Lua and the emulator (remote mode): a cached decision
//! never outlives the token's `exp`, and a hanging ClearML does not slow a user whose login is
//! cached (the stale decision is served while one background re-check waits on ClearML).

mod common;

use std::time::{Duration, Instant};

use clearml_emulator::Fault;
use common::*;

const T: Duration = Duration::from_secs(15);
const CHECK: &str = "users.get_current_user";

async fn gateway(cache_ttl: &str) -> (Gateway, String) {
    let env = vec![("AUTH_ENABLED", "true".to_owned()), ("AUTH_CACHE_TTL_SECONDS", cache_ttl.to_owned())];
    let gw = Gateway::start(Options { env, ..Default::default() }).await;
    let app = sample_app("secured").await;
    let task = gw.http_task("secured", app);
    let url = gw.wait_for_key(&task, "endpoint", T).await;
    (gw, url)
}

async fn status_with(url: &str, token: &str) -> u16 {
    let request = http_client().get(url).bearer_auth(token).header("accept", "application/json");
    request.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

async fn wait_for(url: &str, token: &str, status: u16) {
    let deadline = tokio::time::Instant::now() + T;
    while status_with(url, token).await != status {
        assert!(tokio::time::Instant::now() < deadline, "{url} never answered {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_login_ends_at_the_tokens_exp_not_at_the_cache_ttl() {
    let (gw, url) = gateway("300").await;
    let token = gw.emulator.mint_token("user-1", Duration::from_secs(4));
    let issued = Instant::now();
    wait_for(&url, &token, 200).await;
    // ClearML goes away: only the cache can answer now, and it must stop at exp.
    gw.emulator.set_available(false);
    let mut last = 200;
    while last == 200 {
        assert!(
            issued.elapsed() < Duration::from_secs(7),
            "still served {:?} after a 4 s token",
            issued.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = status_with(&url, &token).await;
    }
    assert!(issued.elapsed() >= Duration::from_secs(2), "the cache ended early: {:?}", issued.elapsed());
    assert_eq!(last, 503, "past exp the login is checked again, and ClearML is down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_clearml_does_not_slow_a_user_with_a_cached_login() {
    let (gw, url) = gateway("1").await;
    let token = gw.emulator.mint_token("user-1", Duration::from_secs(3600));
    wait_for(&url, &token, 200).await;
    let checks = gw.emulator.stats().calls(CHECK);
    // Every check at ClearML now hangs for 4 s.
    let hang = Fault::Delay { duration: Duration::from_secs(4), endpoint: Some(CHECK.into()) };
    gw.emulator.inject_faults(vec![hang; 20]);

    // 3 s of requests across the end of the 1 s fresh TTL: all served at once.
    let window = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut requests = 0;
    while window.elapsed() < Duration::from_secs(3) {
        let started = Instant::now();
        assert_eq!(status_with(&url, &token).await, 200);
        slowest = slowest.max(started.elapsed());
        requests += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(slowest < Duration::from_millis(500), "a request waited {slowest:?} on ClearML");
    // The re-check did go to ClearML (counted once it finishes), one at a time.
    let deadline = Instant::now() + T;
    while gw.emulator.stats().calls(CHECK) == checks {
        assert!(Instant::now() < deadline, "no background re-check reached ClearML");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let made = gw.emulator.stats().calls(CHECK) - checks;
    assert!(made <= 2, "{made} checks for {requests} requests");
    println!("auth_cache: {requests} requests during a ClearML hang, slowest {slowest:?}, {made} re-checks");
}

/// With ClearML named by a host name (as deployments do), the background re-check still reaches
/// it: the proxy asks through its own control listener, where nginx resolves the name (a Lua
/// socket alone would need a `resolver` and fail on every re-check).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_rechecks_reach_clearml_named_by_host_name() {
    let emulator = clearml_emulator::start(Default::default(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let by_name = format!("http://localhost:{}", emulator.addr.port());
    let env = vec![
        ("AUTH_ENABLED", "true".to_owned()),
        ("AUTH_CACHE_TTL_SECONDS", "1".to_owned()),
        ("CLEARML_API_HOST", by_name),
    ];
    let gw = Gateway::start(Options { env, emulator: Some(emulator), ..Default::default() }).await;
    let task = gw.http_task("named", sample_app("named").await);
    let url = gw.wait_for_key(&task, "endpoint", T).await;
    let token = gw.emulator.mint_token("user-1", Duration::from_secs(3600));
    wait_for(&url, &token, 200).await;
    let checks = gw.emulator.stats().calls(CHECK);
    // Past the 1 s fresh TTL the login is served stale and re-checked in the background.
    let deadline = Instant::now() + T;
    while gw.emulator.stats().calls(CHECK) == checks {
        assert_eq!(status_with(&url, &token).await, 200);
        assert!(
            Instant::now() < deadline,
            "no background re-check reached ClearML:\n{}",
            gw.nginx_error_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!gw.nginx_error_log().contains("background re-check failed"), "{}", gw.nginx_error_log());
}
