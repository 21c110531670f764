//! A coordinator refuses bad configuration with exit 64 (EX_USAGE), so systemd does not
//! restart it into the same failure.

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

/// Under systemd (`Type=notify`) the coordinator says READY=1 once serving and STOPPING=1
/// on SIGTERM, then exits 0.
#[test]
fn tells_systemd_ready_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let files = sluice_tests::pki::Pki::shared().write(
        dir.path(),
        sluice_common::tls::Role::Coordinator,
        "n1",
    );
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(
            Duration::from_secs(30).mul_f64(sluice_tests::eventually::patience()),
        ))
        .unwrap();
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-coordinator"))
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("READY=1 within the deadline");
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap().trim(), "READY=1");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let n = socket.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap().trim(), "STOPPING=1");
    assert!(child.wait().unwrap().success());
}
