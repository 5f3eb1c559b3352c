//! A small Chrome DevTools Protocol client for tests that click through a page in real headless
//! Chromium: evaluate JavaScript in the page, wait for DOM states with a deadline, take
//! screenshots, and accept `confirm()` dialogs (recording their text).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use gateway_testkit::process::ProcessGroup;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{chromium, free_port, http_client, spawn_helper, CHROMIUM_HEADLESS};

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

pub struct Browser {
    _process: ProcessGroup,
    _profile: tempfile::TempDir,
    outgoing: mpsc::UnboundedSender<String>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
    /// The text of every dialog the page opened (each was accepted).
    pub dialogs: Arc<Mutex<Vec<String>>>,
    /// Uncaught exceptions in the page.
    pub exceptions: Arc<Mutex<Vec<String>>>,
}

fn send(
    outgoing: &mpsc::UnboundedSender<String>,
    next_id: &AtomicU64,
    pending: Option<&Pending>,
    method: &str,
    params: Value,
) -> Option<oneshot::Receiver<Value>> {
    let id = next_id.fetch_add(1, Ordering::Relaxed);
    let receiver = pending.map(|p| {
        let (tx, rx) = oneshot::channel();
        p.lock().unwrap().insert(id, tx);
        rx
    });
    outgoing
        .send(json!({"id": id, "method": method, "params": params}).to_string())
        .expect("CDP writer alive");
    receiver
}

impl Browser {
    /// Starts headless Chromium with a debugging port and attaches to its page.
    pub async fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cmd = std::process::Command::new(chromium());
        cmd.args(CHROMIUM_HEADLESS)
            .args(["--window-size=1280,1400", "--hide-scrollbars"])
            .arg(format!("--remote-debugging-port={port}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let process = spawn_helper(&mut cmd);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let ws_url = loop {
            let targets = http_client().get(format!("http://127.0.0.1:{port}/json/list")).send().await;
            if let Ok(response) = targets {
                let list: Value = response.json().await.unwrap_or(Value::Null);
                let page = list.as_array().and_then(|l| l.iter().find(|t| t["type"] == "page").cloned());
                if let Some(url) = page.as_ref().and_then(|p| p["webSocketDebuggerUrl"].as_str()) {
                    break url.to_owned();
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Chromium's debugging port {port} never answered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (socket, _) = tokio_tungstenite::connect_async(&ws_url).await.expect("CDP websocket");
        let (mut sink, mut stream) = socket.split();
        let (outgoing, mut queue) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(text) = queue.recv().await {
                if sink.send(Message::Text(text)).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Default::default();
        let next_id = Arc::new(AtomicU64::new(1));
        let dialogs: Arc<Mutex<Vec<String>>> = Default::default();
        let exceptions: Arc<Mutex<Vec<String>>> = Default::default();
        {
            let (pending, dialogs, exceptions, outgoing, next_id) =
                (pending.clone(), dialogs.clone(), exceptions.clone(), outgoing.clone(), next_id.clone());
            tokio::spawn(async move {
                while let Some(Ok(message)) = stream.next().await {
                    let Message::Text(text) = message else { continue };
                    let Ok(value) = serde_json::from_str::<Value>(&text) else { continue };
                    if let Some(id) = value["id"].as_u64() {
                        if let Some(tx) = pending.lock().unwrap().remove(&id) {
                            let _ = tx.send(value);
                        }
                        continue;
                    }
                    match value["method"].as_str() {
                        Some("Page.javascriptDialogOpening") => {
                            dialogs
                                .lock()
                                .unwrap()
                                .push(value["params"]["message"].as_str().unwrap_or("").to_owned());
                            send(
                                &outgoing,
                                &next_id,
                                None,
                                "Page.handleJavaScriptDialog",
                                json!({"accept": true}),
                            );
                        }
                        Some("Runtime.exceptionThrown") => {
                            exceptions.lock().unwrap().push(value["params"]["exceptionDetails"].to_string());
                        }
                        _ => {}
                    }
                }
            });
        }
        let browser =
            Browser { _process: process, _profile: profile, outgoing, pending, next_id, dialogs, exceptions };
        browser.call("Page.enable", json!({})).await;
        browser.call("Runtime.enable", json!({})).await;
        browser
    }

    /// One CDP command; panics on a protocol error.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        let rx = send(&self.outgoing, &self.next_id, Some(&self.pending), method, params).unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .unwrap_or_else(|_| panic!("CDP {method} did not answer"))
            .expect("CDP reader alive");
        assert!(answer.get("error").is_none(), "CDP {method}: {answer}");
        answer["result"].clone()
    }

    /// Evaluates `expression` in the page (promises awaited) and returns its value.
    pub async fn eval(&self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(result.get("exceptionDetails").is_none(), "{expression}: {}", result["exceptionDetails"]);
        result["result"]["value"].clone()
    }

    /// Opens `url` and waits until the document and its deferred script have loaded.
    pub async fn open(&self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for("document.readyState === 'complete'", "the page loads").await;
    }

    /// Waits until `condition` (a JavaScript expression) is true in the page; returns the page's
    /// text when it is not within 20 s.
    pub async fn wait_for(&self, condition: &str, what: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            // Mid-navigation the document may be half there: an exception means "not yet".
            let probe =
                format!("(() => {{ try {{ return !!({condition}); }} catch (e) {{ return false; }} }})()");
            if self.eval(&probe).await == Value::Bool(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let text = self.eval("document.body ? document.body.innerText : ''").await;
                panic!(
                    "the page never showed: {what} ({condition})\npage text:\n{}",
                    text.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of the first element matching `selector` ("" when there is none).
    pub async fn text(&self, selector: &str) -> String {
        let expression = format!("(document.querySelector({selector:?}) || {{}}).textContent || ''");
        self.eval(&expression).await.as_str().unwrap_or("").to_owned()
    }

    /// Sets a form field's value as typing would.
    pub async fn fill(&self, selector: &str, value: &str) {
        let expression = format!(
            "(() => {{ const e = document.querySelector({selector:?}); e.value = {value:?}; \
             e.dispatchEvent(new Event('input', {{bubbles: true}})); return true; }})()"
        );
        assert_eq!(self.eval(&expression).await, Value::Bool(true), "{selector}");
    }

    /// Clicks the first element matching `selector`.
    pub async fn click(&self, selector: &str) {
        let expression =
            format!("(() => {{ const e = document.querySelector({selector:?}); if (!e) return false; e.click(); return true; }})()");
        assert_eq!(self.eval(&expression).await, Value::Bool(true), "nothing to click at {selector}");
    }

    /// A PNG of the page as it is now, written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true}))
            .await;
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot ({} bytes)", png.len());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}
