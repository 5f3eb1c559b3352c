//! Validation of a render before it replaces the live files: `nginx -t` on a staged copy and
//! `luajit -bl` on the Lua (nginx -t does not compile Lua).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;

use anyhow::Context;
use tokio::process::Command;

use crate::config::env;

use gateway_core::table::RouteTable;
use gateway_render::main_conf::MainConf;
use gateway_render::{render, Dir, Layout, Rendered};

#[derive(Debug, Clone)]
pub struct Validator {
    pub nginx_bin: PathBuf,
    pub luajit_bin: PathBuf,
    pub modules_include: String,
}

/// What each check said; `ok()` only if all passed.
#[derive(Debug, Clone, Default)]
pub struct ValidationReport {
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub output: String,
}

impl ValidationReport {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
    /// A one-paragraph reason for logs and status.
    pub fn failure_summary(&self) -> String {
        self.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{} failed: {}", c.name, c.output.trim()))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A boxed future, so that validators can be chosen at run time (`Box<dyn ValidateConfig>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Checks a render before it replaces the live files. Implementations: [`Validator`] (this host's
/// nginx and luajit), the Docker validator (the checks run inside the proxy container) and the
/// deferred validator of the file-watch mode (the proxy checks before it reloads).
pub trait ValidateConfig: Send + Sync {
    /// Stages `table` rendered with `layout` under `staging` and checks it; the live files are
    /// not touched. `Err` means the check could not run at all (not that the config is invalid).
    fn validate<'a>(
        &'a self,
        layout: &'a Layout,
        table: &'a RouteTable,
        staging: &'a Path,
    ) -> BoxFuture<'a, anyhow::Result<ValidationReport>>;
    /// Human-readable name for logs.
    fn describe(&self) -> String;
}

impl ValidateConfig for Box<dyn ValidateConfig> {
    fn validate<'a>(
        &'a self,
        layout: &'a Layout,
        table: &'a RouteTable,
        staging: &'a Path,
    ) -> BoxFuture<'a, anyhow::Result<ValidationReport>> {
        (**self).validate(layout, table, staging)
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// A render staged for validation: a wrapper nginx.conf that includes the staged conf.d, and the
/// staged Lua files. Paths are absolute, so the same files can be checked wherever the staging
/// directory is visible under the same path (this host, or a container sharing the volume).
#[derive(Debug, Clone)]
pub struct Staged {
    pub dir: PathBuf,
    pub main_conf: PathBuf,
    /// Staged Lua modules (for `luajit -bl`).
    pub lua_files: Vec<PathBuf>,
}

/// Renders `table` again with paths inside `staging` (same bytes but for the paths) and writes a
/// wrapper nginx.conf there that loads `modules_include` and includes the staged conf.d.
pub fn stage(
    layout: &Layout,
    table: &RouteTable,
    staging: &Path,
    modules_include: &str,
) -> anyhow::Result<Staged> {
    let conf_dir = staging.join("conf.d");
    let lua_dir = staging.join("lua");
    for dir in [&conf_dir, &lua_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let staged_layout = Layout { lua_dir: lua_dir.clone(), ..layout.clone() };
    let staged = render(&staged_layout, table)?;
    write_staged(&staged, &conf_dir, &lua_dir, true)?;
    let main = MainConf {
        prefix: staging.to_owned(),
        conf_dir,
        workers: 1,
        modules_include: modules_include.to_owned(),
        access_log: false,
    };
    let main_conf = main.write()?;
    let lua_files = staged
        .structural
        .iter()
        .filter(|f| f.dir == Dir::Lua && f.name.ends_with(".lua"))
        .map(|f| lua_dir.join(&*f.name))
        .collect();
    Ok(Staged { dir: staging.to_owned(), main_conf, lua_files })
}

impl Validator {
    /// Renders `table` again with paths inside `staging` (same bytes but for the paths), writes a
    /// wrapper nginx.conf there and runs the checks. The live files are not touched.
    pub async fn validate(
        &self,
        layout: &Layout,
        table: &RouteTable,
        staging: &Path,
    ) -> anyhow::Result<ValidationReport> {
        let staged = stage(layout, table, staging, &self.modules_include)?;
        let mut report = ValidationReport::default();
        let nginx = run(Command::new(&self.nginx_bin)
            .arg("-t")
            .arg("-q")
            .arg("-p")
            .arg(staging)
            .arg("-e")
            .arg("stderr")
            .arg("-c")
            .arg(&staged.main_conf))
        .await;
        report.checks.push(Check::from_run("nginx -t", nginx));
        for path in &staged.lua_files {
            let out = run(Command::new(&self.luajit_bin).arg("-bl").arg(path)).await;
            report.checks.push(Check::from_run(&format!("luajit -bl {}", file_name(path)), out));
        }
        Ok(report)
    }
}

impl ValidateConfig for Validator {
    fn validate<'a>(
        &'a self,
        layout: &'a Layout,
        table: &'a RouteTable,
        staging: &'a Path,
    ) -> BoxFuture<'a, anyhow::Result<ValidationReport>> {
        Box::pin(Validator::validate(self, layout, table, staging))
    }

    fn describe(&self) -> String {
        format!("{} -t and {} -bl on this host", self.nginx_bin.display(), self.luajit_bin.display())
    }
}

pub(crate) fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Writes every file of a render into `conf_dir`/`lua_dir`; secret files only if `with_secrets`.
pub fn write_staged(
    rendered: &Rendered,
    conf_dir: &Path,
    lua_dir: &Path,
    with_secrets: bool,
) -> anyhow::Result<()> {
    for file in rendered.structural.iter().chain(std::iter::once(&rendered.routes)) {
        if file.secret && !with_secrets {
            continue;
        }
        let dir = match file.dir {
            Dir::Conf => conf_dir,
            Dir::Lua => lua_dir,
        };
        let mode = if file.secret { 0o600 } else { 0o644 };
        crate::apply::files::write_atomic_mode(&dir.join(&*file.name), &file.bytes, mode)?;
    }
    Ok(())
}

impl Check {
    pub(crate) fn from_run(name: &str, result: anyhow::Result<(bool, String)>) -> Self {
        match result {
            Ok((passed, output)) => Check { name: name.into(), passed, output },
            Err(e) => Check { name: name.into(), passed: false, output: format!("{e:#}") },
        }
    }
}

/// Runs a command; success flag and its combined output (luajit -bl listings are dropped).
async fn run(cmd: &mut Command) -> anyhow::Result<(bool, String)> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let out = cmd.stdin(Stdio::null()).kill_on_drop(true).output().await.with_context(|| {
        format!(
            "cannot run {program}: is it installed? (set {} / {})",
            env::ROUTER_NGINX_BIN,
            env::ROUTER_LUAJIT_BIN
        )
    })?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    Ok((out.status.success(), stderr))
}
