use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};

use super::error::{ApiError, Meta};
use super::token::Token;
use super::TASK_FIELDS;
use gateway_core::errors::error_chain;
use gateway_core::secret::Secret;

/// API version sent in the URL path, as the SDK does.
const API_VERSION: &str = "v2.23";

#[derive(Clone, Debug)]
pub struct Credentials {
    pub access_key: Secret,
    pub secret_key: Secret,
}

/// Tasks per `tasks.get_all` page: the open-source server's `max_page_size`, its largest answer.
pub const POLL_PAGE_SIZE: usize = 500;

/// What one poll asks for: in-progress tasks tagged `external_service`, optionally on some queues.
#[derive(Clone, Debug, Default)]
pub struct TaskQuery {
    /// `None`: any queue. `Some(ids)`: only tasks enqueued on these queue ids.
    pub queue_ids: Option<Vec<String>>,
}

/// A ClearML API client that keeps a login token and renews it before it expires.
pub struct ClearmlClient {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
    token: Mutex<Option<Token>>,
    timeout: Duration,
    metrics: std::sync::Arc<super::ApiMetrics>,
}

impl ClearmlClient {
    pub fn new(
        base: &str,
        credentials: Credentials,
        timeout: Duration,
        verify_tls: bool,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .danger_accept_invalid_certs(!verify_tls)
            .user_agent(concat!("clearml-gateway-router/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            credentials,
            token: Mutex::new(None),
            timeout,
            metrics: Default::default(),
        })
    }

    /// In-progress tasks that asked for an endpoint (server-side filters, projected fields).
    pub async fn tasks_requesting_endpoints(&self, query: &TaskQuery) -> Result<Vec<Value>, ApiError> {
        self.endpoint_tasks(query, json!({ "status": ["in_progress"] })).await
    }

    /// Tasks tagged `external_service` that also match `filters` (a JSON object of `tasks.get_all`
    /// filters), every page of them: the server caps each answer at [`POLL_PAGE_SIZE`], so this
    /// pages in a stable order (by id) until a short page. A task seen twice (the set shifted
    /// between two pages) is kept once; one that shifted out is seen at the next poll.
    pub async fn endpoint_tasks(&self, query: &TaskQuery, filters: Value) -> Result<Vec<Value>, ApiError> {
        let mut tasks: Vec<Value> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for page in 0.. {
            let mut body = json!({
                "system_tags": [gateway_core::task::EXTERNAL_SERVICE_TAG],
                "only_fields": TASK_FIELDS,
                "order_by": ["id"],
                "page": page,
                "page_size": POLL_PAGE_SIZE,
            });
            if let (Some(body), Value::Object(filters)) = (body.as_object_mut(), &filters) {
                body.extend(filters.clone());
            }
            if let Some(ids) = &query.queue_ids {
                body["execution.queue"] = json!(ids);
            }
            let data = self.call("tasks.get_all", body).await?;
            let batch = list_field(data, "tasks", "tasks.get_all")?;
            let short = batch.len() < POLL_PAGE_SIZE;
            for task in batch {
                // Keyed by the id's JSON text: a hostile non-string id must reach the reader
                // (which refuses it with a reason), not vanish here.
                if seen.insert(task.get("id").unwrap_or(&Value::Null).to_string()) {
                    tasks.push(task);
                }
            }
            if short {
                break;
            }
        }
        Ok(tasks)
    }

