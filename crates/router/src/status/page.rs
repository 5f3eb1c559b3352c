//! The HTML status page, rendered on the server (no build tooling): every table reads without
//! JavaScript; `console.js` only adds the editor, the self-test button and live updates.
//! Autoescaped: task names and reasons are untrusted text.

use serde::Serialize;
use serde_json::Value;

use super::guard::Access;
use super::state::StatusData;
use super::traffic_view::PageRow;

/// The page and its partials (`.html` names turn autoescaping on).
const TEMPLATES: [(&str, &str); 6] = [
    ("status.html", include_str!("../../templates/status.html.tera")),
    ("traffic.html", include_str!("../../templates/traffic.html.tera")),
    ("console-session.html", include_str!("../../templates/console-session.html.tera")),
    ("console-static-routes.html", include_str!("../../templates/console-static-routes.html.tera")),
    ("console-self-test.html", include_str!("../../templates/console-self-test.html.tera")),
    ("console-routers.html", include_str!("../../templates/console-routers.html.tera")),
];

/// What the page shows.
pub struct PageView<'a> {
    pub status: &'a StatusData,
    pub access: Access,
    /// An operator token is configured (sign-in possible).
    pub sign_in_enabled: bool,
    /// The routes file's routes (`None`: no routes file; `Err`: the file is invalid now).
    pub static_routes: Option<Result<Vec<Value>, String>>,
    /// Each route's traffic charts.
    pub traffic: &'a [PageRow],
}

#[derive(Serialize)]
struct Console<'a> {
    operator: bool,
    /// Only the sign-in form is shown (off loopback, not signed in).
    locked: bool,
    sign_in_enabled: bool,
    routes_configured: bool,
    routes: &'a [Value],
    routes_error: Option<&'a str>,
}

pub fn render(view: &PageView<'_>) -> Result<String, tera::Error> {
    let mut tera = tera::Tera::default();
    tera.add_raw_templates(TEMPLATES)?;
    let (routes, routes_error) = match &view.static_routes {
        Some(Ok(routes)) => (routes.as_slice(), None),
        Some(Err(e)) => (&[][..], Some(e.as_str())),
        None => (&[][..], None),
    };
    let console = Console {
        operator: view.access.operator,
        locked: !view.access.operator && !view.access.loopback,
        sign_in_enabled: view.sign_in_enabled,
        routes_configured: view.static_routes.is_some(),
        routes,
        routes_error,
    };
    let mut ctx = tera::Context::new();
    ctx.insert("s", view.status);
    ctx.insert("console", &console);
    ctx.insert("traffic", view.traffic);
    tera.render("status.html", &ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::state::{RouterInfo, SharedStatus};
    use serde_json::json;

    fn status() -> StatusData {
        SharedStatus::new(RouterInfo {
            name: "edge".into(),
            url: "https://gw.example".into(),
            version: "1",
            started_at: "2026-01-01T00:00:00Z".into(),
            uptime_seconds: 0,
            clearml_api: "http://api".into(),
            clearml_web: "http://web".into(),
            auth: "enabled",
        })
        .snapshot()
    }

    fn render_as(operator: bool, loopback: bool) -> String {
        let status = status();
        // One route of each kind: a path, a subdomain and a custom domain.
        let routes = vec![
            json!({"name": "demo", "path": "/demo", "enabled": false, "status": "Not In Use",
                   "targets": ["10.0.0.5:80"], "updated_by": "<b>ops</b>"}),
            json!({"name": "web", "subdomain": "web", "enabled": true, "status": "Routing", "targets": []}),
            json!({"name": "shop", "host": "shop.example.com", "enabled": true, "status": "Routing",
                   "targets": ["10.0.0.6:80"]}),
        ];
        let view = PageView {
            status: &status,
            access: Access { operator, loopback },
            sign_in_enabled: true,
            static_routes: Some(Ok(routes)),
            traffic: &[],
        };
        render(&view).unwrap()
    }

    #[test]
    fn off_loopback_without_a_session_only_the_sign_in_form_shows() {
        let html = render_as(false, false);
        assert!(html.contains("id=\"sign-in-form\""), "{html}");
        assert!(!html.contains("static-routes") && !html.contains("Routed tasks"), "{html}");
    }

    #[test]
    fn signed_in_the_tables_render_escaped_with_sign_out() {
        let html = render_as(true, false);
        assert!(html.contains("id=\"sign-out\"") && !html.contains("id=\"sign-in-form\""), "{html}");
        assert!(html.contains("<tr data-route=\"demo\">"), "{html}");
        assert!(
            html.contains("<td>web (subdomain)</td>") && html.contains("<td>shop.example.com (domain)</td>")
        );
        assert!(html.contains("<td class=\"state\">Disabled</td>"), "{html}");
        assert!(html.contains("&lt;b&gt;ops&lt;&#x2F;b&gt;") && !html.contains("<b>ops"), "{html}");
        assert!(html.contains("data-operator=\"true\""));
    }

    #[test]
    fn on_loopback_the_page_reads_without_signing_in() {
        let html = render_as(false, true);
        assert!(html.contains("id=\"sign-in-form\"") && html.contains("<tr data-route=\"demo\">"), "{html}");
        assert!(html.contains("data-operator=\"false\""));
    }
}
