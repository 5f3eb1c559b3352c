//! Test kit (not published, never linked by the product): a local nginx with the Lua module,
//! sample task apps, and the demo. The integration tests and benchmarks in this crate drive the
//! real router binary against these and the ClearML emulator.

pub mod cpu;
pub mod demo;
pub mod local_proxy;
pub mod paths;
pub mod pki;
pub mod process;
pub mod sample_apps;
pub mod wrk;
