//! ClearML API failures (expired token, 500s, garbage bodies, timeouts, the server being down):
//! the proxy keeps serving the last good routes, no endpoint keys are retracted, and the router
//! recovers by itself, without a restart.

mod common;

use std::time::{Duration, Instant};

use clearml_emulator::Fault;
use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(15);
const GET_ALL: &str = "tasks.get_all";
const POLL_FAILED: &str = "ClearML poll failed; the last good routes keep serving";
const RECOVERED: &str = "ClearML polling recovered";

fn count(gw: &Gateway, needle: &str) -> usize {
    gw.router_log().matches(needle).count()
}

/// The keys the router advertised on A, as they must stay while A runs.
fn assert_keys_kept(gw: &Gateway, task: &str, url: &str, during: &str) {
    let runtime = gw.runtime(task);
    assert_eq!(
        runtime.get("endpoint").and_then(Value::as_str),
        Some(url),
        "endpoint retracted from {task} during {during}: {runtime}"
    );
    assert_eq!(
        runtime.get("browser_endpoint").and_then(Value::as_str),
        Some(url),
        "browser_endpoint retracted from {task} during {during}: {runtime}"
    );
}

/// One GET of A through the proxy must answer 200 and its keys must still be there.
async fn assert_a_serves(gw: &Gateway, http: &reqwest::Client, task: &str, url: &str, during: &str) {
    let status = http.get(url).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
    assert_eq!(status, 200, "{url} during {during}\nrouter log:\n{}", gw.router_log());
    assert_keys_kept(gw, task, url, during);
}

