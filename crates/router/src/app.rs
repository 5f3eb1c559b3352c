//! Wiring: settings in, a ready router loop out. Shared by `run` and `demo`.

use std::path::{Path, PathBuf};

use crate::apply::docker::{DockerProxy, DockerReloader, DockerValidator, STAGING_DIR_NAME};
use crate::apply::filewatch::{DeferredValidator, FileWatchReloader};
use crate::apply::probe::ProxyProbe;
use crate::apply::reloader::{ProcessReloader, Reloader};
use crate::apply::validate::{ValidateConfig, Validator};
use crate::apply::{AnyReloader, Applier};
use crate::config::{env, ReloaderKind, Settings};
use crate::router::RouterLoop;
use crate::startup;
use clearml_api::{ClearmlClient, Credentials};
use gateway_render::{AuthLayout, Layout};

/// The proxy layout for these settings; `company_id` is the router's own ClearML company
/// (learned at start, needed for tenant isolation when authentication is on).
pub fn layout(settings: &Settings, company_id: Option<String>) -> Layout {
    Layout {
        router_name: settings.router_name.clone(),
        listen_port: settings.listen_port.get(),
        control_port: settings.proxy.control_port.get(),
        lua_dir: settings.proxy.lua_dir.clone(),
        auth: auth_layout(settings, company_id),
        upstream: gateway_render::UpstreamLayout {
            keepalive: settings.proxy.upstream_keepalive,
            keepalive_timeout_seconds: settings.proxy.upstream_keepalive_timeout.as_secs().max(1) as u32,
        },
        // Without an address to publish, TCP endpoints are refused: bind nothing.
        tcp_ports: settings
            .tcp
            .router_address
            .as_ref()
            .map(|_| (settings.tcp.port_start.get(), settings.tcp.port_end.get())),
        client_address: gateway_render::ClientAddressLayout {
            trusted_proxies: settings.traffic.trusted_proxies.clone(),
            proxy_protocol: settings.traffic.proxy_protocol,
        },
        // The router loop fills in the certificates it has (files, ACME) every tick.
        tls: gateway_render::TlsLayout {
            https_port: settings.tls.https_port.map(|p| p.get()),
            redirect: settings.tls.redirect,
            acme_challenges: settings.tls.acme.is_some(),
            certs: Vec::new(),
        },
    }
}

fn auth_layout(settings: &Settings, company_id: Option<String>) -> AuthLayout {
    let auth = &settings.auth;
    if !auth.enabled {
        // Nothing else matters when it is off but the cookie name: the proxy still strips it.
        return AuthLayout { cookie_name: auth.cookie_name.clone(), ..AuthLayout::disabled() };
    }
    AuthLayout {
        enabled: true,
        cookie_name: auth.cookie_name.clone(),
        company_id,
        login_url: auth.login_url.clone(),
        api_url: settings.api_host.clone(),
        verify_tls: settings.ssl_verify,
        local_key: auth.token_secret.clone(),
        cache_ttl_seconds: auth.cache_ttl.as_secs().max(1) as u32,
        negative_ttl_seconds: auth.negative_cache_ttl.as_secs().max(1) as u32,
        stale_ttl_seconds: STALE_LOGIN_SECONDS,
    }
}

/// How long a confirmed login keeps working while ClearML cannot be reached.
const STALE_LOGIN_SECONDS: u32 = 600;

pub fn validator(settings: &Settings) -> Validator {
    Validator {
        nginx_bin: settings.proxy.nginx_bin.clone(),
        luajit_bin: settings.proxy.luajit_bin.clone(),
        modules_include: settings.proxy.modules_include.clone(),
    }
}

pub fn clearml_client(settings: &Settings) -> anyhow::Result<ClearmlClient> {
    ClearmlClient::new(
        &settings.api_host,
        Credentials { access_key: settings.access_key.clone(), secret_key: settings.secret_key.clone() },
        settings.api_timeout,
        settings.ssl_verify,
    )
}

/// Which reloader `ROUTER_RELOADER=auto` means, from what this host shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFacts {
    pub auto_reload_config: bool,
    /// The pid file names a running process (an nginx master on this host).
    pub local_master: bool,
    /// The Docker socket exists.
    pub docker_socket: bool,
}

/// The reloader to use and why (logged at start). `auto`: file watch if
/// `ROUTER__WEBSERVER__AUTO_RELOAD_CONFIG`, else the process reloader if the pid file names a
/// running nginx master on this host (demo, tests, a router installed beside nginx), else Docker
/// if the socket exists, else the process reloader.
pub fn choose_reloader(wanted: ReloaderKind, host: HostFacts) -> (ReloaderKind, String) {
    match wanted {
        ReloaderKind::Auto if host.auto_reload_config => {
            (ReloaderKind::File, format!("auto: {}=true", env::AUTO_RELOAD_CONFIG))
        }
        ReloaderKind::Auto if host.local_master => (
            ReloaderKind::Process,
            format!("auto: {} names a running nginx master on this host", env::ROUTER_NGINX_PID_FILE),
        ),
        ReloaderKind::Auto if host.docker_socket => {
            (ReloaderKind::Docker, "auto: the Docker socket exists".into())
        }
        ReloaderKind::Auto => (ReloaderKind::Process, "auto: no Docker socket and no file watch".into()),
        explicit => (explicit, format!("{}={explicit}", env::ROUTER_RELOADER)),
    }
}

