//! Emulator settings and the credential table's row type.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// API version the emulator claims (the newest service schema shipped with SDK 2.1.x).
pub const API_VERSION: &str = "2.23";
/// Server version in the token. The SDK only accepts `static_route` from servers >= 3.26
/// (enterprise numbering, which is also where `feature_set: advanced` comes from).
pub const SERVER_VERSION: &str = "3.26.0";
/// Server version in tokens of the open-source server (its own numbering, see clearml-server's
/// `apiserver/version.py`); the SDK tells the two numberings apart by `feature_set`.
pub const OSS_SERVER_VERSION: &str = "2.3.0";
/// The default feature set. The SDK refuses `request_external_endpoint` unless the token says
/// `advanced`.
pub const FEATURE_SET: &str = "advanced";

/// Which server the emulator plays, as the `feature_set` claim of its tokens says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FeatureSet {
    /// The open-source server: tokens say `basic` and enterprise-only services (`routers.*`)
    /// do not exist.
    Basic,
    /// An enterprise server (the default, so that the SDK's endpoint calls run).
    #[default]
    Advanced,
}

impl FeatureSet {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Basic => "basic",
            Self::Advanced => "advanced",
        }
    }

    /// The `server_version` claim of such a server.
    pub fn server_version(self) -> &'static str {
        match self {
            Self::Basic => OSS_SERVER_VERSION,
            Self::Advanced => SERVER_VERSION,
        }
    }
}

impl fmt::Display for FeatureSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FeatureSet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "basic" => Ok(Self::Basic),
            "advanced" => Ok(Self::Advanced),
            other => Err(format!("unknown feature set {other:?} (expected basic or advanced)")),
        }
    }
}
/// Lifetime of a token from `auth.login` without `expiration_sec` (the server's default, 30 days).
pub const DEFAULT_TOKEN_TTL_SECS: i64 = 30 * 24 * 3600;

/// Settings of one emulated server; the default user is built from these fields.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    pub access_key: String,
    pub secret_key: String,
    /// HS256 key for tokens (the server's `secure.auth.token_secret`).
    pub token_secret: Vec<u8>,
    pub company_id: String,
    pub company_name: String,
    pub user_id: String,
    pub user_name: String,
    /// `basic` plays the open-source server, `advanced` (default) an enterprise one.
    pub feature_set: FeatureSet,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            access_key: "emulator-access-key".into(),
            secret_key: "emulator-secret-key".into(),
            // Fixed so tests and demos can verify cookies locally without plumbing.
            token_secret: b"clearml-emulator-token-secret-for-tests-only".to_vec(),
            company_id: "company-1".into(),
            company_name: "Emulated Company".into(),
            user_id: "user-1".into(),
            user_name: "Emulated User".into(),
            feature_set: FeatureSet::default(),
        }
    }
}

impl EmulatorConfig {
    /// The user described by the config's own fields.
    pub fn default_user(&self) -> EmulatedUser {
        EmulatedUser {
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            id: self.user_id.clone(),
            name: self.user_name.clone(),
            company_id: self.company_id.clone(),
            company_name: self.company_name.clone(),
            role: "admin".into(),
        }
    }
}

/// One row of the credential table: an API key pair and who it logs in as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmulatedUser {
    pub access_key: String,
    pub secret_key: String,
    pub id: String,
    pub name: String,
    pub company_id: String,
    pub company_name: String,
    /// ClearML roles: "user", "admin", "root", "system", ...
    #[serde(default = "default_role")]
    pub role: String,
}

fn default_role() -> String {
    "user".into()
}
