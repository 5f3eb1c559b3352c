//! The applier against the fake proxy: what it writes, when it reloads, and what it puts back.

use std::collections::BTreeMap;

use serde_json::Value;

use super::fakes::{self, files_below, http_task, tcp_task, FakeProxy, FakeValidator, Journal};
use super::{Applier, ApplyError, ApplyOutcome};
use gateway_core::model::TargetPolicy;
use gateway_core::snapshot::Snapshot;
use gateway_core::table::RouteTable;
use gateway_core::task::RouterIdentity;
use gateway_core::tcp_ports::TcpPlan;

fn table(tasks: &[Value]) -> RouteTable {
    let snapshot = Snapshot { tasks: tasks.to_vec(), company: None };
    let policy = TargetPolicy {
        allow_loopback: false,
        proxy_ports: vec![8080],
        self_addresses: vec![],
        allowed_networks: vec![],
    };
    let tcp = TcpPlan {
        router_address: Some("gw.example.com".into()),
        first_port: 10000,
        last_port: 10100,
        previous: BTreeMap::new(),
    };
    let me = RouterIdentity {
        name: Some("router"),
        url: Some("http://gw"),
        tcp_address: Some("gw.example.com"),
        tcp_ports: None,
    };
    RouteTable::build_with(&snapshot, &policy, &tcp, &me)
}

struct Bench {
    dir: tempfile::TempDir,
    journal: Journal,
    applier: Applier<FakeProxy, FakeProxy>,
    proxy: FakeProxy,
    validator: FakeValidator,
}

impl Bench {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::default();
        let (applier, proxy, validator) = fakes::applier(dir.path(), &journal);
        Self { dir, journal, applier, proxy, validator }
    }

    /// Applies `tasks`' table and returns the outcome with what the fakes were asked.
    async fn apply(&mut self, tasks: &[Value]) -> (Result<ApplyOutcome, ApplyError>, Vec<String>) {
        let result = self.applier.apply(&table(tasks)).await;
        (result, self.journal.take())
    }
}

#[tokio::test]
async fn first_apply_validates_reloads_and_confirms_the_hashes() {
    let mut b = Bench::new();
    let (result, asked) = b.apply(&[http_task("t1")]).await;
    assert_eq!(result.unwrap(), ApplyOutcome::ConfigApplied { reloaded: true });
    assert_eq!(asked, ["validate", "reload", "proxy loads 1 routes"]);
    let good = b.applier.last_good().unwrap();
    let serving = b.proxy.serving();
    assert_eq!(
        (serving.config_hash.as_str(), serving.routes_version.as_str()),
        (&*good.config_hash, &*good.routes_version)
    );
    assert_eq!(b.applier.reloads(), 1);
}

#[tokio::test]
async fn same_table_is_unchanged_and_a_new_http_route_needs_no_reload() {
    let mut b = Bench::new();
    b.apply(&[http_task("t1")]).await.0.unwrap();
    let (result, asked) = b.apply(&[http_task("t1")]).await;
    assert_eq!(result.unwrap(), ApplyOutcome::Unchanged);
    assert!(asked.is_empty(), "{asked:?}");
    let (result, asked) = b.apply(&[http_task("t1"), http_task("t2")]).await;
    assert_eq!(result.unwrap(), ApplyOutcome::RoutesUpdated);
    assert_eq!(asked, ["proxy loads 2 routes"]);
    assert_eq!(b.applier.reloads(), 1);
}

#[tokio::test]
async fn files_changed_behind_the_router_are_written_again() {
    let mut b = Bench::new();
    b.apply(&[http_task("t1")]).await.0.unwrap();
    let applied = files_below(b.dir.path());
    let conf = b.dir.path().join("conf.d").join(gateway_render::CONF_FILE);
    std::fs::write(&conf, "# edited by hand\n").unwrap();
    let (result, asked) = b.apply(&[http_task("t1")]).await;
    // The proxy still serves the confirmed hash: the files are put back without a reload.
    assert_eq!(result.unwrap(), ApplyOutcome::ConfigApplied { reloaded: false });
    assert_eq!(asked, ["validate", "proxy loads 1 routes"]);
    assert_eq!(files_below(b.dir.path()), applied);
}

