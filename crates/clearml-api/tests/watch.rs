//! `TaskWatch` against the ClearML emulator (which filters `last_update` and caps pages like the
//! real server): after one full poll, a steady-state poll fetches only what changed.

use std::time::Duration;

use clearml_api::{ClearmlClient, Credentials, TaskQuery, TaskWatch};
use clearml_emulator::{EmulatorConfig, EmulatorHandle, NewTask};
use gateway_core::secret::Secret;
use serde_json::{json, Value};

async fn emulator_and_client() -> (EmulatorHandle, ClearmlClient) {
    let config = EmulatorConfig::default();
    let emulator = clearml_emulator::start(config.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let credentials = Credentials {
        access_key: Secret::new(config.access_key),
        secret_key: Secret::new(config.secret_key),
    };
    let client = ClearmlClient::new(&emulator.url(), credentials, Duration::from_secs(5), true).unwrap();
    (emulator, client)
}

fn endpoint_task(emulator: &EmulatorHandle, name: &str) -> String {
    emulator.create_task(NewTask {
        name: name.into(),
        status: "in_progress".into(),
        runtime: json!({"_SERVICE": "EXTERNAL", "_ADDRESS": "10.0.0.1", "_PORT": 8000}),
        system_tags: vec!["external_service".into()],
        ..NewTask::default()
    })
}

fn ids(tasks: &[Value]) -> Vec<String> {
    tasks.iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn steady_state_polls_fetch_only_changes_and_full_polls_catch_deletions() {
    let (emulator, client) = emulator_and_client().await;
    let mut created: Vec<String> = (0..700).map(|i| endpoint_task(&emulator, &format!("t{i}"))).collect();
    created.sort();
    let query = TaskQuery::default();
    // No look-back margin: the test's writes are ordered, so the watermark alone is exact.
    let mut watch = TaskWatch::new(5, Duration::ZERO);

    let first = watch.poll(&client, &query).await.unwrap();
    assert_eq!(ids(&first), created, "the full poll pages past the server's 500 cap");
    assert!(watch.last_cost().full);
    assert_eq!(watch.last_cost().tasks_fetched, 700);

    let steady = watch.poll(&client, &query).await.unwrap();
    assert_eq!(steady.len(), 700);
    assert!(!watch.last_cost().full);
    // Only tasks stamped at the newest `last_update` come back (`>=` the watermark).
    assert!(watch.last_cost().tasks_fetched < 10, "{:?}", watch.last_cost());

    // A new task, a stopped task and an edited one: the next change poll sees exactly these.
    let added = endpoint_task(&emulator, "new");
    emulator.set_status(&created[0], "stopped");
    emulator.merge_runtime(&created[1], json!({"_PORT": 9000}));
    let after = watch.poll(&client, &query).await.unwrap();
    assert!(!watch.last_cost().full);
    assert!(watch.last_cost().tasks_fetched <= 4, "{:?}", watch.last_cost());
    let after_ids = ids(&after);
    assert!(after_ids.contains(&added));
    assert!(!after_ids.contains(&created[0]), "a stopped task leaves at the next change poll");
    let edited = after.iter().find(|t| t["id"] == created[1].as_str()).unwrap();
    assert_eq!(edited["runtime"]["_PORT"], 9000);

    // A deleted task leaves no trace a change poll can see; the periodic full poll drops it.
    emulator.remove_task(&created[2]);
    let mut polls = 0;
    loop {
        let tasks = watch.poll(&client, &query).await.unwrap();
        polls += 1;
        if watch.last_cost().full {
            assert!(!ids(&tasks).contains(&created[2]));
            break;
        }
        assert!(polls < 5, "no full poll within resync_every polls");
    }
}

#[tokio::test]
async fn with_a_look_back_a_quiet_table_soon_costs_nothing_per_poll() {
    let (emulator, client) = emulator_and_client().await;
    for i in 0..50 {
        endpoint_task(&emulator, &format!("q{i}"));
    }
    let query = TaskQuery::default();
    let mut watch = TaskWatch::new(1_000, Duration::from_millis(200));
    assert_eq!(watch.poll(&client, &query).await.unwrap().len(), 50);
    // Right after the watermark moved, change polls look back and may fetch the newest tasks
    // again; once the look-back window has passed, a poll of the quiet table fetches nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let tasks = watch.poll(&client, &query).await.unwrap();
        assert_eq!(tasks.len(), 50);
        if watch.last_cost().tasks_fetched == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{:?}", watch.last_cost());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A change is still seen after that.
    let late = endpoint_task(&emulator, "late");
    let tasks = watch.poll(&client, &query).await.unwrap();
    assert_eq!(tasks.len(), 51);
    assert!(ids(&tasks).contains(&late));
    assert_eq!(watch.last_cost().tasks_fetched, 1);
}
