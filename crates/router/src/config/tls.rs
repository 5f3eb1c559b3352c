//! HTTPS settings: the proxy's TLS listener, the certificate files folder and ACME.

use std::path::PathBuf;

use gateway_core::env;
use gateway_core::model::{display_untrusted, Port};
use gateway_core::secret::Secret;

use super::defaults::Defaults;
use super::error::{bad, ConfigError, Errors};
use super::parse;
use super::raw::RawEnv;

#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The port the proxy serves HTTPS on (`ROUTER_HTTPS_PORT`; `None`: plain HTTP only).
    pub https_port: Option<Port>,
    /// Plain HTTP answers a redirect to HTTPS once a certificate serves.
    pub redirect: bool,
    /// The folder of PEM certificate files the operator mounts (watched).
    pub certs_dir: Option<PathBuf>,
    pub acme: Option<AcmeSettings>,
}

#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub directory_url: String,
    pub email: Option<String>,
    /// External account binding: key id and the base64url HMAC key, as the CA hands them out.
    pub eab: Option<(String, Secret)>,
    /// The root certificate of the ACME server, when it is not publicly trusted (test CAs).
    pub ca_file: Option<PathBuf>,
    /// The account key and the issued certificates (a volume: a restart re-uses them).
    pub state_dir: PathBuf,
}

pub(super) fn tls(
    raw: &RawEnv,
    d: &Defaults,
    e: &mut Errors,
    listen: Option<Port>,
    state_dir: Option<&PathBuf>,
) -> Option<TlsSettings> {
    let https_port = e.take(optional_port(raw, env::ROUTER_HTTPS_PORT));
    let redirect = e.take(parse::boolean(raw.var(env::ROUTER_HTTPS_REDIRECT), false));
    let certs_dir = e.take(dir(raw, env::ROUTER_TLS_CERTS_DIR));
    let acme_enabled = e.take(parse::boolean(raw.var(env::ROUTER_ACME_ENABLED), false));
    let directory_url = match raw.var(env::ROUTER_ACME_DIRECTORY_URL).present() {
        None => Some(d.acme_directory_url.to_owned()),
        Some(_) => e.take(parse::url(
            raw.var(env::ROUTER_ACME_DIRECTORY_URL),
            "set the ACME server's directory URL, e.g. https://acme-v02.api.letsencrypt.org/directory",
        )),
    };
    let email = raw.var(env::ROUTER_ACME_EMAIL).present().map(str::to_owned);
    let eab_kid = raw.var(env::ROUTER_ACME_EAB_KID).present().map(str::to_owned);
    let eab_key = raw.var(env::ROUTER_ACME_EAB_HMAC_KEY).present().map(Secret::new);
    let ca_file = e.take(parse::file(raw.var(env::ROUTER_ACME_CA_FILE)));
    let acme_state = raw.var(env::ROUTER_ACME_STATE_DIR).present().map(PathBuf::from);
    let (https_port, redirect, acme_enabled) = (https_port?, redirect?, acme_enabled?);
    if let (Some(https), Some(listen)) = (https_port, listen) {
        if https == listen {
            e.check(Err(bad(
                env::ROUTER_HTTPS_PORT,
                format!("{https} is also {}", env::SERVER_PORT),
                "serve HTTPS on another port than plain HTTP (e.g. 443 and 80)",
            )));
        }
    }
    let has_https = https_port.is_some();
    if (redirect || acme_enabled) && !has_https {
        let var = if redirect { env::ROUTER_HTTPS_REDIRECT } else { env::ROUTER_ACME_ENABLED };
        e.check(Err(bad(
            var,
            "is on but there is no HTTPS listener",
            format!("set {}", env::ROUTER_HTTPS_PORT),
        )));
    }
    let eab = match (eab_kid, eab_key) {
        (Some(kid), Some(key)) => Some((kid, key)),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            e.check(Err(bad(
                env::ROUTER_ACME_EAB_KID,
                format!("needs {} too (and the other way round)", env::ROUTER_ACME_EAB_HMAC_KEY),
                "set both external account binding values the CA gave you, or neither",
            )));
            None
        }
    };
    let acme = if acme_enabled {
        Some(AcmeSettings {
            directory_url: directory_url?,
            email,
            eab,
            ca_file: ca_file?,
            state_dir: acme_state.unwrap_or_else(|| state_dir.cloned().unwrap_or_default().join("acme")),
        })
    } else {
        None
    };
    Some(TlsSettings { https_port, redirect, certs_dir: certs_dir?, acme })
}

fn optional_port(raw: &RawEnv, name: &'static str) -> Result<Option<Port>, ConfigError> {
    let var = raw.var(name);
    var.present().map(|_| parse::port(var, 443)).transpose()
}

/// An optional folder that must exist.
fn dir(raw: &RawEnv, name: &'static str) -> Result<Option<PathBuf>, ConfigError> {
    let var = raw.var(name);
    let Some(v) = var.present() else { return Ok(None) };
    let path = PathBuf::from(v);
    if !path.is_dir() {
        return Err(var.bad(
            format!("{:?} is not an existing folder", display_untrusted(v)),
            "mount the certificate folder and set its path",
        ));
    }
    Ok(Some(path))
}
