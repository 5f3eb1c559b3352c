//! The main nginx.conf for a proxy the router starts itself (demo, tests) and for `nginx -t`
//! of a staged render.

use std::path::PathBuf;

use super::{render_template, safe_path, RenderError};

const MAIN_CONF_TEMPLATE: &str = include_str!("../templates/nginx.conf.tera");

/// Debian's nginx loads its dynamic modules (lua, ndk, stream) from here.
pub const DEBIAN_MODULES_INCLUDE: &str = "/etc/nginx/modules-enabled/*.conf";
const DEBIAN_MODULES_DIR: &str = "/usr/lib/nginx/modules";

#[derive(Debug, Clone)]
pub struct MainConf {
    /// Directory for pid, logs and temp files.
    pub prefix: PathBuf,
    /// The conf.d directory whose `*.conf` are included in `http {}`.
    pub conf_dir: PathBuf,
    pub workers: u32,
    pub modules_include: String,
    pub access_log: bool,
}

impl MainConf {
    pub fn pid_file(&self) -> PathBuf {
        self.prefix.join("nginx.pid")
    }
    pub fn error_log(&self) -> PathBuf {
        self.prefix.join("error.log")
    }

    pub fn render(&self) -> Result<String, RenderError> {
        let prefix = safe_path(&self.prefix)?;
        let mut ctx = tera::Context::new();
        // A master running as root would drop workers to `nobody`, who cannot read private temp dirs.
        ctx.insert("run_as_root", &is_root());
        ctx.insert("workers", &self.workers);
        ctx.insert("pid_file", &format!("{prefix}/nginx.pid"));
        ctx.insert("error_log", &format!("{prefix}/error.log"));
        ctx.insert(
            "access_log",
            &if self.access_log { format!("{prefix}/access.log") } else { "off".into() },
        );
        ctx.insert("temp_dir", &format!("{prefix}/tmp"));
        ctx.insert("modules_include", &self.modules_include);
        ctx.insert("conf_dir", safe_path(&self.conf_dir)?);
        render_template("nginx.conf", MAIN_CONF_TEMPLATE, &ctx)
    }

    /// Writes nginx.conf and the directories nginx expects under the prefix.
    pub fn write(&self) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(self.prefix.join("tmp"))?;
        std::fs::create_dir_all(&self.conf_dir)?;
        // Debian's module snippets say `load_module modules/x.so`, relative to the prefix.
        let modules = self.prefix.join("modules");
        if !modules.exists() && std::path::Path::new(DEBIAN_MODULES_DIR).is_dir() {
            std::os::unix::fs::symlink(DEBIAN_MODULES_DIR, &modules)?;
        }
        let path = self.prefix.join("nginx.conf");
        std::fs::write(&path, self.render()?)?;
        Ok(path)
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
