//! The Docker reloader: the proxy runs in its own container (`task_traffic_webserver`) and the
//! router talks to the Docker engine over its API socket.
//!
//! - **Finding the proxy**: a running container whose name is `ROUTER_PROXY_CONTAINER` (default
//!   `task_traffic_webserver`), or whose compose service label `com.docker.compose.service` is that
//!   name (compose v1 names containers `<project>_<service>_1`, v2 `<project>-<service>-1`). When
//!   several compose projects on the host have such a service, the one in the router's own project
//!   wins (the router finds its own container id in `/proc/self/mountinfo`). It is looked up again
//!   for every operation, so a recreated proxy is found under its new id.
//! - **Validation**: the render is staged in a dot-directory inside the shared conf.d volume
//!   (`<conf dir>/.clearml-router-staging`; `include conf.d/*.conf` never matches it), and
//!   `nginx -t` and `luajit -bl` run inside the proxy container on the staged copy: the proxy's
//!   own binaries and modules judge it. The router mounts the volumes at the proxy's paths, so a
//!   staged path means the same file on both sides. nginx writes only into the proxy's /tmp:
//!   the proxy may mount the folders read-only.
//! - **Reload**: SIGHUP through the `kill` API; nginx is the container's PID 1 (the entrypoint
//!   `exec`s it) and reloads gracefully. The applier then confirms the new hash as always.
//! - **Restarts**: [`DockerProxy::identity`] is the container id and start time; the applier
//!   re-applies the current config when it changes.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{InspectContainerOptions, KillContainerOptions, ListContainersOptions};
use bollard::Docker;
use futures_util::StreamExt;

use crate::apply::validate::{file_name, stage, BoxFuture, Check, ValidateConfig, ValidationReport};
use crate::apply::{reloader::Reloader, ProxyIdentity};
use crate::config::env;
use gateway_core::table::RouteTable;
use gateway_render::main_conf::MainConf;
use gateway_render::Layout;

pub const COMPOSE_SERVICE_LABEL: &str = "com.docker.compose.service";
pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";

/// Name of the staging directory inside the conf.d volume (a dot-directory: no include matches it).
pub const STAGING_DIR_NAME: &str = ".clearml-router-staging";

/// Where `nginx -t` inside the proxy container writes its pid, error log and temp folders.
const PROXY_SCRATCH_DIR: &str = "/tmp/clearml-router-validate";

/// How long one Docker API call (or one exec) may take.
const API_TIMEOUT: Duration = Duration::from_secs(30);

/// The running proxy container as last found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyContainer {
    pub id: String,
    pub name: String,
    pub started_at: String,
}

impl ProxyContainer {
    fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }
}

/// A connection to the Docker engine and the rule to find the proxy container.
pub struct DockerProxy {
    socket: PathBuf,
    selector: String,
    docker: tokio::sync::OnceCell<Docker>,
    own_project: tokio::sync::OnceCell<Option<String>>,
    last_found: std::sync::Mutex<Option<ProxyContainer>>,
}

impl std::fmt::Debug for DockerProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerProxy").field("socket", &self.socket).field("selector", &self.selector).finish()
    }
}

impl DockerProxy {
    /// Checks now that the socket exists, that this process may use it and that a Docker engine
    /// answers; each failure is an error naming the fix. The API client itself connects lazily.
    pub fn connect(socket: &Path, selector: &str) -> anyhow::Result<Arc<Self>> {
        preflight(socket)?;
        Ok(Arc::new(Self {
            socket: socket.to_owned(),
            selector: selector.to_owned(),
            docker: tokio::sync::OnceCell::new(),
            own_project: tokio::sync::OnceCell::new(),
            last_found: std::sync::Mutex::new(None),
        }))
    }

    pub fn selector(&self) -> &str {
        &self.selector
    }

    async fn client(&self) -> anyhow::Result<&Docker> {
        self.docker
            .get_or_try_init(|| async {
                let path = self.socket.to_string_lossy();
                let docker =
                    Docker::connect_with_unix(&path, API_TIMEOUT.as_secs(), bollard::API_DEFAULT_VERSION)
                        .with_context(|| format!("connecting to the Docker engine at {path}"))?;
                // Speak the engine's API version when it is older than the client's.
                docker
                    .negotiate_version()
                    .await
                    .with_context(|| format!("asking the Docker engine at {path} for its version"))
            })
            .await
    }

