//! The calls the router makes, as a trait: the loop and the write-back depend on this, so that
//! they can be tested against an in-memory ClearML.

use std::future::Future;

use serde_json::{Map, Value};

use super::{ApiError, ClearmlClient, TaskQuery};

pub trait ClearmlApi: Send + Sync {
    /// In-progress tasks that asked for an endpoint (see [`ClearmlClient::tasks_requesting_endpoints`]).
    fn tasks_requesting_endpoints(
        &self,
        query: &TaskQuery,
    ) -> impl Future<Output = Result<Vec<Value>, ApiError>> + Send;
    /// Tasks tagged `external_service`, in any status, whose `last_update` is at or after
    /// `since` (`YYYY-MM-DDTHH:MM:SS.ffffff`, the server's clock): what changed since a poll.
    fn tasks_changed_since(
        &self,
        query: &TaskQuery,
        since: &str,
    ) -> impl Future<Output = Result<Vec<Value>, ApiError>> + Send;
    /// The static routes the server defines, or `None` if it has no `routers.*` service.
    fn server_static_routes(&self) -> impl Future<Output = Result<Option<Vec<Value>>, ApiError>> + Send;
    /// One task by id, freshly read (for read-modify-write).
    fn task(&self, id: &str) -> impl Future<Output = Result<Value, ApiError>> + Send;
    /// Replaces the task's whole runtime dict (`tasks.edit`).
    fn set_runtime(
        &self,
        id: &str,
        runtime: &Map<String, Value>,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// The company (workspace) id of the router's own credentials.
    fn own_company(&self) -> impl Future<Output = Result<String, ApiError>> + Send;
    /// Queue `(id, name)` pairs whose names match an anchored regex.
    fn queues_matching(
        &self,
        name_regex: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, ApiError>> + Send;
}

// The inherent methods stay callable without the trait in scope (self-test, benches).
impl ClearmlApi for ClearmlClient {
    fn tasks_requesting_endpoints(
        &self,
        query: &TaskQuery,
    ) -> impl Future<Output = Result<Vec<Value>, ApiError>> + Send {
        ClearmlClient::tasks_requesting_endpoints(self, query)
    }
    async fn tasks_changed_since(&self, query: &TaskQuery, since: &str) -> Result<Vec<Value>, ApiError> {
        self.endpoint_tasks(query, serde_json::json!({ "last_update": format!(">={since}") })).await
    }
    fn server_static_routes(&self) -> impl Future<Output = Result<Option<Vec<Value>>, ApiError>> + Send {
        ClearmlClient::server_static_routes(self)
    }
    fn task(&self, id: &str) -> impl Future<Output = Result<Value, ApiError>> + Send {
        ClearmlClient::task(self, id)
    }
    fn set_runtime(
        &self,
        id: &str,
        runtime: &Map<String, Value>,
    ) -> impl Future<Output = Result<(), ApiError>> + Send {
        ClearmlClient::set_runtime(self, id, runtime)
    }
    fn own_company(&self) -> impl Future<Output = Result<String, ApiError>> + Send {
        ClearmlClient::own_company(self)
    }
    fn queues_matching(
        &self,
        name_regex: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, ApiError>> + Send {
        ClearmlClient::queues_matching(self, name_regex)
    }
}
