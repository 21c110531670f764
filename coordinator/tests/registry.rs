//! Private images end to end: a real registry (Debian's `docker-registry`, TLS from the test
//! CA, htpasswd), real coordinators and agents, the real Docker daemon.
//!
//! The login used throughout is user `acc2` with password `??>>~~`: the standard base64 of
//! its auth JSON holds `+` and `/`, which Docker 20.10 silently drops when bollard encodes
//! it (NOTES.md); the agent sends it URL-safe.

use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use sluice_common::api::{
    DeploymentView, PutRegistryRequest, RegistryHost, RegistryPassword, RegistryUsername,
    ServerStepState,
};
use sluice_common::client::Client;
use sluice_common::deployment::DeploymentState;
use sluice_tests::agent::{remove_containers, AgentProc};
use sluice_tests::cluster::{deployment_request, Cluster, NodeOpts};
use sluice_tests::eventually::eventually;
use sluice_tests::registry::RegistryProc;
use sluice_tests::testapp_image::{ensure_test_images, image};

const USER: &str = "acc2";
const PASSWORD: &str = "??>>~~";
/// A secret environment value: sealed in the coordinators' files like the password.
const ENV_SECRET: &str = "env-s3cret-4f1d9c";

fn port_range() -> String {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let slot = NEXT.fetch_add(1, Ordering::SeqCst);
    let base = 33000 + (std::process::id() % 40) as u16 * 200 + slot * 20;
    format!("{base}-{}", base + 19)
}

struct Env {
    registry: RegistryProc,
    cluster: Cluster,
    agents: Vec<AgentProc>,
    service: String,
}

impl Env {
    async fn start(service: &str, agents: &[&str]) -> Self {
        ensure_test_images().expect("test images");
        remove_containers(service);
        let registry = RegistryProc::start(&[(USER, PASSWORD)]).await;
        let cluster = Cluster::start(
            Path::new(env!("CARGO_BIN_EXE_sluice-coordinator")),
            1,
            NodeOpts {
                extra_toml: format!("\n[registries]\nca_file = {:?}\n", registry.ca_file()),
                ..NodeOpts::default()
            },
        )
        .await;
        let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.addr.clone()).collect();
        let agents: Vec<AgentProc> = agents
            .iter()
            .map(|name| AgentProc::start(name, &addrs, &port_range(), ""))
            .collect();
        let env = Self {
            registry,
            cluster,
            agents,
            service: service.to_string(),
        };
        let names: Vec<String> = env.agents.iter().map(|a| a.name.clone()).collect();
        eventually(
            "every agent registered",
            Duration::from_secs(20),
            || async {
                let v = env.api().servers().await.map_err(|e| e.to_string())?;
                let got: Vec<String> = v.iter().map(|s| s.name.to_string()).collect();
                if names.iter().all(|n| got.contains(n)) {
                    Ok(())
                } else {
                    Err(format!("registered: {got:?}"))
                }
            },
        )
        .await;
        env
    }

    fn api(&self) -> Client {
        self.cluster.api(0)
    }

    fn host(&self) -> RegistryHost {
        RegistryHost::parse(&self.registry.host).unwrap()
    }

    async fn login(&self, password: &str) {
        let req = PutRegistryRequest {
            username: RegistryUsername::parse(USER).unwrap(),
            password: RegistryPassword::parse(password).unwrap(),
        };
        let v = self.api().put_registry(&self.host(), &req).await.unwrap();
        assert_eq!(v.username.as_str(), USER);
    }

    fn push(&self, local_tag: &str, tag: &str) -> String {
        self.registry
            .push(&image(local_tag), "acc/web", tag, USER, PASSWORD)
            .unwrap()
    }

    fn body(&self, tag: &str, servers: &[&str], extra: Value) -> Value {
        let mut b = json!({
            "service": self.service,
            "image": format!("{}:{tag}", self.registry.repo("acc/web")),
            "servers": servers,
            "container_port": 8080,
            "strategy": "recreate",
            "health": {"kind": "http", "path": "/health", "interval": "200ms", "retries": 10, "timeout": "1s"},
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            b[k] = v.clone();
        }
        b
    }

    async fn deploy(&self, body: &Value) -> String {
        let created = self
            .api()
            .create_deployment(&deployment_request(body), None)
            .await
            .unwrap();
        created.deployment.id.to_string()
    }

    async fn settled(&self, id: &str) -> DeploymentView {
        self.cluster
            .final_deployment(id, Duration::from_secs(90))
            .await
    }

    /// Image references of this service's containers (running or not), as they were
    /// created (`docker ps` shows a digest reference without its digest).
    fn container_images(&self) -> Vec<String> {
        let out = std::process::Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=sluice.service={}", self.service),
            ])
            .output()
            .unwrap();
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if ids.is_empty() {
            return Vec::new();
        }
        let out = std::process::Command::new("docker")
            .args(["inspect", "--format", "{{.Config.Image}}"])
            .args(&ids)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        remove_containers(&self.service);
    }
}

