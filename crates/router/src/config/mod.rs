//! Router settings from the environment, with the enterprise router's variable names (drop-in).
//!
//! Parsing is two steps so tests never touch the process environment: [`RawEnv`] keeps the
//! router's variables as strings, then [`Settings::from_raw`] parses each one into its type and
//! reports every problem as one line naming the variable, what is wrong and how to fix it.
//!
//! - [`env`] (from `gateway_core`, so that lower crates name variables too): the variable names;
//! - `defaults`: what an unset variable means ([`Defaults`]), for the parser and `--help`;
//! - `raw`, `parse`, `values`: reading and checking single variables;
//! - `error`: the one-line [`ConfigError`] and the accumulator that keeps parsing after one;
//! - `settings`: the validated [`Settings`] and how they are assembled;
//! - `traffic`: rate limits, trusted proxies and target networks ([`TrafficSettings`]);
//! - `help`: the configuration part of `--help`.

mod defaults;
mod error;
mod help;
mod parse;
mod raw;
mod settings;
mod tls;
mod traffic;
mod values;

#[cfg(test)]
mod tests;

pub use defaults::{default_login_url, default_web_host, Defaults};
pub use error::ConfigError;
pub use gateway_core::env;
pub use gateway_core::secret::Secret;
pub use help::help;
pub use raw::{RawEnv, Var};
pub use settings::{AuthSettings, ProxySettings, Settings, TcpSettings};
pub use tls::{AcmeSettings, TlsSettings};
pub use traffic::TrafficSettings;
pub use values::{queue_pattern_regex, LogLevel, QueueFilter, ReloaderKind};
