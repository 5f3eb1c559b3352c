//! Started as root (the vendor's compose files set no `user:`, and Docker creates missing
//! bind-mount folders root-owned), the router prepares what an unprivileged process cannot and
//! then drops to `ROUTER_RUN_AS` (the image sets 65532:65532, the vendor's 2026 uid; unset, e.g.
//! a router started beside nginx on a host, nothing changes):
//! - the shared folders (conf.d and the Lua folder) and what is in them become the router's;
//! - the Docker socket's group, which differs per host, becomes a supplementary group.
//!
//! Started as any other user, nothing changes: that user must own the folders and may need the
//! socket's group (`group_add`), as the startup errors say.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Context};

use crate::config::{env, ProxySettings};

/// `ROUTER_RUN_AS`: `uid[:gid]` to drop to; empty or `root` (`0`, `0:0`) to keep the user.
pub fn parse_run_as(value: &str) -> anyhow::Result<Option<(u32, u32)>> {
    let value = value.trim();
    if matches!(value, "" | "root" | "0" | "0:0") {
        return Ok(None);
    }
    let (uid, gid) = value.split_once(':').unwrap_or((value, value));
    match (uid.parse::<u32>(), gid.parse::<u32>()) {
        (Ok(uid), Ok(gid)) if uid != 0 => Ok(Some((uid, gid))),
        _ => bail!("{}={value:?} is not uid:gid (numbers, e.g. 65532:65532) or `root`", env::ROUTER_RUN_AS),
    }
}

/// Prepares the shared folders and the socket's group, then drops root (no-op when not root).
pub fn drop_root(proxy: &ProxySettings) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let wanted = std::env::var(env::ROUTER_RUN_AS).unwrap_or_default();
    let Some((uid, gid)) = parse_run_as(&wanted)? else {
        if !wanted.is_empty() {
            tracing::warn!("{}={wanted}: the router keeps running as root", env::ROUTER_RUN_AS);
        }
        return Ok(());
    };
    for dir in [&proxy.conf_dir, &proxy.lua_dir] {
        if let Err(e) =
            std::fs::create_dir_all(dir).map_err(anyhow::Error::from).and_then(|_| chown_tree(dir, uid, gid))
        {
            // Not fatal here: writing into the folder fails later with the folder named.
            tracing::warn!(dir = %dir.display(), "cannot give the shared folder to uid {uid}: {e:#}");
        }
    }
    let mut groups = vec![gid];
    if let Ok(meta) = std::fs::metadata(&proxy.docker_socket) {
        if !groups.contains(&meta.gid()) {
            groups.push(meta.gid());
        }
    }
    // SAFETY: plain system calls on valid arguments; groups outlives the call. Order matters:
    // groups and gid while still root, the uid last. glibc and musl apply them to every thread.
    unsafe {
        if libc::setgroups(groups.len() as _, groups.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error()).context("setgroups");
        }
        if libc::setgid(gid) != 0 {
            return Err(std::io::Error::last_os_error()).context("setgid");
        }
        if libc::setuid(uid) != 0 {
            return Err(std::io::Error::last_os_error()).context("setuid");
        }
    }
    tracing::info!(
        uid,
        gid,
        groups = ?groups,
        "started as root: gave the shared folders to uid {uid} and dropped root (set {}=root to keep it)",
        env::ROUTER_RUN_AS
    );
    Ok(())
}

/// `chown -R uid:gid dir` without following symlinks; entries already owned are left alone.
fn chown_tree(dir: &Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    let meta = std::fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    if meta.uid() != uid || meta.gid() != gid {
        std::os::unix::fs::lchown(dir, Some(uid), Some(gid))
            .with_context(|| format!("chown {uid}:{gid} {}", dir.display()))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_as_is_a_uid_gid_pair_root_or_the_default() {
        assert_eq!(parse_run_as("").unwrap(), None);
        assert_eq!(parse_run_as("65532:65532").unwrap(), Some((65532, 65532)));
        assert_eq!(parse_run_as("1000:1001").unwrap(), Some((1000, 1001)));
        assert_eq!(parse_run_as("1000").unwrap(), Some((1000, 1000)));
        assert_eq!(parse_run_as("root").unwrap(), None);
        assert_eq!(parse_run_as("0:0").unwrap(), None);
        let err = parse_run_as("nobody").unwrap_err().to_string();
        assert!(err.contains("ROUTER_RUN_AS"), "{err}");
        assert!(parse_run_as("0:5").is_err());
    }
}
