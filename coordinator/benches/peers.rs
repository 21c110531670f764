//! `cargo build --release -p sluice-agent && cargo bench -p sluice-coordinator --bench peers`
//!
//! Sluice side by side with the tools an operator would otherwise use, in one run on one
//! machine, printed as markdown tables:
//!
//! - locks: acquire+release through a 3-node Sluice cluster against a 3-node etcd cluster
//!   on loopback (etcd's v3 JSON gateway over HTTPS with keep-alive, peers on mutual TLS
//!   like Sluice's, certificates from the same test CA: a txn put-if-absent
//!   bound to a lease, then a delete; once with one lease per client, as an etcd
//!   `concurrency.Session` / `etcdctl lock` holds it, once with a lease granted per lock),
//!   same client counts;
//! - failover: kill -9 the leader → first acknowledged write, median of 5, etcd both at
//!   Sluice's timings and at its defaults;
//! - deploy: one service on one server through Sluice against `docker service update
//!   --image` on a one-node Swarm, and rollback (Sluice's manual rollback against
//!   `docker service rollback`);
//! - memory: VmRSS of coordinators, agent and etcd members, idle and at peak under load.
//!
//! It installs what it needs: Debian's `etcd-server` and `etcd-client` if `etcd` is
//! missing, and a one-node Swarm on the local engine (`docker swarm init`, left again at
//! the end unless the engine was already in a swarm). Figures, not assertions.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_common::tls::Role;
use sluice_tests::agent::{remove_containers, AgentProc};
use sluice_tests::agent_support::docker;
use sluice_tests::cluster::{free_port, Cluster, NodeOpts};
use sluice_tests::pki::Pki;
use sluice_tests::testapp_image::{ensure_test_images, image};

#[path = "support/deploy.rs"]
mod deploy;
#[path = "support/locks.rs"]
mod locks;
#[path = "support/stats.rs"]
mod stats;

use deploy::{serving, sluice_deploy};
use locks::Run;
use stats::{ms, pct};

/// Sequential pairs (one client).
const SEQ: usize = 1000;
/// Concurrent clients, spread over the three members, and pairs per client.
const CLIENTS: usize = 32;
const PER: usize = 100;
const FAILOVER_ROUNDS: usize = 5;
const DEPLOY_ROUNDS: usize = 5;
const SERVICE: &str = "bench-peers";
const SWARM_SERVICE: &str = "sluice-bench-swarm";
const SWARM_PORT: u16 = 26250;
/// The test app plus a Docker HEALTHCHECK (exec form: the image has no shell), so Swarm
/// waits for health the way Sluice does.
const HC_REPO: &str = "sluice-bench-hc";

// ------------------------------------------------------------------- machine, memory

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let tmp = std::env::temp_dir();
    let fs = sh("df", &["--output=fstype", tmp.to_str().unwrap_or("/tmp")]);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{cores} cores ({model}), {:.1} GiB RAM, Linux {}, data dirs on {} ({}), Docker {}, {}; load average at start {}",
        mem_kib as f64 / 1024.0 / 1024.0,
        kernel.trim(),
        tmp.display(),
        fs.lines().last().unwrap_or("?"),
        sh("docker", &["version", "--format", "{{.Server.Version}}"]),
        sh("etcd", &["--version"])
            .lines()
            .next()
            .unwrap_or("etcd ?"),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Samples the VmRSS of `pids` every 20 ms on a thread until [`PeakRss::finish`].
struct PeakRss {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<u64>>,
}

impl PeakRss {
    fn start(pids: Vec<u32>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = vec![0; pids.len()];
            loop {
                for (p, pid) in peak.iter_mut().zip(&pids) {
                    *p = (*p).max(rss_kib(*pid));
                }
                if s.load(Ordering::Relaxed) {
                    return peak;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self { stop, thread }
    }

    /// Peak VmRSS per pid, in KiB.
    fn finish(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sampler")
    }
}

/// The pid of the process whose command line mentions `needle`.
fn pid_with_arg(needle: &str) -> u32 {
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            return pid;
        }
    }
    panic!("no process with {needle} in its command line");
}

/// Idle and peak RSS of one role, for the memory table.
#[derive(Clone)]
struct Mem {
    what: String,
    idle_kib: u64,
    load_kib: u64,
    load: &'static str,
}