    /// The static routes the server defines (`routers.get_routes`, enterprise servers), or `None`
    /// when the server has no such call (the open-source server answers 404 for it).
    pub async fn server_static_routes(&self) -> Result<Option<Vec<Value>>, ApiError> {
        match self.call("routers.get_routes", json!({})).await {
            Ok(data) => list_field(data, "routes", "routers.get_routes").map(Some),
            Err(ApiError::Server { code: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One task by id, freshly read (for read-modify-write).
    pub async fn task(&self, id: &str) -> Result<Value, ApiError> {
        let mut data = self.call("tasks.get_by_id", json!({ "task": id })).await?;
        match data.get_mut("task").map(Value::take) {
            Some(task @ Value::Object(_)) => Ok(task),
            _ => Err(decode_error("tasks.get_by_id", "no task object in data")),
        }
    }

    /// Replaces the task's whole runtime dict (the caller merged it right before).
    pub async fn set_runtime(&self, id: &str, runtime: &Map<String, Value>) -> Result<(), ApiError> {
        self.call("tasks.edit", json!({ "task": id, "force": true, "runtime": runtime })).await?;
        Ok(())
    }

    /// The company (workspace) id of the router's own credentials.
    pub async fn own_company(&self) -> Result<String, ApiError> {
        let data = self.call("users.get_current_user", json!({})).await?;
        let company = &data["user"]["company"];
        company
            .get("id")
            .unwrap_or(company)
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| decode_error("users.get_current_user", "data.user.company has no id"))
    }

    /// Queue ids whose names match an anchored regex.
    pub async fn queues_matching(&self, name_regex: &str) -> Result<Vec<(String, String)>, ApiError> {
        let data =
            self.call("queues.get_all", json!({ "name": name_regex, "only_fields": ["id", "name"] })).await?;
        let queues = list_field(data, "queues", "queues.get_all")?;
        Ok(queues
            .into_iter()
            .filter_map(|q| Some((q.get("id")?.as_str()?.to_owned(), q.get("name")?.as_str()?.to_owned())))
            .collect())
    }

    /// Calls `service.action` with a bearer token, logging in first when needed and once more
    /// when the server says the token is no longer valid.
    pub async fn call(&self, endpoint: &str, body: Value) -> Result<Value, ApiError> {
        let token = self.valid_token().await?;
        match self.send(endpoint, &body, &token).await {
            Err(e) if e.is_unauthorized() => {
                tracing::info!(endpoint, "token refused, logging in again");
                self.forget_token();
                let token = self.valid_token().await?;
                self.send(endpoint, &body, &token).await
            }
            other => other,
        }
    }

    /// A valid login token of the router's credentials (for requests through its own proxy).
    pub async fn bearer(&self) -> Result<String, ApiError> {
        self.valid_token().await
    }

    fn forget_token(&self) {
        *self.token.lock().expect("token lock") = None;
    }

    async fn valid_token(&self) -> Result<String, ApiError> {
        let now = SystemTime::now();
        if let Some(token) = self.token.lock().expect("token lock").as_ref() {
            if !token.needs_renewal(now) {
                return Ok(token.bearer.clone());
            }
        }
        let bearer = self.login().await?;
        *self.token.lock().expect("token lock") = Some(Token::new(bearer.clone(), now));
        Ok(bearer)
    }

    async fn login(&self) -> Result<String, ApiError> {
        let endpoint = "auth.login";
        let request = self
            .http
            .post(format!("{}/{endpoint}", self.base))
            .basic_auth(self.credentials.access_key.expose(), Some(self.credentials.secret_key.expose()))
            .json(&json!({}));
        let data = match self.exchange(endpoint, request).await {
            Err(ApiError::Unauthorized { endpoint, subcode, message }) => {
                return Err(ApiError::BadCredentials { endpoint, subcode, message })
            }
            other => other?,
        };
        data.get("token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| decode_error(endpoint, "login answer has no data.token"))
    }

    async fn send(&self, endpoint: &str, body: &Value, bearer: &str) -> Result<Value, ApiError> {
        let request =
            self.http.post(format!("{}/{API_VERSION}/{endpoint}", self.base)).bearer_auth(bearer).json(body);
        self.exchange(endpoint, request).await
    }

    /// Counts and latency of the calls made so far.
    pub fn metrics(&self) -> std::sync::Arc<super::ApiMetrics> {
        self.metrics.clone()
    }

    async fn exchange(&self, endpoint: &str, request: reqwest::RequestBuilder) -> Result<Value, ApiError> {
        let started = std::time::Instant::now();
        let result = self.unwrap_envelope(endpoint, request).await;
        self.metrics.record(endpoint, started.elapsed(), result.is_ok());
        result
    }

    /// Sends a request and unwraps the envelope into `data` or a typed error.
    async fn unwrap_envelope(
        &self,
        endpoint: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, ApiError> {
        let response = request.send().await.map_err(|e| self.transport_error(endpoint, e))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| self.transport_error(endpoint, e))?;
        let envelope: Value = serde_json::from_slice(&bytes).map_err(|e| {
            decode_error(endpoint, format!("HTTP {status}, body is not JSON ({e}), {} bytes", bytes.len()))
        })?;
        let meta: Option<Meta> = envelope.get("meta").and_then(|m| serde_json::from_value(m.clone()).ok());
        let code = meta.as_ref().map(|m| m.result_code).filter(|c| *c != 0).unwrap_or(status);
        let subcode = meta.as_ref().map(|m| m.result_subcode).unwrap_or(0);
        let message = meta.as_ref().map(|m| m.result_msg.clone()).unwrap_or_default();
        match code {
            200 => match envelope.get("data") {
                Some(data) => Ok(data.clone()),
                None => Err(decode_error(endpoint, "envelope has no data")),
            },
            401 => Err(ApiError::Unauthorized { endpoint: endpoint.into(), subcode, message }),
            code => Err(ApiError::Server { endpoint: endpoint.into(), code, subcode, message }),
        }
    }

    fn transport_error(&self, endpoint: &str, e: reqwest::Error) -> ApiError {
        if e.is_timeout() {
            ApiError::Timeout { endpoint: endpoint.into(), seconds: self.timeout.as_secs_f64() }
        } else {
            // reqwest errors carry the URL but never headers, so no credential leaks here.
            ApiError::Transport { endpoint: endpoint.into(), detail: error_chain(&e) }
        }
    }
}

fn decode_error(endpoint: &str, detail: impl Into<String>) -> ApiError {
    ApiError::Decode { endpoint: endpoint.into(), detail: detail.into() }
}

fn list_field(mut data: Value, field: &str, endpoint: &str) -> Result<Vec<Value>, ApiError> {
    match data.get_mut(field).map(Value::take) {
        Some(Value::Array(items)) => Ok(items),
        _ => Err(decode_error(endpoint, format!("data.{field} is not a list"))),
    }
}
