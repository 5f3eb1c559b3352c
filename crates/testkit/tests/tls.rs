//! HTTPS through the real router binary and real nginx: certificates from a mounted folder (SNI,
//! a wildcard for subdomain routes, a custom-domain route with its own certificate, a broken file
//! refused while the previous certificate serves, a replaced file served after one reload), the
//! HTTP -> HTTPS redirect, and ACME against a real ACME server (Debian's `pebble`): issued,
//! served, renewed when a short-lived certificate nears its end, kept across a restart without a
//! new order, with external account binding and a custom-domain route.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::*;
use gateway_testkit::pki::Pki;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);

/// Replaces a file by rename, as an operator's tooling (or a Kubernetes secret update) does.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

/// An HTTPS client that trusts only `root` and sends every `hosts` name to 127.0.0.1.
fn tls_client(root: &[u8], hosts: &[&str]) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root).unwrap())
        .tls_info(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10));
    for host in hosts {
        builder = builder.resolve(host, "127.0.0.1:0".parse().unwrap());
    }
    builder.build().unwrap()
}

/// What a request answered, with the certificate the server presented.
struct Served {
    status: u16,
    body: String,
    cookies: Vec<String>,
    location: Option<String>,
    serial: String,
    names: Vec<String>,
    not_after: SystemTime,
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Served, String> {
    let response = client.get(url).send().await.map_err(|e| format!("{e:?}"))?;
    let der = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    let headers = response.headers().clone();
    let header_values = |name: &str| -> Vec<String> {
        headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
    };
    let (serial, names, not_after) = if der.is_empty() {
        (String::new(), vec![], SystemTime::UNIX_EPOCH)
    } else {
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let names = cert
            .subject_alternative_name()
            .unwrap()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let not_after =
            SystemTime::UNIX_EPOCH + Duration::from_secs(cert.validity().not_after.timestamp() as u64);
        (hex::encode(cert.tbs_certificate.raw_serial()), names, not_after)
    };
    Ok(Served {
        status: response.status().as_u16(),
        cookies: header_values("set-cookie"),
        location: header_values("location").pop(),
        body: response.text().await.unwrap_or_default(),
        serial,
        names,
        not_after,
    })
}

/// Polls `url` until `done` holds for its answer; panics with the last answer and the router log.
async fn wait_served(
    gw: &Gateway,
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    done: impl Fn(&Served) -> bool,
) -> Served {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = fetch(client, url).await;
        match last {
            Ok(served) if done(&served) => return served,
            _ if tokio::time::Instant::now() > deadline => {
                let last = last.map(|s| format!("{} serial {} {}", s.status, s.serial, s.body));
                panic!("{url} never answered as expected; last: {last:?}\nrouter log:\n{}", gw.router_log())
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The router's certificate list (`/api/status`), polled until `done` holds for it.
async fn wait_certificates(gw: &Gateway, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let status: Value = http_client().get(gw.status_url("/api/status")).fetch_json().await;
        let certs = status["certificates"].as_array().cloned().unwrap_or_default();
        if done(&certs) {
            return certs;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("certificates never as expected: {certs:#?}\nrouter log:\n{}", gw.router_log());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn serial_of(pem_file: &Path) -> String {
    let pem = std::fs::read(pem_file).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    hex::encode(pem.parse_x509().unwrap().tbs_certificate.raw_serial())
}

/// A gateway whose router has not started yet, reachable as `host` (ROUTER_URL), with HTTPS on a
/// port of its own and the static `routes`.
async fn gateway(host: &str, routes: Value, env: Vec<(&'static str, String)>) -> (Gateway, u16) {
    let https_port = free_port();
    let mut env = env;
    env.push(("ROUTER_HTTPS_PORT", https_port.to_string()));
    let mut gw = Gateway::start(Options { no_router: true, env, ..Default::default() }).await;
    gw.router_url = format!("http://{host}:{}", gw.http_port);
    let routes_path = gw.dir.path().join("static-routes.json");
    std::fs::write(&routes_path, routes.to_string()).unwrap();
    gw.extra_env.push(("ROUTER_STATIC_ROUTES_FILE".into(), routes_path.display().to_string()));
    (gw, https_port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificate_files_serve_routes_over_tls_with_sni_and_reload_when_they_change() {
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(&work.path().join("pki"));
    let certs = work.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    // The router's domain and its subdomains (wildcard), key beside the chain.
    pki.issue(&certs, "gw", &["DNS:gw.files.test", "DNS:*.gw.files.test"]);
    // A custom domain's own certificate, key inside the file.
    let (custom_crt, custom_key) = pki.issue(&pki.dir, "custom", &["DNS:app.custom.test"]);
    let custom_pem = [std::fs::read(&custom_crt).unwrap(), std::fs::read(&custom_key).unwrap()].concat();
    replace(&certs.join("custom.pem"), &custom_pem);

    let (a, b, c) = (sample_app("alpha").await, sample_app("beta").await, sample_app("gamma").await);
    let routes = json!({"routes": [
        {"name": "sub", "subdomain": "sub", "access": "public", "targets": [a.to_string()]},
        {"name": "custom", "host": "app.custom.test", "access": "public", "load_balanced": true,
         "targets": [b.to_string(), c.to_string()]},
    ]});
    let env = vec![
        ("ROUTER_TLS_CERTS_DIR", certs.display().to_string()),
        ("AUTH_SECURE_ENABLED", "true".to_owned()),
    ];
    let (mut gw, https) = gateway("gw.files.test", routes, env).await;
    gw.start_router();
    let client = tls_client(&pki.root(), &["gw.files.test", "sub.gw.files.test", "app.custom.test"]);

    // A task over HTTPS on the router's domain, with the router's certificate.
    let app = sample_app("task-app").await;
    let task = gw.http_task("tls-task", app);
    let endpoint = gw.wait_for_key(&task, "endpoint", T).await;
    assert_eq!(endpoint, format!("http://gw.files.test:{}/service/{task}/", gw.http_port));
    let url = format!("https://gw.files.test:{https}/service/{task}/x?y=1");
    let served = wait_served(&gw, &client, &url, T, |s| s.status == 200).await;
    let echo: Value = serde_json::from_str(&served.body).unwrap();
    assert_eq!(echo["app"], "task-app");
    assert_eq!(echo["uri"], "/x?y=1");
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
    assert_eq!(served.serial, serial_of(&certs.join("gw.crt")));
    assert_eq!(served.names, vec!["gw.files.test", "*.gw.files.test"]);
    // Plain HTTP still serves (no redirect unless asked for).
    let plain = http_client()
        .get(format!("http://127.0.0.1:{}/service/{task}/x", gw.http_port))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status().as_u16(), 200);

    // A subdomain route under the wildcard certificate.
    let sub = fetch(&client, &format!("https://sub.gw.files.test:{https}/hello")).await.unwrap();
    assert_eq!(sub.status, 200, "{}", sub.body);
    assert_eq!(serde_json::from_str::<Value>(&sub.body).unwrap()["app"], "alpha");
    assert_eq!(sub.serial, served.serial, "the wildcard certificate serves subdomain routes");

    // The custom-domain route with its own certificate (SNI), its affinity cookie `Secure`.
    let custom = fetch(&client, &format!("https://app.custom.test:{https}/p")).await.unwrap();
    assert_eq!(custom.status, 200, "{}", custom.body);
    let app_name = serde_json::from_str::<Value>(&custom.body).unwrap()["app"].as_str().unwrap().to_owned();
    assert!(app_name == "beta" || app_name == "gamma", "{app_name}");
    assert_eq!(custom.serial, serial_of(&custom_crt));
    assert_eq!(custom.names, vec!["app.custom.test"]);
    let affinity =
        custom.cookies.iter().find(|c| c.starts_with("clearml_affinity_")).expect("affinity cookie");
    assert!(affinity.contains("; Secure"), "{affinity}");

    // The status page lists each certificate with its domains and expiry.
    let listed = wait_certificates(&gw, T, |c| c.len() == 2).await;
    let custom_entry = listed.iter().find(|c| c["names"] == json!(["app.custom.test"])).unwrap();
    assert_eq!(custom_entry["source"], "file");
    assert_eq!(custom_entry["serial"], json!(custom.serial));
    assert!(matches!(custom_entry["days_left"].as_i64(), Some(0..=2)), "{custom_entry}");
    let page = http_client().get(gw.status_url("/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("app.custom.test") && page.contains("id=\"certificates\""), "{page}");

    // A broken file (its key is another certificate's) is refused, naming the file; the last good
    // certificate keeps serving.
    let (_, other_key) = pki.issue(&pki.dir, "other", &["DNS:other.test"]);
    let broken = [std::fs::read(&custom_crt).unwrap(), std::fs::read(&other_key).unwrap()].concat();
    let reloads = gw.nginx_reloads();
    replace(&certs.join("custom.pem"), &broken);
    let listed = wait_certificates(&gw, T, |certs| {
        certs.iter().any(|c| {
            c["error"].as_str().is_some_and(|e| e.contains("custom.pem") && e.contains("does not belong"))
        })
    })
    .await;
    assert!(listed.iter().any(|c| c["serial"] == json!(custom.serial)), "{listed:#?}");
    gw.wait_for_polls(3, T).await;
    let still = fetch(&client, &format!("https://app.custom.test:{https}/p")).await.unwrap();
    assert_eq!((still.status, still.serial.as_str()), (200, custom.serial.as_str()));
    assert_eq!(gw.nginx_reloads(), reloads, "a refused file changes nothing on the proxy");
    assert!(gw.router_log().contains("does not belong to the certificate"));

    // A replaced certificate (new key first, then the chain) is served after a reload.
    let fresh = pki.dir.join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let (new_crt, new_key) = pki.issue(&fresh, "gw", &["DNS:gw.files.test", "DNS:*.gw.files.test"]);
    replace(&certs.join("gw.key"), &std::fs::read(&new_key).unwrap());
    replace(&certs.join("gw.crt"), &std::fs::read(&new_crt).unwrap());
    let new_serial = serial_of(&new_crt);
    let renewed = wait_served(&gw, &client, &url, T, |s| s.serial == new_serial).await;
    assert_eq!(renewed.status, 200);
    assert!(gw.nginx_reloads() > reloads);
    // The replaced certificate's file is gone from the proxy's folder once the new one serves.
    let lua = gw.dir.path().join("lua");
    let cert_files = || {
        std::fs::read_dir(&lua)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("clearml_tls_"))
            .count()
    };
    let deadline = tokio::time::Instant::now() + T;
    while cert_files() != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} certificate files in {}",
            cert_files(),
            lua.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plain_http_redirects_to_https_when_asked() {
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(&work.path().join("pki"));
    let certs = work.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    pki.issue(&certs, "gw", &["DNS:gw.redirect.test"]);
    let env = vec![
        ("ROUTER_TLS_CERTS_DIR", certs.display().to_string()),
        ("ROUTER_HTTPS_REDIRECT", "true".to_owned()),
    ];
    let (mut gw, https) = gateway("gw.redirect.test", json!({"routes": []}), env).await;
    gw.start_router();
    let client = tls_client(&pki.root(), &["gw.redirect.test"]);
    let plain = format!("http://gw.redirect.test:{}/service/abc/x?q=1", gw.http_port);
    let redirect = wait_served(&gw, &client, &plain, T, |s| s.status == 301).await;
    assert_eq!(
        redirect.location.as_deref(),
        Some(format!("https://gw.redirect.test:{https}/service/abc/x?q=1").as_str())
    );
    // The HTTPS side serves the routes (an unknown task: the gateway's own 404 page, not a redirect).
    let secure =
        fetch(&client, &format!("https://gw.redirect.test:{https}/service/abc/x?q=1")).await.unwrap();
    assert_eq!(secure.status, 404, "{}", secure.body);
}

/// Debian's `pebble` ACME server (and `pebble-challtestsrv` as its DNS: every name is 127.0.0.1),
/// validating HTTP-01 on the gateway's plain port.
struct Pebble {
    _dns: gateway_testkit::process::ProcessGroup,
    _pebble: gateway_testkit::process::ProcessGroup,
    /// Trusts pebble's own listener (for the router: `ROUTER_ACME_CA_FILE`).
    pub listener_ca: PathBuf,
    pki_root: Vec<u8>,
}

const EAB_KID: &str = "kid-1";
const EAB_KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";

impl Pebble {
    /// The ACME side: listens on `ports` (ACME, management), fixed before the gateway starts so
    /// that the router's settings can name them.
    fn ports() -> (u16, u16) {
        (free_port(), free_port())
    }

    async fn start(
        dir: &Path,
        (acme, management): (u16, u16),
        http_port: u16,
        validity: Option<u64>,
        eab: bool,
    ) -> Pebble {
        let pki = Pki::new(&dir.join("pebble-pki"));
        let (crt, key) = pki.issue(&pki.dir, "listener", &["DNS:localhost", "IP:127.0.0.1"]);
        let dns = free_port();
        let dns_log = std::fs::File::create(dir.join("challtestsrv.log")).unwrap();
        let dns_server = spawn_helper(
            std::process::Command::new("pebble-challtestsrv")
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .args([
                    "-dns01",
                    &format!("127.0.0.1:{dns}"),
                    "-http01",
                    "",
                    "-https01",
                    "",
                    "-tlsalpn01",
                    "",
                ])
                .args(["-management", &format!("127.0.0.1:{}", free_port())])
                .stdout(dns_log.try_clone().unwrap())
                .stderr(dns_log),
        );
        let mut config = json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": crt, "privateKey": key,
            "httpPort": http_port, "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": eab,
            "externalAccountMACKeys": {EAB_KID: EAB_KEY},
        }});
        if let Some(seconds) = validity {
            config["pebble"]["certificateValidityPeriod"] = json!(seconds);
        }
        let config_path = dir.join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = std::fs::File::create(dir.join("pebble.log")).unwrap();
        let pebble = spawn_helper(
            std::process::Command::new("pebble")
                .arg("-config")
                .arg(&config_path)
                .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        );
        let client = tls_client(&pki.root(), &[]);
        let root_url = format!("https://127.0.0.1:{management}/roots/0");
        let deadline = tokio::time::Instant::now() + T;
        let pki_root = loop {
            match client.get(&root_url).send().await {
                Ok(r) if r.status().is_success() => break r.bytes().await.unwrap().to_vec(),
                _ if tokio::time::Instant::now() > deadline => {
                    panic!(
                        "pebble did not start: {}",
                        std::fs::read_to_string(dir.join("pebble.log")).unwrap_or_default()
                    )
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Pebble { _dns: dns_server, _pebble: pebble, listener_ca: pki.ca_crt.clone(), pki_root }
    }

    /// The root that signs the certificates pebble issues (new on every start).
    fn issuing_root(&self) -> &[u8] {
        &self.pki_root
    }
}

fn acme_env(ports: (u16, u16), ca: &Path, state: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("ROUTER_ACME_ENABLED", "true".into()),
        ("ROUTER_ACME_DIRECTORY_URL", format!("https://127.0.0.1:{}/dir", ports.0)),
        ("ROUTER_ACME_CA_FILE", ca.display().to_string()),
        ("ROUTER_ACME_STATE_DIR", state.display().to_string()),
        ("ROUTER_ACME_EMAIL", "ops@example.com".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acme_issues_serves_and_renews_a_short_lived_certificate() {
    let work = tempfile::tempdir().unwrap();
    let ports = Pebble::ports();
    // The listener CA is made by the pebble start below at this path, before the router starts.
    let ca = work.path().join("pebble-pki").join("ca.crt");
    let state = work.path().join("acme-state");
    let (mut gw, https) = gateway("gw.acme.test", json!({"routes": []}), acme_env(ports, &ca, &state)).await;
    // 20 s certificates: renewal is due when less than a third of the lifetime is left.
    let pebble = Pebble::start(work.path(), ports, gw.http_port, Some(20), false).await;
    assert_eq!(pebble.listener_ca, ca);
    gw.start_router();
    let client = tls_client(pebble.issuing_root(), &["gw.acme.test"]);
    let app = sample_app("acme-app").await;
    let task = gw.http_task("acme-app", app);
    gw.wait_for_key(&task, "endpoint", T).await;
    let url = format!("https://gw.acme.test:{https}/service/{task}/x");
    let first = wait_served(&gw, &client, &url, Duration::from_secs(60), |s| s.status == 200).await;
    assert_eq!(serde_json::from_str::<Value>(&first.body).unwrap()["app"], "acme-app");
    assert_eq!(first.names, vec!["gw.acme.test"]);
    let left = first.not_after.duration_since(SystemTime::now()).unwrap_or_default();
    assert!(left <= Duration::from_secs(21), "a short-lived certificate: {left:?} left");
    let listed = wait_certificates(&gw, T, |c| {
        c.iter().any(|c| c["source"] == "acme" && c["serial"] == json!(first.serial))
    })
    .await;
    assert_eq!(listed[0]["names"], json!(["gw.acme.test"]));
    // The account and the certificate are kept in the state folder.
    let accounts = std::fs::read_dir(&state).unwrap().filter_map(Result::ok);
    let accounts: Vec<String> = accounts.map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(accounts.iter().any(|n| n.starts_with("account-") && n.ends_with(".json")), "{accounts:?}");
    assert!(state.join("certs/gw.acme.test.pem").is_file());

    // Renewed before it expires: another serial, served without a failed request in between.
    let renewed = wait_served(&gw, &client, &url, Duration::from_secs(40), |s| {
        s.serial != first.serial && s.status == 200
    })
    .await;
    assert!(renewed.not_after > first.not_after);
    assert!(gw.router_log().contains("renewal=true"), "the second order is a renewal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acme_certificates_survive_a_restart_and_custom_domains_get_their_own() {
    let work = tempfile::tempdir().unwrap();
    let ports = Pebble::ports();
    let ca = work.path().join("pebble-pki").join("ca.crt");
    let state = work.path().join("acme-state");
    let target = sample_app("custom-acme").await;
    let routes = json!({"routes": [
        {"name": "shop", "host": "shop.custom.test", "access": "public", "targets": [target.to_string()]},
    ]});
    let mut env = acme_env(ports, &ca, &state);
    // The CA requires external account binding (as ZeroSSL, Google and most enterprise CAs do).
    env.push(("ROUTER_ACME_EAB_KID", EAB_KID.into()));
    env.push(("ROUTER_ACME_EAB_HMAC_KEY", EAB_KEY.into()));
    let (mut gw, https) = gateway("gw.acme.test", routes, env).await;
    let pebble = Pebble::start(work.path(), ports, gw.http_port, None, true).await;
    gw.start_router();
    let client = tls_client(pebble.issuing_root(), &["gw.acme.test", "shop.custom.test"]);

    let shop_url = format!("https://shop.custom.test:{https}/hi");
    let shop = wait_served(&gw, &client, &shop_url, Duration::from_secs(60), |s| s.status == 200).await;
    assert_eq!(serde_json::from_str::<Value>(&shop.body).unwrap()["app"], "custom-acme");
    assert_eq!(shop.names, vec!["shop.custom.test"]);
    let gw_url = format!("https://gw.acme.test:{https}/service/none/");
    let own =
        wait_served(&gw, &client, &gw_url, Duration::from_secs(60), |s| s.names == ["gw.acme.test"]).await;
    assert_ne!(own.serial, shop.serial, "each domain has its own certificate");
    let orders = |gw: &Gateway| gw.router_log().matches("ordering a certificate over ACME").count();
    assert_eq!(orders(&gw), 2);

    // A restart serves what the state folder holds and orders nothing.
    gw.stop_router().await;
    gw.start_router();
    gw.wait_for_status(&gw.status_url("/readyz"), 200, T).await;
    gw.wait_for_polls(3, T).await;
    wait_certificates(&gw, T, |c| {
        c.len() == 2 && c.iter().all(|c| c["source"] == "acme" && c["error"].is_null())
    })
    .await;
    let again = fetch(&client, &shop_url).await.unwrap();
    assert_eq!((again.status, again.serial.as_str()), (200, shop.serial.as_str()));
    let own_again = fetch(&client, &gw_url).await.unwrap();
    assert_eq!(own_again.serial, own.serial);
    assert_eq!(orders(&gw), 2, "no new order after the restart");
}

#[test]
fn config_dry_run_renders_and_validates_the_https_servers_without_writing_keys() {
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(&work.path().join("pki"));
    let certs = work.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    pki.issue(&certs, "gw", &["DNS:gw.dry.test"]);
    std::fs::write(certs.join("broken.pem"), "not a certificate").unwrap();
    let snapshot = work.path().join("snapshot.json");
    std::fs::write(&snapshot, r#"{"tasks": []}"#).unwrap();
    let out = work.path().join("out");
    let mut cmd = std::process::Command::new(gateway_testkit::paths::router_bin());
    cmd.arg("config-dry-run")
        .arg("--snapshot")
        .arg(&snapshot)
        .arg("--out")
        .arg(&out)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ROUTER_LUA_DIR", work.path().join("lua"))
        .env("ROUTER_URL", "http://gw.dry.test:8080")
        .env("ROUTER_HTTPS_PORT", "8443")
        .env("ROUTER_TLS_CERTS_DIR", &certs)
        .env("AUTH_ENABLED", "false");
    for var in ["ROUTER_NGINX_MODULES_INCLUDE", "ROUTER_NGINX_BIN", "ROUTER_LUAJIT_BIN"] {
        if let Ok(v) = std::env::var(var) {
            cmd.env(var, v);
        }
    }
    let output = cmd.output().expect("the router binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}\n{}", String::from_utf8_lossy(&output.stdout));
    assert!(stderr.contains("broken.pem: holds no CERTIFICATE block"), "{stderr}");
    let conf = std::fs::read_to_string(out.join("conf.d/clearml-router.conf")).unwrap();
    assert!(
        conf.contains("listen 8443 ssl default_server;") && conf.contains("server_name gw.dry.test;"),
        "{conf}"
    );
    let keys: Vec<_> = std::fs::read_dir(out.join("lua"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("clearml_tls_"))
        .collect();
    assert!(keys.is_empty(), "the dry run writes no private key: {keys:?}");
}
