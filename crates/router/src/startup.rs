//! Checks and clean-up before the first tick: every folder the router writes must be a writable
//! folder (an error names the variable and the fix), and what a killed run left behind (its
//! temporary files beside the live ones, its staging folders) is removed.

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::config::{env, Settings};

/// Prefix of the local staging folders (`<tmp>/clearml-router-staging-<pid>`).
pub const STAGING_PREFIX: &str = "clearml-router-staging-";

/// Each folder the router writes, with the variable that sets it.
pub fn written_dirs(settings: &Settings) -> [(&'static str, &Path); 3] {
    [
        (env::ROUTER_CONF_DIR, &settings.proxy.conf_dir),
        (env::ROUTER_LUA_DIR, &settings.proxy.lua_dir),
        (env::ROUTER_STATE_DIR, &settings.proxy.state_dir),
    ]
}

/// Fails on the first folder that is missing, not a folder, or not writable, naming the fix.
pub fn check_dirs(settings: &Settings) -> anyhow::Result<()> {
    for (var, dir) in written_dirs(settings) {
        check_dir(var, dir)?;
    }
    Ok(())
}

fn check_dir(var: &str, dir: &Path) -> anyhow::Result<()> {
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Err(e) => {
            bail!("{var}={shown}: {e}; create the folder (or mount the proxy's volume there) or set {var}")
        }
        Ok(m) if !m.is_dir() => bail!("{var}={shown} is not a folder; set {var} to a folder"),
        Ok(_) => {}
    }
    // Creating a file is the only honest test of write access (ACLs, read-only mounts).
    let probe = dir.join(format!(".clearml-router-check-{}", std::process::id()));
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => bail!(
            "{var}={shown} is not writable by the router (uid {}): {e}; give that user write access \
             (or mount the volume read-write) or set {var}",
            // SAFETY: getuid has no preconditions.
            unsafe { libc::getuid() }
        ),
    }
}

/// The pid in a name made by this router for a temporary path, if `name` is one.
fn leftover_pid(name: &str) -> Option<i32> {
    let pid = match name.strip_prefix(STAGING_PREFIX) {
        Some(pid) => pid,
        None => name.strip_prefix('.')?.rsplit_once(".tmp-")?.1,
    };
    pid.parse().ok()
}

/// Whether process `pid` runs (signal 0 checks without sending anything).
pub fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 has no memory preconditions.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// Removes temporary files (`.<name>.tmp-<pid>`) in `dirs` and staging folders
/// (`clearml-router-staging-<pid>`) in `staging_parent` whose process is gone, and the Docker
/// mode's staging folder in `docker_staging`. Returns what it removed.
pub fn remove_leftovers(dirs: &[&Path], staging_parent: &Path, docker_staging: &Path) -> Vec<PathBuf> {
    let me = std::process::id() as i32;
    let mut removed = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    // Temp files only beside live files, staging folders only where they are made.
    let places = dirs.iter().map(|d| (*d, false)).chain([(staging_parent, true)]);
    for (dir, staging) in places {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(STAGING_PREFIX) != staging {
                continue;
            }
            if leftover_pid(&name).is_some_and(|pid| pid != me && !alive(pid)) {
                candidates.push(entry.path());
            }
        }
    }
    if docker_staging.is_dir() {
        candidates.push(docker_staging.to_owned());
    }
    for path in candidates {
        let result = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        match result {
            Ok(()) => removed.push(path),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a leftover of a previous run")
            }
        }
    }
    removed
}

/// Test hook: the point where `CLEARML_ROUTER_TEST_KILL_AT` (read once, outside the settings: it
/// is no setting) asks the router to kill itself with SIGKILL, so that crash tests hit an exact
/// moment. Points: `before-write-back` (routes live and journal written, tasks not yet edited).
pub fn crash_point(name: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| std::env::var("CLEARML_ROUTER_TEST_KILL_AT").ok());
    if at.as_deref() == Some(name) {
        tracing::warn!(point = name, "test hook: killing the router (SIGKILL)");
        // SAFETY: raise has no memory preconditions; SIGKILL ends the process here.
        unsafe { libc::raise(libc::SIGKILL) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_dead_runs_go_and_live_files_stay() {
        let live = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        // pid 2^22+1 is above Linux's pid_max default range: never running.
        let dead = 4_194_305;
        let me = std::process::id();
        for name in
            ["routes.json", &format!(".routes.json.tmp-{dead}"), &format!(".routes.json.tmp-{me}"), ".hidden"]
        {
            std::fs::write(live.path().join(name), b"x").unwrap();
        }
        std::fs::create_dir(tmp.path().join(format!("{STAGING_PREFIX}{dead}"))).unwrap();
        std::fs::create_dir(tmp.path().join(format!("{STAGING_PREFIX}{me}"))).unwrap();
        std::fs::create_dir(tmp.path().join("unrelated-1")).unwrap();
        let docker = live.path().join(".clearml-router-staging");
        std::fs::create_dir(&docker).unwrap();
        let removed = remove_leftovers(&[live.path()], tmp.path(), &docker);
        assert_eq!(removed.len(), 3, "{removed:?}");
        let mut left: Vec<_> = std::fs::read_dir(live.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [".hidden".to_owned(), format!(".routes.json.tmp-{me}"), "routes.json".into()]);
        assert!(tmp.path().join(format!("{STAGING_PREFIX}{me}")).exists());
        assert!(tmp.path().join("unrelated-1").exists());
    }

    #[test]
    fn a_folder_that_cannot_be_written_is_named_with_its_variable() {
        let err = check_dir(env::ROUTER_STATE_DIR, Path::new("/nonexistent/state")).unwrap_err().to_string();
        assert!(
            err.starts_with("ROUTER_STATE_DIR=/nonexistent/state") && err.contains("set ROUTER_STATE_DIR"),
            "{err}"
        );
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = check_dir(env::ROUTER_CONF_DIR, file.path()).unwrap_err().to_string();
        assert!(err.contains("is not a folder"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        check_dir(env::ROUTER_LUA_DIR, dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the probe file is removed");
    }
}
