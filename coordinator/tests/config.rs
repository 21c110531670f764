//! A coordinator refuses bad configuration with exit 64 (EX_USAGE), so systemd does not
//! restart it into the same failure; it tells systemd when it is ready and stopping; and
//! every example config under `packaging/` (what the Debian packages install) loads and
//! starts its daemon.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        config.replace("DIR", &dir.path().display().to_string()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-coordinator"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configs_exit_64_and_say_why() {
    let tls = "[tls]\nca = \"DIR/ca.pem\"\ncert = \"DIR/c.pem\"\nkey = \"DIR/c.key\"\n";
    for (config, needle) in [
        (
            format!("node_id = 1\ndata_dir = \"DIR/d\"\nbogus = 1\n{tls}"),
            "unknown field",
        ),
        ("node_id = 1\ndata_dir = \"DIR/d\"\n".to_string(), "tls"),
        (
            format!("node_id = 1\ndata_dir = \"DIR/d\"\nlisten = \"127.0.0.1:0\"\n{tls}"),
            "No such file",
        ),
    ] {
        let (code, stderr) = run(&config);
        assert_eq!(code, Some(64), "{config}\n{stderr}");
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
}

/// Starts `bin --config config` with a notify socket, as systemd's `Type=notify` would:
/// asserts READY=1 once it serves, then SIGTERM, STOPPING=1 and exit 0.
fn ready_then_stopping(bin: &Path, config: &Path) {
    use std::os::unix::net::UnixDatagram;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let stderr = dir.path().join("stderr");
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(config)
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&stderr).unwrap_or_default();
    let deadline =
        Instant::now() + Duration::from_secs(30).mul_f64(sluice_tests::eventually::patience());
    // The next notification; fails fast when the process exits without one.
    let next = |child: &mut std::process::Child, what: &str| -> String {
        let mut buf = [0u8; 256];
        loop {
            if let Ok(n) = socket.recv(&mut buf) {
                return std::str::from_utf8(&buf[..n]).unwrap().trim().to_string();
            }
            let exited = child.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                // It may have said it just before exiting.
                if let Ok(n) = socket.recv(&mut buf) {
                    return std::str::from_utf8(&buf[..n]).unwrap().trim().to_string();
                }
                let _ = child.kill();
                let status = child.wait().unwrap();
                panic!(
                    "{} --config {}: no {what} ({status})\n{}",
                    bin.display(),
                    config.display(),
                    log()
                );
            }
        }
    };
    // SIGTERM at once: both daemons install their handler before they say READY=1.
    assert_eq!(next(&mut child, "READY=1"), "READY=1");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(next(&mut child, "STOPPING=1"), "STOPPING=1");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}\n{}", log());
}

/// Under systemd (`Type=notify`) the coordinator says READY=1 once serving and STOPPING=1
/// on SIGTERM, then exits 0.
#[test]
fn tells_systemd_ready_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let files = sluice_tests::pki::Pki::shared().write(
        dir.path(),
        sluice_common::tls::Role::Coordinator,
        "n1",
    );
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "node_id = 1\ndata_dir = {:?}\nlisten = \"127.0.0.1:0\"\n[tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
            dir.path().join("data"),
            files.ca,
            files.cert,
            files.key
        ),
    )
    .unwrap();
    ready_then_stopping(Path::new(env!("CARGO_BIN_EXE_sluice-coordinator")), &config);
}

/// Every example config shipped under `packaging/` (the Debian packages install them as
/// `/etc/sluice/coordinator.toml` and `/etc/sluice-agent/agent.toml`) is accepted by the
/// real loader of the daemon that reads it and, with only its paths and listen address
/// pointed at a temporary directory, starts that daemon (READY=1). Every other key and
/// table keeps the example's value, so a key the daemon no longer knows, or a value it
/// refuses, fails here. A new example file must be taught to this test.
#[test]
fn every_packaged_example_config_loads_and_starts() {
    let packaging = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging");
    let mut examples: Vec<PathBuf> = std::fs::read_dir(&packaging)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".example.toml"))
        })
        .collect();
    examples.sort();
    let names: Vec<String> = examples
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in ["agent.example.toml", "coordinator.example.toml"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    for (path, name) in examples.iter().zip(&names) {
        match name.split('.').next() {
            Some("coordinator") => coordinator_example(path),
            Some("agent") => agent_example(path),
            _ => panic!(
                "packaging/{name}: which daemon reads it? Teach \
                 every_packaged_example_config_loads_and_starts its loader"
            ),
        }
    }
}

