//! ClearML AI application gateway: a control-plane router that turns ClearML tasks asking for an
//! external endpoint into nginx + Lua configuration for an OpenResty proxy.
//!
//! Data flows one way: `sources` -> `reconcile` (route table) -> `render` (nginx + Lua + JSON)
//! -> `apply` (validate, swap, reload, confirm) -> `advertise` (endpoint keys back to ClearML).

pub mod advertise;
pub mod app;
pub mod apply;
pub mod clearml;
pub mod config;
pub mod demo;
pub mod dry_run;
pub mod emulator;
pub mod errors;
pub mod local_proxy;
pub mod model;
pub mod reconcile;
pub mod render;
pub mod router;
pub mod sample_apps;
pub mod selftest;
pub mod sources;
pub mod static_routes;
pub mod status;
pub mod tcp_ports;