    /// The compose project of the router's own container, if it runs in one.
    async fn own_project(&self, docker: &Docker) -> Option<String> {
        self.own_project
            .get_or_init(|| async {
                let id = own_container_id()?;
                let info = docker.inspect_container(&id, None::<InspectContainerOptions>).await.ok()?;
                let project = info.config?.labels?.remove(COMPOSE_PROJECT_LABEL);
                if let Some(p) = &project {
                    tracing::info!(project = %p, "the router runs in compose project {p}; its proxy is looked for there first");
                }
                project
            })
            .await
            .clone()
    }

    /// Finds the running proxy container (see the module docs for the rule).
    pub async fn find(&self) -> anyhow::Result<ProxyContainer> {
        let docker = self.client().await?;
        let own_project = self.own_project(docker).await;
        let options = ListContainersOptions { all: false, ..Default::default() };
        let containers = docker.list_containers(Some(options)).await.context("listing containers")?;
        let candidates: Vec<Candidate> = containers
            .into_iter()
            .filter_map(|c| {
                Some(Candidate {
                    id: c.id?,
                    names: c
                        .names
                        .unwrap_or_default()
                        .into_iter()
                        .map(|n| n.trim_start_matches('/').to_owned())
                        .collect(),
                    labels: c.labels.unwrap_or_default(),
                })
            })
            .collect();
        let chosen = choose_layout(&candidates, &self.selector, own_project.as_deref())?;
        let info = docker
            .inspect_container(&chosen.id, None::<InspectContainerOptions>)
            .await
            .with_context(|| format!("inspecting container {}", chosen.display_name()))?;
        let state = info.state.unwrap_or_default();
        if state.running != Some(true) {
            bail!("proxy container {} is not running", chosen.display_name());
        }
        let found = ProxyContainer {
            id: chosen.id.clone(),
            name: chosen.display_name(),
            started_at: state.started_at.unwrap_or_default(),
        };
        let mut last = self.last_found.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref() != Some(&found) {
            tracing::info!(container = %found.name, id = %found.short_id(), started = %found.started_at, "proxy container found");
            *last = Some(found.clone());
        }
        Ok(found)
    }

    /// Sends `signal` (e.g. `HUP`) to the container's main process.
    pub async fn signal(&self, container: &ProxyContainer, signal: &str) -> anyhow::Result<()> {
        let docker = self.client().await?;
        let options = KillContainerOptions { signal: signal.to_owned() };
        docker
            .kill_container(&container.id, Some(options))
            .await
            .with_context(|| format!("sending SIG{signal} to proxy container {}", container.name))
    }

