//! Cost of TLS at the gateway, printed (not asserted): `cargo bench -p gateway-testkit --bench tls`.
//!
//! One gateway serving one task over plain HTTP and over HTTPS (a P-256 certificate from the
//! certificate files folder, TLS 1.3). wrk measures four cases in interleaved rounds: keep-alive
//! connections (the cost of encrypting a request) and a new connection per request
//! (`Connection: close`: the cost of the TCP and TLS handshakes), as throughput ratios and added
//! latency.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use gateway_testkit::pki::Pki;
use gateway_testkit::wrk::WrkResult;

const ROUNDS: usize = 3;
const SECONDS: u32 = 5;
const CONNECTIONS: u32 = 8;

async fn wrk(url: &str, close: bool) -> WrkResult {
    let headers: Vec<String> = close.then(|| "Connection: close".to_owned()).into_iter().collect();
    let result = gateway_testkit::wrk::run(url, CONNECTIONS, SECONDS, &headers).await;
    assert_eq!(result.errors, 0, "wrk saw errors against {url}");
    result
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(&work.path().join("pki"));
    let certs = work.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    pki.issue(&certs, "gw", &["DNS:localhost", "IP:127.0.0.1"]);
    let https_port = free_port();
    let env = vec![
        ("ROUTER_HTTPS_PORT", https_port.to_string()),
        ("ROUTER_TLS_CERTS_DIR", certs.display().to_string()),
        ("LOGGER_LEVEL", "warning".into()),
    ];
    let gw = Gateway::start(Options { env, no_access_log: true, ..Default::default() }).await;
    let app = sample_app("fast").await;
    let task = gw.http_task("fast", app);
    let http_url = gw.wait_for_key(&task, "endpoint", Duration::from_secs(20)).await;
    let https_url = http_url
        .replace(&format!("http://127.0.0.1:{}", gw.http_port), &format!("https://127.0.0.1:{https_port}"));
    // Wait until the HTTPS listener serves the task (the router adds it with the certificate).
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pki.root()).unwrap())
        .no_proxy()
        .build()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !client.get(&https_url).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "HTTPS never served {https_url}\n{}",
            gw.router_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cases = [
        ("http keep-alive", &http_url, false),
        ("https keep-alive", &https_url, false),
        ("http new connection", &http_url, true),
        ("https new connection", &https_url, true),
    ];
    for (_, url, close) in &cases {
        let _ = wrk(url, *close).await;
    }
    let mut results: Vec<Vec<WrkResult>> = vec![Vec::new(); cases.len()];
    for _ in 0..ROUNDS {
        for (i, (_, url, close)) in cases.iter().enumerate() {
            results[i].push(wrk(url, *close).await);
        }
    }
    let rps: Vec<f64> =
        results.iter().map(|r| median(r.iter().map(|x| x.requests_per_second).collect())).collect();
    let p50: Vec<f64> = results.iter().map(|r| median(r.iter().map(|x| x.p50_ms).collect())).collect();
    let p99: Vec<f64> = results.iter().map(|r| median(r.iter().map(|x| x.p99_ms).collect())).collect();
    println!("tls benchmark: wrk -t1 -c{CONNECTIONS} -d{SECONDS}s, {ROUNDS} interleaved rounds, medians");
    println!("| case | req/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    for (i, (name, _, _)) in cases.iter().enumerate() {
        println!("| {name} | {:.0} | {:.3} | {:.3} |", rps[i], p50[i], p99[i]);
    }
    println!(
        "keep-alive: https/http throughput {:.2}, added p50 {:+.3} ms",
        rps[1] / rps[0],
        p50[1] - p50[0]
    );
    println!(
        "new connection per request: https/http throughput {:.2}, added p50 {:+.3} ms (TLS handshake)",
        rps[3] / rps[2],
        p50[3] - p50[2]
    );
}
