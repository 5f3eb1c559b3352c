//! `config-dry-run`: render and validate from a snapshot file or one read-only ClearML poll,
//! write the files to an output directory, summarise the routes, diff against a previous output.
//! Never writes to ClearML and never signals a proxy.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::advertise::route_url;
use crate::apply::validate::{ValidationReport, Validator};
use gateway_core::table::RouteTable;
use gateway_render::{render, Dir, Layout, Rendered};

pub struct DryRun {
    pub layout: Layout,
    pub router_url: String,
    pub validator: Validator,
    pub out_dir: PathBuf,
    pub previous: Option<PathBuf>,
}

pub struct DryRunResult {
    pub rendered: Rendered,
    pub validation: ValidationReport,
    pub summary: String,
    pub diff: Option<String>,
}

impl DryRun {
    pub async fn run(&self, table: &RouteTable) -> anyhow::Result<DryRunResult> {
        let rendered = render(&self.layout, table)?;
        let conf_dir = self.out_dir.join("conf.d");
        let lua_dir = self.out_dir.join("lua");
        for dir in [&conf_dir, &lua_dir] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        // The token secret (local auth mode) is never written to dry-run output.
        crate::apply::validate::write_staged(&rendered, &conf_dir, &lua_dir, false)?;

        let staging = tempfile::Builder::new().prefix("clearml-router-dry-run").tempdir()?;
        let validation = self.validator.validate(&self.layout, table, staging.path()).await?;
        let summary = summarize(table, &rendered, &validation, &self.router_url);
        std::fs::write(self.out_dir.join("summary.txt"), &summary)?;
        let diff = match &self.previous {
            Some(previous) => Some(diff_outputs(previous, &self.out_dir, &rendered)?),
            None => None,
        };
        Ok(DryRunResult { rendered, validation, summary, diff })
    }
}

fn summarize(
    table: &RouteTable,
    rendered: &Rendered,
    validation: &ValidationReport,
    router_url: &str,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Routes ({}):", table.http.len());
    for route in table.http.values() {
        let _ = writeln!(
            s,
            "  {:<48} -> {:<22} task {:?} user {:?}\n  {:<48}    {}",
            route.id.as_str(),
            route.target.to_string(),
            route.task_name,
            route.user,
            "",
            route_url(router_url, &route.id)
        );
    }
    let _ = writeln!(s, "Refused ({}):", table.refusals.len());
    for r in &table.refusals {
        let _ = writeln!(
            s,
            "  task {} endpoint {}: {}",
            r.task,
            r.endpoint.as_deref().unwrap_or("(task)"),
            r.reason
        );
    }
    let _ = writeln!(s, "Config hash:    {}", rendered.config_hash);
    let _ = writeln!(s, "Routes version: {}", rendered.routes_version);
    let _ = writeln!(s, "Validation:");
    for check in &validation.checks {
        let verdict = if check.passed { "passed" } else { "FAILED" };
        let _ = writeln!(s, "  {:<32} {verdict}", check.name);
        if !check.passed {
            for line in check.output.lines() {
                let _ = writeln!(s, "    {line}");
            }
        }
    }
    s
}

/// Unified diff of each rendered file against the same file in a previous output directory.
fn diff_outputs(previous: &Path, current: &Path, rendered: &Rendered) -> anyhow::Result<String> {
    let mut out = String::new();
    for file in rendered.structural.iter().chain([&rendered.routes]).filter(|f| !f.secret) {
        let sub = match file.dir {
            Dir::Conf => "conf.d",
            Dir::Lua => "lua",
        };
        let rel = format!("{sub}/{}", file.name);
        let old = std::fs::read_to_string(previous.join(&rel)).unwrap_or_default();
        let new = std::fs::read_to_string(current.join(&rel)).unwrap_or_default();
        if old != new {
            let diff = similar::TextDiff::from_lines(&old, &new);
            let _ = write!(
                out,
                "{}",
                diff.unified_diff()
                    .context_radius(2)
                    .header(&format!("previous/{rel}"), &format!("current/{rel}"))
            );
        }
    }
    Ok(out)
}
