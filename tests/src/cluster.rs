//! Real coordinator processes on loopback (or wherever a [`Placement`] puts them): spawn,
//! kill -9, restart, and find the leader.
//!
//! Each node gets its own data directory, config file and certificate (role coordinator,
//! name `nodeN`, from [`Pki::shared`]) under one temp dir; processes run in their own process
//! group so killing one never touches its siblings, and every process is killed when its
//! handle drops. Every node also accepts the cluster's bootstrap admin token, which
//! [`Cluster::http`] sends by default.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sluice_common::client::{Client, ClientError};
use sluice_common::tls::Role;

use crate::eventually::eventually;
use crate::pki::{self, Pki};

mod api;
pub use api::{acquire_request, deployment_request, metric, refusal};

/// A free loopback port for a process a test starts. Taken above the kernel's ephemeral
/// range (`ip_local_port_range`, 32768–60999 by default), where no outgoing connection and
/// no port Docker publishes can take it between this check and the process's bind (asking
/// the OS for port 0 gave an ephemeral port, and a busy suite once lost that race:
/// "Address already in use"). Each call moves on to another port; processes start at
/// different offsets, and a port found bound is skipped.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 61000;
    const SPAN: u32 = 65535 - LOW;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() % 64) * (SPAN / 64),
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}-65535");
}

/// The cluster key file every node of a test cluster shares (`[secrets] key_file`), next
/// to the shared admin token; made (mode 0600) on first use.
fn shared_key_file(admin: &Path) -> PathBuf {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = admin.with_file_name("secrets.key");
    if !path.exists() {
        let key = format!(
            "k1 {}{}\n",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(key.as_bytes()))
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Ok(()),
                _ => Err(e),
            })
            .expect("secrets key file");
    }
    path
}

/// Where a harness process runs: the IP address it listens on, and a command prefix that
/// puts it there (`ip netns exec NS`, see [`crate::netns`]). The default is loopback with no
/// prefix. A non-loopback address is added to the process's certificate SANs, since its
/// peers dial it there.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The address to listen on (and advertise).
    pub ip: String,
    /// Prepended to the command line: `prefix[0]` is run with the rest, then the binary.
    pub prefix: Vec<String>,
}

impl Default for Placement {
    fn default() -> Self {
        Self {
            ip: "127.0.0.1".into(),
            prefix: Vec::new(),
        }
    }
}

impl Placement {
    /// The command that runs `bin` here.
    pub fn command(&self, bin: &Path) -> Command {
        match self.prefix.split_first() {
            None => Command::new(bin),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
        }
    }

    /// SANs the process's certificate needs besides loopback.
    pub fn extra_sans(&self) -> Vec<String> {
        if self.ip == "127.0.0.1" || self.ip == "localhost" {
            Vec::new()
        } else {
            vec![self.ip.clone()]
        }
    }
}

/// A bootstrap admin secret, unique enough for a test run.
fn admin_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("sluice_test_admin_{}_{nanos}", std::process::id())
}

/// Settings for generated coordinator configs.
#[derive(Debug, Clone)]
pub struct NodeOpts {
    /// `raft.snapshot_every`.
    pub snapshot_every: u64,
    /// `raft.logs_to_keep`.
    pub logs_to_keep: u64,
    /// `request_timeout`.
    pub request_timeout: &'static str,
    /// `agents.heartbeat_timeout`.
    pub agent_timeout: &'static str,
    /// `deploy.min_healthy`: the cluster's default watch period. The harness's default is
    /// `0s`, so that tests about something else do not each wait out the product's 10 s;
    /// tests of the watch set it (or the request's `min_healthy`).
    pub min_healthy: &'static str,
    /// More TOML tables appended to every node's config (e.g. a `[notify]` section).
    pub extra_toml: String,
}

impl Default for NodeOpts {
    fn default() -> Self {
        Self {
            snapshot_every: 5000,
            logs_to_keep: 500,
            request_timeout: "5s",
            agent_timeout: "10s",
            min_healthy: "0s",
            extra_toml: String::new(),
        }
    }
}

/// One coordinator process.
#[derive(Debug)]
pub struct Coordinator {
    /// Its node id.
    pub id: u64,
    /// Its address (`127.0.0.1:port`).
    pub addr: String,
    dir: PathBuf,
    bin: PathBuf,
    placement: Placement,
    child: Option<Child>,
}

