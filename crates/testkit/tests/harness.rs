//! The harness itself: a test that panics leaves no nginx (master or worker) and no router
//! running, and ports are handed out once, outside the ephemeral range.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

/// Children of `parent`, from /proc.
fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return vec![] };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The fields after the command name, which is in parentheses: state, ppid, ...
            let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
            after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) == Some(parent)
        })
        .collect()
}

/// Running: present in /proc and not a zombie (a zombie holds nothing but its pid).
fn running(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    state.is_some_and(|s| s != "Z")
}

/// Also with a websocket open through the proxy, which nginx's graceful shutdown would wait for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_test_leaves_no_nginx_or_router_behind() {
    let (tx, rx) = std::sync::mpsc::channel();
    let failing = tokio::spawn(async move {
        let gw = Gateway::start(Options::default()).await;
        let (_, url) = gw.routed_task("held").await;
        let ws_url = format!("{}ws", url.replacen("http", "ws", 1));
        let (ws, _) = tokio_tungstenite::connect_async(ws_url).await.expect("websocket opens");
        let pid_file = gw.dir.path().join("nginx.pid");
        let master: u32 = std::fs::read_to_string(pid_file).unwrap().trim().parse().unwrap();
        let mut pids = vec![master, gw.router.as_ref().unwrap().id()];
        pids.extend(children(master));
        // The websocket outlives the gateway: it is still open while the proxy is stopped.
        tx.send((pids, ws)).unwrap();
        panic!("a test fails with its gateway running");
    });
    assert!(failing.await.unwrap_err().is_panic());
    let (pids, _open_websocket) = rx.recv().unwrap();
    assert!(pids.len() >= 4, "master, router and at least two workers: {pids:?}");
    // Drop already waited for the processes to exit; a moment more for their parents to reap them.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| running(p)) {
        let left: Vec<u32> = pids.iter().copied().filter(|&p| running(p)).collect();
        assert!(std::time::Instant::now() < deadline, "still running after the test panicked: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn ports_are_handed_out_once_and_below_the_ephemeral_range() {
    let ports: Vec<u16> = (0..500).map(|_| free_port()).collect();
    let unique: BTreeSet<u16> = ports.iter().copied().collect();
    assert_eq!(unique.len(), ports.len(), "a port was handed out twice");
    assert!(ports.iter().all(|&p| (1024..32768).contains(&p)), "{ports:?}");
}
