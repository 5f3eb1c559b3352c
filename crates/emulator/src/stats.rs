//! Per-endpoint call counters and a short log of recent calls (what a client really sent).

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;
use serde_json::Value;

/// Counters of one endpoint (or of all of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EndpointStats {
    pub calls: u64,
    /// Request body bytes.
    pub request_bytes: u64,
    /// Response body bytes.
    pub response_bytes: u64,
}

impl EndpointStats {
    fn add(&mut self, request_bytes: usize, response_bytes: usize) {
        self.calls += 1;
        self.request_bytes += request_bytes as u64;
        self.response_bytes += response_bytes as u64;
    }
}

/// API traffic since the last reset, keyed by endpoint name (`tasks.get_all`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallStats {
    pub per_endpoint: BTreeMap<String, EndpointStats>,
    pub total: EndpointStats,
}

impl CallStats {
    pub fn record(&mut self, endpoint: &str, request_bytes: usize, response_bytes: usize) {
        self.per_endpoint.entry(endpoint.to_string()).or_default().add(request_bytes, response_bytes);
        self.total.add(request_bytes, response_bytes);
    }

    /// Calls made to `endpoint` (0 if never called).
    pub fn calls(&self, endpoint: &str) -> u64 {
        self.per_endpoint.get(endpoint).map_or(0, |s| s.calls)
    }
}

/// One API call as received, with the HTTP status it got (0: connection cut, emulated outage).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecord {
    pub method: String,
    /// Version prefix of the URL (`"2.23"`), if any.
    pub version: Option<String>,
    pub endpoint: String,
    /// JSON body merged with query parameters.
    pub body: Value,
    pub result_code: u16,
}

/// Keeps the most recent calls only, so long benchmarks do not grow memory.
#[derive(Debug, Default)]
pub struct CallLog {
    records: VecDeque<CallRecord>,
}

impl CallLog {
    pub const CAPACITY: usize = 1000;

    pub fn push(&mut self, record: CallRecord) {
        if self.records.len() == Self::CAPACITY {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }

    pub fn snapshot(&self) -> Vec<CallRecord> {
        self.records.iter().cloned().collect()
    }

    pub fn clear(&mut self) {
        self.records.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_follow_endpoints() {
        let mut stats = CallStats::default();
        stats.record("tasks.get_all", 10, 100);
        stats.record("tasks.get_all", 5, 50);
        stats.record("auth.login", 0, 20);
        assert_eq!(stats.calls("tasks.get_all"), 2);
        assert_eq!(stats.per_endpoint["tasks.get_all"].response_bytes, 150);
        assert_eq!(stats.total, EndpointStats { calls: 3, request_bytes: 15, response_bytes: 170 });
    }
}
