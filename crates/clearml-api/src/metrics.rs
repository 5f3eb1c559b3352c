//! Per-endpoint counts and latency of the ClearML API calls this client made (for /metrics).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallStats {
    pub ok: u64,
    pub errors: u64,
    pub seconds_sum: f64,
}

#[derive(Debug, Default)]
pub struct ApiMetrics {
    calls: Mutex<BTreeMap<String, CallStats>>,
}

impl ApiMetrics {
    pub fn record(&self, endpoint: &str, took: Duration, ok: bool) {
        let mut calls = self.calls.lock().expect("metrics lock");
        let stats = calls.entry(endpoint.to_owned()).or_default();
        if ok {
            stats.ok += 1;
        } else {
            stats.errors += 1;
        }
        stats.seconds_sum += took.as_secs_f64();
    }

    pub fn snapshot(&self) -> BTreeMap<String, CallStats> {
        self.calls.lock().expect("metrics lock").clone()
    }
}