    /// Runs `cmd` inside the container; its exit code and its output (stdout and stderr).
    pub async fn exec(&self, container: &ProxyContainer, cmd: &[String]) -> anyhow::Result<(i64, String)> {
        let docker = self.client().await?;
        let run = async {
            // As the router's own uid/gid: the check reads only what the router wrote, and what it
            // leaves in the staging directory (temp dirs) the router can remove.
            // SAFETY: getuid/getgid have no preconditions.
            let user = unsafe { format!("{}:{}", libc::getuid(), libc::getgid()) };
            let options = CreateExecOptions {
                cmd: Some(cmd.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                user: Some(user),
                ..Default::default()
            };
            let exec = docker.create_exec(&container.id, options).await?;
            let mut output = String::new();
            if let StartExecResults::Attached { output: mut stream, .. } =
                docker.start_exec(&exec.id, None).await?
            {
                while let Some(item) = stream.next().await {
                    match item? {
                        LogOutput::StdErr { message }
                        | LogOutput::StdOut { message }
                        | LogOutput::Console { message } => {
                            // Bound what is kept: only the reason matters.
                            if output.len() < 64 * 1024 {
                                output.push_str(&String::from_utf8_lossy(&message));
                            }
                        }
                        LogOutput::StdIn { .. } => {}
                    }
                }
            }
            // The stream ends when the process does; the engine may need a moment to record the code.
            for _ in 0..100 {
                let info = docker.inspect_exec(&exec.id).await?;
                if info.running != Some(true) {
                    if let Some(code) = info.exit_code {
                        return anyhow::Ok((code, output));
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(anyhow!("no exit code after the output ended"))
        };
        tokio::time::timeout(API_TIMEOUT, run)
            .await
            .map_err(|_| anyhow!("timed out after {}s", API_TIMEOUT.as_secs()))?
            .with_context(|| format!("running {:?} in proxy container {}", cmd.join(" "), container.name))
    }

    /// Whether this process reaches the proxy container's loopback: the router runs outside any
    /// container or on the host network and the proxy is on the host network, or the proxy
    /// joined the router's network (`network_mode: container:…`). Unknown counts as shared.
    pub async fn shares_network_with(&self, container: &ProxyContainer) -> bool {
        let Ok(docker) = self.client().await else { return true };
        let Some(own) = own_container_id() else { return true };
        let mode = |id: String| async move {
            let info = docker.inspect_container(&id, None::<InspectContainerOptions>).await.ok()?;
            info.host_config?.network_mode
        };
        match (mode(own.clone()).await, mode(container.id.clone()).await) {
            (Some(router), Some(proxy)) => {
                (router == "host" && proxy == "host")
                    || proxy.strip_prefix("container:").is_some_and(|c| own.starts_with(c))
                    || router.strip_prefix("container:").is_some_and(|c| container.id.starts_with(c))
            }
            _ => true,
        }
    }

    /// The container id and start time: changes when the proxy restarts or is recreated.
    pub async fn identity(&self) -> Option<String> {
        self.find().await.ok().map(|c| format!("{}@{}", c.id, c.started_at))
    }
}

#[derive(Debug)]
struct Candidate {
    id: String,
    names: Vec<String>,
    labels: HashMap<String, String>,
}

impl Candidate {
    fn display_name(&self) -> String {
        self.names.first().cloned().unwrap_or_else(|| self.id[..self.id.len().min(12)].to_owned())
    }
}

/// The proxy services of the vendor's layouts: 2025 and 2026. With the default selector (the 2025
/// name), the 2026 service is looked for too, so both compose files work unchanged.
const PROXY_SERVICE_2025: &str = "task_traffic_webserver";
const PROXY_SERVICE_2026: &str = "ai-gateway-proxy";

/// The proxy service of the router's own compose project first (under either vendor name with
/// the default selector: another layout's fixed `container_name` on the same host must not win),
/// then [`choose`] by the selector; with the 2025 default and no such container, the 2026 service.
fn choose_layout<'a>(
    candidates: &'a [Candidate],
    selector: &str,
    own_project: Option<&str>,
) -> anyhow::Result<&'a Candidate> {
    if let Some(project) = own_project {
        let services = if selector == PROXY_SERVICE_2025 {
            vec![PROXY_SERVICE_2025, PROXY_SERVICE_2026]
        } else {
            vec![selector]
        };
        for service in services {
            let has = |c: &Candidate, key: &str, value: &str| c.labels.get(key).is_some_and(|v| v == value);
            let same: Vec<&Candidate> = candidates
                .iter()
                .filter(|c| has(c, COMPOSE_SERVICE_LABEL, service) && has(c, COMPOSE_PROJECT_LABEL, project))
                .collect();
            if let [one] = same[..] {
                return Ok(one);
            }
        }
    }
    let first = choose(candidates, selector, own_project);
    if first.is_err() && selector == PROXY_SERVICE_2025 {
        if let Ok(found) = choose(candidates, PROXY_SERVICE_2026, own_project) {
            return Ok(found);
        }
    }
    first
}

/// The proxy among the running containers: an exact name wins; else the compose service label,
/// preferring the router's own compose project; several equally good matches are an error.
fn choose<'a>(
    candidates: &'a [Candidate],
    selector: &str,
    own_project: Option<&str>,
) -> anyhow::Result<&'a Candidate> {
    let by_name: Vec<&Candidate> =
        candidates.iter().filter(|c| c.names.iter().any(|n| n == selector)).collect();
    if let [one] = by_name[..] {
        return Ok(one);
    }
    let mut by_service: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.labels.get(COMPOSE_SERVICE_LABEL).map(String::as_str) == Some(selector))
        .collect();
    if let Some(project) = own_project {
        let same: Vec<&Candidate> = by_service
            .iter()
            .copied()
            .filter(|c| c.labels.get(COMPOSE_PROJECT_LABEL).map(String::as_str) == Some(project))
            .collect();
        if !same.is_empty() {
            by_service = same;
        }
    }
    match by_service[..] {
        [one] => Ok(one),
        [] => bail!(
            "no running container is named {selector:?} or has the compose service label {COMPOSE_SERVICE_LABEL}={selector}; \
             fix: start the proxy (docker compose up -d task_traffic_webserver) or set {var} to its name",
            var = env::ROUTER_PROXY_CONTAINER
        ),
        _ => bail!(
            "several running containers match {selector:?} ({}); fix: set {} to the proxy container's name",
            env::ROUTER_PROXY_CONTAINER,
            by_service.iter().map(|c| c.display_name()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The id of the container this process runs in, if any: Docker bind-mounts the container's
/// `hostname`, `hosts` and `resolv.conf` from `/var/lib/docker/containers/<id>/` (with any network
/// mode); cgroup v1 paths name it too.
pub fn own_container_id() -> Option<String> {
    let from = |path: &str, marker: &str| -> Option<String> {
        let text = std::fs::read_to_string(path).ok()?;
        text.lines().find_map(|line| {
            line.split(marker).skip(1).find_map(|rest| {
                let id: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
                (id.len() == 64).then_some(id)
            })
        })
    };
    from("/proc/self/mountinfo", "/containers/").or_else(|| from("/proc/self/cgroup", "docker/"))
}

/// The startup check: the socket exists, this process may connect, and `/_ping` answers OK.
pub fn preflight(socket: &Path) -> anyhow::Result<()> {
    let shown = socket.display();
    let meta = match std::fs::metadata(socket) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "the Docker socket {shown} does not exist; fix: mount the Docker socket into the router container \
             (docker compose: volumes: [\"/var/run/docker.sock:/var/run/docker.sock\"]; docker run: \
             -v /var/run/docker.sock:/var/run/docker.sock), set {socket_var} if it is elsewhere, or set \
             {auto_reload}=true so that the proxy reloads itself (no socket needed)",
            socket_var = env::ROUTER_DOCKER_SOCKET,
            auto_reload = env::AUTO_RELOAD_CONFIG
        ),
        Err(e) => return Err(permission_error(socket, None, e)),
    };
    let mut stream = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(permission_error(socket, Some(meta.gid()), e))
        }
        Err(e) => bail!(
            "cannot connect to the Docker engine at {shown}: {e}; fix: check that the Docker daemon is running and that \
             the host's socket is the one mounted into the router container"
        ),
    };
    let answer = (|| {
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")?;
        let mut answer = String::new();
        stream.take(4096).read_to_string(&mut answer)?;
        std::io::Result::Ok(answer)
    })()
    .with_context(|| format!("asking the Docker engine at {shown} for /_ping"))?;
    let status = answer.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("the Docker engine at {shown} answered {status:?} to /_ping; fix: check the Docker daemon");
    }
    Ok(())
}