/// What this host shows for [`choose_reloader`].
pub fn host_facts(settings: &Settings) -> HostFacts {
    HostFacts {
        auto_reload_config: settings.proxy.auto_reload_config,
        local_master: pid_file_is_live(&settings.proxy.pid_file),
        docker_socket: settings.proxy.docker_socket.exists(),
    }
}

fn pid_file_is_live(path: &Path) -> bool {
    let Some(pid) = std::fs::read_to_string(path).ok().and_then(|t| t.trim().parse::<i32>().ok()) else {
        return false;
    };
    pid > 1 && crate::startup::alive(pid)
}

/// `name` runs here: an existing path, or found on `PATH`.
fn runnable(name: &Path) -> bool {
    if name.components().count() > 1 {
        return name.is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}

/// The router for these settings, with the reloader `ROUTER_RELOADER` asks for (see
/// [`choose_reloader`]). A Docker reloader whose socket is missing or not permitted is an error
/// naming the fix.
pub fn router(settings: Settings) -> anyhow::Result<RouterLoop<AnyReloader>> {
    // Root only long enough to hand the shared folders to the unprivileged uid; every check and
    // write below runs as that uid.
    crate::privileges::drop_root(&settings.proxy)?;
    startup::check_dirs(&settings)?;
    let proxy = &settings.proxy;
    let dirs = [proxy.conf_dir.as_path(), proxy.lua_dir.as_path(), proxy.state_dir.as_path()];
    for path in
        startup::remove_leftovers(&dirs, &std::env::temp_dir(), &proxy.conf_dir.join(STAGING_DIR_NAME))
    {
        tracing::info!(path = %path.display(), "removed a leftover of a previous run");
    }
    let (kind, reason) = choose_reloader(settings.proxy.reloader, host_facts(&settings));
    let local_staging =
        std::env::temp_dir().join(format!("{}{}", startup::STAGING_PREFIX, std::process::id()));
    let mut probe = ProxyProbe::new(proxy.control_port.get());
    let (reloader, validator, staging): (AnyReloader, Box<dyn ValidateConfig>, PathBuf) = match kind {
        ReloaderKind::Docker => {
            let docker = DockerProxy::connect(&proxy.docker_socket, &proxy.container)
                .map_err(|e| anyhow::anyhow!("docker reloader ({reason}): {e:#}"))?;
            let validator = DockerValidator {
                proxy: docker.clone(),
                nginx_bin: proxy.nginx_bin.clone(),
                luajit_bin: proxy.luajit_bin.clone(),
                modules_include: proxy.modules_include.clone(),
            };
            // Inside the shared conf.d volume, where the proxy container sees the same path.
            let staging = proxy.conf_dir.join(STAGING_DIR_NAME);
            probe = probe.with_docker(docker.clone());
            (AnyReloader::Docker(DockerReloader { proxy: docker }), Box::new(validator), staging)
        }
        ReloaderKind::File => {
            let reloader =
                FileWatchReloader { conf_dir: proxy.conf_dir.clone(), lua_dir: proxy.lua_dir.clone() };
            // No signals in this mode, but a mounted socket still lets the router confirm from
            // inside the proxy container when it does not share the proxy's network.
            if let Ok(docker) = DockerProxy::connect(&proxy.docker_socket, &proxy.container) {
                probe = probe.with_docker(docker);
            }
            let validator: Box<dyn ValidateConfig> = if runnable(&proxy.nginx_bin) {
                Box::new(validator(&settings))
            } else {
                Box::new(DeferredValidator)
            };
            (AnyReloader::File(reloader), validator, local_staging)
        }
        ReloaderKind::Process | ReloaderKind::Auto => {
            let reloader = ProcessReloader { pid_file: proxy.pid_file.clone() };
            (AnyReloader::Process(reloader), Box::new(validator(&settings)), local_staging)
        }
    };
    tracing::info!(
        reloader = %kind,
        reason = reason.as_str(),
        how = %reloader.describe(),
        validation = %validator.describe(),
        "reloader chosen"
    );
    let applier = Applier::new(
        layout(&settings, None),
        proxy.conf_dir.clone(),
        proxy.lua_dir.clone(),
        validator,
        reloader.clone(),
        probe,
        staging,
    )
    .with_identity(reloader);
    let client = clearml_client(&settings)?;
    Ok(RouterLoop::new(settings, client, applier))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_prefers_file_watch_then_a_local_master_then_docker() {
        let facts = |auto_reload_config, local_master, docker_socket| HostFacts {
            auto_reload_config,
            local_master,
            docker_socket,
        };
        let auto = |f| choose_reloader(ReloaderKind::Auto, f).0;
        assert_eq!(auto(facts(true, true, true)), ReloaderKind::File);
        assert_eq!(auto(facts(false, true, true)), ReloaderKind::Process);
        assert_eq!(auto(facts(false, false, true)), ReloaderKind::Docker);
        assert_eq!(auto(facts(false, false, false)), ReloaderKind::Process);
        for kind in [ReloaderKind::Docker, ReloaderKind::Process, ReloaderKind::File] {
            assert_eq!(choose_reloader(kind, facts(true, true, false)).0, kind, "an explicit choice wins");
        }
    }

    #[test]
    fn a_pid_file_counts_only_when_its_process_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nginx.pid");
        assert!(!pid_file_is_live(&path));
        std::fs::write(&path, format!("{}\n", std::process::id())).unwrap();
        assert!(pid_file_is_live(&path));
        std::fs::write(&path, "1\n").unwrap();
        assert!(!pid_file_is_live(&path));
        assert!(runnable(Path::new("sh")));
        assert!(!runnable(Path::new("/nonexistent/nginx")));
    }
}
