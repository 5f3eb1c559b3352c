//! The gateway's pure core: everything that decides what is routed, with no I/O but reading a
//! file the caller names. Modules depend only on those above them in this list:
//!
//! `env` (variable names), `errors`, `time`, `secret`, `cidr`, `model` (validated types) → `rate_limit` → `static_routes` (the operator's routes)
//! → `table` (the desired state) → `task` (reading a task, the runtime-key protocol) → `tcp_ports`
//! (port allocation) → `reconcile` (building the table) → `routes_file` (the routes.json schema).

pub mod cidr;
pub mod cookie;
pub mod env;
pub mod errors;
pub mod gateway_token;
pub mod model;
pub mod rate_limit;
pub mod reconcile;
pub mod routers_seen;
pub mod routes_file;
pub mod secret;
pub mod snapshot;
pub mod static_routes;
pub mod table;
pub mod task;
pub mod tcp_ports;
pub mod time;
