//! Real `sluice-agent` processes for cross-crate tests: spawn with a generated config,
//! learn the bound address from the agent's JSON log, `kill -9`, restart on the same data.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use sluice_common::tls::Role;

use crate::cluster::Placement;
use crate::eventually::patience;
use crate::pki::{self, Pki};

/// The `sluice-agent` binary: `$SLUICE_AGENT_BIN`, else next to the running test's
/// target directory (`cargo test --workspace` builds it for the agent's own tests).
pub fn agent_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_AGENT_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/sluice-agent
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("sluice-agent"))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p sluice-agent` (or `cargo test --workspace`), or set SLUICE_AGENT_BIN",
        bin.display()
    );
    bin
}

/// Starts `sluice-agent --config CONFIG --log-format json`, hands every log line (standard
/// error) to `sink`, and
/// returns once the agent has announced the address it listens on.
pub fn spawn_agent(config: &Path, sink: impl FnMut(&str) + Send + 'static) -> (Child, String) {
    spawn_agent_at(&Placement::default(), config, sink)
}

/// [`spawn_agent`] through `placement`'s command prefix (e.g. inside a network namespace).
pub fn spawn_agent_at(
    placement: &Placement,
    config: &Path,
    mut sink: impl FnMut(&str) + Send + 'static,
) -> (Child, String) {
    use std::os::unix::process::CommandExt;
    let mut child = placement
        .command(&agent_bin())
        .arg("--config")
        .arg(config)
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info,sluice_agent=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn sluice-agent");
    // Logs go to standard error, like the coordinator's.
    let stdout = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["fields"]["message"] == "agent listening" {
                    let _ = tx.send(v["fields"]["addr"].as_str().unwrap_or("").to_string());
                }
            }
            sink(&line);
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20).mul_f64(patience()))
        .expect("the agent announces its address");
    (child, addr)
}

/// One agent process.
#[derive(Debug)]
pub struct AgentProc {
    /// Its server name.
    pub name: String,
    /// Where its API listens (known once started).
    pub addr: String,
    /// The host's `sluice-proxy` (its own process: it outlives the agent's restarts).
    pub proxy: crate::proxy::ProxyProc,
    child: Option<Child>,
    placement: Placement,
    dir: tempfile::TempDir,
}

impl AgentProc {
    /// Starts agent `name` registering with `coordinators`, with `extra` TOML appended
    /// (before the `[tls]` table: a certificate for agent `name` from [`Pki::shared`]).
    pub fn start(name: &str, coordinators: &[String], port_range: &str, extra: &str) -> Self {
        Self::start_placed(name, coordinators, port_range, extra, Placement::default())
    }

    /// [`AgentProc::start`] at `placement`: it listens on `placement.ip` (port 0) and runs
    /// through its command prefix.
    pub fn start_placed(
        name: &str,
        coordinators: &[String],
        port_range: &str,
        extra: &str,
        placement: Placement,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Pki::shared().write_with_sans(
            &dir.path().join("tls"),
            Role::Agent,
            name,
            &placement.extra_sans(),
        );
        let coords: Vec<String> = coordinators.iter().map(|c| format!("{c:?}")).collect();
        let listen = format!("{}:0", placement.ip);
        let proxy = crate::proxy::ProxyProc::start(&dir.path().join("proxy"), &placement);
        let toml = format!(
            "name = {name:?}\nlisten = {listen:?}\ndata_dir = {:?}\nproxy_socket = {:?}\nport_range = {port_range:?}\ncoordinators = [{}]\nheartbeat_interval = \"1s\"\nstop_grace = \"5s\"\n{extra}\n{}",
            dir.path().join("data"),
            proxy.socket(),
            coords.join(", "),
            pki::tls_toml(&files),
        );
        std::fs::write(dir.path().join("agent.toml"), toml).expect("config");
        let mut a = Self {
            name: name.to_string(),
            addr: String::new(),
            proxy,
            child: None,
            placement,
            dir,
        };
        a.spawn();
        a
    }

    /// (Re)starts the process; returns once it has announced its address. A restart keeps
    /// the same data directory and, since the address is in the config after the first
    /// start, the same port.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "agent {} already running", self.name);
        let config = self.pinned_config();
        let log = self.dir.path().join("log");
        let (child, addr) = spawn_agent_at(&self.placement, &config, move |line| {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
            {
                let _ = writeln!(f, "{line}");
            }
        });
        self.addr = addr;
        self.child = Some(child);
    }

    /// The config file, listening on the address of the first start once there was one
    /// (so a restart, by [`AgentProc::spawn`] or by hand, keeps the same port).
    pub fn pinned_config(&self) -> std::path::PathBuf {
        let config = self.dir.path().join("agent.toml");
        if !self.addr.is_empty() {
            let text = std::fs::read_to_string(&config).expect("config");
            let text = text.replace(
                &format!("listen = \"{}:0\"", self.placement.ip),
                &format!("listen = {:?}", self.addr),
            );
            std::fs::write(&config, text).expect("config");
        }
        config
    }

    /// `kill -9`, waiting until the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The agent's directory (config, log, `tls/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The agent's log so far (JSON lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Removes every container labelled for `service` (test clean-up).
pub fn remove_containers(service: &str) {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=sluice.service={service}"),
        ])
        .output();
    if let Ok(out) = out {
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let mut args = vec!["rm".to_string(), "-f".to_string()];
            args.extend(ids);
            let _ = Command::new("docker").args(&args).output();
        }
    }
}
