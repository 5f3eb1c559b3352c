//! The traffic of the routes the router serves: attached to the status document (windows,
//! desired replicas, targets) and as hour series (`/api/traffic`, the page's charts).

use serde::Serialize;

use super::state::StatusData;
use crate::traffic::{static_key, Point, Store};

/// Fills each live route's `traffic`.
pub fn annotate(status: &mut StatusData, store: &Store) {
    for r in &mut status.http_routes {
        r.traffic = Some(store.route(&r.id, None, std::slice::from_ref(&r.target)));
    }
    for r in &mut status.static_routes {
        r.traffic = Some(store.route(&static_key(&r.name), r.autoscaling.as_ref(), &r.targets));
    }
}

/// One route's last hour.
#[derive(Debug, Serialize)]
pub struct RouteSeries {
    /// The key of the route in the metrics: the task route id, or `static/<name>`.
    pub route: String,
    /// `task` or `static`.
    pub kind: &'static str,
    /// The task's name, or the static route's name.
    pub name: String,
    pub url: String,
    pub points: Vec<Point>,
}

/// The hour series of every live route, task routes first.
pub fn series(status: &StatusData, store: &Store) -> Vec<RouteSeries> {
    let tasks = status.http_routes.iter().map(|r| RouteSeries {
        route: r.id.clone(),
        kind: "task",
        name: if r.task_name.is_empty() { r.task_id.clone() } else { r.task_name.clone() },
        url: r.url.clone(),
        points: store.series_of(&r.id),
    });
    let statics = status.static_routes.iter().map(|r| {
        let key = static_key(&r.name);
        RouteSeries {
            points: store.series_of(&key),
            route: key,
            kind: "static",
            name: r.name.clone(),
            url: r.url.clone(),
        }
    });
    tasks.chain(statics).collect()
}

/// One route's row on the status page: the figures as text, the charts as SVG.
#[derive(Debug, Serialize)]
pub struct PageRow {
    pub route: String,
    pub kind: &'static str,
    pub name: String,
    pub url: String,
    /// Requests in the 30 s, 60 s and 300 s windows.
    pub requests: [u64; 3],
    pub rps_60s: String,
    pub mean_300s: String,
    pub p50_300s: String,
    pub p99_300s: String,
    pub error_rate_300s: String,
    pub desired_replicas: Option<u32>,
    pub targets: Vec<crate::traffic::store::TargetView>,
    /// The charts (server-rendered SVG, names escaped); empty without traffic in the hour.
    pub charts: String,
}

fn duration(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s < 1.0 => format!("{:.1} ms", s * 1000.0),
        Some(s) => format!("{s:.2} s"),
        None => "-".into(),
    }
}

/// The page's traffic rows of an annotated status document.
pub fn page_rows(status: &StatusData, store: &Store) -> Vec<PageRow> {
    let traffic = status
        .http_routes
        .iter()
        .map(|r| r.traffic.clone())
        .chain(status.static_routes.iter().map(|r| r.traffic.clone()));
    series(status, store)
        .into_iter()
        .zip(traffic)
        .filter_map(|(s, t)| {
            let t = t?;
            let w = |name: &str| t.windows.get(name).cloned();
            let (w30, w60, w300) = (w("30s")?, w("60s")?, w("300s")?);
            Some(PageRow {
                requests: [w30.requests, w60.requests, w300.requests],
                rps_60s: format!("{:.2}", w60.rps),
                mean_300s: duration(w300.mean_seconds),
                p50_300s: duration(w300.p50_seconds),
                p99_300s: duration(w300.p99_seconds),
                error_rate_300s: w300.error_rate.map(|e| format!("{:.1} %", e * 100.0)).unwrap_or("-".into()),
                desired_replicas: t.desired_replicas,
                targets: t.targets.clone(),
                // Routes without a request in the hour get no charts (a page of many idle routes
                // stays small).
                charts: if s.points.iter().any(|p| p.requests > 0) {
                    super::charts::route_charts(&s.route, &s.points)
                } else {
                    String::new()
                },
                route: s.route,
                kind: s.kind,
                name: s.name,
                url: s.url,
            })
        })
        .collect()
}
