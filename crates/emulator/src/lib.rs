//! A ClearML API server emulator for tests and demos.
//!
//! It speaks enough of the real API (`/[v2.NN/]service.action`, the `meta`/`data` envelope,
//! HS256 login tokens with `feature_set: advanced`) that the unmodified `clearml` Python SDK can
//! run `Task.request_external_endpoint(...)` against it, and that the router can poll it. With
//! [`FeatureSet::Basic`] it plays the open-source server instead: `basic` tokens (the SDK then
//! refuses endpoint requests) and no `routers.*` service.
//! Tests drive it in-process through [`EmulatorHandle`]; scripts use the unauthenticated admin
//! API under `/_emulator/` on the same port (see `admin.rs`).

mod admin;
#[cfg(test)]
mod api_tests;
mod auth;
mod clock;
mod config;
mod envelope;
mod faults;
mod gate;
mod handle;
mod handlers;
mod ids;
mod jwt;
mod query;
mod server;
mod state;
mod stats;
mod store;
mod tasks;

pub use auth::AUTH_COOKIE;
pub use config::{
    EmulatedUser, EmulatorConfig, FeatureSet, API_VERSION, DEFAULT_TOKEN_TTL_SECS, FEATURE_SET,
    OSS_SERVER_VERSION, SERVER_VERSION,
};
pub use faults::Fault;
pub use handle::{start, EmulatorHandle};
pub use jwt::{Claims, Identity, JwtError};
pub use stats::{CallRecord, CallStats, EndpointStats};
pub use tasks::{NewTask, DEFAULT_PROJECT, STATUSES};

/// Signs `claims` as an HS256 token with `secret` (tests forge tokens with a wrong key this way).
pub fn encode_token(claims: &Claims, secret: &[u8]) -> String {
    jwt::encode(claims, secret)
}

/// Verifies an emulator token (signature and expiry, not revocation) with `secret`, e.g. to
/// check what a router test received.
pub fn decode_token(token: &str, secret: &[u8]) -> Result<Claims, JwtError> {
    jwt::decode(token, secret, clock::unix_now())
}