fn example_table(path: &Path) -> toml::Table {
    toml::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `table` with the keys that name this machine's files and ports replaced: `data_dir`,
/// `listen`, and `[tls]` with fresh certificates for `role`/`name`.
fn localized(
    mut table: toml::Table,
    dir: &Path,
    role: sluice_common::tls::Role,
    name: &str,
) -> PathBuf {
    use toml::Value;
    let files = sluice_tests::pki::Pki::shared().write(&dir.join("tls"), role, name);
    let path = |p: &Path| Value::String(p.display().to_string());
    table.insert("data_dir".into(), path(&dir.join("data")));
    table.insert("listen".into(), Value::String("127.0.0.1:0".into()));
    let mut tls = toml::Table::new();
    tls.insert("ca".into(), path(&files.ca));
    tls.insert("cert".into(), path(&files.cert));
    tls.insert("key".into(), path(&files.key));
    table.insert("tls".into(), Value::Table(tls));
    let config = dir.join("config.toml");
    std::fs::write(&config, toml::to_string(&table).unwrap()).unwrap();
    config
}

/// Writes `secret` to `path` with mode 0600, as every secret file must be.
fn secret_file(path: &Path, secret: &str) -> toml::Value {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, secret.as_bytes()))
        .unwrap();
    toml::Value::String(path.display().to_string())
}

/// The example with its optional `[notify.*]` channels switched on: the commented-out
/// `# [notify.x]` headers and `# key = value` lines between `[notify]` and the next table
/// uncommented, so the keys the example documents are the keys the loader takes.
fn with_notify_channels(text: &str) -> Option<String> {
    let mut inside = false;
    let mut changed = false;
    let out: Vec<String> = text
        .lines()
        .map(|line| {
            if line.starts_with('[') {
                inside = line == "[notify]";
            }
            let Some(rest) = line.strip_prefix("# ") else {
                return line.to_string();
            };
            let header = rest.starts_with("[notify.") && rest.ends_with(']');
            let key = rest.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            });
            if inside && (header || key) {
                changed = true;
                rest.to_string()
            } else {
                line.to_string()
            }
        })
        .collect();
    changed.then(|| out.join("\n") + "\n")
}

fn coordinator_example(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    coordinator_variant(path, &text);
    if let Some(text) = with_notify_channels(&text) {
        coordinator_variant(path, &text);
    }
}

fn coordinator_variant(path: &Path, text: &str) {
    use sluice_coordinator::config::Config;
    use toml::Value;
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("example.toml");
    std::fs::write(&original, text).unwrap();
    let example = Config::load(&original).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut table: toml::Table = toml::from_str(text).unwrap();
    // The example's cluster may name machines that are not here; a single node forms alone.
    if !example.cluster.initial_members.is_empty() {
        if let Some(Value::Table(cluster)) = table.get_mut("cluster") {
            cluster.insert("initial_members".into(), Value::Array(vec![]));
        }
    }
    if example.admin_token_file.is_some() {
        let token = secret_file(&dir.path().join("admin.token"), "sluice_example_admin");
        table.insert("admin_token_file".into(), token);
    }
    // Notification channels: secrets from files here, endpoints that answer nothing.
    if let Some(Value::Table(notify)) = table.get_mut("notify") {
        for (channel, value) in notify.iter_mut() {
            let Value::Table(channel_table) = value else {
                continue;
            };
            for (key, v) in channel_table.iter_mut() {
                if key.ends_with("_file") {
                    *v = secret_file(&dir.path().join(format!("{channel}.{key}")), "s3cret");
                } else if key == "url" || key == "base_url" {
                    *v = Value::String("http://127.0.0.1:9".into());
                }
            }
        }
    }
    let config = localized(
        table,
        dir.path(),
        sluice_common::tls::Role::Coordinator,
        "coordinator-1",
    );
    Config::load(&config).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
    ready_then_stopping(Path::new(env!("CARGO_BIN_EXE_sluice-coordinator")), &config);
}

fn agent_example(path: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let mut table = example_table(path);
    let name = table["name"].as_str().expect("name").to_string();
    // Registration would dial the example's coordinators; run standalone instead.
    table.insert("coordinators".into(), toml::Value::Array(vec![]));
    let config = localized(table, dir.path(), sluice_common::tls::Role::Agent, &name);
    // The agent's loader lives in its binary; a config it refuses exits 64 before READY=1.
    ready_then_stopping(&sluice_tests::agent::agent_bin(), &config);
}