// ------------------------------------------------------------------------------ etcd

fn ensure_etcd() {
    if Command::new("etcd").arg("--version").output().is_ok() {
        return;
    }
    eprintln!("installing etcd-server and etcd-client from Debian");
    let ok = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("apt-get")
            .args(["install", "-y", "-qq", "etcd-server", "etcd-client"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
    assert!(ok, "could not install etcd-server and etcd-client");
    // The package may start a system etcd on the default ports; ours use free ports.
}

/// Base64 (standard alphabet, padded): the JSON gateway carries keys and values as bytes.
fn b64(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

struct EtcdMember {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

/// A loopback etcd cluster of separate processes (own process groups, killed on drop).
struct Etcd {
    members: Vec<EtcdMember>,
    dir: tempfile::TempDir,
    heartbeat_ms: u64,
    election_ms: u64,
    http: reqwest::Client,
}

impl Etcd {
    async fn start(n: usize, heartbeat_ms: u64, election_ms: u64) -> Self {
        let members = (1..=n)
            .map(|i| EtcdMember {
                name: format!("e{i}"),
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let mut e = Self {
            members,
            dir: tempfile::tempdir().expect("tempdir"),
            heartbeat_ms,
            election_ms,
            http: Pki::shared().client(None).build().expect("client"),
        };
        for i in 0..n {
            e.spawn(i);
        }
        e.leader().await;
        e
    }

    /// Starts member `i` with TLS like Sluice's: HTTPS for clients, mutual TLS between
    /// members, certificates from the same test CA.
    fn spawn(&mut self, i: usize) {
        use std::os::unix::process::CommandExt;
        let tls = Pki::shared().write(
            &self.dir.path().join("tls"),
            Role::Coordinator,
            &self.members[i].name,
        );
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=https://127.0.0.1:{}", m.name, m.peer))
            .collect();
        let m = &self.members[i];
        let client = format!("https://127.0.0.1:{}", m.client);
        let peer = format!("https://127.0.0.1:{}", m.peer);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", m.name)))
            .expect("log");
        let child = Command::new("etcd")
            .args(["--name", &m.name, "--data-dir"])
            .arg(self.dir.path().join(&m.name))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &initial.join(",")])
            .args([
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "bench",
            ])
            .args(["--heartbeat-interval", &self.heartbeat_ms.to_string()])
            .args(["--election-timeout", &self.election_ms.to_string()])
            .arg("--cert-file")
            .arg(&tls.cert)
            .arg("--key-file")
            .arg(&tls.key)
            .arg("--peer-cert-file")
            .arg(&tls.cert)
            .arg("--peer-key-file")
            .arg(&tls.key)
            .arg("--peer-trusted-ca-file")
            .arg(&tls.ca)
            .arg("--peer-client-cert-auth")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn etcd");
        self.members[i].child = Some(child);
    }

    /// kill -9, waiting until the process is gone.
    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn pid(&self, i: usize) -> u32 {
        self.members[i].child.as_ref().expect("running").id()
    }

    fn base(&self, i: usize) -> String {
        format!("https://127.0.0.1:{}", self.members[i].client)
    }

    /// `(member id, leader id)` as member `i` reports them.
    async fn status(&self, i: usize) -> Result<(String, String), String> {
        let v: Value = self
            .http
            .post(format!("{}/v3/maintenance/status", self.base(i)))
            .json(&json!({}))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let id = v["header"]["member_id"].as_str().ok_or(v.to_string())?;
        let leader = v["leader"].as_str().ok_or(v.to_string())?;
        Ok((id.to_string(), leader.to_string()))
    }

    /// Waits until every running member names the same, running leader; its index.
    async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut ids = Vec::new();
            let mut leaders = Vec::new();
            for (i, m) in self.members.iter().enumerate() {
                if m.child.is_some() {
                    match self.status(i).await {
                        Ok((id, l)) => {
                            ids.push((i, id));
                            leaders.push(l);
                        }
                        Err(e) => leaders.push(format!("error: {e}")),
                    }
                }
            }
            let agreed = leaders.windows(2).all(|w| w[0] == w[1]);
            if agreed {
                if let Some(&(i, _)) = ids.iter().find(|(_, id)| Some(id) == leaders.first()) {
                    return i;
                }
            }
            assert!(
                Instant::now() < deadline,
                "etcd elected no leader: {leaders:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every member's log, for a failure message.
    fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let log = std::fs::read_to_string(self.dir.path().join(format!("{}.log", m.name)));
                format!("----- {} -----\n{}", m.name, log.unwrap_or_default())
            })
            .collect()
    }

    fn running_pids(&self) -> Vec<u32> {
        (0..self.members.len()).map(|i| self.pid(i)).collect()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

async fn etcd_call(http: &reqwest::Client, base: &str, path: &str, body: Value) -> Value {
    let r = http
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .expect("etcd request");
    assert!(r.status().is_success(), "etcd {path}: {}", r.status());
    r.json().await.expect("etcd json")
}

async fn etcd_grant(http: &reqwest::Client, base: &str) -> String {
    let v = etcd_call(http, base, "/v3/lease/grant", json!({"TTL": 30})).await;
    v["ID"].as_str().expect("lease id").to_string()
}

/// One etcd lock acquire + release of `key`: (granting a lease if `lease` is `None`) a txn
/// that puts the key bound to the lease only if it does not exist, then a delete.
async fn etcd_pair(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    lease: Option<&str>,
) -> (Duration, Duration) {
    let t0 = Instant::now();
    let lease = match lease {
        Some(l) => l.to_string(),
        None => etcd_grant(http, base).await,
    };
    let k = b64(key);
    let v = etcd_call(
        http,
        base,
        "/v3/kv/txn",
        json!({
            "compare": [{"key": k, "result": "EQUAL", "target": "CREATE", "create_revision": "0"}],
            "success": [{"request_put": {"key": k, "value": b64("bench"), "lease": lease}}],
        }),
    )
    .await;
    assert_eq!(v["succeeded"], true, "lock {key} is taken: {v}");
    let acquired = t0.elapsed();
    etcd_call(http, base, "/v3/kv/deleterange", json!({"key": k})).await;
    (acquired, t0.elapsed())
}

/// Sequential and concurrent lock runs against etcd; `session` = one lease per client.
async fn etcd_locks(e: &Etcd, session: bool) -> (Run, Run) {
    let leader = e.leader().await;
    let bases: Vec<String> = (0..e.members.len()).map(|i| e.base(i)).collect();
    let mut leases = Vec::new();
    for k in 0..CLIENTS {
        leases.push(if session {
            Some(etcd_grant(&e.http, &bases[k % bases.len()]).await)
        } else {
            None
        });
    }
    let leases = Arc::new(leases);
    let tag = if session { "s" } else { "l" };
    for i in 0..50 {
        etcd_pair(
            &e.http,
            &bases[leader],
            &format!("warm/{tag}/{i}"),
            leases[0].as_deref(),
        )
        .await;
    }
    let seq = {
        let (http, base, leases) = (e.http.clone(), bases[leader].clone(), leases.clone());
        locks::run(1, SEQ, move |_, i| {
            let (http, base, leases) = (http.clone(), base.clone(), leases.clone());
            async move {
                etcd_pair(
                    &http,
                    &base,
                    &format!("seq/{tag}/{}", i % 10),
                    leases[0].as_deref(),
                )
                .await
            }
        })
        .await
    };
    let par = {
        let (http, leases) = (e.http.clone(), leases.clone());
        locks::run(CLIENTS, PER, move |k, _| {
            let (http, base, leases) =
                (http.clone(), bases[k % bases.len()].clone(), leases.clone());
            async move {
                etcd_pair(
                    &http,
                    &base,
                    &format!("par/{tag}/{k}"),
                    leases[k].as_deref(),
                )
                .await
            }
        })
        .await
    };
    (seq, par)
}

/// Like [`locks::sluice_failover`]: kill -9 the leader, time the first acknowledged put
/// on a survivor, restart, let it catch up.
async fn etcd_failover(e: &mut Etcd, rounds: usize) -> Vec<Duration> {
    let http = e.http.clone();
    let mut out = Vec::new();
    for round in 0..rounds {
        let leader = e.leader().await;
        let survivors: Vec<String> = (0..e.members.len())
            .filter(|&i| i != leader)
            .map(|i| e.base(i))
            .collect();
        e.kill(leader);
        let key = b64(&format!("failover/{round}"));
        let survivors = Arc::new(survivors);
        let d = locks::time_to_first_ack(|| {
            let (http, survivors, key) = (http.clone(), survivors.clone(), key.clone());
            async move {
                for base in survivors.iter() {
                    let r = http
                        .post(format!("{base}/v3/kv/put"))
                        .json(&json!({"key": key, "value": b64("x")}))
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    if let Ok(r) = r {
                        if r.status().is_success()
                            && r.json::<Value>()
                                .await
                                .is_ok_and(|v| v["header"]["revision"].is_string())
                        {
                            return true;
                        }
                    }
                }
                false
            }
        })
        .await;
        out.push(d);
        e.spawn(leader);
        e.leader().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    out.sort();
    out
}

// ------------------------------------------------------------------------- deploys

/// `sluice-bench-hc:<tag>`: the test app's image plus a HEALTHCHECK every 100 ms.
fn hc_image(tag: &str) -> String {
    format!("{HC_REPO}:{tag}")
}

fn build_hc_images() {
    for tag in ["v1", "v2"] {
        let mut child = Command::new("docker")
            .args(["build", "-q", "-t", &hc_image(tag), "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker build");
        write!(
            child.stdin.take().expect("stdin"),
            "FROM {}\nHEALTHCHECK --interval=100ms --timeout=1s --retries=20 CMD [\"/testapp\", \"--probe\"]\n",
            image(tag)
        )
        .expect("Dockerfile");
        assert!(
            child.wait().is_ok_and(|s| s.success()),
            "docker build {tag}"
        );
    }
}

/// Manual rollback of deployment `id`; the time until it is recorded `rolled_back`.
async fn sluice_rollback(c: &Cluster, id: &str) -> Duration {
    let t = Instant::now();
    let r = c
        .http
        .post(c.nodes[0].url(&format!("/v1/deployments/{id}/rollback")))
        .json(&json!({}))
        .send()
        .await
        .expect("rollback");
    assert_eq!(r.status(), 202, "rollback refused");
    loop {
        let v: Value = c
            .http
            .get(c.nodes[0].url(&format!("/v1/deployments/{id}")))
            .send()
            .await
            .expect("deployment")
            .json()
            .await
            .expect("json");
        match v["state"].as_str() {
            Some("rolled_back") => return t.elapsed(),
            Some("failed") if v["phase"] != "rolling back" => panic!("rollback failed: {v}"),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

struct DeployFigures {
    sluice_deploy: Vec<Duration>,
    sluice_rollback: Vec<Duration>,
    swarm_update_served: Vec<Duration>,
    swarm_update_done: Vec<Duration>,
    swarm_rollback_served: Vec<Duration>,
    swarm_rollback_done: Vec<Duration>,
    mem: Vec<Mem>,
}

async fn swarm_state() -> String {
    docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
}

/// Polls the service's update status until `want`; the time since `t`.
async fn swarm_until(state: &str, t: Instant) -> Duration {
    loop {
        let s = docker(&[
            "service",
            "inspect",
            SWARM_SERVICE,
            "--format",
            "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
        ]);
        if s == state {
            return t.elapsed();
        }
        assert!(
            !s.contains("paused"),
            "swarm update {s}: {}",
            docker(&["service", "ps", "--no-trunc", SWARM_SERVICE])
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn deploys() -> DeployFigures {
    ensure_test_images().expect("test images");
    build_hc_images();
    remove_containers(SERVICE);

    // Sluice: one coordinator, one agent.
    let c = Cluster::start(
        Path::new(env!("CARGO_BIN_EXE_sluice-coordinator")),
        1,
        NodeOpts::default(),
    )
    .await;
    let agent = AgentProc::start("peers-1", &[c.nodes[0].addr.clone()], "26200-26209", "");
    deploy::wait_registered(&c, "peers-1").await;
    let agent_pid = pid_with_arg(&agent.dir().join("agent.toml").display().to_string());
    let coord_pid = c.nodes[0].pid().expect("running");
    let idle = [rss_kib(coord_pid), rss_kib(agent_pid)];
    let sampler = PeakRss::start(vec![coord_pid, agent_pid]);
    sluice_deploy(&c, SERVICE, "peers-1", &hc_image("v1")).await; // first deploy, not timed
    let mut sluice_d = Vec::new();
    let mut sluice_r = Vec::new();
    for _ in 0..DEPLOY_ROUNDS {
        let (id, d) = sluice_deploy(&c, SERVICE, "peers-1", &hc_image("v2")).await;
        sluice_d.push(d);
        sluice_r.push(sluice_rollback(&c, &id).await);
    }
    let peak = sampler.finish();
    drop(agent);
    drop(c);
    remove_containers(SERVICE);

    // Swarm: one node, one replica, published on the host (no IPVS here), the same health
    // check cadence, stop-first like Sluice's recreate.
    let joined = swarm_state().await != "active";
    if joined {
        docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
    }
    let _ = Command::new("docker")
        .args(["service", "rm", SWARM_SERVICE])
        .output();
    docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        SWARM_SERVICE,
        "--publish",
        &format!("mode=host,target=8080,published={SWARM_PORT}"),
        "--no-resolve-image",
        "--stop-grace-period",
        "5s",
        "--update-order",
        "stop-first",
        &hc_image("v1"),
    ]);
    serving(SWARM_PORT, "/version", Some("v1")).await;
    let mut served_u = Vec::new();
    let mut done_u = Vec::new();
    let mut served_r = Vec::new();
    let mut done_r = Vec::new();
    for _ in 0..DEPLOY_ROUNDS {
        let t = Instant::now();
        docker(&[
            "service",
            "update",
            "--detach",
            "--no-resolve-image",
            "--image",
            &hc_image("v2"),
            SWARM_SERVICE,
        ]);
        serving(SWARM_PORT, "/version", Some("v2")).await;
        served_u.push(t.elapsed());
        done_u.push(swarm_until("completed", t).await);
        let t = Instant::now();
        docker(&["service", "rollback", "--detach", SWARM_SERVICE]);
        serving(SWARM_PORT, "/version", Some("v1")).await;
        served_r.push(t.elapsed());
        done_r.push(swarm_until("rollback_completed", t).await);
    }
    docker(&["service", "rm", SWARM_SERVICE]);
    if joined {
        docker(&["swarm", "leave", "--force"]);
    }
    for v in [
        &mut sluice_d,
        &mut sluice_r,
        &mut served_u,
        &mut done_u,
        &mut served_r,
        &mut done_r,
    ] {
        v.sort();
    }
    DeployFigures {
        sluice_deploy: sluice_d,
        sluice_rollback: sluice_r,
        swarm_update_served: served_u,
        swarm_update_done: done_u,
        swarm_rollback_served: served_r,
        swarm_rollback_done: done_r,
        mem: vec![
            Mem {
                what: "Sluice coordinator (1 node)".into(),
                idle_kib: idle[0],
                load_kib: peak[0],
                load: "deploy + rollback rounds",
            },
            Mem {
                what: "Sluice agent".into(),
                idle_kib: idle[1],
                load_kib: peak[1],
                load: "deploy + rollback rounds",
            },
        ],
    }
}

// ---------------------------------------------------------------------------- main

fn p50_p99(r: &[Duration]) -> String {
    format!("{:.2} / {:.2} ms", ms(pct(r, 0.5)), ms(pct(r, 0.99)))
}

fn med_max(r: &[Duration]) -> String {
    format!(
        "{:.0} / {:.0} ms",
        ms(pct(r, 0.5)),
        ms(*r.last().expect("samples"))
    )
}

/// The leader's `/metrics` text.
async fn metrics(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body")
}

fn metric(text: &str, name: &str) -> f64 {
    sluice_tests::cluster::metric(text, name).unwrap_or(0.0)
}

/// What the lock runs cost the leader's Raft: term changes, batching, append RPC times.
struct RaftLoad {
    terms: f64,
    batches: f64,
    commands: f64,
    read_rounds: f64,
    appends: f64,
    appends_over: f64,
    append_max_ms: f64,
}

impl RaftLoad {
    fn between(before: &str, after: &str) -> Self {
        let d = |n: &str| metric(after, n) - metric(before, n);
        Self {
            terms: d("sluice_raft_term"),
            batches: d("sluice_raft_batches_total"),
            commands: d("sluice_raft_batched_commands_total"),
            read_rounds: d("sluice_raft_read_index_rounds_total"),
            appends: d("sluice_raft_append_rpcs_total"),
            appends_over: d("sluice_raft_append_rpcs_over_budget_total"),
            append_max_ms: metric(after, "sluice_raft_append_rpc_max_seconds") * 1000.0,
        }
    }

    fn print(&self) {
        println!("### Sluice's leader during the lock runs");
        println!();
        println!("| measure | value |");
        println!("|---|---|");
        println!("| term changes (spurious elections) | {:.0} |", self.terms);
        println!(
            "| commands / Raft entries (group commit) | {:.0} / {:.0} = {:.1} per entry |",
            self.commands,
            self.batches,
            self.commands / self.batches.max(1.0)
        );
        println!("| read-index rounds | {:.0} |", self.read_rounds);
        println!(
            "| append RPCs / over the 50 ms heartbeat budget / slowest | {:.0} / {:.0} / {:.1} ms |",
            self.appends, self.appends_over, self.append_max_ms
        );
    }
}

#[tokio::main]
async fn main() {
    ensure_etcd();
    println!("Machine: {}\n", machine());
    let mut mem = Vec::new();

    // Sluice locks and failover, 3 nodes (the `cluster` bench's measurements).
    let bin = Path::new(env!("CARGO_BIN_EXE_sluice-coordinator"));
    let mut c = Cluster::start(bin, 3, NodeOpts::default()).await;
    let leader = c.leader().await;
    let pids: Vec<u32> = c.nodes.iter().map(|n| n.pid().expect("running")).collect();
    let idle: Vec<u64> = pids.iter().map(|&p| rss_kib(p)).collect();
    let sampler = PeakRss::start(pids);
    let http = c.http.clone();
    let base = c.nodes[leader].url("");
    for i in 0..50 {
        locks::pair(&http, &base, &format!("warm/{i}")).await;
    }
    let before = metrics(&http, &base).await;
    let s_seq = {
        let (http, base) = (http.clone(), base.clone());
        locks::run(1, SEQ, move |_, i| {
            let (http, base) = (http.clone(), base.clone());
            async move { locks::pair(&http, &base, &format!("seq/{}", i % 10)).await }
        })
        .await
    };
    let s_par = {
        let bases: Vec<String> = c.nodes.iter().map(|n| n.url("")).collect();
        let http = http.clone();
        locks::run(CLIENTS, PER, move |k, _| {
            let (http, base) = (http.clone(), bases[k % bases.len()].clone());
            async move { locks::pair(&http, &base, &format!("par/{k}")).await }
        })
        .await
    };
    let after = metrics(&http, &base).await;
    let raft_load = RaftLoad::between(&before, &after);
    let peak = sampler.finish();
    mem.push(Mem {
        what: "Sluice coordinator, leader of 3".into(),
        idle_kib: idle[leader],
        load_kib: peak[leader],
        load: "lock runs",
    });
    let others = c.others(leader);
    mem.push(Mem {
        what: "Sluice coordinator, follower of 3 (larger)".into(),
        idle_kib: others.iter().map(|&i| idle[i]).max().unwrap_or(0),
        load_kib: others.iter().map(|&i| peak[i]).max().unwrap_or(0),
        load: "lock runs",
    });
    let s_fail = locks::sluice_failover(&mut c, FAILOVER_ROUNDS).await;
    drop(c);

    // etcd, 3 members, at Sluice's election timeout lower bound (etcd wants the election
    // timeout at least 5 heartbeats, so heartbeat 50 ms rather than Sluice's 100 ms).
    let mut e = Etcd::start(3, 50, 300).await;
    let leader = e.leader().await;
    let pids = e.running_pids();
    let idle: Vec<u64> = pids.iter().map(|&p| rss_kib(p)).collect();
    let sampler = PeakRss::start(pids);
    let (e_seq, e_par) = etcd_locks(&e, true).await;
    let (l_seq, l_par) = etcd_locks(&e, false).await;
    let peak = sampler.finish();
    mem.push(Mem {
        what: "etcd member, leader of 3".into(),
        idle_kib: idle[leader],
        load_kib: peak[leader],
        load: "lock runs",
    });
    mem.push(Mem {
        what: "etcd member, follower of 3 (larger)".into(),
        idle_kib: (0..3)
            .filter(|&i| i != leader)
            .map(|i| idle[i])
            .max()
            .unwrap_or(0),
        load_kib: (0..3)
            .filter(|&i| i != leader)
            .map(|i| peak[i])
            .max()
            .unwrap_or(0),
        load: "lock runs",
    });
    let e_fail = etcd_failover(&mut e, FAILOVER_ROUNDS).await;
    drop(e);
    // etcd at its defaults (heartbeat 100 ms, election 1000 ms).
    let mut e = Etcd::start(3, 100, 1000).await;
    let d_fail = etcd_failover(&mut e, FAILOVER_ROUNDS).await;
    drop(e);

    // PEERS_SKIP_DEPLOY=1: locks, failover and memory only (no Swarm).
    let d = if std::env::var_os("PEERS_SKIP_DEPLOY").is_some() {
        None
    } else {
        Some(deploys().await)
    };
    if let Some(d) = &d {
        mem.extend(d.mem.clone());
    }

    println!("### Locks: acquire + release, 3 members on loopback");
    println!();
    println!("| measure | Sluice | etcd, lease per client (session) | etcd, lease per lock |");
    println!("|---|---|---|---|");
    println!(
        "| acquire p50 / p99, 1 client | {} | {} | {} |",
        p50_p99(&s_seq.acquire),
        p50_p99(&e_seq.acquire),
        p50_p99(&l_seq.acquire)
    );
    println!(
        "| acquire+release p50 / p99, 1 client | {} | {} | {} |",
        p50_p99(&s_seq.pair),
        p50_p99(&e_seq.pair),
        p50_p99(&l_seq.pair)
    );
    println!(
        "| lock ops/s, 1 client ({SEQ} pairs) | {:.0} | {:.0} | {:.0} |",
        s_seq.ops_per_sec(),
        e_seq.ops_per_sec(),
        l_seq.ops_per_sec()
    );
    println!(
        "| acquire+release p50 / p99, {CLIENTS} clients over 3 members | {} | {} | {} |",
        p50_p99(&s_par.pair),
        p50_p99(&e_par.pair),
        p50_p99(&l_par.pair)
    );
    println!(
        "| lock ops/s, {CLIENTS} clients × {PER} pairs | {:.0} | {:.0} | {:.0} |",
        s_par.ops_per_sec(),
        e_par.ops_per_sec(),
        l_par.ops_per_sec()
    );
    println!();
    raft_load.print();
    println!();
    println!("### Failover: kill -9 the leader → first acknowledged write (median / max of {FAILOVER_ROUNDS})");
    println!();
    println!("| system | timings | median / max |");
    println!("|---|---|---|");
    println!(
        "| Sluice | heartbeat 50 ms, leader lease 300 ms, then a campaign within 0–75 ms (election 150–300 ms) | {} |",
        med_max(&s_fail)
    );
    println!(
        "| etcd | heartbeat 50 ms, election 300 ms (randomised to 300–600 ms) | {} |",
        med_max(&e_fail)
    );
    println!(
        "| etcd | defaults: heartbeat 100 ms, election 1000 ms | {} |",
        med_max(&d_fail)
    );
    println!();
    if let Some(d) = &d {
        println!("### Deploy one service on one server ({DEPLOY_ROUNDS} rounds, median / max)");
        println!();
        println!("| step | Sluice | Docker Swarm (1 node) |");
        println!("|---|---|---|");
        println!(
            "| upgrade v1 → v2: new version serving | {} (API call → `success`) | {} (`service update` → v2 answers) |",
            med_max(&d.sluice_deploy),
            med_max(&d.swarm_update_served)
        );
        println!(
            "| upgrade finished | same | {} (update state `completed`) |",
            med_max(&d.swarm_update_done)
        );
        println!(
            "| rollback v2 → v1: previous version serving | {} (rollback call → `rolled_back`) | {} (`service rollback` → v1 answers) |",
            med_max(&d.sluice_rollback),
            med_max(&d.swarm_rollback_served)
        );
        println!(
            "| rollback finished | same | {} (update state `rollback_completed`) |",
            med_max(&d.swarm_rollback_done)
        );
        println!();
    }
    println!("### Memory (VmRSS)");
    println!();
    println!("| process | idle | peak under load | load |");
    println!("|---|---|---|---|");
    for m in &mem {
        println!(
            "| {} | {:.1} MiB | {:.1} MiB | {} |",
            m.what,
            mib(m.idle_kib),
            mib(m.load_kib),
            m.load
        );
    }
}