#[tokio::test]
async fn a_proxy_serving_another_config_gets_the_current_one_again() {
    let mut b = Bench::new();
    b.apply(&[http_task("t1")]).await.0.unwrap();
    b.proxy.set(|s| s.serving.config_hash = "restarted-with-something-else".into());
    let (result, asked) = b.apply(&[http_task("t1")]).await;
    assert_eq!(result.unwrap(), ApplyOutcome::ConfigApplied { reloaded: true });
    assert_eq!(asked, ["reload", "proxy loads 1 routes"]);
    assert_eq!(b.proxy.serving().config_hash, b.applier.last_good().unwrap().config_hash);
}

/// A settings change the proxy must reload for (task data, TCP endpoints included, never is).
fn structural_change(b: &mut Bench) {
    b.applier.layout.upstream.keepalive += 1;
}

#[tokio::test]
async fn a_tcp_endpoint_is_data_applied_without_a_reload() {
    let mut b = Bench::new();
    b.apply(&[http_task("t1")]).await.0.unwrap();
    let (result, asked) = b.apply(&[http_task("t1"), tcp_task("t2")]).await;
    assert_eq!(result.unwrap(), ApplyOutcome::RoutesUpdated);
    assert_eq!(asked, ["proxy loads 1 routes"]);
}

#[tokio::test]
async fn an_unconfirmed_config_is_replaced_by_the_previous_files() {
    let mut b = Bench::new();
    b.apply(&[http_task("t1")]).await.0.unwrap();
    let applied = files_below(b.dir.path());
    let good = b.applier.last_good().cloned();
    b.proxy.set(|s| s.takes_reloads = false);
    structural_change(&mut b);
    let (result, asked) = b.apply(&[http_task("t1"), tcp_task("t2")]).await;
    assert!(matches!(result, Err(ApplyError::NotConfirmed(_))), "{result:?}");
    // One reload for the new files, one for the restored ones.
    assert_eq!(asked, ["validate", "reload", "reload"]);
    assert_eq!(files_below(b.dir.path()), applied);
    assert_eq!(b.applier.last_good().cloned(), good, "the confirmed render is still the last good one");
    // Once the proxy takes reloads again, the next apply gets through.
    b.proxy.set(|s| s.takes_reloads = true);
    let (result, _) = b.apply(&[http_task("t1"), tcp_task("t2")]).await;
    assert_eq!(result.unwrap(), ApplyOutcome::ConfigApplied { reloaded: true });
}

#[tokio::test]
async fn an_invalid_config_touches_no_file() {
    let mut b = Bench::new();
    b.apply(&[http_task("t1")]).await.0.unwrap();
    let applied = files_below(b.dir.path());
    *b.validator.refuse.lock().unwrap() = Some("unknown directive".into());
    structural_change(&mut b);
    let (result, asked) = b.apply(&[http_task("t1"), tcp_task("t2")]).await;
    assert!(
        matches!(&result, Err(ApplyError::Invalid(why)) if why.contains("unknown directive")),
        "{result:?}"
    );
    assert_eq!(asked, ["validate"]);
    assert_eq!(files_below(b.dir.path()), applied);
}

#[tokio::test]
async fn a_proxy_that_is_down_keeps_the_validated_files_for_its_start() {
    let mut b = Bench::new();
    b.proxy.set(|s| s.up = false);
    let (result, asked) = b.apply(&[http_task("t1")]).await;
    assert!(matches!(result, Err(ApplyError::ProxyDown(_))), "{result:?}");
    assert_eq!(asked, ["validate", "reload"]);
    let routes = b.dir.path().join("lua").join(gateway_render::ROUTES_FILE);
    assert!(std::fs::read_to_string(routes).unwrap().contains("10.0.0.5"));
    assert!(b.applier.last_good().is_none());
}