impl Coordinator {
    fn config_path(&self) -> PathBuf {
        self.dir.join("coordinator.toml")
    }

    /// The node's TLS files (`ca.pem`, `nodeN.pem`, `nodeN.key` in `tls/`).
    pub fn tls_files(&self) -> sluice_common::tls::TlsFiles {
        sluice_common::tls::TlsFiles::in_dir(&self.dir.join("tls"), &format!("node{}", self.id))
    }

    /// Writes the config (and a certificate, if the node has none yet); `members` empty
    /// means single-node bootstrap (or join).
    fn write_config(&self, members: &[(u64, String)], join: bool, opts: &NodeOpts, admin: &Path) {
        let files = self.tls_files();
        if !files.cert.exists() {
            Pki::shared().write_with_sans(
                &self.dir.join("tls"),
                Role::Coordinator,
                &format!("node{}", self.id),
                &self.placement.extra_sans(),
            );
        }
        let mut toml = format!(
            "node_id = {}\ndata_dir = {:?}\nlisten = {:?}\nrequest_timeout = {:?}\nadmin_token_file = {admin:?}\n\n[cluster]\njoin = {join}\ninitial_members = [",
            self.id,
            self.dir.join("data"),
            self.addr,
            opts.request_timeout,
        );
        for (id, addr) in members {
            toml.push_str(&format!("{{ id = {id}, addr = {addr:?} }},"));
        }
        toml.push_str(&format!(
            "]\n\n[raft]\nsnapshot_every = {}\nlogs_to_keep = {}\n\n[agents]\nheartbeat_timeout = {:?}\n\n[deploy]\nmin_healthy = {:?}\n",
            opts.snapshot_every, opts.logs_to_keep, opts.agent_timeout, opts.min_healthy
        ));
        toml.push_str(&pki::tls_toml(&files));
        toml.push_str(&format!(
            "\n[secrets]\nkey_file = {:?}\n",
            shared_key_file(admin)
        ));
        toml.push_str(&opts.extra_toml);
        std::fs::write(self.config_path(), toml).expect("write config");
    }

    /// Starts (or restarts) the process and returns once it answers: a running node is one
    /// that answers `/healthz` over TLS, so a test never talks to a process that is still
    /// opening its store (a restarted node refused connections for a moment). A process
    /// that exits first fails the test with its log.
    pub async fn start(&mut self) {
        self.spawn();
        self.answering().await;
    }

