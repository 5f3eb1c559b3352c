//! The README's first command runs the demo binary (`clearml-gateway-demo`); `--smoke` checks every URL it prints.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_smoke_check_passes() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<String> = (0..4).map(|_| common::free_port().to_string()).collect();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_clearml-gateway-demo"))
        .args([
            "--smoke",
            "--port",
            &ports[0],
            "--clearml-port",
            &ports[1],
            "--control-port",
            &ports[2],
            "--status-port",
            &ports[3],
        ])
        .arg("--dir")
        .arg(dir.path().join("demo"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("smoke: all checks passed"), "{stdout}");
    assert_eq!(stdout.matches(" ok\n").count(), 7, "{stdout}");
}