fn permission_error(socket: &Path, socket_gid: Option<u32>, e: std::io::Error) -> anyhow::Error {
    // SAFETY: getuid/getgid have no preconditions; getgroups writes at most `len` entries.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut groups = vec![0 as libc::gid_t; 256];
    let n = unsafe { libc::getgroups(groups.len() as libc::c_int, groups.as_mut_ptr()) };
    groups.truncate(n.max(0) as usize);
    let group = socket_gid.map(|g| g.to_string()).unwrap_or_else(|| "<gid of the socket>".into());
    anyhow!(
        "no permission to use the Docker socket {} ({e}; the router runs as uid {uid}, gid {gid}, groups {groups:?}; \
         the socket belongs to group {group}); fix: start the router container as root (the image's default: it \
         adds the socket's group itself, then drops root; remove `user:` from the compose file), or give it the \
         socket's group — docker compose: group_add: [\"{group}\"] (DOCKER_GID={group} in runtime.env; \
         `stat -c %g /var/run/docker.sock` on the host prints it), docker run: --group-add {group} — or set \
         {}=true to run without the socket",
        socket.display(),
        env::AUTO_RELOAD_CONFIG
    )
}

/// SIGHUP to the proxy container: nginx re-reads its config and replaces workers gracefully.
#[derive(Debug, Clone)]
pub struct DockerReloader {
    pub proxy: Arc<DockerProxy>,
}

