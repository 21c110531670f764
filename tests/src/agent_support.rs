//! Support for the agent's own tests and bench: the real `sluice-agent` binary as a child
//! process with a generated config (spawned by [`crate::agent::spawn_agent`], as every
//! harness agent is), a coordinator-certified client, and the real Docker daemon through
//! its CLI.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use crate::eventually::eventually;
use serde_json::{json, Value};

pub use crate::cluster::free_port;

/// Runs the docker CLI; panics on failure (tests need Docker: they fail, never skip).
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI must be installed");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Ids of every container (running or not) labelled with `service`.
pub fn containers_of(service: &str) -> Vec<String> {
    let f = format!("label=sluice.service={service}");
    let mut ids: Vec<String> = docker(&["ps", "-aq", "--no-trunc", "--filter", &f])
        .lines()
        .map(String::from)
        .collect();
    ids.sort();
    ids
}

/// Removes every container labelled with one of `services`.
pub fn cleanup(services: &[&str]) {
    for s in services {
        let ids = containers_of(s);
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            docker(&args);
        }
    }
}

/// Removes the services' containers at the start (leftovers of an aborted run) and on drop.
#[derive(Debug)]
pub struct Cleanup(pub Vec<&'static str>);

impl Cleanup {
    pub fn new(services: &[&'static str]) -> Self {
        cleanup(services);
        Self(services.to_vec())
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        cleanup(&self.0);
    }
}

/// Builds the test images once per process.
pub fn images() {
    crate::testapp_image::ensure_test_images().expect("building the test images");
}

/// A running agent process.
#[derive(Debug)]
pub struct Agent {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub name: String,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub http: reqwest::Client,
}

/// A client as the coordinators are: a coordinator certificate from the shared test CA.
pub fn coordinator_client() -> reqwest::Client {
    crate::pki::Pki::shared().client_as(sluice_common::tls::Role::Coordinator, "node1")
}

/// The default config for a test agent named `name` (extra TOML appended, then `[tls]`
/// naming a certificate for agent `name` from the shared test CA, written into `dir/tls`).
pub fn config_text(name: &str, dir: &std::path::Path, extra: &str) -> String {
    let files =
        crate::pki::Pki::shared().write(&dir.join("tls"), sluice_common::tls::Role::Agent, name);
    let range = if extra.contains("port_range") {
        ""
    } else {
        "port_range = \"1024-65535\"\n"
    };
    format!(
        "name = \"{name}\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{range}stop_grace = \"5s\"\n{extra}\n{}",
        dir.join("data").display(),
        crate::pki::tls_toml(&files),
    )
}

impl Agent {
    /// Starts an agent named `name` with the default config plus `extra` TOML.
    pub async fn start(name: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("agent.toml");
        std::fs::write(&config, config_text(name, dir.path(), extra)).unwrap();
        let mut a = Self {
            child: None,
            addr: "0.0.0.0:0".parse().unwrap(),
            name: name.to_string(),
            dir,
            config,
            http: coordinator_client(),
        };
        a.spawn().await;
        a
    }

    /// (Re)spawns the process on the same config and data directory; waits until it answers.
    pub async fn spawn(&mut self) {
        let name = self.name.clone();
        let (child, addr) =
            crate::agent::spawn_agent(&self.config, move |line| eprintln!("[{name}] {line}"));
        self.addr = addr.parse().unwrap();
        self.child = Some(child);
        let url = self.url("/agent/v1/health");
        let http = self.http.clone();
        eventually("agent answers /health", Duration::from_secs(10), || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                http.get(&url)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{}", self.addr, path)
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        c.wait().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .put(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// PUTs a deploy; asserts it was accepted.
    pub async fn deploy(&self, id: &str, body: &Value) -> Value {
        let (s, v) = self.put(&format!("/agent/v1/operations/{id}"), body).await;
        assert!(s == 202 || s == 200, "deploy refused: {s} {v}");
        v
    }

    /// Long-polls an operation until it is final.
    pub async fn wait_final(&self, id: &str) -> Value {
        let path = format!("/agent/v1/operations/{id}?wait=5s");
        eventually(
            &format!("operation {id} to finish"),
            Duration::from_secs(90),
            || async {
                let (s, v) = self.get(&path).await;
                if s == 200 && v["state"] != "running" {
                    Ok(v)
                } else {
                    Err(format!("{s} {v}"))
                }
            },
        )
        .await
    }

    /// Deploys and waits for the outcome.
    pub async fn deploy_and_wait(&self, id: &str, body: &Value) -> Value {
        self.deploy(id, body).await;
        self.wait_final(id).await
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A deploy request for `service` running `image` on `host_port`, fenced with `token`,
/// checked by HTTP `/health` every 100 ms (30 failures tolerated: a loaded CI machine may be
/// slow to start containers; a broken version still fails within about 3 s).
pub fn deploy_body(service: &str, image: &str, host_port: u16, token: u64) -> Value {
    json!({
        "fence": {"key": format!("service/{service}"), "token": token},
        "service": service,
        "image": image,
        "container_port": 8080,
        "host_port": host_port,
        "env": {"SECRET_TOKEN": "hunter2"},
        "health": {"kind": "http", "path": "/health", "interval": "100ms", "timeout": "1s", "retries": 30}
    })
}

/// A fresh operation id.
pub fn op_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// GET http://127.0.0.1:{port}{path} on the deployed service; the body, trimmed.
pub async fn service_get(port: u16, path: &str) -> Result<String, String> {
    let r = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let ok = r.status().is_success();
    let body = r
        .text()
        .await
        .map_err(|e| e.to_string())?
        .trim()
        .to_string();
    if ok {
        Ok(body)
    } else {
        Err(body)
    }
}

/// Waits until the service answers `/version` with `version`.
pub async fn assert_serving(port: u16, version: &str) {
    eventually(
        &format!("port {port} to serve {version}"),
        Duration::from_secs(10),
        || async {
            match service_get(port, "/version").await {
                Ok(v) if v == version => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

/// The names of an operation's steps.
pub fn steps(op: &Value) -> Vec<String> {
    op["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

/// The test image `sluice-testapp:<tag>`.
pub fn image(tag: &str) -> String {
    crate::testapp_image::image(tag)
}

/// Convenience: a JSON object merge.
pub fn with(mut base: Value, extra: Value) -> Value {
    base.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    base
}
