//! Crash consistency and the error policy with the real router binary, nginx and the emulator:
//! a router killed (SIGKILL) between the routes write and the write-back leaves keys that the next
//! run takes back, and no temporary files; a structural change that fails validation is parked
//! while tasks keep starting and stopping; a write-back that fails for good backs off.

mod common;

use std::time::Duration;

use clearml_emulator::Fault;
use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

/// Files and folders the router runs `pids` left in the live folders and the temp folder.
fn temporaries(gw: &Gateway, pids: &[u32]) -> Vec<String> {
    let mut found = Vec::new();
    for dir in ["conf.d", "lua"] {
        for entry in std::fs::read_dir(gw.dir.path().join(dir)).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // A run's temporaries end in its pid; the live router's own in-flight write is not a
            // leftover, so only the runs in `pids` (killed or earlier) count.
            let of_listed_run = pids.iter().any(|pid| name.ends_with(&format!(".tmp-{pid}")));
            if of_listed_run || name.contains("staging") {
                found.push(format!("{dir}/{name}"));
            }
        }
    }
    for pid in pids {
        let staging = std::env::temp_dir().join(format!("clearml-router-staging-{pid}"));
        if staging.exists() {
            found.push(staging.display().to_string());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_killed_before_its_write_back_has_its_stale_keys_taken_back_by_the_next_run() {
    let mut gw = Gateway::start(Options::default()).await;
    let (task_a, url_a) = gw.routed_task("a").await;
    let first_pid = gw.router.as_ref().unwrap().id();
    gw.stop_router().await;

    // Leftovers of a killed run (dead pid) beside the live files and in the temp folder.
    let dead = 4_194_305u32;
    std::fs::write(gw.dir.path().join(format!("lua/.routes.json.tmp-{dead}")), b"{").unwrap();
    std::fs::write(gw.dir.path().join(format!("conf.d/.router.conf.tmp-{dead}")), b"x").unwrap();
    std::fs::create_dir_all(std::env::temp_dir().join(format!("clearml-router-staging-{dead}"))).unwrap();

    // A stops and B starts; the router applies both, records its journal, and is killed just
    // before it edits the tasks: routes.json no longer tells of A, whose keys are still on it.
    gw.emulator.set_status(&task_a, "stopped");
    let app_b = sample_app("b").await;
    let task_b = gw.http_task("b", app_b);
    gw.extra_env.push(("CLEARML_ROUTER_TEST_KILL_AT".into(), "before-write-back".into()));
    gw.start_router();
    let killed_pid = gw.router.as_ref().unwrap().id();
    let deadline = tokio::time::Instant::now() + T;
    let status = loop {
        if let Some(status) = gw.router.as_mut().unwrap().try_wait().unwrap() {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the router did not kill itself\n{}",
            gw.router_log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "the router killed itself at the hook\n{}", gw.router_log());
    gw.wait_for_status(&url_a, 404, T).await;
    assert!(gw.runtime(&task_a).get("endpoint").is_some(), "the stale key is on A");
    assert!(gw.runtime(&task_b).get("endpoint").is_none(), "B was not written");
    let routes = std::fs::read_to_string(gw.dir.path().join("lua/routes.json")).unwrap();
    assert!(!routes.contains(&task_a) && routes.contains(&task_b), "{routes}");

    // The next run: A's keys go, B's come, and nothing temporary is left.
    gw.extra_env.clear();
    gw.start_router();
    gw.wait_for_key_gone(&task_a, "endpoint", T).await;
    gw.wait_for_key(&task_b, "endpoint", T).await;
    assert!(gw.runtime(&task_a).get("browser_endpoint").is_none());
    assert_eq!(temporaries(&gw, &[first_pid, killed_pid, dead]), Vec::<String>::new());
    assert!(gw.router_log().contains("removed a leftover of a previous run"));
}

/// An nginx for `nginx -t` that fails while `marker` exists (a structural change it refuses).
fn refusing_nginx(dir: &std::path::Path, marker: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("refusing-nginx");
    let script = format!(
        "#!/bin/sh\nif [ -e '{}' ]; then echo 'nginx: [emerg] refused by the test' >&2; exit 1; fi\nexec nginx \"$@\"\n",
        marker.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// While `nginx -t` refuses every config (a structural change could not be applied), tasks still
/// start and stop: HTTP and TCP routes are data (routes.json), applied without validation or a
/// reload. (The parking of a refused structural change itself is unit-tested in router/tests.rs:
/// with TCP routes as data, only a settings change makes new structure, at a router start.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_nginx_refuses_every_config_tasks_still_start_and_stop() {
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("refuse");
    let nginx = refusing_nginx(scratch.path(), &marker);
    let port = free_port();
    let env = vec![
        ("ROUTER_NGINX_BIN", nginx.display().to_string()),
        ("TCP_ROUTER_ADDRESS", "localhost".to_owned()),
        ("TCP_PORT_START", port.to_string()),
        ("TCP_PORT_END", port.to_string()),
    ];
    let gw = Gateway::start(Options { env, ..Default::default() }).await;
    let (task_a, url_a) = gw.routed_task("a").await;
    let reloads = gw.nginx_reloads();

    // From now on nginx -t refuses whatever it is given.
    std::fs::write(&marker, b"").unwrap();
    let echo = gateway_testkit::sample_apps::start_tcp_echo("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let tcp_task = gw.tcp_task("tcp", echo);
    let (task_b, _) = gw.routed_task("b").await;
    gw.emulator.set_status(&task_a, "stopped");
    gw.wait_for_status(&url_a, 404, T).await;
    gw.wait_for_key_gone(&task_a, "endpoint", T).await;
    let deadline = tokio::time::Instant::now() + T;
    while gw.runtime(&tcp_task)["external_tcp_port"] != port {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the TCP task was not advertised: {}",
            gw.runtime(&tcp_task)
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(gw.nginx_reloads(), reloads, "nothing was reloaded");
    assert!(gw.runtime(&task_b).get("endpoint").is_some());
    assert!(!gw.router_log().contains("failing; backing off"), "no apply failed: {}", gw.router_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_back_refused_for_good_backs_off_instead_of_retrying_every_poll() {
    let gw = Gateway::start(Options::default()).await;
    gw.routed_task("warm-up").await;
    let refusal = Fault::Status { code: 403, subcode: 0, endpoint: Some("tasks.edit".into()) };
    gw.emulator.inject_faults(vec![refusal; 1000]);
    let before = gw.emulator.stats().calls("tasks.edit");
    let app = sample_app("refused").await;
    let task = gw.http_task("refused", app);

    // Watch ClearML for 10 s (33 polls at 0.3 s): one refused edit, then the backoff holds.
    let watch_until = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut polls_before = None;
    while tokio::time::Instant::now() < watch_until {
        let stats = gw.emulator.stats();
        let edits = stats.calls("tasks.edit") - before;
        assert!(edits <= 1, "tasks.edit was retried {edits} times\n{}", gw.router_log());
        polls_before.get_or_insert(stats.calls("tasks.get_all"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = gw.emulator.stats();
    assert_eq!(stats.calls("tasks.edit") - before, 1);
    assert!(stats.calls("tasks.get_all") - polls_before.unwrap() >= 20, "polling went on");
    let status: Value = http_client().get(gw.status_url("/api/status")).fetch_json().await;
    let failing = &status["failing"][0];
    assert_eq!(failing["what"], format!("write-back {task}"), "{status:#}");
    assert_eq!(failing["permanent"], true);
    assert!(failing["retry_in_seconds"].as_u64().unwrap() >= 5, "{failing}");
    let metrics = http_client().get(gw.status_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("clearml_gateway_failing{kind=\"write-back\"} 1"), "{metrics}");
    assert_eq!(gw.router_log().matches("failing; backing off").count(), 1);
}
