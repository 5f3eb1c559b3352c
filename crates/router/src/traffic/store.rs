//! The traffic the router has read from the proxy, per route: the last 300 s per second (the
//! windows, the targets) and the last hour per 10 s (the charts). Bounded: fixed rings, at most
//! `MAX_ROUTES` routes (the longest idle one leaves first).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::counts::{Counts, TargetCounts, LATENCY_BUCKETS};
use super::ring::Ring;
use gateway_core::static_routes::Autoscaling;

/// The windows, in seconds (dstack's).
pub const WINDOWS: [u64; 3] = [30, 60, 300];
/// The window the desired replicas are computed from.
pub const SCALING_WINDOW: u64 = 60;
/// The hour series' resolution and length.
pub const SERIES_RESOLUTION: u64 = 10;
const SERIES_LEN: usize = 360;
const MAX_ROUTES: usize = 500;
/// Seconds behind the proxy's clock that are complete: every worker has flushed them.
pub const SETTLE_SECONDS: u64 = 3;

/// The proxy's `/__clearml_router/traffic` answer.
#[derive(Debug, Deserialize)]
pub struct ProxyTraffic {
    pub now: u64,
    #[serde(default)]
    pub bounds: Vec<f64>,
    #[serde(default)]
    pub seconds: Vec<ProxySecond>,
}

#[derive(Debug, Deserialize)]
pub struct ProxySecond {
    pub second: u64,
    pub routes: BTreeMap<String, ProxyCounts>,
}

/// One route in one second of one worker: requests, errors, seconds summed, histogram,
/// per target `[requests, failures]`.
#[derive(Debug, Deserialize)]
pub struct ProxyCounts {
    pub n: u64,
    #[serde(default)]
    pub e: u64,
    #[serde(default)]
    pub t: f64,
    #[serde(default)]
    pub h: Vec<u64>,
    #[serde(default)]
    pub g: BTreeMap<String, [u64; 2]>,
}

impl From<&ProxyCounts> for Counts {
    fn from(p: &ProxyCounts) -> Self {
        let mut latency = [0; LATENCY_BUCKETS];
        if p.h.len() == LATENCY_BUCKETS {
            latency.copy_from_slice(&p.h);
        }
        let targets =
            p.g.iter().map(|(a, [n, f])| (a.clone(), TargetCounts { requests: *n, failures: *f })).collect();
        Counts { requests: p.n, errors: p.e, seconds_sum: p.t, latency, targets }
    }
}

struct RouteSeries {
    recent: Ring,
    hour: Ring,
    last_seen: u64,
}

impl RouteSeries {
    fn new() -> Self {
        Self {
            recent: Ring::new(1, *WINDOWS.iter().max().expect("windows") as usize),
            hour: Ring::new(SERIES_RESOLUTION, SERIES_LEN),
            last_seen: 0,
        }
    }
}

/// One window of one route.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WindowView {
    pub requests: u64,
    pub rps: f64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    pub mean_seconds: Option<f64>,
    pub p50_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
}

/// A target over the longest window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TargetView {
    pub target: String,
    pub requests: u64,
    pub failures: u64,
    /// `healthy` (no failure), `failing` (every request failed), `degraded`, or `idle`.
    pub health: &'static str,
}

/// What `/api/status` shows of a route's traffic.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RouteTraffic {
    /// By window: "30s", "60s", "300s".
    pub windows: BTreeMap<String, WindowView>,
    /// Autoscaled static routes: `ceil(rps(60s) / target_rps_per_replica)` within min and max.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<u32>,
    pub targets: Vec<TargetView>,
}

/// One point of a route's hour series.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Point {
    /// Start of the bucket (epoch seconds of the proxy's clock).
    pub t: u64,
    pub requests: u64,
    pub rps: f64,
    pub p50_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
    pub error_rate: Option<f64>,
}

#[derive(Default)]
pub struct Store {
    routes: HashMap<String, RouteSeries>,
    bounds: Vec<f64>,
    /// The last complete second taken in (0: none yet).
    settled: u64,
}

