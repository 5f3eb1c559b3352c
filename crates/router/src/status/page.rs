//! The HTML status page, rendered on the server (no build tooling). Autoescaped: task names and
//! reasons are untrusted text.

use super::state::StatusData;
use super::traffic_view::PageRow;

const TEMPLATE: &str = include_str!("../../templates/status.html.tera");
const TRAFFIC: &str = include_str!("../../templates/traffic.html.tera");

pub fn render(status: &StatusData, traffic: &[PageRow]) -> Result<String, tera::Error> {
    let mut tera = tera::Tera::default();
    // The `.html` names turn autoescaping on.
    tera.add_raw_templates([("traffic.html", TRAFFIC), ("status.html", TEMPLATE)])?;
    let mut ctx = tera::Context::new();
    ctx.insert("s", status);
    ctx.insert("traffic", traffic);
    tera.render("status.html", &ctx)
}
