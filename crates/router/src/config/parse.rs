//! Parsers for the kinds of value variables hold (ports, booleans, URLs, paths, names). Each turns
//! one [`Var`] into its validated type or one [`ConfigError`] saying how to fix it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gateway_core::model::{display_untrusted, Port};
use gateway_core::secret::Secret;

use super::error::ConfigError;
use super::raw::Var;

pub(super) fn port(var: Var<'_>, default: u16) -> Result<Port, ConfigError> {
    let fix = || format!("set a port such as {default}");
    match var.present() {
        // The default goes through the same check as a value: no panic if it were ever 0.
        None => Port::new(default).map_err(|e| var.bad(format!("default: {e}"), fix())),
        Some(v) => Port::parse_str(v).map_err(|_| {
            var.bad(format!("{:?} is not a port number (1-65535)", display_untrusted(v)), fix())
        }),
    }
}

pub(super) fn boolean(var: Var<'_>, default: bool) -> Result<bool, ConfigError> {
    match var.present().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(_) => Err(var.bad(
            format!("{:?} is not a boolean", display_untrusted(var.value.unwrap_or_default())),
            "use true or false",
        )),
    }
}

pub(super) fn seconds(var: Var<'_>, default: f64, (min, max): (f64, f64)) -> Result<Duration, ConfigError> {
    let Some(v) = var.present() else {
        return Ok(Duration::from_secs_f64(default));
    };
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && (min..=max).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(var.bad(
            format!("{:?} is not a number of seconds in {min}..{max}", display_untrusted(v)),
            format!("set a number of seconds such as {default}"),
        )),
    }
}

pub(super) fn count(var: Var<'_>, default: u32, max: u32) -> Result<u32, ConfigError> {
    let Some(v) = var.present() else {
        return Ok(default);
    };
    match v.parse::<u32>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(var.bad(
            format!("{:?} is not a whole number in 0..{max}", display_untrusted(v)),
            format!("set a number such as {default}"),
        )),
    }
}

/// A required API credential, taken as is (the value never appears in a message).
pub(super) fn secret(var: Var<'_>) -> Result<Secret, ConfigError> {
    match var.value.filter(|v| !v.trim().is_empty()) {
        Some(v) if v.trim() != v => {
            Err(var.bad("has leading or trailing whitespace", "remove the spaces around the key"))
        }
        Some(v) => Ok(Secret::new(v)),
        None => Err(var.bad(
            "is not set",
            "create API credentials in the ClearML web app (Settings > Workspace) and set them",
        )),
    }
}

/// `AUTH_BASE64_JWKS_KEY`: must be base64 (the value itself never appears in a message).
pub(super) fn base64_secret(var: Var<'_>) -> Result<Option<Secret>, ConfigError> {
    use base64::Engine;
    let Some(v) = var.present() else { return Ok(None) };
    match base64::engine::general_purpose::STANDARD.decode(v) {
        Ok(bytes) if !bytes.is_empty() => Ok(Some(Secret::new(v))),
        _ => Err(var.bad(
            "is not standard base64 (value not shown)",
            "set it to base64 of the ClearML server's secure.auth.token_secret, or unset it for remote checks",
        )),
    }
}

/// A required `http(s)://host[:port][/path]`, returned without a trailing slash.
pub(super) fn url(var: Var<'_>, fix: &str) -> Result<String, ConfigError> {
    let Some(v) = var.present() else {
        return Err(var.bad("is not set", fix));
    };
    let v = v.trim_end_matches('/');
    let rest = v.strip_prefix("http://").or_else(|| v.strip_prefix("https://"));
    let host_ok = rest
        .and_then(|r| r.split('/').next())
        .map(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || "-._:[]".contains(c)))
        .unwrap_or(false);
    let rest_ok = v.chars().all(|c| c.is_ascii_graphic())
        && !v.contains(['"', '\'', '\\', '{', '}', ';', '$', '#', '?']);
    if !host_ok || !rest_ok {
        return Err(var.bad(format!("{:?} is not an http(s) URL", display_untrusted(v)), fix));
    }
    Ok(v.to_owned())
}

/// An optional URL: unset gives `None`, so the caller derives it from another setting.
pub(super) fn optional_url(var: Var<'_>, fix: &str) -> Result<Option<String>, ConfigError> {
    var.present().map(|_| url(var, fix)).transpose()
}

/// A path taken as is; only an unset or empty value means the default.
pub(super) fn path(var: Var<'_>, default: &str) -> PathBuf {
    PathBuf::from(var.value.filter(|v| !v.is_empty()).unwrap_or(default))
}

