//! A snapshot: the tasks (as `tasks.get_all` returns them) that a render is made from. Dry runs read
//! one from a file; the router builds one per poll.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(default)]
    pub tasks: Vec<Value>,
    /// The router's ClearML company (for tenant isolation); a live dry run asks ClearML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
}

impl Snapshot {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading snapshot {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| {
            format!("snapshot {} is not JSON of the form {{\"tasks\": [...]}}", path.display())
        })
    }
}
