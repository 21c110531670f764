//! The operator commands of `sluice` through the real binaries against a real cluster:
//! `lock run` (exit code, token, release, holding, renewal, queueing, signals, a lost
//! lock, an unreachable coordinator), server policy through `servers forbid|allow|labels`,
//! `rollback --wait`, `cancel`, `--output json` on every read command, `cluster
//! status|add|remove`, and a refused token.
//!
//! `deploy --wait`'s own exit codes are in `cli_deploy.rs`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sluice_tests::agent::{remove_containers, AgentProc};
use sluice_tests::cluster::{Cluster, NodeOpts};
use sluice_tests::eventually::eventually;
use sluice_tests::testapp_image::{ensure_test_images, image};

/// A cluster and the environment `sluice` needs to reach it.
struct Ops {
    c: Cluster,
    ca: PathBuf,
    dir: tempfile::TempDir,
}

impl Ops {
    async fn start() -> Self {
        let c = Cluster::start(
            Path::new(env!("CARGO_BIN_EXE_sluice-coordinator")),
            1,
            NodeOpts::default(),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, c.pki.ca_pem()).unwrap();
        Self { c, ca, dir }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("SLUICE_ADDR", &self.c.nodes[0].addr)
            .env("SLUICE_TOKEN", &self.c.admin_token)
            .env("SLUICE_CA", &self.ca);
        cmd
    }

    /// Runs `sluice args` to the end: (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = tokio::task::block_in_place(|| self.cmd(args).output().unwrap());
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs `sluice args`, which must succeed, and parses its stdout as JSON.
    fn json(&self, args: &[&str]) -> Value {
        let (code, out, err) = self.run(args);
        assert_eq!(code, Some(0), "sluice {args:?}: {err}");
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("sluice {args:?} printed no JSON ({e}): {out}"))
    }

    /// Starts `sluice args` in the background.
    fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn locks(&self) -> Vec<Value> {
        self.json(&["lock", "list", "--output", "json"])["locks"]
            .as_array()
            .unwrap()
            .clone()
    }
}

