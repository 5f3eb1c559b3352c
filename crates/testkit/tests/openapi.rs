//! The operator API against its OpenAPI document (crates/router/openapi.json, served at
//! /api/openapi.json): schemathesis (PyPI, installed into .venv by scripts/setup.sh) fuzzes every
//! operation of a running router and fails on any 5xx and any answer the document does not
//! describe (status, content type, headers, body schema).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn schemathesis() -> std::path::PathBuf {
    let bin = gateway_testkit::paths::repo_root().join(".venv/bin/schemathesis");
    assert!(bin.exists(), "schemathesis is missing: run scripts/setup.sh (it installs it into .venv)");
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_operator_api_conforms_to_its_openapi_document_under_fuzzing() {
    // Every part of the API configured: a routes file, gateway tokens, the self-test.
    let app = sample_app("fuzzed").await;
    let files = tempfile::tempdir().unwrap();
    let routes = files.path().join("routes.json");
    let definitions = json!({"routes": [
        {"name": "models", "path": "/models", "access": "public", "targets": [app.to_string()]},
        {"name": "docs", "subdomain": "docs", "targets": [app.to_string()], "enabled": false},
        // Not the document's example name: the fuzzer does not delete it, so every listing
        // shows a disabled route too.
        {"name": "archive", "path": "/archive", "targets": [app.to_string()], "enabled": false},
    ]});
    std::fs::write(&routes, definitions.to_string()).unwrap();
    let env = vec![
        ("ROUTER_STATIC_ROUTES_FILE", routes.display().to_string()),
        ("ROUTER_GATEWAY_TOKENS_FILE", files.path().join("tokens.json").display().to_string()),
    ];
    let gw = Gateway::start(Options { env, ..Default::default() }).await;
    gw.emulator.create_queue("gateway-test");
    gw.wait_for_polls(1, Duration::from_secs(20)).await;

    let config = gateway_testkit::paths::repo_root().join("crates/testkit/tests/fixtures/schemathesis.toml");
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let report = gateway_testkit::paths::repo_root().join("target/test-artifacts/openapi");
    let out = tokio::process::Command::new(schemathesis())
        .current_dir(work.path())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(gw.status_url("/api/openapi.json"))
        .args(["--checks", "all"])
        .args(["--header", &format!("Authorization: Bearer {OPERATOR_TOKEN}")])
        .args(["--max-examples", "50", "--workers", "2", "--request-timeout", "20"])
        .args(["--generation-database", "none", "--no-color"])
        .args(["--report", "junit,ndjson", "--report-dir"])
        .arg(&report)
        .output()
        .await
        .unwrap();
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{output}\nschemathesis took {:.1} s", started.elapsed().as_secs_f64());
    assert!(out.status.success(), "schemathesis found problems:\n{output}\nrouter log:\n{}", gw.router_log());
    // It really exercised the API: all operations, hundreds of cases, every one passing.
    assert!(output.contains("Tested: 23"), "{output}");
    let generated = output
        .lines()
        .find_map(|l| l.trim().split_once(" generated, ").map(|(n, rest)| (n.to_owned(), rest.to_owned())))
        .unwrap_or_else(|| panic!("no test case count in {output}"));
    assert!(generated.0.parse::<u32>().unwrap() >= 300, "{output}");
    assert_eq!(generated.1, format!("{} passed", generated.0), "{output}");
}
