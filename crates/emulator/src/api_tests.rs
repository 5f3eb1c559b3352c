//! HTTP-level tests of the emulated API: auth outcomes, envelopes, faults and the admin API.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use super::*;

async fn emulator() -> EmulatorHandle {
    start(EmulatorConfig::default(), "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

/// Calls `endpoint` (under `/v2.23/`) and returns (HTTP status, envelope).
async fn call(emu: &EmulatorHandle, endpoint: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(format!("{}/v2.23/{endpoint}", emu.url())).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn login(emu: &EmulatorHandle, key: &str, secret: &str) -> (u16, Value) {
    let basic = STANDARD.encode(format!("{key}:{secret}"));
    let response = reqwest::Client::new()
        .get(format!("{}/auth.login", emu.url()))
        .header("Authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn token(emu: &EmulatorHandle) -> String {
    let (status, body) = login(emu, "emulator-access-key", "emulator-secret-key").await;
    assert_eq!(status, 200, "{body}");
    body["data"]["token"].as_str().unwrap().to_string()
}

fn codes(envelope: &Value) -> (u64, u64) {
    let meta = &envelope["meta"];
    (meta["result_code"].as_u64().unwrap(), meta["result_subcode"].as_u64().unwrap())
}

fn other_user() -> EmulatedUser {
    EmulatedUser {
        access_key: "k2".into(),
        secret_key: "s2".into(),
        id: "user-2".into(),
        name: "Other User".into(),
        company_id: "company-2".into(),
        company_name: "Other Company".into(),
        role: "user".into(),
    }
}

#[tokio::test]
async fn login_token_carries_the_claims_the_sdk_reads() {
    let emu = emulator().await;
    let (status, body) = login(&emu, "emulator-access-key", "emulator-secret-key").await;
    assert_eq!(status, 200);
    assert_eq!(body["meta"]["endpoint"]["name"], "auth.login");
    assert_eq!(body["meta"]["id"], body["meta"]["trx"]);
    let claims = decode_token(body["data"]["token"].as_str().unwrap(), &emu.token_secret()).unwrap();
    assert_eq!(claims.feature_set, "advanced");
    assert_eq!(claims.api_version, API_VERSION);
    assert_eq!(claims.identity.company, "company-1");
    assert_eq!(claims.identity.company_name, "Emulated Company");
    assert!(claims.exp - claims.iat >= DEFAULT_TOKEN_TTL_SECS);

    let (status, body) = login(&emu, "emulator-access-key", "wrong").await;
    assert_eq!((status, codes(&body)), (401, (401, 22)));

    // The SDK passes a requested lifetime as a query parameter.
    let response = reqwest::Client::new()
        .get(format!("{}/auth.login?expiration_sec=60", emu.url()))
        .basic_auth("emulator-access-key", Some("emulator-secret-key"))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let claims = decode_token(body["data"]["token"].as_str().unwrap(), &emu.token_secret()).unwrap();
    assert_eq!(claims.exp - claims.iat, 60);
}

#[tokio::test]
async fn bearer_token_failures_have_their_subcodes() {
    let emu = emulator().await;
    let (status, body) = call(&emu, "users.get_current_user", None, json!({})).await;
    assert_eq!((status, codes(&body)), (401, (401, 20)));
    let (_, body) = call(&emu, "users.get_current_user", Some("garbage"), json!({})).await;
    assert_eq!(codes(&body), (401, 30));
    let expired = emu.mint_expired_token("user-1");
    let (_, body) = call(&emu, "users.get_current_user", Some(&expired), json!({})).await;
    assert_eq!(codes(&body), (401, 30));

    let token = token(&emu).await;
    let (status, body) = call(&emu, "users.get_current_user", Some(&token), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["user"]["id"], "user-1");
    assert_eq!(body["data"]["user"]["company"], json!({"id": "company-1", "name": "Emulated Company"}));

    emu.revoke_sessions_of("user-1");
    let (_, body) = call(&emu, "users.get_current_user", Some(&token), json!({})).await;
    assert_eq!(codes(&body), (401, 31));
    let fresh = emu.mint_token("user-1", Duration::from_secs(60));
    let (status, _) = call(&emu, "users.get_current_user", Some(&fresh), json!({})).await;
    assert_eq!(status, 200);

    let (status, _) = call(&emu, "auth.logout", Some(&fresh), json!({})).await;
    assert_eq!(status, 200);
    let (_, body) = call(&emu, "users.get_current_user", Some(&fresh), json!({})).await;
    assert_eq!(codes(&body), (401, 31));
}

#[tokio::test]
async fn companies_do_not_see_each_others_tasks() {
    let emu = emulator().await;
    emu.add_user(other_user());
    let mine = emu.create_task(NewTask::default());
    let theirs = emu.create_task(NewTask { user: Some("user-2".into()), ..NewTask::default() });
    let (status, body) = login(&emu, "k2", "s2").await;
    assert_eq!(status, 200);
    let token2 = body["data"]["token"].as_str().unwrap().to_string();

    let (_, body) = call(&emu, "tasks.get_all", Some(&token2), json!({"only_fields": ["id"]})).await;
    assert_eq!(body["data"]["tasks"], json!([{"id": theirs}]));
    let (status, body) = call(&emu, "tasks.get_by_id", Some(&token2), json!({"task": mine})).await;
    assert_eq!((status, codes(&body)), (400, (400, 101)));
    let (_, body) = call(&emu, "users.get_current_user", Some(&token2), json!({})).await;
    assert_eq!(body["data"]["user"]["company"]["name"], "Other Company");
}

#[tokio::test]
async fn tasks_get_all_filters_like_the_router_needs() {
    let emu = emulator().await;
    let token = token(&emu).await;
    let q1 = emu.create_queue("services");
    let q2 = emu.create_queue("other");
    let tagged = vec!["external_service".to_string()];
    let a = emu.create_task(NewTask {
        queue: Some(q1.clone()),
        system_tags: tagged.clone(),
        ..NewTask::default()
    });
    let _b = emu.create_task(NewTask { queue: Some(q2), system_tags: tagged.clone(), ..NewTask::default() });
    let c = emu.create_task(NewTask { queue: Some(q1.clone()), system_tags: tagged, ..NewTask::default() });
    emu.set_status(&c, "stopped");
    let _d = emu.create_task(NewTask { queue: Some(q1.clone()), ..NewTask::default() });

    let query = json!({
        "status": ["in_progress"],
        "system_tags": ["external_service"],
        "execution.queue": [q1],
        "only_fields": ["id", "name", "status", "runtime", "execution.queue", "last_update"],
    });
    let (_, body) = call(&emu, "tasks.get_all", Some(&token), query).await;
    let tasks = body["data"]["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["id"], a.as_str());
    assert_eq!(tasks[0]["execution"], json!({"queue": q1}));
    assert!(tasks[0].get("system_tags").is_none());

    let (_, body) =
        call(&emu, "queues.get_all", Some(&token), json!({"name": "^serv", "only_fields": ["id", "name"]}))
            .await;
    assert_eq!(body["data"]["queues"], json!([{"id": q1, "name": "services"}]));
}

#[tokio::test]
async fn edit_create_enqueue_delete() {
    let emu = emulator().await;
    let token = token(&emu).await;
    let id = emu.create_task(NewTask::default());
    let before = emu.task(&id).unwrap()["last_update"].clone();

    let (status, body) =
        call(&emu, "tasks.edit", Some(&token), json!({"task": id, "runtime": {"a": 1}})).await;
    assert_eq!((status, codes(&body)), (400, (400, 110)));
    let (status, body) =
        call(&emu, "tasks.edit", Some(&token), json!({"task": id, "force": true, "runtime": {"a": 1}})).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["updated"], 1);
    assert_eq!(body["data"]["fields"]["runtime"], json!({"a": 1}));
    assert_ne!(emu.task(&id).unwrap()["last_update"], before);

    let (_, body) = call(&emu, "queues.create", Some(&token), json!({"name": "selftest"})).await;
    let queue = body["data"]["id"].as_str().unwrap().to_string();
    let (_, body) =
        call(&emu, "tasks.create", Some(&token), json!({"name": "probe", "type": "testing"})).await;
    let probe = body["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(emu.task(&probe).unwrap()["status"], "created");
    assert_eq!(emu.task(&probe).unwrap()["type"], "testing");
    let (status, _) = call(&emu, "tasks.enqueue", Some(&token), json!({"task": probe, "queue": queue})).await;
    assert_eq!(status, 200);
    let doc = emu.task(&probe).unwrap();
    assert_eq!(
        (doc["status"].as_str(), doc["execution"]["queue"].as_str()),
        (Some("queued"), Some(queue.as_str()))
    );
    let (status, _) = call(&emu, "tasks.stopped", Some(&token), json!({"task": probe})).await;
    assert_eq!(status, 200);
    assert_eq!(emu.task(&probe).unwrap()["status"], "stopped");
    let (status, _) = call(&emu, "tasks.delete", Some(&token), json!({"task": probe})).await;
    assert_eq!(status, 200);
    assert!(emu.task(&probe).is_none());
    let (status, body) = call(&emu, "tasks.get_by_id", Some(&token), json!({"task": probe})).await;
    assert_eq!((status, codes(&body)), (400, (400, 101)));
}

#[tokio::test]
async fn basic_mode_plays_the_open_source_server() {
    let config = EmulatorConfig { feature_set: FeatureSet::Basic, ..EmulatorConfig::default() };
    let emu = start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let token = token(&emu).await;
    let claims = decode_token(&token, &emu.token_secret()).unwrap();
    assert_eq!((claims.feature_set.as_str(), claims.server_version.as_str()), ("basic", OSS_SERVER_VERSION));

    emu.set_routes(json!([{"name": "demo", "type": "path", "enabled": true}]));
    // Unknown before authentication, like every endpoint the server lacks.
    for token in [Some(token.as_str()), None] {
        let (status, body) = call(&emu, "routers.get_routes", token, json!({"name": "^demo$"})).await;
        assert_eq!((status, codes(&body)), (404, (404, 0)), "{body}");
        assert_eq!(
            body["meta"]["result_msg"],
            "Unable to find endpoint for name routers.get_routes and version 2.23"
        );
    }
    let (status, _) = call(&emu, "tasks.get_all", Some(&token), json!({})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn unknown_endpoints_and_routes() {
    let emu = emulator().await;
    let token = token(&emu).await;
    let (status, body) = call(&emu, "tasks.frobnicate", Some(&token), json!({})).await;
    assert_eq!((status, codes(&body)), (404, (404, 0)));
    assert_eq!(
        body["meta"]["result_msg"],
        "Unable to find endpoint for name tasks.frobnicate and version 2.23"
    );
    assert_eq!(body["meta"]["endpoint"]["name"], "tasks.frobnicate");

    emu.set_routes(json!([
        {"name": "demo", "type": "subdomain", "enabled": true, "status": "active", "load_balancer": {"enabled": true}},
        {"name": "demo2", "type": "path", "enabled": false, "status": "inactive", "load_balancer": {"enabled": false}},
    ]));
    let (_, body) = call(&emu, "routers.get_routes", Some(&token), json!({"name": "^demo$"})).await;
    assert_eq!(body["data"]["routes"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"]["routes"][0]["type"], "subdomain");
}

#[tokio::test]
async fn faults_apply_once_and_stats_count() {
    let emu = emulator().await;
    let token = token(&emu).await;
    emu.reset_stats();
    emu.inject_faults(vec![
        Fault::Status { code: 401, subcode: 30, endpoint: Some("users.get_current_user".into()) },
        Fault::GarbageBody { endpoint: Some("tasks.get_all".into()) },
        Fault::Delay { duration: Duration::from_millis(200), endpoint: None },
    ]);
    let (_, body) = call(&emu, "users.get_current_user", Some(&token), json!({})).await;
    assert_eq!(codes(&body), (401, 30));

    let response = reqwest::Client::new()
        .post(format!("{}/v2.23/tasks.get_all", emu.url()))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(serde_json::from_str::<Value>(&response.text().await.unwrap()).is_err());

    let started = std::time::Instant::now();
    let (status, _) = call(&emu, "users.get_current_user", Some(&token), json!({})).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));

    let stats = emu.stats();
    assert_eq!(stats.calls("users.get_current_user"), 2);
    assert_eq!(stats.calls("tasks.get_all"), 1);
    assert_eq!(stats.total.calls, 3);
    assert!(stats.total.response_bytes > 0 && stats.total.request_bytes > 0);
}

#[tokio::test]
async fn outage_cuts_connections_but_not_the_admin_api() {
    let emu = emulator().await;
    let token = token(&emu).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v2.23/users.get_current_user", emu.url());
    assert!(client.post(&url).bearer_auth(&token).send().await.is_ok());

    let admin = format!("{}/_emulator/available", emu.url());
    let down = client.post(&admin).json(&json!({"up": false})).send().await.unwrap();
    assert_eq!(down.status(), 200);
    assert!(!emu.is_available());
    let err = client.post(&url).bearer_auth(&token).send().await.unwrap_err();
    assert!(err.is_request() || err.is_connect(), "{err:?}");

    let cut = emu.calls().into_iter().last().unwrap();
    assert_eq!((cut.endpoint.as_str(), cut.result_code), ("users.get_current_user", 0));

    client.post(&admin).json(&json!({"up": true})).send().await.unwrap();
    let response = client.post(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    emu.shutdown().await;
    assert!(reqwest::get(emu.url()).await.is_err());
}

#[tokio::test]
async fn admin_api_manages_tasks() {
    let emu = emulator().await;
    let client = reqwest::Client::new();
    let base = format!("{}/_emulator", emu.url());
    let created: Value = client
        .post(format!("{base}/tasks"))
        .json(&json!({"name": "from-admin", "runtime": {"a": 1, "b": 2}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(emu.task(id).unwrap()["status"], "in_progress");

    let runtime: Value = client
        .post(format!("{base}/tasks/{id}/runtime"))
        .json(&json!({"a": null, "c": 3}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(runtime, json!({"b": 2, "c": 3}));
    let status = client
        .post(format!("{base}/tasks/{id}/status"))
        .json(&json!({"status": "stopped"}))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    assert_eq!(emu.task(id).unwrap()["status"], "stopped");

    let faults = client
        .post(format!("{base}/faults"))
        .json(&json!([{"type": "status", "code": 503, "endpoint": "auth.login"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(faults.status(), 200);
    let (status, _) = login(&emu, "emulator-access-key", "emulator-secret-key").await;
    assert_eq!(status, 503);

    let stats: Value = client.get(format!("{base}/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["per_endpoint"]["auth.login"]["calls"], 1);

    let deleted = client.delete(format!("{base}/tasks/{id}")).send().await.unwrap();
    assert_eq!(deleted.status(), 200);
    let missing = client.get(format!("{base}/tasks/{id}")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

#[test]
fn handle_is_shareable() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<EmulatorHandle>();
}