/// Polls A through the proxy until the router logs one more recovery than `recovered_before`
/// (at most `timeout`), asserting 200 and kept keys on every request. Returns the request count.
async fn serve_until_recovered(
    gw: &Gateway,
    http: &reqwest::Client,
    task: &str,
    url: &str,
    during: &str,
    recovered_before: usize,
    timeout: Duration,
) -> usize {
    let deadline = Instant::now() + timeout;
    let mut requests = 0;
    while count(gw, RECOVERED) == recovered_before {
        assert!(
            Instant::now() < deadline,
            "router did not log {RECOVERED:?} within {timeout:?} after {during}\nrouter log:\n{}",
            gw.router_log()
        );
        assert_a_serves(gw, http, task, url, during).await;
        requests += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_a_serves(gw, http, task, url, during).await;
    requests + 1
}

/// `n` identical faults aimed at `tasks.get_all`.
fn get_all_faults(n: usize, fault: impl Fn(Option<String>) -> Fault) -> Vec<Fault> {
    (0..n).map(|_| fault(Some(GET_ALL.to_owned()))).collect()
}

/// Calls to `tasks.get_all` the emulator answered with `code` (since the last stats reset).
fn get_all_answered(gw: &Gateway, code: u16) -> usize {
    gw.emulator.calls().iter().filter(|c| c.endpoint == GET_ALL && c.result_code == code).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_failures_keep_the_last_good_routes_and_the_router_recovers() {
    let started = Instant::now();
    let mut gw = Gateway::start(Options::default()).await;
    let http = http_client();

    let (task_a, url_a) = gw.routed_task("a").await;
    assert_eq!(gw.emulator.stats().calls("auth.login"), 1, "one login at start");

    // (a) The token is refused once (401/30): the router logs in again, nothing fails.
    gw.emulator.inject_faults(vec![Fault::Status { code: 401, subcode: 30, endpoint: Some(GET_ALL.into()) }]);
    let deadline = Instant::now() + T;
    while gw.emulator.stats().calls("auth.login") < 2 {
        assert!(Instant::now() < deadline, "no second login after 401/30\nrouter log:\n{}", gw.router_log());
        assert_a_serves(&gw, &http, &task_a, &url_a, "401/30").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get_all_answered(&gw, 401), 1, "the 401 was served once");
    let app_b = sample_app("b").await;
    let task_b = gw.http_task("b", app_b);
    let url_b = gw.wait_for_key(&task_b, "endpoint", T).await;
    gw.wait_for_status(&url_b, 200, T).await;
    let login_calls = gw.emulator.stats().calls("auth.login");
    assert_eq!(login_calls, 2, "exactly one login at start and one after 401/30");
    assert!(gw.router_log().contains("token refused, logging in again"));
    assert_eq!(
        count(&gw, POLL_FAILED),
        0,
        "a refused token is renewed within the same poll, it is no poll failure\nrouter log:\n{}",
        gw.router_log()
    );

    // (b1) Five 500s in a row.
    gw.emulator.reset_stats();
    let (failed0, recovered0) = (count(&gw, POLL_FAILED), count(&gw, RECOVERED));
    gw.emulator.inject_faults(get_all_faults(5, |endpoint| Fault::Status {
        code: 500,
        subcode: 0,
        endpoint,
    }));
    let r500 = serve_until_recovered(&gw, &http, &task_a, &url_a, "500s", recovered0, T).await;
    assert_eq!(get_all_answered(&gw, 500), 5);
    assert_eq!(count(&gw, POLL_FAILED), failed0 + 1, "five identical failures are logged once");
    assert!(gw.router_log().contains("ClearML tasks.get_all: error 500/0: Injected fault"));

    // (b2) Three answers that are not JSON.
    let (failed1, recovered1) = (count(&gw, POLL_FAILED), count(&gw, RECOVERED));
    gw.emulator.inject_faults(get_all_faults(3, |endpoint| Fault::GarbageBody { endpoint }));
    let garbage = serve_until_recovered(&gw, &http, &task_a, &url_a, "garbage", recovered1, T).await;
    assert_eq!(count(&gw, POLL_FAILED), failed1 + 1);
    assert!(gw.router_log().contains("body is not JSON"));

    // (b3) Two answers slower than the router's 2 s timeout.
    let (failed2, recovered2) = (count(&gw, POLL_FAILED), count(&gw, RECOVERED));
    let delay_started = Instant::now();
    gw.emulator.inject_faults(get_all_faults(2, |endpoint| Fault::Delay {
        duration: Duration::from_secs(3),
        endpoint,
    }));
    let slow = serve_until_recovered(&gw, &http, &task_a, &url_a, "timeouts", recovered2, T).await;
    let delay_window = delay_started.elapsed();
    assert_eq!(count(&gw, POLL_FAILED), failed2 + 1);
    assert!(gw.router_log().contains("ClearML tasks.get_all: no answer within 2.0s"));
    assert!(delay_window >= Duration::from_secs(4), "two 2 s timeouts cannot pass in {delay_window:?}");

    // (b4) ClearML down for 3 s: connections are cut without an answer.
    gw.emulator.reset_stats();
    let (failed3, recovered3) = (count(&gw, POLL_FAILED), count(&gw, RECOVERED));
    gw.emulator.set_available(false);
    let outage_until = Instant::now() + Duration::from_secs(3);
    let mut down = 0;
    while Instant::now() < outage_until {
        assert_a_serves(&gw, &http, &task_a, &url_a, "outage").await;
        down += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cut = get_all_answered(&gw, 0);
    assert!(cut >= 2, "the router kept polling during the outage ({cut} cut calls)");
    assert!(count(&gw, POLL_FAILED) > failed3, "outage not logged");
    assert_eq!(count(&gw, RECOVERED), recovered3, "recovered while down?");
    gw.emulator.set_available(true);
    down += serve_until_recovered(&gw, &http, &task_a, &url_a, "outage end", recovered3, T).await;
    assert!(gw.router_log().contains("ClearML tasks.get_all: cannot reach the server"));

    // Recovered without restart: a new task is routed within a few seconds...
    let app_c = sample_app("c").await;
    let task_c = gw.http_task("c", app_c);
    let url_c = gw.wait_for_key(&task_c, "endpoint", Duration::from_secs(5)).await;
    assert_eq!(url_c, format!("{}/service/{task_c}/", gw.router_url));
    gw.wait_for_status(&url_c, 200, Duration::from_secs(5)).await;
    let echo: Value = http.get(format!("{url_c}ping")).fetch_json().await;
    assert_eq!(echo["app"], "c");
    // ... and a stopped one loses its route and its keys.
    gw.emulator.set_status(&task_a, "stopped");
    gw.wait_for_status(&url_a, 404, Duration::from_secs(5)).await;
    gw.wait_for_key_gone(&task_a, "endpoint", Duration::from_secs(5)).await;
    assert!(gw.runtime(&task_a).get("browser_endpoint").is_none());
    let r = http.get(&url_b).send().await.unwrap();
    assert_eq!(r.status(), 200, "task B kept its route throughout");

    let exited = gw.router.as_mut().unwrap().try_wait();
    assert!(matches!(exited, Ok(None)), "the router process must still run: {exited:?}");
    assert_eq!(gw.nginx_reloads(), 0, "API failures must not reload nginx");

    println!(
        "api_errors: A served 200 during 500s x{r500}, garbage x{garbage}, timeouts x{slow} \
         ({delay_window:.1?}), outage x{down} ({cut} cut polls); poll failures logged={}, \
         recoveries={}, auth.login calls={login_calls}, elapsed={:.1?}",
        count(&gw, POLL_FAILED),
        count(&gw, RECOVERED),
        started.elapsed()
    );
}
