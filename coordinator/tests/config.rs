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
