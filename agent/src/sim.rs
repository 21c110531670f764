//! Simulated agents: many agents in one process, for scale tests and benchmarks.
//!
//! Each is a whole agent ([`crate::build_with`]): its own name, its own certificate issued
//! from the project CA (so its own mTLS identity on both its API and its coordinator
//! client), its own sled store, API listener, registration and heartbeats, and its own
//! operation runners. Only the container engine differs: an in-memory daemon that has every
//! image ([`Engine::Memory`]), so a deploy runs the real runner through every stage without
//! Docker. Nothing else is faked; what a coordinator sees is a fleet of agents.
//!
//! `sluice-agent simulate --count 1000 --ca-cert ca.pem --ca-key ca.key --coordinator
//! 127.0.0.1:7400 --dir /tmp/fleet` runs them until SIGTERM.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sluice_common::tls::{Role, TlsFiles};
use tokio_util::sync::CancellationToken;

use crate::config::{AgentConfig, ConfigError};
use crate::engine::Engine;
use crate::runtime::fake::FakeRuntime;
use crate::{Running, StartError};

/// What fleet to run (also the arguments of `sluice-agent simulate`).
#[derive(Debug, Clone, clap::Args)]
pub struct Fleet {
    /// How many agents.
    #[arg(long)]
    pub count: usize,
    /// Their names are PREFIX-0001, PREFIX-0002, ...
    #[arg(long, default_value = "sim")]
    pub prefix: String,
    /// A coordinator API address (host:port) every agent registers with; repeat for each,
    /// in the order a real agent's config would list them.
    #[arg(long = "coordinator", required = true)]
    pub coordinators: Vec<String>,
    /// The project CA certificate (PEM): each agent's certificate is issued from it.
    #[arg(long)]
    pub ca_cert: PathBuf,
    /// The project CA key (PEM). Secret: read, never logged.
    #[arg(long)]
    pub ca_key: PathBuf,
    /// Where each agent keeps its certificate and store (DIR/NAME/); kept across runs, so
    /// a restarted fleet resumes its operations like real agents would.
    #[arg(long)]
    pub dir: PathBuf,
    /// Between heartbeats (the agent's heartbeat_interval).
    #[arg(long, default_value = "2s")]
    pub heartbeat_interval: String,
}

/// Why a fleet could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A certificate could not be issued.
    #[error("issuing a certificate: {0}")]
    Tls(#[from] sluice_common::tls::TlsError),
    /// The generated configuration was refused (a bad prefix or interval).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// An agent did not start.
    #[error("agent {name}: {source}")]
    Start {
        /// Which.
        name: String,
        /// Why.
        source: StartError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SimError + '_ {
    move |source| SimError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The name of agent `i` (from 1).
pub fn agent_name(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:04}")
}

/// The configuration of one simulated agent whose files are `files`.
pub fn config_text(fleet: &Fleet, name: &str, data_dir: &Path, files: &TlsFiles) -> String {
    let coordinators: Vec<String> = fleet
        .coordinators
        .iter()
        .map(|c| format!("{c:?}"))
        .collect();
    format!(
        "name = {name:?}\nlisten = \"127.0.0.1:0\"\ncoordinators = [{}]\ndata_dir = {:?}\n\
         heartbeat_interval = {:?}\nproxy_socket = {:?}\n\n[tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
        coordinators.join(", "),
        data_dir,
        fleet.heartbeat_interval,
        data_dir.join("no-proxy.sock"),
        files.ca,
        files.cert,
        files.key,
    )
}

/// Issues `name`'s certificate into `dir` unless one is there already.
fn certificate(dir: &Path, name: &str, ca_pem: &str, ca_key: &str) -> Result<TlsFiles, SimError> {
    let files = TlsFiles::in_dir(dir, name);
    if files.cert.exists() && files.key.exists() && files.ca.exists() {
        return Ok(files);
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let sans = ["127.0.0.1".to_string(), "localhost".to_string()];
    let issued = sluice_common::tls::issue(ca_pem, ca_key, Role::Agent, name, &sans, 30)?;
    let mut key = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&files.key)
        .map_err(io(&files.key))?;
    key.write_all(issued.key_pem.as_bytes())
        .map_err(io(&files.key))?;
    std::fs::write(&files.cert, issued.cert_pem).map_err(io(&files.cert))?;
    std::fs::write(&files.ca, ca_pem).map_err(io(&files.ca))?;
    Ok(files)
}

/// Starts every agent of `fleet` (each on its in-memory engine); `shutdown` stops them all.
pub async fn start(fleet: &Fleet, shutdown: &CancellationToken) -> Result<Vec<Running>, SimError> {
    let ca_pem = std::fs::read_to_string(&fleet.ca_cert).map_err(io(&fleet.ca_cert))?;
    let ca_key = std::fs::read_to_string(&fleet.ca_key).map_err(io(&fleet.ca_key))?;
    let mut running = Vec::with_capacity(fleet.count);
    for i in 1..=fleet.count {
        let name = agent_name(&fleet.prefix, i);
        let dir = fleet.dir.join(&name);
        let files = certificate(&dir.join("tls"), &name, &ca_pem, &ca_key)?;
        let config = AgentConfig::parse(&config_text(fleet, &name, &dir.join("data"), &files))?;
        let engine = Engine::Memory(FakeRuntime::open());
        let agent = crate::build_with(config, engine, shutdown.child_token())
            .await
            .map_err(|source| SimError::Start {
                name: name.clone(),
                source,
            })?;
        running.push(agent);
    }
    Ok(running)
}

/// Waits for every agent to shut down.
pub async fn wait(running: Vec<Running>) {
    futures_util::future::join_all(running.into_iter().map(Running::wait)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_config_is_a_valid_agent_config() {
        let fleet = Fleet {
            count: 2,
            prefix: "sim".into(),
            coordinators: vec!["127.0.0.1:7400".into(), "127.0.0.1:7401".into()],
            ca_cert: "/x/ca.pem".into(),
            ca_key: "/x/ca.key".into(),
            dir: "/x".into(),
            heartbeat_interval: "2s".into(),
        };
        let name = agent_name("sim", 7);
        assert_eq!(name, "sim-0007");
        let files = TlsFiles::in_dir(Path::new("/x/sim-0007/tls"), &name);
        let text = config_text(&fleet, &name, Path::new("/x/sim-0007/data"), &files);
        let c = AgentConfig::parse(&text).expect("valid");
        assert_eq!(c.name.as_str(), "sim-0007");
        assert_eq!(c.coordinators.len(), 2);
        assert_eq!(
            c.heartbeat_interval.get(),
            std::time::Duration::from_secs(2)
        );
        assert_eq!(c.listen.port(), 0);
    }
}
