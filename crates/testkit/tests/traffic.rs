//! Traffic statistics end to end (real nginx + Lua, real router): a known request pattern shows
//! up in the 30/60/300 s windows of `/api/status` and `/metrics`, with the desired replicas of
//! autoscaled static routes; the status page's server-rendered charts move in headless Chromium.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(40);
const DELAY: Duration = Duration::from_millis(300);

/// A backend that answers after `DELAY`.
async fn slow_app() -> SocketAddr {
    let port = free_port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let app = axum::Router::new().fallback(|| async {
        tokio::time::sleep(DELAY).await;
        "slow\n"
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Sends requests to `url` until one is routed (answers other than 404: before the proxy knows
/// the route, nothing is counted), then `n - 1` more: exactly `n` routed requests. Returns the
/// statuses of the routed ones.
async fn send_routed(gw: &Gateway, url: &str, n: usize) -> Vec<u16> {
    let http = http_client();
    let deadline = tokio::time::Instant::now() + T;
    let mut statuses = Vec::new();
    while statuses.is_empty() {
        let status = http.get(url).send().await.unwrap().status().as_u16();
        if status != 404 {
            statuses.push(status);
        } else {
            assert!(tokio::time::Instant::now() < deadline, "{url} is never routed\n{}", gw.router_log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for _ in 1..n {
        statuses.push(http.get(url).send().await.unwrap().status().as_u16());
    }
    statuses
}

async fn status(gw: &Gateway) -> Value {
    http_client().get(gw.status_url("/api/status")).fetch_json().await
}

fn window<'a>(route: &'a Value, name: &str) -> &'a Value {
    &route["traffic"]["windows"][name]
}

fn static_route<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["static_routes"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap()
}

fn task_route<'a>(status: &'a Value, id: &str) -> &'a Value {
    status["http_routes"].as_array().unwrap().iter().find(|r| r["id"] == id).unwrap()
}

/// Prometheus text: the value of series `name{labels}`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn windows_and_desired_replicas_follow_a_known_request_pattern() {
    let fast = sample_app("fast").await;
    let slow = slow_app().await;
    let closed = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let files = tempfile::tempdir().unwrap();
    let routes = files.path().join("routes.json");
    let scaled = |target: f64, min: u32, max: u32| json!({"target_rps_per_replica": target, "min_replicas": min, "max_replicas": max});
    let definitions = json!({"routes": [
        // 4 requests in 60 s: 0.067 rps / 0.02 = 3.3, ceil 4, clamped to the maximum 3.
        {"name": "slow", "path": "/slow", "access": "public", "load_balanced": true,
         "targets": [slow.to_string()], "autoscaling": scaled(0.02, 1, 3)},
        // 6 requests in 60 s: 0.1 rps / 0.04 = 2.5, ceil 3, within [1, 10].
        {"name": "mid", "path": "/mid", "access": "public", "load_balanced": true,
         "targets": [fast.to_string()], "autoscaling": scaled(0.04, 1, 10)},
        // No request: 0 replicas asked, raised to the minimum 2.
        {"name": "idle", "path": "/idle", "access": "public", "load_balanced": true,
         "targets": [fast.to_string()], "autoscaling": scaled(1.0, 2, 5)},
        // Nothing listens: the proxy's own 502, counted on the error page.
        {"name": "down", "path": "/down", "access": "public", "targets": [closed.to_string()]},
    ]});
    std::fs::write(&routes, definitions.to_string()).unwrap();
    let env = vec![("ROUTER_STATIC_ROUTES_FILE", routes.display().to_string())];
    let gw = Gateway::start(Options { env, ..Default::default() }).await;
    let a = gw.http_task("route a", fast);
    let b = gw.http_task("route b", fast);
    gw.wait_for_key(&a, "endpoint", T).await;
    gw.wait_for_key(&b, "endpoint", T).await;

    let url = |path: &str| format!("{}{path}", gw.router_url);
    let a_statuses = send_routed(&gw, &url(&format!("/service/{a}/")), 7).await;
    assert_eq!(a_statuses, vec![200; 7]);
    let slow_statuses = send_routed(&gw, &url("/slow/"), 4).await;
    assert_eq!(slow_statuses, vec![200; 4]);
    assert_eq!(send_routed(&gw, &url("/mid/"), 6).await, vec![200; 6]);
    assert_eq!(send_routed(&gw, &url("/down/"), 3).await, vec![502; 3]);

    // The proxy flushes once a second, the router reads every 2 s: wait for the 30 s window.
    let deadline = tokio::time::Instant::now() + T;
    let s = loop {
        let s = status(&gw).await;
        let counts = [
            window(task_route(&s, &a), "30s")["requests"].clone(),
            window(static_route(&s, "slow"), "30s")["requests"].clone(),
            window(static_route(&s, "mid"), "30s")["requests"].clone(),
            window(static_route(&s, "down"), "30s")["requests"].clone(),
        ];
        if counts == [json!(7), json!(4), json!(6), json!(3)] {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "windows never showed the requests sent: {counts:?}\n{s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (ra, rb) = (task_route(&s, &a), task_route(&s, &b));
    for w in ["30s", "60s", "300s"] {
        assert_eq!(window(ra, w)["requests"], 7, "{w}: {ra}");
        assert_eq!(window(rb, w)["requests"], 0, "{w}: {rb}");
        assert_eq!(window(static_route(&s, "idle"), w)["requests"], 0, "{w}");
    }
    let rps = |w: &str| window(ra, w)["rps"].as_f64().unwrap();
    assert!((rps("30s") - 7.0 / 30.0).abs() < 1e-9 && (rps("60s") - 7.0 / 60.0).abs() < 1e-9);
    assert_eq!(window(ra, "300s")["errors"], 0);
    assert!(window(rb, "30s")["mean_seconds"].is_null(), "no request, no mean");

    let slow_route = static_route(&s, "slow");
    let mean = window(slow_route, "30s")["mean_seconds"].as_f64().unwrap();
    assert!((0.3..1.0).contains(&mean), "mean of 300 ms answers: {mean}");
    let p50 = window(slow_route, "30s")["p50_seconds"].as_f64().unwrap();
    assert!((0.25..=0.5).contains(&p50), "p50 in the (0.25, 0.5] bucket: {p50}");
    let fast_mean = window(ra, "30s")["mean_seconds"].as_f64().unwrap();
    assert!(fast_mean < 0.25, "the fast app: {fast_mean}");

    assert_eq!(slow_route["traffic"]["desired_replicas"], 3, "clamped to max: {slow_route}");
    assert_eq!(static_route(&s, "mid")["traffic"]["desired_replicas"], 3, "ceil(2.5)");
    assert_eq!(static_route(&s, "idle")["traffic"]["desired_replicas"], 2, "raised to min");
    assert!(static_route(&s, "down")["traffic"]["desired_replicas"].is_null(), "not autoscaled");
    assert!(ra["traffic"]["desired_replicas"].is_null());

    let down = static_route(&s, "down");
    assert_eq!(window(down, "30s")["errors"], 3);
    assert_eq!(window(down, "30s")["error_rate"], 1.0);
    assert_eq!(
        down["traffic"]["targets"],
        json!([{"target": closed.to_string(), "requests": 3, "failures": 3, "health": "failing"}])
    );
    assert_eq!(
        slow_route["traffic"]["targets"],
        json!([{"target": slow.to_string(), "requests": 4, "failures": 0, "health": "healthy"}])
    );

    // The same figures in the metrics.
    let text = http_client().get(gw.status_url("/metrics")).send().await.unwrap().text().await.unwrap();
    let m = |series: String| metric(&text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(m(format!("clearml_gateway_route_requests_window{{route=\"{a}\",window=\"30s\"}}")), 7.0);
    assert_eq!(m(format!("clearml_gateway_route_requests_window{{route=\"{b}\",window=\"300s\"}}")), 0.0);
    assert_eq!(m("clearml_gateway_route_requests_window{route=\"static/slow\",window=\"60s\"}".into()), 4.0);
    let mean =
        m("clearml_gateway_route_request_seconds_mean_window{route=\"static/slow\",window=\"30s\"}".into());
    assert!((0.3..1.0).contains(&mean), "{mean}");
    assert_eq!(m("clearml_gateway_route_errors_window{route=\"static/down\",window=\"30s\"}".into()), 3.0);
    assert_eq!(m("clearml_gateway_route_desired_replicas{route=\"static/slow\"}".into()), 3.0);
    assert_eq!(m("clearml_gateway_route_desired_replicas{route=\"static/mid\"}".into()), 3.0);
    assert_eq!(m("clearml_gateway_route_desired_replicas{route=\"static/idle\"}".into()), 2.0);
    assert!(metric(&text, "clearml_gateway_route_desired_replicas{route=\"static/down\"}").is_none());
    // Totals flushed alongside the windows.
    assert_eq!(m(format!("clearml_gateway_route_requests_total{{route=\"{a}\"}}")), 7.0);
    assert_eq!(m("clearml_gateway_route_requests_total{route=\"static/down\"}".into()), 3.0);

    // The admin API refuses autoscaling on a route that is not load balanced, naming the field.
    let refused = operator_http()
        .post(gw.status_url("/api/static-routes"))
        .json(&json!({"name": "single", "path": "/single", "targets": [fast.to_string()],
                      "autoscaling": {"target_rps_per_replica": 1, "max_replicas": 2}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let error = refused.json::<Value>().await.unwrap()["error"].as_str().unwrap().to_owned();
    assert!(error.starts_with("route single: autoscaling: only a load-balanced route"), "{error}");

    // The hour series: 360 points of 10 s, the requests in the newest ones.
    let series: Value = http_client().get(gw.status_url("/api/traffic")).fetch_json().await;
    assert_eq!(series["resolution_seconds"], 10);
    let of = |route: &str| {
        series["routes"].as_array().unwrap().iter().find(|r| r["route"] == route).unwrap()["points"]
            .as_array()
            .unwrap()
            .clone()
    };
    let a_points = of(&a);
    assert_eq!(a_points.len(), 360);
    assert_eq!(a_points.iter().map(|p| p["requests"].as_u64().unwrap()).sum::<u64>(), 7);
    assert_eq!(of("static/idle").iter().map(|p| p["requests"].as_u64().unwrap()).sum::<u64>(), 0);
}

/// The values a chart line of `route` draws (`data-series`), from the page's DOM.
fn drawn(dom: &str, route: &str, metric: &str) -> Vec<f64> {
    let key = format!("data-route=\"{route}\" data-metric=\"{metric}\" data-series=\"");
    let start = dom.find(&key).unwrap_or_else(|| panic!("no {metric} line of {route} in the page:\n{dom}"))
        + key.len();
    let values = &dom[start..start + dom[start..].find('"').unwrap()];
    values.split(',').map(|v| v.parse().unwrap()).collect()
}

/// The y coordinates of that line's points.
fn drawn_heights(dom: &str, route: &str, metric: &str) -> Vec<f64> {
    let key = format!("data-route=\"{route}\" data-metric=\"{metric}\" data-series=\"");
    let start = dom.find(&key).unwrap() + key.len();
    let rest = &dom[start..];
    let points = rest.split("points=\"").nth(1).unwrap();
    let points = &points[..points.find('"').unwrap()];
    points.split(' ').map(|p| p.split_once(',').unwrap().1.parse().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_traffic_chart_moves_in_headless_chromium_after_requests() {
    let fast = sample_app("charted").await;
    let files = tempfile::tempdir().unwrap();
    let routes = files.path().join("routes.json");
    let definitions = json!({"routes": [
        {"name": "chart", "path": "/chart", "access": "public", "load_balanced": true,
         "targets": [fast.to_string()], "autoscaling": {"target_rps_per_replica": 0.5, "max_replicas": 4}},
    ]});
    std::fs::write(&routes, definitions.to_string()).unwrap();
    let env = vec![("ROUTER_STATIC_ROUTES_FILE", routes.display().to_string())];
    let gw = Gateway::start(Options { env, ..Default::default() }).await;
    let route_url = format!("{}/chart/", gw.router_url);
    // Routed once (a 200), then wait until the page has drawn that one request.
    send_routed(&gw, &route_url, 1).await;

    let profile = tempfile::tempdir().unwrap();
    let page = gw.status_url("/");
    let dump = || async {
        let out = headless_chromium(profile.path()).args(["--dump-dom", &page]).output().await.unwrap();
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success() && !dom.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
        dom
    };
    let requests_drawn = |dom: &str| -> f64 {
        // No chart before the route's first request of the hour.
        if !dom.contains("data-route=\"static/chart\" data-metric=\"rps\"") {
            assert!(dom.contains("No request in the last hour."), "{dom}");
            return 0.0;
        }
        // Each point is a 10 s bucket's rate; the newest one's rate is over the seconds it has.
        drawn(dom, "static/chart", "rps").iter().sum()
    };

    let deadline = tokio::time::Instant::now() + T;
    let before = loop {
        let dom = dump().await;
        if requests_drawn(&dom) > 0.0 {
            break dom;
        }
        assert!(tokio::time::Instant::now() < deadline, "the first request is never drawn:\n{dom}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(before.contains("id=\"traffic\""), "the traffic table is on the page");
    let before_values = drawn(&before, "static/chart", "rps");
    assert_eq!(before_values.len(), 360, "an hour of 10 s points");
    screenshot(profile.path(), &page, "traffic-before.png", "1280,1400").await;

    let http = http_client();
    for _ in 0..40 {
        assert_eq!(http.get(&route_url).send().await.unwrap().status(), 200);
    }
    let requests_cell = |dom: &str| -> String {
        let row = dom.split("class=\"traffic-row\" data-route=\"static/chart\"").nth(1).unwrap_or_default();
        let cell = row.split("class=\"requests\">").nth(1).unwrap_or_default();
        cell[..cell.find('<').unwrap_or(0)].to_owned()
    };
    let deadline = tokio::time::Instant::now() + T;
    let after = loop {
        let dom = dump().await;
        // 40 more requests add 4 req/s to the drawn 10 s points (the single request before
        // drew at most 1 req/s, in a bucket that was still filling).
        if requests_cell(&dom).ends_with("/ 41") && requests_drawn(&dom) >= requests_drawn(&before) + 3.0 {
            break dom;
        }
        assert!(tokio::time::Instant::now() < deadline, "the chart never moved:\n{dom}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    screenshot(profile.path(), &page, "traffic-after.png", "1280,1400").await;
    // Drawn by the server: the page's own HTML, read without any browser, has the lines.
    let html = http_client().get(&page).send().await.unwrap().text().await.unwrap();
    // The charts are in the HTML itself, outside any script (the page's one script, console.js,
    // only adds the editor and the self-test button).
    let charts_html = html.split("<script").next().unwrap();
    let key = "data-route=\"static&#x2F;chart\" data-metric=\"rps\" data-series=\"";
    assert!(charts_html.contains(key), "{html}");
    // The drawn line rose: its highest point is above the baseline, and higher than before
    // relative to the chart (y grows downwards).
    let heights = drawn_heights(&after, "static/chart", "rps");
    assert!(heights.iter().cloned().fold(f64::MAX, f64::min) < 59.0, "{heights:?}");
    let p50 = drawn(&after, "static/chart", "p50");
    assert!(p50.iter().any(|v| *v > 0.0), "latency is drawn: {p50:?}");
    // The replicas asked for: 40 or 41 requests in 60 s, 0.67-0.68 rps / 0.5.
    let row = after.split("class=\"traffic-row\" data-route=\"static/chart\"").nth(1).unwrap();
    let desired = row.split("class=\"desired-replicas\">").nth(1).unwrap();
    assert!(desired.starts_with("2<"), "ceil(0.68 / 0.5) = 2: {}", &desired[..20]);
    assert_eq!(before_values.iter().filter(|v| **v > 0.0).count(), 1, "one point had the first request");
}