impl Reloader for DockerReloader {
    async fn reload(&self) -> anyhow::Result<()> {
        let container = self.proxy.find().await?;
        self.proxy.signal(&container, "HUP").await?;
        tracing::debug!(container = %container.name, "SIGHUP sent to the proxy container");
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "SIGHUP over the Docker API ({}) to the proxy container {:?} (name or compose service)",
            self.proxy.socket.display(),
            self.proxy.selector
        )
    }
}

impl ProxyIdentity for DockerReloader {
    fn identity(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(self.proxy.identity())
    }
}

/// `nginx -t` and `luajit -bl` inside the proxy container, on a copy staged in the shared volume.
#[derive(Debug, Clone)]
pub struct DockerValidator {
    pub proxy: Arc<DockerProxy>,
    /// The binaries as the proxy container names them (found on its `PATH`).
    pub nginx_bin: PathBuf,
    pub luajit_bin: PathBuf,
    /// How the validating nginx loads dynamic modules (nothing matches in OpenResty, where they
    /// are built in; Debian's nginx loads the Lua and stream modules from here).
    pub modules_include: String,
}

impl DockerValidator {
    pub async fn check(
        &self,
        layout: &Layout,
        table: &RouteTable,
        staging: &Path,
    ) -> anyhow::Result<ValidationReport> {
        let container =
            self.proxy.find().await.context("cannot validate the new config in the proxy container")?;
        let staged = stage(layout, table, staging, &self.modules_include)?;
        // The staging folder is read-only for the proxy (the vendor mounts conf.d `:ro` there):
        // what `nginx -t` writes (pid, error log, temp folders) goes to the proxy's /tmp instead.
        let proxy_side = MainConf {
            prefix: PathBuf::from(PROXY_SCRATCH_DIR),
            conf_dir: staged.dir.join("conf.d"),
            workers: 1,
            modules_include: self.modules_include.clone(),
            access_log: false,
        };
        let main_conf = staged.dir.join("nginx-proxy.conf");
        std::fs::write(&main_conf, proxy_side.render()?)
            .with_context(|| format!("writing {}", main_conf.display()))?;
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let nginx = [
            "sh".into(),
            "-c".into(),
            // nginx creates the temp folders but not their parent.
            r#"mkdir -p "$1" && shift && exec "$@""#.into(),
            "sh".into(),
            format!("{PROXY_SCRATCH_DIR}/tmp"),
            path(&self.nginx_bin),
            "-t".into(),
            "-q".into(),
            "-e".into(),
            "stderr".into(),
            "-c".into(),
            path(&main_conf),
        ];
        let mut report = ValidationReport::default();
        report.checks.push(Check::from_run("nginx -t", self.run(&container, &nginx).await));
        for lua in &staged.lua_files {
            // The listing goes to /dev/null: only the exit code and errors matter.
            let luajit = [path(&self.luajit_bin), "-bl".into(), path(lua), "/dev/null".into()];
            let name = format!("luajit -bl {}", file_name(lua));
            report.checks.push(Check::from_run(&name, self.run(&container, &luajit).await));
        }
        Ok(report)
    }

    async fn run(&self, container: &ProxyContainer, cmd: &[String]) -> anyhow::Result<(bool, String)> {
        let (code, output) = self.proxy.exec(container, cmd).await?;
        if code == 126 || code == 127 {
            bail!(
                "{} cannot run in proxy container {} (exit {code}): {}; fix: set {} / {} to \
                 the binaries as the proxy container names them",
                cmd[0],
                container.name,
                output.trim(),
                env::ROUTER_NGINX_BIN,
                env::ROUTER_LUAJIT_BIN
            );
        }
        Ok((code == 0, output))
    }
}

