//! Runs wrk (the HTTP load generator, scripts/setup.sh) and reads its figures, for the benchmarks.

/// What one wrk run measured.
#[derive(Debug, Clone, Copy)]
pub struct WrkResult {
    pub requests_per_second: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Non-2xx/3xx answers plus socket errors (connect, read, write, timeout).
    pub errors: u64,
    /// Requests completed in the run.
    pub requests: u64,
}

/// `wrk -t1 -c<connections> -d<seconds>s --latency` against `url`, with extra headers.
pub async fn run(url: &str, connections: u32, seconds: u32, headers: &[String]) -> WrkResult {
    let mut cmd = tokio::process::Command::new("wrk");
    cmd.args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(url).output().await.expect("wrk is installed (scripts/setup.sh)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    parse(&text).unwrap_or_else(|| panic!("unexpected wrk output:\n{text}"))
}

fn parse(text: &str) -> Option<WrkResult> {
    let after = |prefix: &str| text.lines().find_map(|l| l.trim_start().strip_prefix(prefix).map(str::trim));
    let requests_per_second = after("Requests/sec:")?.parse().ok()?;
    let mean_ms = after("Latency")?.split_whitespace().next().map(duration_ms)?;
    let p50_ms = after("50%").map(duration_ms)?;
    let p99_ms = after("99%").map(duration_ms)?;
    let non_2xx: u64 = after("Non-2xx or 3xx responses:").and_then(|v| v.parse().ok()).unwrap_or(0);
    // "Socket errors: connect 0, read 1, write 0, timeout 0"
    let socket: u64 = after("Socket errors:")
        .map(|v| v.split(',').filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    // "  95000 requests in 5.00s, 10.00MB read"
    let requests = text.lines().find_map(|l| l.trim().split_once(" requests in ")?.0.parse().ok())?;
    Some(WrkResult { requests_per_second, mean_ms, p50_ms, p99_ms, errors: non_2xx + socket, requests })
}

/// wrk's durations: "812.00us", "1.20ms", "2.00s".
fn duration_ms(v: &str) -> f64 {
    let (number, factor) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, 1.0)
    };
    number.parse::<f64>().unwrap_or(f64::NAN) * factor
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_wrk_output() {
        let text = "Running 5s test @ http://x/\n  1 threads and 16 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   812.00us  100.00us   5.00ms   90.00%\n    Req/Sec    19.00k     1.00k   20.00k    70.00%\n  Latency Distribution\n     50%  790.00us\n     75%  850.00us\n     90%  900.00us\n     99%    1.20ms\n  95000 requests in 5.00s, 10.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 4\nRequests/sec:  19000.00\nTransfer/sec:      2.00MB\n";
        let r = super::parse(text).unwrap();
        assert_eq!(r.requests_per_second, 19000.0);
        assert_eq!(r.requests, 95000);
        assert!((r.mean_ms - 0.812).abs() < 1e-9 && (r.p50_ms - 0.79).abs() < 1e-9 && r.p99_ms == 1.2);
        assert_eq!(r.errors, 7);
    }
}
