//! `clearml-router`, the gateway's control plane: turns ClearML tasks asking for an external
//! endpoint into nginx + Lua configuration for the proxy container.
//!
//! Data flows one way: ClearML (`clearml-api`) and the operator's files (`static_files`) ->
//! `gateway_core` (route table) -> `gateway_render` (nginx + Lua + JSON) -> `apply` (validate, swap,
//! reload, confirm) -> `advertise` (endpoint keys back to ClearML). `router` is the loop that runs
//! these steps; `status` shows what it did; `app` wires settings into the parts.

pub mod advertise;
pub mod app;
pub mod apply;
pub mod config;
pub mod dry_run;
pub mod gateway_tokens;
pub mod privileges;
pub mod retry;
pub mod router;
pub mod selftest;
pub mod startup;
pub mod static_files;
pub mod status;
pub mod tls;
pub mod traffic;