/// An optional file path whose directory must exist (the file itself may be created later).
pub(super) fn file(var: Var<'_>) -> Result<Option<PathBuf>, ConfigError> {
    let Some(v) = var.present() else { return Ok(None) };
    let path = PathBuf::from(v);
    let dir_ok = path.file_name().is_some()
        && path.parent().map(|d| d.as_os_str().is_empty() || d.is_dir()).unwrap_or(false);
    if !dir_ok || path.is_dir() {
        return Err(var.bad(
            format!("{:?} is not a file path in an existing directory", display_untrusted(v)),
            "set the path of a file (it may not exist yet) in an existing directory",
        ));
    }
    Ok(Some(path))
}

/// A token read from the file the variable names (`ROUTER_OPERATOR_TOKEN_FILE`): at least 24
/// printable characters, surrounding whitespace ignored. The token itself never appears in errors.
pub(super) fn token_file(var: Var<'_>) -> Result<Option<Secret>, ConfigError> {
    let Some(v) = var.present() else { return Ok(None) };
    let text = std::fs::read_to_string(v).map_err(|e| {
        var.bad(
            format!("cannot read {:?}: {e}", display_untrusted(v)),
            "point it to a readable file holding the token",
        )
    })?;
    let token = text.trim();
    if token.len() < 24 || !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(var.bad(
            format!(
                "the token in {:?} is shorter than 24 characters or has spaces or control characters",
                display_untrusted(v)
            ),
            "write a long random token, e.g. `openssl rand -hex 32 > FILE`",
        ));
    }
    Ok(Some(Secret::new(token)))
}

/// `ROUTER_DOCKER_SOCKET`: an absolute path, `unix://` allowed.
pub(super) fn socket_path(var: Var<'_>, default: &str) -> Result<PathBuf, ConfigError> {
    let v = var.present().unwrap_or(default);
    let path = v.strip_prefix("unix://").unwrap_or(v);
    if !path.starts_with('/') {
        return Err(var.bad(
            format!("{:?} is not an absolute socket path", display_untrusted(v)),
            format!("use the path of the Docker API socket, e.g. {default} (unix://... also works)"),
        ));
    }
    Ok(PathBuf::from(path))
}

/// `host:port` with an IP host.
pub(super) fn socket_address(var: Var<'_>, default: &str) -> Result<SocketAddr, ConfigError> {
    let v = var.present().unwrap_or(default);
    let port = default.rsplit(':').next().unwrap_or_default();
    v.parse().map_err(|_| {
        var.bad(
            format!("{:?} is not an IP:port address", display_untrusted(v)),
            format!("use e.g. {default} (loopback; any port, e.g. :{port})"),
        )
    })
}

/// What a name may look like; `what` words the error ("a valid cookie name").
struct NameRule {
    max_len: usize,
    extra_chars: &'static str,
    /// Docker names start with a letter or digit.
    alnum_first: bool,
    what: &'static str,
}

impl NameRule {
    fn check(&self, var: Var<'_>, name: &str, fix: String) -> Result<String, ConfigError> {
        let first_ok = !self.alnum_first || name.starts_with(|c: char| c.is_ascii_alphanumeric());
        let ok = !name.is_empty()
            && first_ok
            && name.len() <= self.max_len
            && name.chars().all(|c| c.is_ascii_alphanumeric() || self.extra_chars.contains(c));
        if ok {
            return Ok(name.to_owned());
        }
        Err(var.bad(format!("{:?} is not {}", display_untrusted(name), self.what), fix))
    }
}

pub(super) fn cookie_name(var: Var<'_>, default: &str) -> Result<String, ConfigError> {
    let rule = NameRule { max_len: 128, extra_chars: "_-", alnum_first: false, what: "a valid cookie name" };
    let fix = format!("use the ClearML server's cookie name: letters, digits, '_' or '-' (e.g. {default})");
    rule.check(var, var.present().unwrap_or(default), fix)
}

/// The router's name is used as set: an empty `ROUTER_NAME` is an error, not the default.
pub(super) fn router_name(var: Var<'_>, default: &str) -> Result<String, ConfigError> {
    let rule = NameRule { max_len: 64, extra_chars: "-_.", alnum_first: false, what: "a valid router name" };
    rule.check(var, var.value.unwrap_or(default), "use up to 64 letters, digits, '-', '_' or '.'".into())
}

pub(super) fn host_address(var: Var<'_>) -> Result<Option<String>, ConfigError> {
    let Some(v) = var.present() else { return Ok(None) };
    let rule =
        NameRule { max_len: 253, extra_chars: "-.:", alnum_first: false, what: "a host name or IP address" };
    rule.check(var, v, "set the address clients use to reach the proxy's TCP ports".into()).map(Some)
}

/// A Docker container or compose service name: `[A-Za-z0-9][A-Za-z0-9_.-]*`.
pub(super) fn container_name(var: Var<'_>, default: &str) -> Result<String, ConfigError> {
    let rule = NameRule { max_len: 128, extra_chars: "_.-", alnum_first: true, what: "a container name" };
    let fix = format!("set the proxy container's name or its compose service name (default {default})");
    rule.check(var, var.present().unwrap_or(default).trim_start_matches('/'), fix)
}
