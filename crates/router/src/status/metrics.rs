//! Prometheus text exposition of the router's and the proxy's figures.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;

use super::state::{Counters, StatusData};
use clearml_api::CallStats;

/// What the proxy's control listener reports beyond hashes: request counts per route and the
/// login cache's hits and misses.
#[derive(Debug, Default, Deserialize)]
pub struct ProxyCounters {
    #[serde(default)]
    pub requests: BTreeMap<String, u64>,
    #[serde(default)]
    pub auth_stats: AuthStats,
}

#[derive(Debug, Default, Deserialize)]
pub struct AuthStats {
    #[serde(default)]
    pub cache_hits: u64,
    #[serde(default)]
    pub cache_misses: u64,
}

pub struct MetricsInput<'a> {
    pub status: &'a StatusData,
    pub counters: &'a Counters,
    pub api: &'a BTreeMap<String, CallStats>,
    /// `None` when the proxy did not answer (reported as `clearml_gateway_proxy_up 0`).
    pub proxy: Option<&'a ProxyCounters>,
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Label values are route ids and endpoint names (validated alphabets); escaped anyway.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub fn render(input: &MetricsInput<'_>) -> String {
    let mut out = String::new();
    let s = input.status;
    let c = input.counters;

    family(&mut out, "clearml_gateway_info", "gauge", "Router identity.");
    let _ = writeln!(
        out,
        "clearml_gateway_info{{router=\"{}\",version=\"{}\",auth=\"{}\"}} 1",
        label(&s.router.name),
        s.router.version,
        s.router.auth
    );
    family(&mut out, "clearml_gateway_ready", "gauge", "1 after the first successful apply.");
    let _ = writeln!(out, "clearml_gateway_ready {}", u8::from(s.ready));
    family(&mut out, "clearml_gateway_uptime_seconds", "gauge", "Seconds since the router started.");
    let _ = writeln!(out, "clearml_gateway_uptime_seconds {}", s.router.uptime_seconds);

    family(&mut out, "clearml_gateway_routes", "gauge", "Live routes by kind.");
    let _ = writeln!(out, "clearml_gateway_routes{{kind=\"http\"}} {}", s.http_routes.len());
    let _ = writeln!(out, "clearml_gateway_routes{{kind=\"tcp\"}} {}", s.tcp_routes.len());
    let routing = s.static_routes.iter().filter(|r| r.status == "Routing").count();
    let _ = writeln!(out, "clearml_gateway_routes{{kind=\"static\"}} {routing}");
    family(
        &mut out,
        "clearml_gateway_refused_endpoints",
        "gauge",
        "Task endpoints refused at the last poll.",
    );
    let _ = writeln!(out, "clearml_gateway_refused_endpoints {}", s.refused.len());

    family(&mut out, "clearml_gateway_polls_total", "counter", "ClearML polls by result.");
    let _ = writeln!(out, "clearml_gateway_polls_total{{result=\"ok\"}} {}", c.polls_ok);
    let _ = writeln!(out, "clearml_gateway_polls_total{{result=\"failed\"}} {}", c.polls_failed);
    family(
        &mut out,
        "clearml_gateway_applies_total",
        "counter",
        "Applies that changed something, by result.",
    );
    let _ = writeln!(out, "clearml_gateway_applies_total{{result=\"ok\"}} {}", c.applies_ok);
    let _ = writeln!(out, "clearml_gateway_applies_total{{result=\"failed\"}} {}", c.applies_failed);
    family(&mut out, "clearml_gateway_apply_seconds", "summary", "Time spent applying changes.");
    let _ = writeln!(out, "clearml_gateway_apply_seconds_sum {:.6}", c.apply_seconds_sum);
    let _ = writeln!(out, "clearml_gateway_apply_seconds_count {}", c.applies_ok + c.applies_failed);
    family(&mut out, "clearml_gateway_reloads_total", "counter", "nginx reloads signalled by this router.");
    let _ = writeln!(out, "clearml_gateway_reloads_total {}", s.reloads);

    error_policy(&mut out, c);

    family(
        &mut out,
        "clearml_gateway_clearml_requests_total",
        "counter",
        "ClearML API calls by endpoint and result.",
    );
    for (endpoint, stats) in input.api {
        let e = label(endpoint);
        let _ = writeln!(
            out,
            "clearml_gateway_clearml_requests_total{{endpoint=\"{e}\",result=\"ok\"}} {}",
            stats.ok
        );
        let _ = writeln!(
            out,
            "clearml_gateway_clearml_requests_total{{endpoint=\"{e}\",result=\"error\"}} {}",
            stats.errors
        );
    }
    family(&mut out, "clearml_gateway_clearml_request_seconds", "summary", "ClearML API call latency.");
    for (endpoint, stats) in input.api {
        let e = label(endpoint);
        let _ = writeln!(
            out,
            "clearml_gateway_clearml_request_seconds_sum{{endpoint=\"{e}\"}} {:.6}",
            stats.seconds_sum
        );
        let _ = writeln!(
            out,
            "clearml_gateway_clearml_request_seconds_count{{endpoint=\"{e}\"}} {}",
            stats.ok + stats.errors
        );
    }

    traffic(&mut out, s);

    family(&mut out, "clearml_gateway_proxy_up", "gauge", "1 if the proxy's control listener answered.");
    let _ = writeln!(out, "clearml_gateway_proxy_up {}", u8::from(input.proxy.is_some()));
    if let Some(proxy) = input.proxy {
        family(&mut out, "clearml_gateway_auth_cache_total", "counter", "Login decisions by cache result.");
        let _ = writeln!(
            out,
            "clearml_gateway_auth_cache_total{{result=\"hit\"}} {}",
            proxy.auth_stats.cache_hits
        );
        let _ = writeln!(
            out,
            "clearml_gateway_auth_cache_total{{result=\"miss\"}} {}",
            proxy.auth_stats.cache_misses
        );
        family(
            &mut out,
            "clearml_gateway_route_requests_total",
            "counter",
            "Requests routed, per route (since the proxy started).",
        );
        for (route, count) in &proxy.requests {
            let _ =
                writeln!(out, "clearml_gateway_route_requests_total{{route=\"{}\"}} {count}", label(route));
        }
    }
    out
}

