//! Wiring: settings in, a ready router loop out. Shared by `run` and `demo`.

use crate::apply::probe::ProxyProbe;
use crate::apply::reloader::ProcessReloader;
use crate::apply::validate::Validator;
use crate::apply::Applier;
use crate::clearml::{ClearmlClient, Credentials};
use crate::config::Settings;
use crate::render::main_conf::modules_include_default;
use crate::render::{AuthLayout, Layout};
use crate::router::RouterLoop;

/// The proxy layout for these settings; `company_id` is the router's own ClearML company
/// (learned at start, needed for tenant isolation when authentication is on).
pub fn layout(settings: &Settings, company_id: Option<String>) -> Layout {
    Layout {
        router_name: settings.router_name.clone(),
        listen_port: settings.listen_port.get(),
        control_port: settings.proxy.control_port.get(),
        lua_dir: settings.proxy.lua_dir.clone(),
        auth: auth_layout(settings, company_id),
    }
}

fn auth_layout(settings: &Settings, company_id: Option<String>) -> AuthLayout {
    let auth = &settings.auth;
    if !auth.enabled {
        // Nothing else matters when it is off: keep the render independent of the rest.
        return AuthLayout::disabled();
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
        modules_include: modules_include_default(),
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

/// A router that reloads a local nginx master through its pid file.
pub fn process_router(settings: Settings) -> anyhow::Result<RouterLoop<ProcessReloader>> {
    let staging = std::env::temp_dir().join(format!("clearml-router-staging-{}", std::process::id()));
    let applier = Applier::new(
        layout(&settings, None),
        settings.proxy.conf_dir.clone(),
        settings.proxy.lua_dir.clone(),
        validator(&settings),
        ProcessReloader { pid_file: settings.proxy.pid_file.clone() },
        ProxyProbe::new(settings.proxy.control_port.get()),
        staging,
    );
    let client = clearml_client(&settings)?;
    Ok(RouterLoop::new(settings, client, applier))
}
