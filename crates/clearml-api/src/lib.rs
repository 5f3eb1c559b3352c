//! ClearML REST API client: login and token renewal, the envelope, and the few calls the router makes
//! (the [`ClearmlApi`] trait, which the router depends on).

mod api;
mod client;
mod error;
mod metrics;
mod token;
mod watch;

pub use api::ClearmlApi;
pub use client::{ClearmlClient, Credentials, TaskQuery};
pub use error::ApiError;
pub use metrics::{ApiMetrics, CallStats};
pub use watch::{PollCost, TaskWatch};

/// Fields the router reads from each task (`only_fields` keeps polls small).
pub const TASK_FIELDS: &[&str] =
    &["id", "name", "user", "company", "status", "runtime", "execution.queue", "system_tags", "last_update"];