impl Store {
    /// The last complete second taken in.
    pub fn settled(&self) -> u64 {
        self.settled
    }

    /// Takes in the seconds of `doc` that are complete and not taken yet.
    pub fn ingest(&mut self, doc: &ProxyTraffic) {
        let settled = doc.now.saturating_sub(SETTLE_SECONDS);
        if settled <= self.settled {
            return;
        }
        if !doc.bounds.is_empty() {
            self.bounds = doc.bounds.clone();
        }
        let taken = self.settled;
        for entry in doc.seconds.iter().filter(|s| s.second > taken && s.second <= settled) {
            for (key, raw) in &entry.routes {
                let counts = Counts::from(raw);
                let series = self.series(key, entry.second);
                series.last_seen = series.last_seen.max(entry.second);
                series.recent.add(entry.second, &counts, true);
                series.hour.add(entry.second, &counts, false);
            }
        }
        self.settled = settled;
        let hour_ago = settled.saturating_sub(SERIES_RESOLUTION * SERIES_LEN as u64);
        self.routes.retain(|_, s| s.last_seen > hour_ago);
    }

    fn series(&mut self, key: &str, second: u64) -> &mut RouteSeries {
        if !self.routes.contains_key(key) && self.routes.len() >= MAX_ROUTES {
            let idlest = self.routes.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| k.clone());
            if let Some(k) = idlest {
                self.routes.remove(&k);
            }
        }
        let series = self.routes.entry(key.to_owned()).or_insert_with(RouteSeries::new);
        series.last_seen = series.last_seen.max(second);
        series
    }

    fn window(&self, series: Option<&RouteSeries>, seconds: u64) -> (WindowView, Counts) {
        let counts = series
            .map(|s| s.recent.sum(self.settled.saturating_sub(seconds), self.settled))
            .unwrap_or_default();
        let view = WindowView {
            requests: counts.requests,
            rps: counts.requests as f64 / seconds as f64,
            errors: counts.errors,
            error_rate: counts.error_rate(),
            mean_seconds: counts.mean_seconds(),
            p50_seconds: counts.quantile(0.5, &self.bounds),
            p99_seconds: counts.quantile(0.99, &self.bounds),
        };
        (view, counts)
    }

    /// Route `key`'s windows (zeros for a route without traffic), desired replicas and targets;
    /// `targets` are the ones the route lists now (shown even without traffic).
    pub fn route(&self, key: &str, autoscaling: Option<&Autoscaling>, targets: &[String]) -> RouteTraffic {
        let series = self.routes.get(key);
        let mut windows = BTreeMap::new();
        let mut longest = Counts::default();
        let mut scaling_rps = 0.0;
        for seconds in WINDOWS {
            let (view, counts) = self.window(series, seconds);
            if seconds == SCALING_WINDOW {
                scaling_rps = view.rps;
            }
            windows.insert(format!("{seconds}s"), view);
            longest = counts;
        }
        let mut seen = longest.targets;
        for t in targets {
            seen.entry(t.clone()).or_default();
        }
        let targets = seen
            .into_iter()
            .map(|(target, c)| TargetView {
                target,
                requests: c.requests,
                failures: c.failures,
                health: match (c.requests, c.failures) {
                    (0, _) => "idle",
                    (_, 0) => "healthy",
                    (n, f) if f >= n => "failing",
                    _ => "degraded",
                },
            })
            .collect();
        RouteTraffic {
            windows,
            desired_replicas: autoscaling.map(|a| a.desired_replicas(scaling_rps)),
            targets,
        }
    }

    /// Route `key`'s last hour, oldest first, one point per 10 s (zeros where nothing came).
    pub fn series_of(&self, key: &str) -> Vec<Point> {
        let series = self.routes.get(key);
        let last = self.settled - self.settled % SERIES_RESOLUTION;
        (0..SERIES_LEN as u64)
            .rev()
            .filter_map(|i| last.checked_sub(i * SERIES_RESOLUTION))
            .map(|t| {
                let counts = series.and_then(|s| s.hour.get(t)).cloned().unwrap_or_default();
                // The newest bucket may still be filling: its rate is over the seconds it has.
                let span = (self.settled + 1 - t).min(SERIES_RESOLUTION) as f64;
                Point {
                    t,
                    requests: counts.requests,
                    rps: counts.requests as f64 / span,
                    p50_seconds: counts.quantile(0.5, &self.bounds),
                    p99_seconds: counts.quantile(0.99, &self.bounds),
                    error_rate: counts.error_rate(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: serde_json::Value) -> ProxyTraffic {
        serde_json::from_value(v).unwrap()
    }

    const BOUNDS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

    fn second(s: u64, key: &str, n: u64, e: u64, t: f64, bucket: usize) -> serde_json::Value {
        let mut h = vec![0; 12];
        h[bucket] = n;
        json!({"second": s, "routes": {key: {"n": n, "e": e, "t": t, "h": h, "g": {"10.0.0.1:80": [n, e]}}}})
    }

    #[test]
    fn windows_add_up_workers_and_seconds_and_scale_replicas() {
        let mut store = Store::default();
        // Two workers in second 1000, one in 1070; 1098 is not settled yet (now 1100).
        store.ingest(&doc(json!({"now": 1100, "bounds": BOUNDS, "seconds": [
            second(1000, "a", 6, 0, 1.8, 6), second(1000, "a", 6, 6, 1.8, 6),
            second(1070, "a", 3, 0, 0.003, 0), second(1098, "a", 100, 0, 1.0, 0),
        ]})));
        assert_eq!(store.settled(), 1097);
        let scaling = Autoscaling { target_rps_per_replica: 0.01, min_replicas: 2, max_replicas: 4 };
        let a = store.route("a", Some(&scaling), &["10.0.0.2:80".into()]);
        assert_eq!(a.windows["30s"].requests, 3);
        assert_eq!(a.windows["60s"].requests, 3);
        assert_eq!(a.windows["300s"].requests, 15);
        assert_eq!(a.windows["300s"].errors, 6);
        assert!((a.windows["300s"].mean_seconds.unwrap() - 3.603 / 15.0).abs() < 1e-12);
        assert_eq!(a.windows["30s"].rps, 0.1);
        // ceil(0.05 / 0.01) = 5, above the maximum.
        assert_eq!(a.desired_replicas, Some(4));
        let health: Vec<_> = a.targets.iter().map(|t| (t.target.as_str(), t.requests, t.health)).collect();
        assert_eq!(health, [("10.0.0.1:80", 15, "degraded"), ("10.0.0.2:80", 0, "idle")]);
        let idle = store.route("b", Some(&scaling), &[]);
        assert_eq!((idle.windows["30s"].requests, idle.desired_replicas), (0, Some(2)), "the minimum");
        assert_eq!(store.route("a", None, &[]).desired_replicas, None);

        // The next read: 1098 is taken once, older seconds are not taken twice.
        store.ingest(&doc(json!({"now": 1102, "bounds": BOUNDS, "seconds": [
            second(1070, "a", 3, 0, 0.003, 0), second(1098, "a", 100, 0, 1.0, 0),
        ]})));
        assert_eq!(store.route("a", None, &[]).windows["30s"].requests, 103);
    }

    #[test]
    fn the_hour_series_has_a_point_per_10_seconds() {
        let mut store = Store::default();
        store.ingest(&doc(json!({"now": 10_003, "bounds": BOUNDS, "seconds": [
            second(9_000, "a", 5, 1, 2.0, 6), second(9_995, "a", 20, 0, 0.1, 0),
        ]})));
        let points = store.series_of("a");
        assert_eq!(points.len(), 360);
        assert_eq!(points.last().unwrap().t, 10_000);
        let at = |t: u64| points.iter().find(|p| p.t == t).unwrap();
        assert_eq!((at(9_000).requests, at(9_000).rps, at(9_000).error_rate), (5, 0.5, Some(0.2)));
        assert_eq!(at(9_990).rps, 2.0);
        assert_eq!(at(10_000).requests, 0);
        assert_eq!(store.series_of("nothing").iter().map(|p| p.requests).sum::<u64>(), 0);
    }
}
