//! The HTML status page, rendered on the server (no build tooling). Autoescaped: task names and
//! reasons are untrusted text.

use super::state::StatusData;

const TEMPLATE: &str = include_str!("../../templates/status.html.tera");

pub fn render(status: &StatusData) -> Result<String, tera::Error> {
    let mut tera = tera::Tera::default();
    // The `.html` name turns autoescaping on.
    tera.add_raw_template("status.html", TEMPLATE)?;
    let mut ctx = tera::Context::new();
    ctx.insert("s", status);
    tera.render("status.html", &ctx)
}