/// The traffic windows of the live routes (task route ids; static routes as `static/<name>`).
fn traffic(out: &mut String, s: &StatusData) {
    let routes: Vec<(String, &crate::traffic::RouteTraffic)> = s
        .http_routes
        .iter()
        .filter_map(|r| Some((r.id.clone(), r.traffic.as_ref()?)))
        .chain(
            s.static_routes
                .iter()
                .filter_map(|r| Some((crate::traffic::static_key(&r.name), r.traffic.as_ref()?))),
        )
        .collect();
    type Figure = fn(&crate::traffic::store::WindowView) -> Option<f64>;
    let rows: [(&str, &str, Figure); 4] = [
        ("clearml_gateway_route_requests_window", "Requests in the window, per route.", |w| {
            Some(w.requests as f64)
        }),
        ("clearml_gateway_route_request_seconds_mean_window", "Mean request time in the window.", |w| {
            w.mean_seconds
        }),
        (
            "clearml_gateway_route_request_seconds_p99_window",
            "p99 request time in the window (histogram).",
            |w| w.p99_seconds,
        ),
        ("clearml_gateway_route_errors_window", "Answers of 500 and above in the window.", |w| {
            Some(w.errors as f64)
        }),
    ];
    for (name, help, figure) in rows {
        family(out, name, "gauge", help);
        for (route, t) in &routes {
            for (window, w) in &t.windows {
                if let Some(v) = figure(w) {
                    let _ = writeln!(out, "{name}{{route=\"{}\",window=\"{window}\"}} {v}", label(route));
                }
            }
        }
    }
    family(
        out,
        "clearml_gateway_route_desired_replicas",
        "gauge",
        "Replicas an autoscaled static route asks for: ceil(rps over 60 s / target), within min and max.",
    );
    for (route, t) in &routes {
        if let Some(n) = t.desired_replicas {
            let _ = writeln!(out, "clearml_gateway_route_desired_replicas{{route=\"{}\"}} {n}", label(route));
        }
    }
}

type CountOf = fn(&super::state::ErrorCounts) -> u64;

/// The error policy's figures: things failing now, failed attempts, attempts held back by backoff.
fn error_policy(out: &mut String, c: &Counters) {
    let rows: [(&str, &str, &str, CountOf); 4] = [
        ("clearml_gateway_failing", "gauge", "Things failing now, by kind.", |e| e.failing as u64),
        ("clearml_gateway_failures_total", "counter", "Failed attempts, by kind.", |e| e.failures_total),
        ("clearml_gateway_deferred_total", "counter", "Attempts held back by backoff, by kind.", |e| {
            e.deferred_total
        }),
        ("clearml_gateway_recoveries_total", "counter", "Recoveries after failing, by kind.", |e| {
            e.recoveries_total
        }),
    ];
    for (name, kind, help, value) in rows {
        family(out, name, kind, help);
        for (what, counts) in &c.errors {
            let _ = writeln!(out, "{name}{{kind=\"{}\"}} {}", label(what), value(counts));
        }
    }
}
