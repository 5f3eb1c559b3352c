//! Server-rendered SVG charts of a route's last hour (no JavaScript, no charting library): requests
//! per second, p50/p99 latency and error rate. Each line carries its values in `data-series`, so
//! what is drawn can be read back (the browser test does).

use std::fmt::Write as _;

use crate::traffic::Point;

const WIDTH: f64 = 360.0;
const HEIGHT: f64 = 60.0;

/// One line of a chart: its name, colour and a value per point.
struct Line {
    metric: &'static str,
    colour: &'static str,
    values: Vec<f64>,
}

fn values(points: &[Point], value: impl Fn(&Point) -> Option<f64>) -> Vec<f64> {
    points.iter().map(|p| value(p).unwrap_or(0.0)).collect()
}

/// `x,y` pairs of `values` scaled into the chart (`max` at the top).
fn polyline(values: &[f64], max: f64) -> String {
    let step = if values.len() > 1 { WIDTH / (values.len() - 1) as f64 } else { 0.0 };
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        let y = HEIGHT - (v / max).clamp(0.0, 1.0) * (HEIGHT - 2.0) - 1.0;
        let _ = write!(out, "{}{:.1},{:.1}", if i == 0 { "" } else { " " }, i as f64 * step, y);
    }
    out
}

fn number(v: f64) -> String {
    let text = format!("{v:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() {
        "0".into()
    } else {
        text.into()
    }
}

/// One chart: a titled SVG with one polyline per line, scaled to the largest value.
fn chart(out: &mut String, route: &str, title: &str, unit: &str, lines: &[Line]) {
    let max = lines.iter().flat_map(|l| l.values.iter().copied()).fold(0.0, f64::max);
    let scale = if max > 0.0 { max } else { 1.0 };
    let route = tera::escape_html(route);
    let _ = write!(
        out,
        "<figure class=\"chart\"><figcaption>{title} <span class=\"muted\">(max {}{unit})</span></figcaption>\
         <svg role=\"img\" aria-label=\"{title}\" data-route=\"{route}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\" preserveAspectRatio=\"none\">\
         <rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#fafafa\" stroke=\"#ddd\"/>",
        number(max)
    );
    for line in lines {
        let series: Vec<String> = line.values.iter().map(|v| number(*v)).collect();
        let _ = write!(
            out,
            "<polyline class=\"series\" data-route=\"{route}\" data-metric=\"{}\" data-series=\"{}\" \
             points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"/>",
            line.metric,
            series.join(","),
            polyline(&line.values, scale),
            line.colour
        );
    }
    out.push_str("</svg></figure>");
}

/// The charts of route `route` (its key) from its hour series, as an HTML fragment (escaped).
pub fn route_charts(route: &str, p: &[Point]) -> String {
    let mut out = String::new();
    chart(
        &mut out,
        route,
        "Requests per second",
        " req/s",
        &[Line { metric: "rps", colour: "#1565c0", values: values(p, |p| Some(p.rps)) }],
    );
    chart(
        &mut out,
        route,
        "Latency p50 / p99",
        " s",
        &[
            Line { metric: "p50", colour: "#2e7d32", values: values(p, |p| p.p50_seconds) },
            Line { metric: "p99", colour: "#ef6c00", values: values(p, |p| p.p99_seconds) },
        ],
    );
    chart(
        &mut out,
        route,
        "Error rate (0-1)",
        "",
        &[Line { metric: "error_rate", colour: "#c62828", values: values(p, |p| p.error_rate) }],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: u64, rps: f64) -> Point {
        Point {
            t,
            requests: (rps * 10.0) as u64,
            rps,
            p50_seconds: None,
            p99_seconds: Some(0.5),
            error_rate: None,
        }
    }

    #[test]
    fn lines_carry_their_values_and_scale_to_the_largest() {
        let html = route_charts("static/<x>", &[point(0, 0.0), point(10, 2.0), point(20, 1.0)]);
        assert!(
            html.contains(
                "data-metric=\"rps\" data-series=\"0,2,1\" points=\"0.0,59.0 180.0,1.0 360.0,30.0\""
            ),
            "{html}"
        );
        assert!(html.contains("data-metric=\"p50\" data-series=\"0,0,0\""), "{html}");
        assert!(html.contains("data-metric=\"p99\" data-series=\"0.5,0.5,0.5\""), "{html}");
        assert!(html.contains("data-route=\"static&#x2F;&lt;x&gt;\"") && !html.contains("<x>"), "{html}");
        assert!(html.contains("(max 2 req/s)"), "{html}");
    }
}
