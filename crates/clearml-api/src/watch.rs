//! Polls whose steady-state cost follows the changes, not the number of routed tasks.
//!
//! A full poll (every in-progress task tagged `external_service`, all pages) fills a cache;
//! later polls ask only for tagged tasks whose `last_update` moved since the newest one seen
//! (any status, so a task that stopped shows up once and leaves the cache). ClearML moves
//! `last_update` on every edit and status change. What such a query cannot see — a task deleted,
//! untagged or moved to another queue, or a write whose `last_update` the server stamped before
//! the watermark but made visible after — is caught by the next full poll, every
//! `resync_every` polls. The watermark is the server's own clock (the newest `last_update` it
//! returned), so the router's clock never matters; for a short while after it moves, polls look
//! back a margin before it for writes that land out of order, then only past it, so a quiet
//! table's polls fetch nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::{ApiError, ClearmlApi, TaskQuery};
use gateway_core::time::{iso_micros, parse_utc_micros};

/// What the last poll cost, for metrics and the status page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollCost {
    /// Whether it was a full poll (else only changes were asked for).
    pub full: bool,
    /// Tasks the server sent.
    pub tasks_fetched: usize,
}

pub struct TaskWatch {
    tasks: BTreeMap<String, Value>,
    /// Newest `last_update` seen, in unix microseconds of the server's clock.
    watermark: Option<i64>,
    /// When the watermark last moved (this host's clock): the look-back applies only shortly
    /// after, when a write stamped earlier may still become visible.
    moved_at: Option<std::time::Instant>,
    polls_since_full: u32,
    resync_every: u32,
    /// The queues the cache was filled for: another filter needs a full poll.
    queue_ids: Option<Option<Vec<String>>>,
    margin: Duration,
    last_cost: PollCost,
}

impl TaskWatch {
    /// A full poll every `resync_every` polls; change polls look back `margin` before the newest
    /// `last_update` seen.
    pub fn new(resync_every: u32, margin: Duration) -> Self {
        Self {
            tasks: BTreeMap::new(),
            watermark: None,
            moved_at: None,
            polls_since_full: 0,
            resync_every: resync_every.max(1),
            queue_ids: None,
            margin,
            last_cost: PollCost::default(),
        }
    }

    /// The in-progress tasks asking for an endpoint now, by id. On an error the cache is kept
    /// as it was, and the next poll asks again for the same changes.
    pub async fn poll(
        &mut self,
        client: &impl ClearmlApi,
        query: &TaskQuery,
    ) -> Result<Vec<Value>, ApiError> {
        let same_queues = self.queue_ids.as_ref() == Some(&query.queue_ids);
        let full = !same_queues || self.watermark.is_none() || self.polls_since_full + 1 >= self.resync_every;
        let fetched = if full {
            let tasks = client.tasks_requesting_endpoints(query).await?;
            self.tasks.clear();
            self.polls_since_full = 0;
            self.queue_ids = Some(query.queue_ids.clone());
            tasks
        } else {
            // Shortly after the watermark moved, look back `margin` for writes that land out of
            // order; later, only what is newer than the watermark, so a quiet table costs nothing.
            let recent = self.moved_at.is_some_and(|at| at.elapsed() <= 2 * self.margin);
            let watermark = self.watermark.unwrap_or_default();
            let since = if recent { watermark - self.margin.as_micros() as i64 } else { watermark + 1 };
            let changed = client.tasks_changed_since(query, &iso_micros(since)).await?;
            self.polls_since_full += 1;
            changed
        };
        self.last_cost = PollCost { full, tasks_fetched: fetched.len() };
        for task in fetched {
            // The id's JSON text: tasks with a hostile non-string id stay in the set, so the reader
            // refuses them with a reason instead of their vanishing here.
            let id = task.get("id").unwrap_or(&Value::Null).to_string();
            if let Some(seen) = task.get("last_update").and_then(Value::as_str).and_then(parse_utc_micros) {
                if self.watermark.is_none_or(|w| seen > w) {
                    self.watermark = Some(seen);
                    self.moved_at = Some(std::time::Instant::now());
                }
            }
            if task.get("status").and_then(Value::as_str) == Some("in_progress") {
                self.tasks.insert(id, task);
            } else {
                self.tasks.remove(&id);
            }
        }
        if full && self.watermark.is_none() {
            // Nothing routed yet: the next full poll is as cheap as a change poll.
            self.polls_since_full = 0;
        }
        Ok(self.tasks.values().cloned().collect())
    }

    pub fn last_cost(&self) -> PollCost {
        self.last_cost
    }
}