impl ValidateConfig for DockerValidator {
    fn validate<'a>(
        &'a self,
        layout: &'a Layout,
        table: &'a RouteTable,
        staging: &'a Path,
    ) -> BoxFuture<'a, anyhow::Result<ValidationReport>> {
        Box::pin(self.check(layout, table, staging))
    }

    fn describe(&self) -> String {
        format!(
            "{} -t and {} -bl inside the proxy container",
            self.nginx_bin.display(),
            self.luajit_bin.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: &str, name: &str, service: Option<&str>, project: Option<&str>) -> Candidate {
        let mut labels = HashMap::new();
        if let Some(s) = service {
            labels.insert(COMPOSE_SERVICE_LABEL.to_owned(), s.to_owned());
        }
        if let Some(p) = project {
            labels.insert(COMPOSE_PROJECT_LABEL.to_owned(), p.to_owned());
        }
        Candidate { id: id.into(), names: vec![name.into()], labels }
    }

    #[test]
    fn the_proxy_is_found_by_name_or_compose_service_in_the_routers_project() {
        let s = "task_traffic_webserver";
        let all = [
            candidate("a", "gw_task_traffic_webserver_1", Some(s), Some("gw")),
            candidate("b", "other-task_traffic_webserver-1", Some(s), Some("other")),
            candidate("c", "gw_task_traffic_router_1", Some("task_traffic_router"), Some("gw")),
        ];
        assert_eq!(choose(&all, s, Some("gw")).unwrap().id, "a");
        assert_eq!(choose(&all, s, Some("other")).unwrap().id, "b");
        let err = choose(&all, s, None).unwrap_err().to_string();
        assert!(err.contains("several") && err.contains("ROUTER_PROXY_CONTAINER"), "{err}");
        assert_eq!(choose(&all[..1], s, None).unwrap().id, "a");
        assert_eq!(choose(&all, "other-task_traffic_webserver-1", Some("gw")).unwrap().id, "b");
        let plain = [candidate("d", "task_traffic_webserver", None, None)];
        assert_eq!(choose(&plain, s, Some("gw")).unwrap().id, "d");
        let err = choose(&all[2..], s, None).unwrap_err().to_string();
        assert!(err.contains("no running container") && err.contains("fix:"), "{err}");
        // The 2026 layout's proxy is found with the default selector too.
        let layout_2026 = [candidate("e", "gw-ai-gateway-proxy-1", Some("ai-gateway-proxy"), Some("gw"))];
        assert_eq!(choose_layout(&layout_2026, s, Some("gw")).unwrap().id, "e");
        assert!(choose_layout(&layout_2026, "my-proxy", Some("gw")).is_err());
        // Two layouts on one host: the router's own project wins over the other's fixed name.
        let both = [
            candidate("f", "task_traffic_webserver", Some(s), Some("old")),
            candidate("g", "ai-gateway-proxy", Some("ai-gateway-proxy"), Some("new")),
        ];
        assert_eq!(choose_layout(&both, s, Some("new")).unwrap().id, "g");
        assert_eq!(choose_layout(&both, s, Some("old")).unwrap().id, "f");
        assert_eq!(choose_layout(&both, s, None).unwrap().id, "f");
    }

    #[test]
    fn a_missing_socket_names_the_mount_to_add() {
        let err = preflight(Path::new("/nonexistent/docker.sock")).unwrap_err().to_string();
        assert!(
            err.contains("does not exist") && err.contains("/var/run/docker.sock:/var/run/docker.sock"),
            "{err}"
        );
    }

    #[test]
    fn a_permission_problem_names_the_group_to_add() {
        let e = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let err = permission_error(Path::new("/var/run/docker.sock"), Some(998), e).to_string();
        assert!(err.contains("group_add: [\"998\"]") && err.contains("DOCKER_GID=998"), "{err}");
    }
}