    /// Waits until the started process answers (see [`Coordinator::start`]).
    pub async fn answering(&mut self) {
        let http = Pki::shared().client(None).build().expect("client");
        let api = Client::new(http, self.url("")).with_timeout(Duration::from_secs(2));
        let id = self.id;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.exited() {
                panic!(
                    "node {id} exited with {status} while starting:\n{}",
                    self.log()
                );
            }
            match api.healthz().await {
                // Any answer, even an error status, means the process serves.
                Ok(_) | Err(ClientError::Problem { .. } | ClientError::Decode { .. }) => return,
                Err(e) if std::time::Instant::now() > deadline => {
                    panic!("node {id} did not answer within 30 s: {e}\n{}", self.log())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Starts (or restarts) the process without waiting for it to answer.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log"))
            .expect("log file");
        let child = {
            use std::os::unix::process::CommandExt;
            self.placement
                .command(&self.bin)
                .arg("--config")
                .arg(self.config_path())
                .env("RUST_LOG", "info,openraft=warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log fd"))
                .stderr(log)
                .process_group(0)
                .spawn()
                .expect("spawn sluice-coordinator")
        };
        self.child = Some(child);
    }

    /// `kill -9`, and waits until the process is gone (so its port is free again).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The exit status, if the process has exited by itself (it is then no longer
    /// counted as running).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `https://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// The node's directory (config, log, `tls/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster of coordinator processes.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes, index `i` has id `i + 1`.
    pub nodes: Vec<Coordinator>,
    /// An HTTPS client for tests: trusts the shared test CA and sends
    /// `Authorization: Bearer <admin token>` on every request. The API's operations go
    /// through [`Cluster::api`] (which uses this client); raw requests are for the tests
    /// about the wire itself.
    pub http: reqwest::Client,
    /// The bootstrap admin token's secret (every node accepts it).
    pub admin_token: String,
    /// The CA the nodes' certificates come from.
    pub pki: &'static Pki,
    opts: NodeOpts,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` coordinators from `bin` that form one cluster, and waits for a leader.
    pub async fn start(bin: &Path, n: usize, opts: NodeOpts) -> Self {
        Self::start_placed(bin, vec![Placement::default(); n], opts).await
    }

    /// [`Cluster::start`] with node index `i` running at `placements[i]`.
    pub async fn start_placed(bin: &Path, placements: Vec<Placement>, opts: NodeOpts) -> Self {
        let n = placements.len();
        let dir = tempfile::tempdir().expect("tempdir");
        let admin_token = admin_token();
        let admin_file = dir.path().join("admin.token");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&admin_file)
                .and_then(|mut f| f.write_all(admin_token.as_bytes()))
                .expect("admin token file");
        }
        let mut nodes: Vec<Coordinator> = (1..=n as u64)
            .zip(placements)
            .map(|(id, placement)| {
                let ndir = dir.path().join(format!("node{id}"));
                std::fs::create_dir_all(&ndir).expect("node dir");
                Coordinator {
                    id,
                    addr: format!("{}:{}", placement.ip, free_port()),
                    dir: ndir,
                    bin: bin.to_owned(),
                    placement,
                    child: None,
                }
            })
            .collect();
        let members: Vec<(u64, String)> = if n == 1 {
            Vec::new()
        } else {
            nodes.iter().map(|c| (c.id, c.addr.clone())).collect()
        };
        for c in &mut nodes {
            c.write_config(&members, false, &opts, &admin_file);
            c.spawn();
        }
        for c in &mut nodes {
            c.answering().await;
        }
        let pki = Pki::shared();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {admin_token}").parse().expect("ascii"),
        );
        let cluster = Self {
            nodes,
            http: pki
                .client(None)
                .default_headers(headers)
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            admin_token,
            pki,
            opts,
            bin: bin.to_owned(),
            dir,
        };
        cluster.leader().await;
        cluster
    }

    /// Adds a process that starts empty (`join = true`), not yet a member.
    pub async fn spawn_joiner(&mut self) -> usize {
        let id = self.nodes.len() as u64 + 1;
        let ndir = self.dir.path().join(format!("node{id}"));
        std::fs::create_dir_all(&ndir).expect("node dir");
        let mut c = Coordinator {
            id,
            addr: format!("127.0.0.1:{}", free_port()),
            dir: ndir,
            bin: self.bin.clone(),
            placement: Placement::default(),
            child: None,
        };
        c.write_config(&[], true, &self.opts, &self.dir.path().join("admin.token"));
        c.start().await;
        self.nodes.push(c);
        self.nodes.len() - 1
    }

    /// Waits until every running node names the same leader, which is itself running;
    /// returns the leader's index.
    pub async fn leader(&self) -> usize {
        eventually(
            "all running nodes to agree on a leader",
            Duration::from_secs(20),
            || async {
                let mut seen = None;
                for (i, n) in self.nodes.iter().enumerate() {
                    if !n.is_running() {
                        continue;
                    }
                    let s = self.status(i).await?;
                    let l = s.leader.ok_or(format!("node {} has no leader", n.id))?;
                    if seen.is_some_and(|x| x != l) {
                        return Err(format!("nodes disagree: {seen:?} vs {l}"));
                    }
                    seen = Some(l);
                }
                let l = seen.ok_or("no node running")?;
                let idx = self
                    .nodes
                    .iter()
                    .position(|n| n.id == l)
                    .ok_or(format!("leader {l} unknown"))?;
                if !self.nodes[idx].is_running() {
                    return Err(format!("leader {l} is dead"));
                }
                Ok(idx)
            },
        )
        .await
    }

    /// Indices of running nodes other than `i`.
    pub fn others(&self, i: usize) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&j| j != i && self.nodes[j].is_running())
            .collect()
    }

    /// Every node's log, for a failure message.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("----- node {} -----\n{}", n.id, n.log()))
            .collect()
    }
}
