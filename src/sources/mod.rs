//! Where routes come from. This issue: ClearML tasks (polled) and snapshot files (dry runs).

pub mod applied;
pub mod snapshot;
pub mod tasks;
