//! The HTML status page, rendered on the server (no build tooling): every table reads without
//! JavaScript; `console.js` only adds the editor, the self-test button and live updates.
//! Autoescaped: task names and reasons are untrusted text.

use serde::Serialize;
use serde_json::Value;

use super::guard::Access;
use super::state::StatusData;

/// The page and its partials (`.html` names turn autoescaping on).
const TEMPLATES: [(&str, &str); 5] = [
    ("status.html", include_str!("../../templates/status.html.tera")),
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
    tera.render("status.html", &ctx)
}
