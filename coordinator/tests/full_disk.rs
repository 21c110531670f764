//! A coordinator whose data directory fills up: writes fail with a clear problem+json
//! within the request timeout (never a hang, never a false success), and once space is
//! back and the node restarts, every acknowledged write is there and new ones succeed.
//!
//! The data directory is a 32 MiB tmpfs mounted for the test (root is needed, as for the
//! partition tests; without it the test fails rather than passing silently).
//!
//! Log appends go into segment files created at full size, so they keep working on a full
//! filesystem until the segment is full; what needs new space first here is the snapshot
//! (taken every 300 entries), and its failure must stop the node as cleanly as a failed
//! append would.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_common::api::PutServerRequest;
use sluice_common::names::{ServerName, ServiceName};
use sluice_common::ports::PortRange;
use sluice_tests::cluster::{Cluster, NodeOpts};
use sluice_tests::eventually::eventually;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn run(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd).args(args).status().unwrap();
    assert!(st.success(), "{cmd} {args:?} failed");
}

/// Raw: a refusal must be problem+json by its content type too, not only by its body.
async fn allocate(c: &Cluster, i: usize) -> Result<(u16, Value), String> {
    let r = c
        .http
        .post(c.nodes[0].url(&format!("/v1/ports/disk-1/svc{i}")))
        .json(&json!({}))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let v: Value = r.json().await.map_err(|e| e.to_string())?;
    if status != 200 {
        assert_eq!(ctype, "application/problem+json", "{status} {v}");
    }
    Ok((status, v))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_data_directory_fails_writes_cleanly_and_loses_nothing() {
    assert!(
        nix_is_root(),
        "this test mounts a tmpfs and needs root (CI runs as root)"
    );
    let mut c = Cluster::start(
        Path::new(env!("CARGO_BIN_EXE_sluice-coordinator")),
        1,
        NodeOpts {
            snapshot_every: 300,
            logs_to_keep: 100,
            ..NodeOpts::default()
        },
    )
    .await;
    // Move the node's data onto a small filesystem.
    c.nodes[0].kill();
    let data = c.nodes[0].dir().join("data");
    let saved = c.nodes[0].dir().join("data.saved");
    std::fs::rename(&data, &saved).unwrap();
    std::fs::create_dir(&data).unwrap();
    run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=32m",
            "tmpfs",
            data.to_str().unwrap(),
        ],
    );
    let _mount = Mount(data.clone());
    run(
        "cp",
        &[
            "-a",
            &format!("{}/.", saved.display()),
            data.to_str().unwrap(),
        ],
    );
    c.nodes[0].start().await;
    c.leader().await;
    let server = PutServerRequest {
        agent_addr: "127.0.0.1:1".into(),
        labels: Vec::new(),
        port_range: PortRange::parse("10000-60000").unwrap(),
        forbidden: false,
    };
    let disk1 = ServerName::parse("disk-1").unwrap();
    c.api(0).put_server(&disk1, &server).await.unwrap();

    // Fill the filesystem, then write until a write fails.
    let filler = data.join("filler");
    let _ = Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}", filler.display()),
            "bs=1M",
            "count=64",
        ])
        .output();
    let mut acked = Vec::new();
    let mut refusal = None;
    for i in 0..2000 {
        let started = Instant::now();
        match allocate(&c, i).await {
            Ok((200, v)) => acked.push((i, v["port"].as_u64().unwrap())),
            Ok((status, v)) => {
                assert!(status >= 500, "{status} {v}");
                assert!(
                    started.elapsed() < Duration::from_secs(15),
                    "a failing write took {:?}",
                    started.elapsed()
                );
                refusal = Some(v);
                break;
            }
            Err(e) => {
                refusal = Some(json!({ "transport": e }));
                break;
            }
        }
    }
    let refusal = refusal.expect("2000 writes fit on a full filesystem?");
    eprintln!("{} writes acknowledged, then: {refusal}", acked.len());

    // The node stops itself (so systemd would restart it) rather than limp on.
    let log = eventually(
        "the node to exit on its own",
        Duration::from_secs(20),
        || async {
            let log = c.nodes[0].log();
            log.contains("raft stopped; shutting this node down")
                .then_some(log.clone())
                .ok_or_else(|| "still running".to_string())
        },
    )
    .await;
    assert!(!log.contains("panicked"), "{log}");

    // Space back, restart: every acknowledged write is there, and writing works again.
    std::fs::remove_file(&filler).unwrap();
    c.nodes[0].kill();
    c.nodes[0].start().await;
    c.leader().await;
    let ports = eventually("the ledger to answer", Duration::from_secs(20), || async {
        c.api(0)
            .server_ports(&disk1)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    for (i, port) in &acked {
        let service = ServiceName::parse(&format!("svc{i}")).unwrap();
        assert_eq!(
            ports.assignments.get(&service).map(|&p| u64::from(p)),
            Some(*port),
            "acknowledged allocation svc{i} lost: {ports:?}"
        );
    }
    let (s, v) = allocate(&c, 99_999).await.unwrap();
    assert_eq!(s, 200, "{v}");
    let log = c.nodes[0].log();
    assert!(!log.contains("panicked"), "{log}");
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
