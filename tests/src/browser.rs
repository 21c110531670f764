//! A real headless Chromium driven over the DevTools protocol, for the web console's tests.
//!
//! Chromium speaks CDP over a pipe (`--remote-debugging-pipe`: commands in on fd 3,
//! answers and events out on fd 4, each message JSON ended by a NUL), so no websocket
//! client and no debugging port are needed: a shell puts the child's stdin and stdout on
//! fds 3 and 4, and this module writes and reads JSON. One page, attached in flat mode.
//!
//! What the tests need and nothing more: navigate, evaluate, wait for a condition, take a
//! screenshot; every console error, uncaught exception and network request is recorded,
//! and JavaScript dialogs (the console's confirmations) are accepted.
//!
//! Chromium is required: [`Browser::launch`] panics when it is missing (a test that needs
//! it fails, never skips; `.ci/run` installs Debian's `chromium`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A headless Chromium with one page.
#[derive(Debug)]
pub struct Browser {
    child: Child,
    stdin: Arc<tokio::sync::Mutex<ChildStdin>>,
    pending: Pending,
    next: Arc<AtomicU64>,
    session: String,
    /// Every event received, in order.
    events: Arc<Mutex<Vec<Value>>>,
    _profile: tempfile::TempDir,
}

/// The Chromium binary: `SLUICE_CHROMIUM`, else Debian's `chromium`.
pub fn chromium() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_CHROMIUM") {
        return p.into();
    }
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("Chromium is required for the console tests: apt-get install chromium (or set SLUICE_CHROMIUM)");
}

async fn send_raw(stdin: &tokio::sync::Mutex<ChildStdin>, msg: &Value) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(msg).expect("json");
    bytes.push(0);
    let mut w = stdin.lock().await;
    w.write_all(&bytes).await?;
    w.flush().await
}

impl Browser {
    /// Starts Chromium (headless, a fresh profile, only loopback reachable, the project's
    /// self-signed certificates accepted) and opens a blank page.
    pub async fn launch() -> Self {
        let profile = tempfile::tempdir().expect("a profile dir");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2"#)
            .arg(chromium())
            .args([
                "--headless=new",
                "--remote-debugging-pipe",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-default-apps",
                "--ignore-certificate-errors",
                "--window-size=1280,900",
                // Nothing but loopback resolves.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium");
        let stdin = Arc::new(tokio::sync::Mutex::new(child.stdin.take().expect("stdin")));
        let stdout = child.stdout.take().expect("stdout");
        let pending: Pending = Arc::default();
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let next = Arc::new(AtomicU64::new(1_000_000));
        {
            let (pending, events, stdin, next) =
                (pending.clone(), events.clone(), stdin.clone(), next.clone());
            tokio::spawn(async move {
                let mut r = BufReader::new(stdout);
                let mut buf = Vec::new();
                while r.read_until(0, &mut buf).await.unwrap_or(0) > 0 {
                    buf.pop_if(|b| *b == 0);
                    let Ok(msg) = serde_json::from_slice::<Value>(&buf) else {
                        buf.clear();
                        continue;
                    };
                    buf.clear();
                    if let Some(id) = msg["id"].as_u64() {
                        if let Some(tx) = pending.lock().unwrap().remove(&id) {
                            let _ = tx.send(msg);
                        }
                        continue;
                    }
                    if msg["method"] == "Page.javascriptDialogOpening" {
                        let id = next.fetch_add(1, Ordering::SeqCst);
                        let accept = json!({"id": id, "sessionId": msg["sessionId"],
                            "method": "Page.handleJavaScriptDialog", "params": {"accept": true}});
                        let _ = send_raw(&stdin, &accept).await;
                    }
                    events.lock().unwrap().push(msg);
                }
            });
        }
        let mut b = Self {
            child,
            stdin,
            pending,
            next,
            session: String::new(),
            events,
            _profile: profile,
        };
        let target = b
            .call_browser("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let target_id = target["targetId"].as_str().expect("a target").to_string();
        let attached = b
            .call_browser(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await;
        b.session = attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_string();
        for domain in [
            "Page.enable",
            "Runtime.enable",
            "Network.enable",
            "Log.enable",
        ] {
            b.call(domain, json!({})).await;
        }
        b
    }

    async fn exchange(&self, mut msg: Value) -> Value {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        msg["id"] = json!(id);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        send_raw(&self.stdin, &msg).await.expect("chromium's pipe");
        let answer = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .unwrap_or_else(|_| panic!("chromium did not answer {}", msg["method"]))
            .expect("chromium exited");
        if let Some(e) = answer.get("error") {
            panic!("{} failed: {e}", msg["method"]);
        }
        answer["result"].clone()
    }

    async fn call_browser(&self, method: &str, params: Value) -> Value {
        self.exchange(json!({"method": method, "params": params}))
            .await
    }

    /// Sends a command to the page and returns its result.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.exchange(json!({"method": method, "params": params, "sessionId": self.session}))
            .await
    }

    /// Evaluates `expr` in the page (awaiting a promise) and returns its value.
    pub async fn eval(&self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expr}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Opens `url` and waits until the page has loaded.
    pub async fn goto(&self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for(
            &format!("location.href.startsWith({url:?}) && document.readyState === 'complete'"),
            Duration::from_secs(20),
        )
        .await;
    }

    /// Polls `expr` until it is truthy (panics after `patience`).
    pub async fn wait_for(&self, expr: &str, patience: Duration) {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let v = self
                .call(
                    "Runtime.evaluate",
                    json!({"expression": expr, "returnByValue": true}),
                )
                .await;
            let ok = match &v["result"]["value"] {
                Value::Bool(b) => *b,
                Value::Null => false,
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if ok {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let url = self.eval("location.href").await;
                panic!("waited {patience:?} for `{expr}` on {url}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The page's HTML as the browser holds it now.
    pub async fn html(&self) -> String {
        self.eval("document.documentElement.outerHTML")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Writes a full-page PNG screenshot to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let r = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = decode_base64(r["data"].as_str().expect("image data"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("artefact dir");
        }
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// Console errors, uncaught exceptions and error log entries (CSP violations, failed
    /// loads) seen so far.
    pub fn errors(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e["method"].as_str()? {
                "Runtime.consoleAPICalled" if e["params"]["type"] == "error" => {
                    Some(e["params"]["args"].to_string())
                }
                "Runtime.exceptionThrown" => Some(e["params"]["exceptionDetails"].to_string()),
                "Log.entryAdded" if e["params"]["entry"]["level"] == "error" => {
                    Some(e["params"]["entry"].to_string())
                }
                _ => None,
            })
            .collect()
    }

    /// The URL of every request the page made so far.
    pub fn requests(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .filter_map(|e| e["params"]["request"]["url"].as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Standard base64 (the screenshots), padding optional.
fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes() {
        assert_eq!(super::decode_base64("aGVsbG8gd29ybGQ="), b"hello world");
        assert_eq!(super::decode_base64("YQ"), b"a");
    }
}
