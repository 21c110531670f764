//! `sluice ca` through the real binary: files, modes, refusals and exit codes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use sluice_common::tls::{PeerIdentity, Role, TlsFiles};

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env_remove("SLUICE_CA_DIR")
        .output()
        .expect("the sluice binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn dir_arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn init_then_issue_then_show() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = tmp.path().join("ca");
    let d = dir_arg(&ca_dir);

    let out = sluice(&["ca", "init", "--dir", d]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(mode(&ca_dir.join("ca.key")), 0o600);
    assert!(text(&out.stdout).contains("ca.pem"));
    let key = std::fs::read_to_string(ca_dir.join("ca.key")).unwrap();
    assert!(
        !text(&out.stdout).contains(key.trim()),
        "the key is never printed"
    );

    let node_dir = tmp.path().join("web-1");
    let out = sluice(&[
        "ca",
        "issue",
        "--role",
        "agent",
        "--name",
        "web-1",
        "--san",
        "10.0.0.7",
        "--san",
        "web-1.example.com",
        "--days",
        "30",
        "--dir",
        d,
        "--out",
        dir_arg(&node_dir),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("web-1.pem") && stdout.contains("web-1.key"),
        "{stdout}"
    );
    assert_eq!(mode(&node_dir.join("web-1.key")), 0o600);

    // What was written is a working set: certificate, matching key, CA, identity.
    let material = TlsFiles::in_dir(&node_dir, "web-1").read().unwrap();
    assert_eq!(
        material.identity(),
        &PeerIdentity::new(Role::Agent, "web-1").unwrap()
    );

    let out = sluice(&["ca", "show", node_dir.join("web-1.pem").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    for want in [
        "role:        agent",
        "name:        web-1",
        "URI:urn:sluice:agent:web-1",
        "IP:10.0.0.7",
        "DNS:web-1.example.com",
        "expires in 29 days",
    ] {
        assert!(shown.contains(want), "missing {want:?} in\n{shown}");
    }

    // Issuing the same name again needs --force, and then replaces it.
    let again = [
        "ca", "issue", "--role", "agent", "--name", "web-1", "--dir", d, "--out",
    ];
    let out = sluice(&[&again[..], &[dir_arg(&node_dir)]].concat());
    assert_eq!(out.status.code(), Some(73), "{}", text(&out.stderr));
    let before = std::fs::read(node_dir.join("web-1.pem")).unwrap();
    let out = sluice(&[&again[..], &[dir_arg(&node_dir), "--force"]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_ne!(std::fs::read(node_dir.join("web-1.pem")).unwrap(), before);
    assert_eq!(mode(&node_dir.join("web-1.key")), 0o600);
    TlsFiles::in_dir(&node_dir, "web-1").read().unwrap();
}

#[test]
fn init_twice_refuses_and_keeps_the_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dir_arg(tmp.path());
    assert!(sluice(&["ca", "init", "--dir", d]).status.success());
    let key = std::fs::read(tmp.path().join("ca.key")).unwrap();

    let out = sluice(&["ca", "init", "--dir", d]);
    assert_eq!(out.status.code(), Some(73));
    assert!(
        text(&out.stderr).contains("refusing to overwrite"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(tmp.path().join("ca.key")).unwrap(), key);
}

#[test]
fn usage_errors_exit_64() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dir_arg(tmp.path());
    assert!(sluice(&["ca", "init", "--dir", d]).status.success());
    for args in [
        &["ca", "issue", "--role", "root", "--name", "x", "--dir", d][..],
        &[
            "ca", "issue", "--role", "agent", "--name", "Web_1", "--dir", d,
        ][..],
        &[
            "ca", "issue", "--role", "agent", "--name", "x", "--days", "0", "--dir", d,
        ][..],
        &["ca", "issue", "--name", "x", "--dir", d][..],
        &["ca", "frobnicate"][..],
        &[][..],
    ] {
        let out = sluice(args);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = sluice(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("ca"));
}

#[test]
fn clear_errors_for_missing_or_unusable_files() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dir_arg(tmp.path());
    let out = sluice(&["ca", "issue", "--role", "agent", "--name", "x", "--dir", d]);
    assert_eq!(out.status.code(), Some(66));
    assert!(
        text(&out.stderr).contains("ca.pem"),
        "{}",
        text(&out.stderr)
    );

    assert!(sluice(&["ca", "init", "--dir", d]).status.success());
    let key = tmp.path().join("ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = sluice(&["ca", "issue", "--role", "agent", "--name", "x", "--dir", d]);
    assert_eq!(out.status.code(), Some(65));
    assert!(
        text(&out.stderr).contains("chmod 600"),
        "{}",
        text(&out.stderr)
    );

    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let out = sluice(&["ca", "show", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out.stderr));
}