/// Waits for `path` to exist and returns its trimmed content.
async fn file(path: &Path) -> String {
    eventually(
        &format!("{} written", path.display()),
        Duration::from_secs(20),
        || async {
            match std::fs::read_to_string(path) {
                Ok(s) if s.ends_with('\n') => Ok(s.trim().to_string()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

/// Waits for a background `sluice` to end: (exit code, stderr).
fn finish(child: Child) -> (Option<i32>, String) {
    let out = tokio::task::block_in_place(|| child.wait_with_output().unwrap());
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn lock_run_holds_renews_and_always_releases() {
    let ops = Ops::start().await;

    // A failing command: its exit code comes back, it saw the fencing token, and the lock
    // is gone afterwards.
    let (code, _, err) = ops.run(&[
        "lock",
        "run",
        "ci/migrate",
        "--",
        "sh",
        "-c",
        "echo \"$SLUICE_FENCING_TOKEN\" > token; exit 3",
    ]);
    assert_eq!(code, Some(3), "{err}");
    let token: u64 = file(&ops.path("token")).await.parse().unwrap();
    assert!(token > 0);
    assert!(err.contains(&format!("fencing token {token}")), "{err}");
    assert!(ops.locks().is_empty(), "{:?}", ops.locks());
    assert!(!err.contains(&ops.c.admin_token));

    // While a command runs the lock is held, and renewed past its short lease: a second
    // acquire without a wait is refused with 75, and the lease's expiry moves.
    let held = ops.spawn(&[
        "lock",
        "run",
        "ci/hold",
        "--ttl",
        "2s",
        "--holder",
        "job 1",
        "--",
        "sh",
        "-c",
        "echo \"$SLUICE_FENCING_TOKEN\" > held; while [ ! -e stop ]; do sleep 0.05; done",
    ]);
    let token = file(&ops.path("held")).await;
    let first = ops.locks();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["token"].to_string(), token);
    assert_eq!(first[0]["holder"], "job 1");
    eventually("the lease renewed", Duration::from_secs(10), || async {
        let now = ops.locks();
        if now.len() == 1 && now[0]["expires_at"] != first[0]["expires_at"] {
            Ok(())
        } else {
            Err(format!("{now:?}"))
        }
    })
    .await;
    let (code, out, err) = ops.run(&["lock", "acquire", "ci/hold", "--holder", "job 2"]);
    assert_eq!(code, Some(75), "{out}{err}");
    assert!(err.contains("job 1"), "says who holds it: {err}");
    // A runner with --wait queues behind it, and gets a larger fencing token.
    let queued = ops.spawn(&[
        "lock",
        "run",
        "ci/hold",
        "--wait",
        "30s",
        "--",
        "sh",
        "-c",
        "echo \"$SLUICE_FENCING_TOKEN\" > second",
    ]);
    std::fs::write(ops.path("stop"), "").unwrap();
    let (code, err) = finish(held);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = finish(queued);
    assert_eq!(code, Some(0), "{err}");
    let second: u64 = file(&ops.path("second")).await.parse().unwrap();
    assert!(second > token.parse().unwrap(), "{second} after {token}");
    assert!(ops.locks().is_empty(), "{:?}", ops.locks());

    // A signal to sluice reaches the command (once), and the lock is still released.
    let trapped = ops.spawn(&[
        "lock",
        "run",
        "ci/signal",
        "--",
        "sh",
        "-c",
        "trap 'exit 7' INT; echo up > up; while :; do sleep 0.05; done",
    ]);
    file(&ops.path("up")).await;
    Command::new("kill")
        .args(["-INT", &trapped.id().to_string()])
        .status()
        .unwrap();
    let (code, err) = finish(trapped);
    assert_eq!(code, Some(7), "{err}");
    assert!(ops.locks().is_empty(), "{:?}", ops.locks());

    // A command killed by a signal: 128 + N, as a shell says, and the lock released.
    let (code, _, err) = ops.run(&[
        "lock",
        "run",
        "ci/killed",
        "--",
        "sh",
        "-c",
        "kill -TERM $$",
    ]);
    assert_eq!(code, Some(128 + 15), "{err}");
    assert!(ops.locks().is_empty(), "{:?}", ops.locks());

    // Losing the lock (here: released behind the runner's back) stops the command at the
    // next renewal, and sluice exits 75 saying so.
    let doomed = ops.spawn(&[
        "lock",
        "run",
        "ci/lost",
        "--ttl",
        "2s",
        "--",
        "sh",
        "-c",
        "echo \"$SLUICE_FENCING_TOKEN\" > lost; while :; do sleep 0.05; done",
    ]);
    let token = file(&ops.path("lost")).await;
    let (code, _, err) = ops.run(&["lock", "release", "ci/lost", "--fencing-token", &token]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = finish(doomed);
    assert_eq!(code, Some(75), "{err}");
    assert!(err.contains("lock ci/lost lost"), "{err}");

    // acquire / release by hand; a wrong token is refused (65) and changes nothing.
    let (code, out, err) = ops.run(&["lock", "acquire", "ci/manual", "--ttl", "1m"]);
    assert_eq!(code, Some(0), "{err}");
    let token = out.trim().to_string();
    let (code, _, err) = ops.run(&["lock", "release", "ci/manual", "--fencing-token", "1"]);
    assert_eq!(code, Some(65), "{err}");
    let (code, out, _) = ops.run(&["lock", "list"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("KEY") && out.contains("ci/manual"), "{out}");
    let (code, _, err) = ops.run(&["lock", "release", "ci/manual", "--fencing-token", &token]);
    assert_eq!(code, Some(0), "{err}");
    assert!(ops.locks().is_empty());

    // cluster status: one member, the leader.
    let v = ops.json(&["cluster", "status", "--output", "json"]);
    assert_eq!(v["members"].as_array().unwrap().len(), 1, "{v}");
    let (code, out, _) = ops.run(&["cluster", "status"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("leader"), "{out}");

    // A token the coordinator does not know: 77, for reads and writes alike.
    for args in [
        &["services"][..],
        &["lock", "list"],
        &["lock", "acquire", "ci/x"],
        &["cluster", "status"],
    ] {
        let out = tokio::task::block_in_place(|| {
            ops.cmd(args)
                .env("SLUICE_TOKEN", "sluice_not-a-token")
                .output()
                .unwrap()
        });
        assert_eq!(
            out.status.code(),
            Some(77),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn server_policy_rollback_and_json_output() {
    ensure_test_images().unwrap();
    remove_containers("cli-ops");
    let ops = Ops::start().await;
    let _agent = AgentProc::start(
        "cli-ops-1",
        &[ops.c.nodes[0].addr.clone()],
        "27700-27719",
        "",
    );
    eventually("cli-ops-1 registered", Duration::from_secs(20), || async {
        let v = ops.json(&["servers", "list", "--output", "json"]);
        if v[0]["name"] == "cli-ops-1" && v[0]["up"] == true {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;
    let deploy = |tag: &str| {
        ops.run(&[
            "deploy",
            "--service",
            "cli-ops",
            "--image",
            &image(tag),
            "--server",
            "cli-ops-1",
            "--health",
            "/health",
            "--wait",
            "--output",
            "json",
        ])
    };

    // A forbidden server refuses the deployment in validation (2); allowed again, it works.
    let (code, _, err) = ops.run(&["servers", "forbid", "cli-ops-1"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        ops.json(&["servers", "list", "--output", "json"])[0]["forbidden"],
        true
    );
    let (code, out, err) = deploy("v1");
    assert_eq!(code, Some(2), "{out}\n{err}");
    let refused: Value = serde_json::from_str(&out).unwrap();
    let (code, _, err) = ops.run(&["servers", "allow", "cli-ops-1"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = deploy("v1");
    assert_eq!(code, Some(0), "{out}\n{err}");
    let (code, out, err) = deploy("v2");
    assert_eq!(code, Some(0), "{out}\n{err}");
    let v2: Value = serde_json::from_str(&out).unwrap();
    let v2_id = v2["id"].as_str().unwrap();

    // Labels replace the server's labels.
    let (code, _, err) = ops.run(&["servers", "labels", "cli-ops-1", "env=ci", "tier=web"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = ops.run(&["servers", "labels", "cli-ops-1", "Bad=label"]);
    assert_eq!(code, Some(64), "checked before sending: {err}");
    let (_, out, _) = ops.run(&["servers", "list"]);
    assert!(
        out.contains("cli-ops-1") && out.contains("env=ci,tier=web"),
        "{out}"
    );

    // rollback --wait puts v1 back and exits 0.
    let (code, out, err) = ops.run(&["rollback", v2_id, "--wait"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("rolled_back"), "{out}");
    let services = ops.json(&["services", "--output", "json"]);
    assert_eq!(
        services[0]["servers"][0]["image"],
        image("v1"),
        "{services}"
    );
    let (_, out, _) = ops.run(&["services"]);
    assert!(
        out.contains("cli-ops") && out.contains(&image("v1")),
        "{out}"
    );

    // Every read command's JSON is the API's, and parses.
    let refused_id = refused["id"].as_str().unwrap();
    let status = ops.json(&["status", refused_id, "--output", "json"]);
    assert_eq!(status["state"], "failed");
    let ports = ops.json(&["ports", "--output", "json"]);
    let port = ports["servers"][0]["assignments"]["cli-ops"].clone();
    assert!(port.is_u64(), "{ports}");
    let one = ops.json(&["ports", "cli-ops-1", "--output", "json"]);
    assert_eq!(one["assignments"]["cli-ops"], port);
    let (_, out, _) = ops.run(&["ports", "cli-ops-1"]);
    assert!(out.contains(&format!("cli-ops-1  {port}")), "{out}");
    for args in [
        &["servers", "list", "--output", "json"][..],
        &["lock", "list", "--output", "json"],
        &["cluster", "status", "--output", "json"],
        &["token", "list", "--output", "json"],
    ] {
        ops.json(args);
    }

    // cancel: refused (65) for a settled deployment; an active one stops and settles.
    let (code, _, err) = ops.run(&["cancel", v2_id]);
    assert_eq!(code, Some(65), "{err}");
    let (code, out, err) = ops.run(&[
        "deploy",
        "--service",
        "cli-ops",
        "--image",
        &image("broken"),
        "--server",
        "cli-ops-1",
        "--health",
        "/health",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let id = out.trim().to_string();
    let (code, _, err) = ops.run(&["cancel", &id]);
    assert_eq!(code, Some(0), "{err}");
    let settled = eventually(
        "the cancelled deployment settles",
        Duration::from_secs(60),
        || async {
            let d = ops.json(&["status", &id, "--output", "json"]);
            match d["state"].as_str() {
                Some("failed" | "rolled_back") => Ok(d),
                _ => Err(d.to_string()),
            }
        },
    )
    .await;
    assert_eq!(settled["cancel_requested"], true, "{settled}");
    remove_containers("cli-ops");
}

#[tokio::test(flavor = "multi_thread")]
async fn lock_run_stops_the_command_when_the_lease_cannot_be_renewed() {
    let mut ops = Ops::start().await;
    let runner = ops.spawn(&[
        "lock",
        "run",
        "ci/orphan",
        "--ttl",
        "2s",
        "--",
        "sh",
        "-c",
        "echo $$ > pid; while :; do sleep 0.05; done",
    ]);
    let pid = file(&ops.path("pid")).await;
    // The only coordinator goes away: no renewal can succeed, and once the lease would
    // have lapsed someone else could hold the lock, so the command must stop.
    ops.c.nodes[0].kill();
    let (code, err) = finish(runner);
    assert_eq!(code, Some(75), "{err}");
    assert!(
        err.contains("could not renew before the lease lapsed"),
        "{err}"
    );
    let alive = Command::new("kill")
        .args(["-0", &pid])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!alive.success(), "the command (pid {pid}) still runs");
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_members_are_added_and_removed() {
    let mut ops = Ops::start().await;
    let joiner = ops.c.spawn_joiner().await;
    let (id, addr) = (
        ops.c.nodes[joiner].id.to_string(),
        ops.c.nodes[joiner].addr.clone(),
    );
    let (code, out, err) = ops.run(&["cluster", "add", &id, &addr]);
    assert_eq!(code, Some(0), "{out}\n{err}\n{}", ops.c.logs());
    assert!(out.contains(&addr) && out.contains("voter"), "{out}");
    let v = ops.json(&["cluster", "status", "--output", "json"]);
    assert_eq!(v["members"].as_array().unwrap().len(), 2, "{v}");

    let (code, out, err) = ops.run(&["cluster", "remove", &id]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let v = ops.json(&["cluster", "status", "--output", "json"]);
    assert_eq!(v["members"].as_array().unwrap().len(), 1, "{v}");

    let (code, _, err) = ops.run(&["cluster", "add", "0", "127.0.0.1:1"]);
    assert_eq!(code, Some(64), "{err}");
}
