//! Everything the emulated server remembers, behind one mutex (never held across an await).

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};
use tokio::sync::watch;

use super::auth::Auth;
use super::clock::now_iso;
use super::config::EmulatorConfig;
use super::faults::FaultQueue;
use super::gate::Connections;
use super::ids::new_id;
use super::stats::{CallLog, CallStats};
use super::store::Collection;
use super::tasks::{self, NewTask, Owner};

pub struct State {
    pub config: EmulatorConfig,
    pub auth: Auth,
    pub tasks: Collection,
    pub queues: Collection,
    /// What `routers.get_routes` serves.
    pub routes: Vec<Value>,
    pub faults: FaultQueue,
    pub stats: CallStats,
    pub calls: CallLog,
    /// Open `tasks.get_all` scrolls.
    pub scrolls: super::query::Scrolls,
}

impl State {
    pub fn new(config: EmulatorConfig) -> Self {
        let auth = Auth::new(config.token_secret.clone(), config.default_user(), config.feature_set);
        Self {
            config,
            auth,
            tasks: Collection::default(),
            queues: Collection::default(),
            routes: Vec::new(),
            faults: FaultQueue::default(),
            stats: CallStats::default(),
            calls: CallLog::default(),
            scrolls: Default::default(),
        }
    }

    /// Creates a task owned by `task.user` (or the default user) in that user's company.
    pub fn create_task(&mut self, task: &NewTask) -> String {
        let user_id = task.user.as_deref().unwrap_or(&self.config.user_id);
        let company =
            self.auth.user(user_id).map_or(self.config.company_id.as_str(), |u| u.company_id.as_str());
        let id = new_id();
        let owner = Owner { user: user_id, company };
        let doc = tasks::new_doc(&id, task, owner, &now_iso());
        self.tasks.insert(doc)
    }

    /// Applies `f` to a task and bumps its `last_update`; false if there is no such task.
    pub fn update_task(&mut self, id: &str, f: impl FnOnce(&mut Value)) -> bool {
        let Some(doc) = self.tasks.get_mut(id) else {
            return false;
        };
        f(doc);
        tasks::touch(doc, &now_iso());
        true
    }

    pub fn set_task_status(&mut self, id: &str, status: &str) -> bool {
        let Some(doc) = self.tasks.get_mut(id) else {
            return false;
        };
        tasks::set_status(doc, status, "", &now_iso());
        true
    }

    /// Replaces the static routes: a JSON array, or an object with a `routes` array.
    pub fn set_routes(&mut self, routes: Value) {
        self.routes = match routes {
            Value::Array(items) => items,
            Value::Object(mut map) => match map.remove("routes") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
    }

    pub fn queue_by_name(&self, company: &str, name: &str) -> Option<String> {
        self.queues
            .values()
            .find(|q| q["company"] == company && q["name"] == name)
            .and_then(|q| q["id"].as_str().map(str::to_string))
    }

    /// Adds a queue document and returns its id.
    pub fn create_queue(&mut self, name: &str, company: &str, user: &str) -> String {
        let now = now_iso();
        self.queues.insert(json!({
            "id": new_id(),
            "name": name,
            "company": company,
            "user": user,
            "created": now,
            "last_update": now,
            "tags": [],
            "system_tags": [],
            "entries": [],
            "metadata": {},
        }))
    }
}

/// State shared by the HTTP server, the TCP gate and every handle.
pub struct Shared {
    state: Mutex<State>,
    /// false = "ClearML down": API requests get their connection cut.
    pub up: watch::Sender<bool>,
    pub connections: Arc<Connections>,
}

impl Shared {
    pub fn new(config: EmulatorConfig) -> Self {
        Self {
            state: Mutex::new(State::new(config)),
            up: watch::Sender::new(true),
            connections: Arc::default(),
        }
    }

    /// Locks the state; a panic in another holder does not make the emulator unusable.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }
}
