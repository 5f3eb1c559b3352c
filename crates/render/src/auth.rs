//! The proxy's authentication settings, handed to Lua as JSON data (never as Lua source), plus
//! the token secret for local verification in a file of its own (mode 0600, never in dry-run output).

use serde::Serialize;

use gateway_core::secret::Secret;

/// How long a decision stays fresh, and how long a confirmed login is kept for use while
/// ClearML is unreachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthLayout {
    pub enabled: bool,
    pub cookie_name: String,
    /// The router's own ClearML company; tokens of other companies get 403. `None` until learned.
    pub company_id: Option<String>,
    pub login_url: String,
    /// ClearML API base URL for remote checks.
    pub api_url: String,
    pub verify_tls: bool,
    /// Base64 of the server's token secret: verify locally instead of asking ClearML.
    pub local_key: Option<Secret>,
    pub cache_ttl_seconds: u32,
    pub negative_ttl_seconds: u32,
    pub stale_ttl_seconds: u32,
}

impl AuthLayout {
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            cookie_name: "clearml_token_basic".into(),
            company_id: None,
            login_url: String::new(),
            api_url: "http://127.0.0.1:8008".into(),
            verify_tls: true,
            local_key: None,
            cache_ttl_seconds: 30,
            negative_ttl_seconds: 5,
            stale_ttl_seconds: 600,
        }
    }

    /// `disabled`, `local` or `remote`, for the status page and metrics.
    pub fn state(&self) -> &'static str {
        if self.enabled {
            self.mode()
        } else {
            "disabled"
        }
    }

    pub fn mode(&self) -> &'static str {
        if self.local_key.is_some() {
            "local"
        } else {
            "remote"
        }
    }

    /// `auth.json`: what the Lua module reads at start.
    pub fn settings_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Doc<'a> {
            enabled: bool,
            mode: &'a str,
            cookie_name: &'a str,
            company: &'a str,
            login_url: &'a str,
            cache_ttl: u32,
            negative_ttl: u32,
            stale_ttl: u32,
            /// Background re-checks call ClearML directly (a timer cannot make subrequests).
            api_url: &'a str,
        }
        let doc = Doc {
            enabled: self.enabled,
            mode: self.mode(),
            cookie_name: &self.cookie_name,
            company: self.company_id.as_deref().unwrap_or(""),
            login_url: &self.login_url,
            cache_ttl: self.cache_ttl_seconds,
            negative_ttl: self.negative_ttl_seconds,
            stale_ttl: self.stale_ttl_seconds,
            api_url: &self.api_url,
        };
        serde_json::to_vec_pretty(&doc).expect("auth settings serialize")
    }

    /// The key file's content: the base64 secret in local mode, empty otherwise.
    pub fn key_file(&self) -> Vec<u8> {
        self.local_key.as_ref().map(|k| k.expose().as_bytes().to_vec()).unwrap_or_default()
    }
}

/// A ClearML company id as it may appear in the proxy's data.
pub fn valid_company_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