fn check<'a>(v: &'a DeploymentView, name: &str) -> &'a sluice_common::api::CheckResult {
    v.validation
        .iter()
        .find(|c| c.check == name)
        .unwrap_or_else(|| panic!("no {name} check: {v:?}"))
}

fn untouched(v: &DeploymentView) -> bool {
    v.servers
        .iter()
        .all(|s| s.state == ServerStepState::Pending)
}

async fn version_on(port: u16) -> Result<String, String> {
    reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/version"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map(|t| t.trim().to_string())
        .map_err(|e| e.to_string())
}

/// Validation refuses by cause and touches nothing: no login, a wrong login, a missing
/// tag, a stopped registry. Then the stored login deploys, pinned to the digest.
#[tokio::test(flavor = "multi_thread")]
async fn validation_names_the_cause_and_touches_nothing_then_the_login_deploys_the_digest() {
    let mut env = Env::start("reg-refuse", &["web-1"]).await;
    env.push("v1", "v1");

    // No login stored: the registry wants one.
    let id = env.deploy(&env.body("v1", &["web-1"], json!({}))).await;
    let v = env.settled(&id).await;
    assert_eq!(v.state, DeploymentState::Failed, "{v:?}");
    let c = check(&v, "image_in_registry");
    assert!(
        !c.ok && c.detail.starts_with("authentication failed"),
        "{c:?}"
    );
    assert!(c.detail.contains("sluice registry login"), "{c:?}");
    assert!(untouched(&v) && v.image_digest.is_none(), "{v:?}");

    // A wrong password.
    env.login("not-the-password").await;
    let id = env.deploy(&env.body("v1", &["web-1"], json!({}))).await;
    let v = env.settled(&id).await;
    let c = check(&v, "image_in_registry");
    assert!(
        !c.ok && c.detail.starts_with("authentication failed"),
        "{c:?}"
    );
    assert!(c.detail.contains("refused"), "{c:?}");
    assert!(untouched(&v), "{v:?}");

    // The right login, a tag that is not there.
    env.login(PASSWORD).await;
    let id = env.deploy(&env.body("nope", &["web-1"], json!({}))).await;
    let v = env.settled(&id).await;
    let c = check(&v, "image_in_registry");
    assert!(!c.ok && c.detail.starts_with("not found"), "{c:?}");
    assert!(untouched(&v), "{v:?}");

    // The registry down during validation.
    env.registry.stop();
    let id = env.deploy(&env.body("v1", &["web-1"], json!({}))).await;
    let v = env.settled(&id).await;
    let c = check(&v, "image_in_registry");
    assert!(!c.ok && c.detail.contains("unreachable"), "{c:?}");
    assert!(untouched(&v), "{v:?}");
    assert!(
        env.container_images().is_empty(),
        "{:?}",
        env.container_images()
    );
    env.registry.restart().await;

    // Now it deploys: the record shows tag and digest, the container runs the digest. The
    // image exists nowhere on this host, so Docker must pull it with the login.
    let d1 = env
        .registry
        .push_unique(&image("v1"), "acc/web", "u1", USER, PASSWORD)
        .unwrap();
    // A plan names the digest the tag resolves to now, and changes nothing.
    let plan = env
        .api()
        .plan_deployment(&deployment_request(&env.body("u1", &["web-1"], json!({}))))
        .await
        .unwrap();
    assert_eq!(plan.image_digest.as_deref(), Some(d1.as_str()), "{plan:?}");
    let id = env.deploy(&env.body("u1", &["web-1"], json!({}))).await;
    let v = env.settled(&id).await;
    assert_eq!(v.state, DeploymentState::Success, "{v:?}");
    assert_eq!(v.image.tag(), Some("u1"));
    assert_eq!(v.image_digest.as_deref(), Some(d1.as_str()), "{v:?}");
    let pinned = format!("{}@{d1}", env.registry.repo("acc/web"));
    assert_eq!(env.container_images(), vec![pinned.clone()]);
    let raw: Value = env
        .cluster
        .http
        .get(env.cluster.nodes[0].url(&format!("/v1/deployments/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw["image_digest"], d1.as_str());
    // Docker pulled by digest, and the registry answered 200: only an authenticated
    // request gets that (the password with `+`/`/` in its standard base64 went through).
    let log = env.registry.log();
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("GET /v2/acc/web/manifests/{d1}"))
                && l.contains("\" 200 ")
                && l.contains("docker/")),
        "no authenticated pull of {d1} in the registry's log:\n{log}"
    );
}

