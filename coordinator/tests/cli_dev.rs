//! `sluice dev` (the README's first command) and `sluice dev --demo`, through the real
//! binaries.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use sluice_common::client::Client;
use sluice_common::names::ServerName;
use sluice_common::tls::{https_client, Role};
use sluice_tests::cluster::free_port;
use sluice_tests::eventually::patience;

struct Dev {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Dev {
    fn start(dir: &std::path::Path, port: u16, agent_port: u16) -> Self {
        Self::start_with(dir, port, agent_port, "27500-27519", &[])
    }

    fn start_with(
        dir: &std::path::Path,
        port: u16,
        agent_port: u16,
        port_range: &str,
        extra: &[&str],
    ) -> Self {
        let mut child = {
            use std::os::unix::process::CommandExt;
            Command::new(env!("CARGO_BIN_EXE_sluice"))
                .args(["dev", "--dir"])
                .arg(dir)
                .args([
                    "--port",
                    &port.to_string(),
                    "--agent-port",
                    &agent_port.to_string(),
                ])
                .args(["--port-range", port_range])
                .args(extra)
                .stdout(Stdio::piped())
                .process_group(0)
                .spawn()
                .expect("spawn sluice dev")
        };
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Self { child, lines }
    }

    fn wait_running(&self) -> String {
        self.wait_running_for(Duration::from_secs(60))
    }

    fn wait_running_for(&self, patience_base: Duration) -> String {
        let deadline = std::time::Instant::now() + patience_base.mul_f64(patience());
        let mut seen = String::new();
        while std::time::Instant::now() < deadline {
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                seen.push_str(&l);
                seen.push('\n');
                if l.contains("(or SIGTERM) stops all three") {
                    return seen;
                }
            }
        }
        panic!("sluice dev did not come up; printed:\n{seen}");
    }

    /// Ctrl-C, then wait for a clean exit.
    fn interrupt(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sluice_dev_runs_a_coordinator_and_an_agent_and_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (port, agent_port) = (free_port(), free_port());
    let dev = Dev::start(&state, port, agent_port);
    let printed = dev.wait_running();
    assert!(printed.contains("export SLUICE_ADDR="), "{printed}");

    let ca = std::fs::read_to_string(state.join("tls/ca.pem")).unwrap();
    let token = std::fs::read_to_string(state.join("admin.token")).unwrap();
    let client = https_client(&ca, None, &[Role::Coordinator])
        .unwrap()
        .build()
        .unwrap();
    let api = Client::new(client, format!("https://127.0.0.1:{port}")).with_token(&token);
    let local = ServerName::parse("local").unwrap();
    let v = api.server(&local).await.unwrap();
    assert!(v.up, "{v:?}");
    // The admin token file and keys are private.
    use std::os::unix::fs::PermissionsExt;
    for f in [
        "admin.token",
        "tls/ca.key",
        "tls/coordinator-1.key",
        "tls/local.key",
    ] {
        let mode = std::fs::metadata(state.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let status = dev.interrupt();
    assert!(status.success(), "{status:?}");

    // A second run reuses the CA, the token and the cluster's state.
    let dev = Dev::start(&state, port, agent_port);
    dev.wait_running();
    assert_eq!(
        std::fs::read_to_string(state.join("tls/ca.pem")).unwrap(),
        ca
    );
    api.server(&local).await.unwrap();
    assert!(dev.interrupt().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn sluice_dev_demo_shows_a_deployment_and_an_automatic_rollback() {
    sluice_tests::agent::remove_containers("demo");
    let dir = tempfile::tempdir().unwrap();
    let (port, agent_port) = (free_port(), free_port());
    let dev = Dev::start_with(
        &dir.path().join("state"),
        port,
        agent_port,
        "27520-27539",
        &["--demo"],
    );
    // Building the sample app may compile it the first time.
    let printed = dev.wait_running_for(Duration::from_secs(120));
    assert!(printed.contains("== demo 3/3"), "{printed}");
    assert!(printed.contains(": rolled_back"), "{printed}");
    assert!(
        printed.contains("Sluice put sluice-demo:v1 back on its own"),
        "{printed}"
    );
    assert_eq!(
        printed.matches("GET /version -> v1").count(),
        2,
        "v1 answers before and after the failed v2: {printed}"
    );
    assert!(dev.interrupt().success());
    sluice_tests::agent::remove_containers("demo");
}

/// The pids of live processes whose command line mentions `needle` (the dev directory is
/// in the children's `--config` paths), other than `sluice dev` itself.
fn children_of(needle: &str) -> Vec<String> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        // A zombie has an empty command line: it is gone.
        if cmd.contains(needle) && !cmd.contains(" dev ") {
            pids.push(format!("{pid}: {cmd}"));
        }
    }
    pids
}

async fn wait_no_children(dir: &str, why: &str) {
    sluice_tests::eventually::eventually(why, Duration::from_secs(20), || async {
        let left = children_of(dir);
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("still running: {left:?}"))
        }
    })
    .await;
}

/// Issue 19: `sluice dev` stopped by SIGTERM (`kill`, `timeout`, a service manager) left
/// its coordinator and agent running on their ports. Now SIGTERM stops them as Ctrl-C
/// does, and even `kill -9` of `sluice dev` leaves no orphan: the children stop when their
/// standard input, held open by `sluice dev`, closes.
#[tokio::test(flavor = "multi_thread")]
async fn sluice_dev_leaves_no_child_behind_on_sigterm_or_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let needle = state.display().to_string();
    let (port, agent_port) = (free_port(), free_port());
    for signal in ["-TERM", "-KILL"] {
        let mut dev = Dev::start_with(&state, port, agent_port, "27540-27559", &[]);
        dev.wait_running();
        // The coordinator, the agent and sluice-proxy.
        assert_eq!(children_of(&needle).len(), 3, "{:?}", children_of(&needle));
        Command::new("kill")
            .args([signal, &dev.child.id().to_string()])
            .status()
            .unwrap();
        let status = dev.child.wait().unwrap();
        if signal == "-TERM" {
            assert!(status.success(), "{status:?}");
        }
        wait_no_children(
            &needle,
            &format!("no child left after kill {signal} of sluice dev"),
        )
        .await;
    }
}
