//! Audit checkpoints through a real coordinator process: the live chain is cut to the
//! configured length, the rest is archived as JSON-lines segments under the node's data
//! directory, `sluice audit verify --archive` checks the whole chain across archive and live
//! records, names the file and record of a segment edited by hand, and a node restarted from
//! its snapshot, or joining through a snapshot install, has the same archive boundary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sluice_common::api::AddMemberRequest;
use sluice_common::audit::AuditRecord;
use sluice_common::names::LockKey;
use sluice_tests::cluster::{acquire_request, Cluster, NodeOpts};
use sluice_tests::eventually::eventually;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sluice-coordinator"))
}

fn verify(c: &Cluster, archive: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["audit", "verify", "--archive"])
        .arg(archive)
        .env("SLUICE_ADDR", &c.nodes[0].addr)
        .env("SLUICE_TOKEN", &c.admin_token)
        .env("SLUICE_CA", c.nodes[0].dir().join("tls/ca.pem"))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "jsonl"));
    files.sort();
    files
}

/// The live records' first (seq, prev_hash) and count.
async fn live(c: &Cluster) -> Result<(u64, String, usize), String> {
    let recs: Vec<AuditRecord> = c.audit(0).await?;
    let first = recs.first().ok_or("no records")?;
    Ok((first.seq, first.prev_hash.clone(), recs.len()))
}

#[tokio::test(flavor = "multi_thread")]
async fn archive_and_live_chain_verify_as_one_and_a_hand_edit_is_named() {
    let opts = NodeOpts {
        snapshot_every: 30,
        logs_to_keep: 0,
        extra_toml: "[retention]\naudit_live_records = 20\naudit_segment_records = 10\n\
                     prune_interval = \"200ms\"\n"
            .into(),
        ..NodeOpts::default()
    };
    let mut c = Cluster::start(bin(), 1, opts).await;
    let api = c.api(0);
    // 60 grants and releases: 120 audit records.
    for i in 0..60 {
        let key = LockKey::parse(&format!("job/{i}")).unwrap();
        let lease = api
            .acquire_lock(&key, &acquire_request("ci", "30s"))
            .await
            .unwrap();
        api.release_lock(&key, lease.token).await.unwrap();
    }
    let archive = c.nodes[0].dir().join("data/audit-archive");
    let (first, _, n) = eventually(
        "the chain to be checkpointed",
        Duration::from_secs(30),
        || async {
            match live(&c).await? {
                (first, h, n) if n <= 30 && first > 90 => Ok((first, h, n)),
                other => Err(format!("live (first seq, _, count) = {other:?}")),
            }
        },
    )
    .await;
    let files = segments(&archive);
    assert!(!files.is_empty(), "no segment in {}", archive.display());
    assert!(files[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("00000000000000000001-"));

    let (code, out, err) = verify(&c, &archive);
    assert_eq!(code, Some(0), "{out}{err}");
    let total = first as usize - 1 + n;
    assert!(
        out.starts_with(&format!("ok: {total} records verify")),
        "{out}"
    );

    // Restarted: the snapshot (every 30 entries) holds the same boundary, and the chain
    // still verifies across it.
    let before = live(&c).await.unwrap();
    c.nodes[0].kill();
    c.nodes[0].start().await;
    let after = eventually(
        "the restarted node to answer",
        Duration::from_secs(30),
        || async { live(&c).await },
    )
    .await;
    assert_eq!((after.0, &after.1), (before.0, &before.1));
    let (code, out, err) = verify(&c, &archive);
    assert_eq!(code, Some(0), "{out}{err}");

    // A node that joins now gets the state from a snapshot (no log is kept behind it): the
    // same boundary, the same live chain.
    let joiner = c.spawn_joiner().await;
    let member = AddMemberRequest {
        id: c.nodes[joiner].id,
        addr: c.nodes[joiner].addr.clone(),
        voter: true,
    };
    c.api(0).add_member(&member).await.unwrap();
    let reference = c.audit(0).await.unwrap();
    eventually(
        "the joiner to hold the same live chain",
        Duration::from_secs(30),
        || async {
            let mine = c.audit(joiner).await?;
            if mine.len() < reference.len() || mine[..reference.len()] != reference[..] {
                return Err(format!("{} live records so far", mine.len()));
            }
            Ok(())
        },
    )
    .await;
    let st = c.status(joiner).await.unwrap();
    assert!(st.snapshot.is_some(), "joiner has no snapshot: {st:?}");

    // A record of the last segment edited by hand: verify names the file and the record.
    let victim = files.last().unwrap();
    let text = std::fs::read_to_string(victim).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut rec: AuditRecord = serde_json::from_str(&lines[3]).unwrap();
    rec.actor = "token:mallory".into();
    lines[3] = serde_json::to_string(&rec).unwrap();
    std::fs::write(victim, lines.join("\n") + "\n").unwrap();
    let (code, out, err) = verify(&c, &archive);
    assert_ne!(code, Some(0), "{out}");
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(err.contains(name), "{err}");
    assert!(
        err.contains(&format!("record {}", rec.seq)),
        "{err} (edited record {})",
        rec.seq
    );
}