/// Two servers, one at a time: the tag is re-pushed to another build after the first
/// server pulled; the second still runs the digest validation resolved. Then the registry
/// stops after validation: nothing is half-applied.
#[tokio::test(flavor = "multi_thread")]
async fn every_server_runs_the_digest_resolved_at_validation() {
    let env = Env::start("reg-pinned", &["web-1", "web-2"]).await;
    env.login(PASSWORD).await;
    let d1 = env.push("v1", "v1");
    let sequential = json!({"max_parallel": 1, "min_healthy": "4s"});
    let id = env
        .deploy(&env.body("v1", &["web-1", "web-2"], sequential.clone()))
        .await;
    // Once the first server runs it (and the second waits), move the tag.
    eventually(
        "web-1 deployed, web-2 waiting",
        Duration::from_secs(60),
        || async {
            let v = env.api().deployment(&id).await.map_err(|e| e.to_string())?;
            let st = |n: &str| {
                v.servers
                    .iter()
                    .find(|s| s.server.as_str() == n)
                    .map(|s| s.state)
            };
            let images = env.container_images();
            match (st("web-1"), st("web-2")) {
                (Some(ServerStepState::Deploying), Some(ServerStepState::Pending))
                    if !images.is_empty() =>
                {
                    Ok(())
                }
                other => Err(format!("{other:?} {images:?}")),
            }
        },
    )
    .await;
    let d2 = env.push("v2", "v1");
    assert_ne!(d1, d2);
    let v = env.settled(&id).await;
    assert_eq!(v.state, DeploymentState::Success, "{v:?}");
    assert_eq!(v.image_digest.as_deref(), Some(d1.as_str()));
    let pinned = format!("{}@{d1}", env.registry.repo("acc/web"));
    assert_eq!(env.container_images(), vec![pinned.clone(), pinned.clone()]);
    for s in &v.servers {
        assert_eq!(version_on(s.port.unwrap()).await.unwrap(), "v1", "{s:?}");
    }

    // A new deployment of the moved tag, through a gate that lets one connection reach the
    // registry (the coordinator's validation) and refuses every later one (Docker's pull):
    // the registry is gone after validation. It resolves to the new build, the pull fails
    // as unreachable, and no server is left on the new build.
    let gate = Gate::open(env.registry.port()).await;
    let mut body = env.body("v1", &["web-1", "web-2"], sequential);
    body["image"] = json!(format!("127.0.0.1:{}/acc/web:v1", gate.port));
    env.api()
        .put_registry(
            &RegistryHost::parse(&format!("127.0.0.1:{}", gate.port)).unwrap(),
            &PutRegistryRequest {
                username: RegistryUsername::parse(USER).unwrap(),
                password: RegistryPassword::parse(PASSWORD).unwrap(),
            },
        )
        .await
        .unwrap();
    let id = env.deploy(&body).await;
    let v = env.settled(&id).await;
    assert_ne!(v.state, DeploymentState::Success, "{v:?}");
    assert!(check(&v, "image_in_registry").ok, "{v:?}");
    assert_eq!(v.image_digest.as_deref(), Some(d2.as_str()));
    let failure = v.failure.clone().unwrap_or_default();
    assert!(failure.contains("unreachable"), "{failure}\n{v:?}");
    assert!(
        v.servers
            .iter()
            .all(|s| s.state != ServerStepState::Succeeded),
        "{v:?}"
    );
    for s in &v.servers {
        assert_eq!(version_on(s.port.unwrap()).await.unwrap(), "v1", "{s:?}");
    }
    assert_eq!(env.container_images(), vec![pinned.clone(), pinned]);
}

