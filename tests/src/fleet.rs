//! `sluice-agent simulate`: a fleet of simulated agents in one process (whole agents over
//! an in-memory engine), for the fleet test and the 1,000-agent bench.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::agent::agent_bin;

/// The fleet's process; killed on drop.
#[derive(Debug)]
pub struct SimFleet(Child);

impl SimFleet {
    /// Spawns `count` agents named `PREFIX-0001`… that register with `coordinators`, their
    /// certificates issued from `ca` (certificate and key files), their files under
    /// `dir/fleet` (kept, so a fleet spawned again over `dir` comes back as the same agents),
    /// warnings and errors appended to `dir/fleet.log`.
    pub fn spawn(
        coordinators: &[String],
        ca: &(PathBuf, PathBuf),
        dir: &Path,
        count: usize,
        prefix: &str,
        heartbeat: &str,
    ) -> Self {
        let mut cmd = Command::new(agent_bin());
        cmd.args([
            "simulate",
            "--count",
            &count.to_string(),
            "--prefix",
            prefix,
        ])
        .args(["--heartbeat-interval", heartbeat])
        .arg("--ca-cert")
        .arg(&ca.0)
        .arg("--ca-key")
        .arg(&ca.1)
        .arg("--dir")
        .arg(dir.join("fleet"));
        for c in coordinators {
            cmd.args(["--coordinator", c]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("fleet.log"))
            .expect("fleet log");
        Self(
            cmd.env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("sluice-agent simulate"),
        )
    }
}

impl Drop for SimFleet {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET /v1/servers` on the node at `base`, as JSON.
pub async fn servers(http: &reqwest::Client, base: &str) -> Result<Vec<Value>, String> {
    let r = http
        .get(format!("{base}/v1/servers"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let v: Value = r.json().await.map_err(|e| e.to_string())?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// How many of `servers` are marked up.
pub fn up(servers: &[Value]) -> usize {
    servers.iter().filter(|s| s["up"] == true).count()
}