/// A TCP gate to a registry: forwards the first connection, then closes its listener, so
/// every later connection is refused.
struct Gate {
    port: u16,
}

impl Gate {
    async fn open(to: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            drop(listener);
            if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
            }
        });
        Self { port }
    }
}

/// The password is in no response, audit record, log, or agent data file.
#[tokio::test(flavor = "multi_thread")]
async fn the_password_leaks_nowhere() {
    let env = Env::start("reg-secret", &["web-1"]).await;
    // The CLI: the password on stdin only.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, env.cluster.pki.ca_pem()).unwrap();
    let sluice = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .env("SLUICE_ADDR", &env.cluster.nodes[0].addr)
            .env("SLUICE_CA", &ca)
            .env("SLUICE_TOKEN", &env.cluster.admin_token)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run sluice");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let host = env.registry.host.clone();
    let mut cli = Vec::new();
    let (code, out) = sluice(
        &[
            "registry",
            "login",
            &host,
            "--username",
            USER,
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(code, Some(0), "{out}");
    cli.push(out);
    let (code, out) = sluice(&["registry", "list"], "");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&host) && out.contains(USER), "{out}");
    cli.push(out);
    let (code, out) = sluice(&["registry", "remove", "nowhere.example"], "");
    assert_ne!(code, Some(0), "{out}");
    cli.push(out);
    env.push("v1", "v1");
    let secret_env = json!({"env": {"API_TOKEN": {"value": ENV_SECRET, "secret": true}}});
    let id = env
        .deploy(&env.body("v1", &["web-1"], secret_env.clone()))
        .await;
    let v = env.settled(&id).await;
    assert_eq!(v.state, DeploymentState::Success, "{v:?}");
    // The container got the secret in clear (only the agent had it).
    let out = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter", "label=sluice.service=reg-secret"])
        .output()
        .unwrap();
    let cid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = std::process::Command::new("docker")
        .args(["inspect", "--format", "{{json .Config.Env}}", &cid])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("API_TOKEN={ENV_SECRET}")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The same request again is a no-op (secret values compare opened, not sealed).
    let again = env.deploy(&env.body("v1", &["web-1"], secret_env)).await;
    let v2 = env.settled(&again).await;
    assert!(v2.noop, "{v2:?}");

    let get = |path: String| {
        let http = env.cluster.http.clone();
        let url = env.cluster.nodes[0].url(&path);
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let mut seen = vec![
        ("CLI output".to_string(), cli.join("\n")),
        (
            "GET /v1/registries".to_string(),
            get("/v1/registries".into()).await,
        ),
        (
            "GET /v1/registries/{host}".into(),
            get(format!("/v1/registries/{host}")).await,
        ),
        (
            "GET /v1/deployments/{id}".into(),
            get(format!("/v1/deployments/{id}")).await,
        ),
        ("GET /v1/audit".into(), get("/v1/audit".into()).await),
        ("coordinator logs".into(), env.cluster.logs()),
        ("agent log".into(), env.agents[0].log()),
    ];
    assert!(seen[1].1.contains(USER), "{}", seen[1].1);
    let audit = serde_json::to_string(&env.cluster.audit(0).await.unwrap()).unwrap();
    assert!(audit.contains("registry.login"), "{audit}");
    seen.push(("audit records".into(), audit));
    // Every file the agent and the coordinator keep: the agent's operation records, the
    // coordinator's Raft log and snapshots (the password is sealed before it is proposed).
    let coordinator_files = walk(env.cluster.nodes[0].dir());
    for f in &coordinator_files {
        if let Ok(bytes) = std::fs::read(f) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(ENV_SECRET),
                "the secret env value is in {}",
                f.display()
            );
        }
    }
    for (what, text) in &seen {
        assert!(
            !text.contains(ENV_SECRET),
            "the secret env value is in {what}"
        );
    }
    let files: Vec<_> = walk(env.agents[0].dir())
        .into_iter()
        .chain(coordinator_files)
        .collect();
    assert!(
        files.iter().any(|f| f.to_string_lossy().contains("raft")),
        "{files:?}"
    );
    for f in files {
        if let Ok(bytes) = std::fs::read(&f) {
            seen.push((
                f.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    for (what, text) in &seen {
        assert!(!text.contains(PASSWORD), "the password is in {what}");
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// `sluice keys rotate`: after a new key is added and the node restarted, the login sealed
/// under the old key still opens (an image of that registry deploys), and the leader seals
/// it again under the new key in the background.
#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_still_opens_what_the_old_one_sealed() {
    let mut env = Env::start("reg-rotate", &["web-1"]).await;
    env.login(PASSWORD).await;
    env.push("v1", "v1");
    // A deployment with a secret value, sealed under the first key.
    let secret = json!({"env": {"DB_PASSWORD": {"value": "rotate-s3cret", "secret": true}}});
    let first = env.deploy(&env.body("v1", &["web-1"], secret)).await;
    assert_eq!(env.settled(&first).await.state, DeploymentState::Success);
    let key_file = env.cluster.nodes[0]
        .dir()
        .parent()
        .unwrap()
        .join("secrets.key");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["keys", "rotate", "--key-file"])
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "k2");
    env.cluster.nodes[0].kill();
    env.cluster.nodes[0].start().await;
    eventually("the node leads again", Duration::from_secs(30), || async {
        env.api()
            .servers()
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .await;
    let id = env.deploy(&env.body("v1", &["web-1"], json!({}))).await;
    let v = env.settled(&id).await;
    assert_eq!(v.state, DeploymentState::Success, "{v:?}");
    assert!(
        check(&v, "image_in_registry")
            .detail
            .contains("with the stored login"),
        "{v:?}"
    );
    // A login stored now names the new key in the replicated state.
    env.login(PASSWORD).await;
    let raft: Vec<u8> = walk(env.cluster.nodes[0].dir())
        .iter()
        .filter(|f| f.to_string_lossy().contains("raft"))
        .flat_map(|f| std::fs::read(f).unwrap_or_default())
        .collect();
    let needle = br#""key":"k2""#;
    assert!(
        raft.windows(needle.len()).any(|w| w == needle),
        "no value sealed under k2"
    );
    // The stored deployment's secret value was sealed again under k2 in the background.
    eventually(
        "the stored environment re-sealed under k2",
        Duration::from_secs(30),
        || async {
            let raft: Vec<u8> = walk(env.cluster.nodes[0].dir())
                .iter()
                .filter(|f| f.to_string_lossy().contains("raft"))
                .flat_map(|f| std::fs::read(f).unwrap_or_default())
                .collect();
            let needle = b"sealed:k2:";
            if raft.windows(needle.len()).any(|w| w == needle) {
                Ok(())
            } else {
                Err("no environment value sealed under k2 yet".to_string())
            }
        },
    )
    .await;
}
