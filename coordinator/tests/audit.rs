//! The audit trail through real coordinator processes: who did what, filters and paging,
//! the same chain on every node across a leader change and a snapshot install, and
//! `sluice audit verify` naming a tampered record in an export.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_common::api::{
    AcquireLockRequest, AddMemberRequest, AllocatePortRequest, CreateTokenRequest,
    PutServerRequest, TokenName, TokenRole,
};
use sluice_common::audit::verify;
use sluice_common::client::AuditFilter;
use sluice_common::names::{LockKey, ServerName, ServiceName};
use sluice_common::ports::PortRange;
use sluice_tests::cluster::{acquire_request, Cluster, NodeOpts};
use sluice_tests::eventually::eventually;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sluice-coordinator"))
}

/// A raw `GET`, for the queries the typed filter cannot write: the status and the body.
async fn get_raw(c: &Cluster, node: usize, path: &str) -> (u16, Value) {
    let resp = c.http.get(c.nodes[node].url(path)).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn sluice(c: &Cluster, node: usize, ca: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_ADDR", &c.nodes[node].addr)
        .env("SLUICE_TOKEN", &c.admin_token)
        .env("SLUICE_CA", ca)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chain_names_actors_survives_failover_and_snapshots_and_exposes_tampering() {
    let opts = NodeOpts {
        snapshot_every: 40,
        logs_to_keep: 0,
        ..NodeOpts::default()
    };
    let mut c = Cluster::start(bin(), 3, opts).await;
    let leader = c.leader().await;

    // An admin action, a CI token, and that token's own writes.
    let web1 = ServerName::parse("web-1").unwrap();
    let server = PutServerRequest {
        agent_addr: "127.0.0.1:1".into(),
        labels: Vec::new(),
        port_range: PortRange::parse("20000-20999").unwrap(),
        forbidden: false,
    };
    c.api(0).put_server(&web1, &server).await.unwrap();
    let ci_bot = CreateTokenRequest {
        name: TokenName::parse("ci-bot").unwrap(),
        role: TokenRole::Deployer,
        services: Vec::new(),
    };
    let secret = c.api(1).create_token(&ci_bot).await.unwrap().secret;
    let key = LockKey::parse("service/api").unwrap();
    let lock = AcquireLockRequest {
        reason: "migrate".into(),
        ..acquire_request("ci-run-7", "30s")
    };
    let granted = c
        .api(2)
        .with_token(&secret)
        .acquire_lock(&key, &lock)
        .await
        .unwrap();
    let token = granted.token.0;
    c.api(0)
        .with_token(&secret)
        .release_lock(&key, granted.token)
        .await
        .unwrap();
    // Enough writes for a snapshot (and a purged log) on every node.
    for i in 0..45 {
        let service = ServiceName::parse(&format!("svc{i}")).unwrap();
        c.api(i % 3)
            .allocate_port(&web1, &service, &AllocatePortRequest::default())
            .await
            .unwrap();
    }

    let recs = c.audit(leader).await.unwrap();
    assert_eq!(verify(&recs), Ok(recs.len() as u64));
    let find = |action: &str| {
        recs.iter()
            .find(|r| r.action == action)
            .unwrap_or_else(|| panic!("no {action} in {recs:#?}"))
    };
    assert_eq!(find("server.put").actor, "bootstrap-admin");
    assert_eq!(find("token.create").target, "token/ci-bot");
    let acquire = find("lock.acquire");
    assert_eq!(acquire.actor, "token:ci-bot");
    assert_eq!(acquire.service.as_deref(), Some("api"));
    assert_eq!(acquire.details["token"], token);
    assert_eq!(
        acquire.index, token,
        "the record sits at the grant's log index"
    );
    assert_eq!(find("lock.release").actor, "token:ci-bot");
    let text = serde_json::to_string(&recs).unwrap();
    assert!(!text.contains(&secret), "a token secret in the audit trail");

    // Filters and paging.
    let page = c
        .api(1)
        .audit(&AuditFilter {
            action: Some("lock".into()),
            actor: Some("token:ci-bot".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = page.records.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["lock.acquire", "lock.release"]);
    let page = c
        .api(2)
        .audit(&AuditFilter {
            service: Some("svc3".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(page.records.len(), 1, "{page:?}");
    let ten = |after| AuditFilter {
        limit: Some(10),
        after,
        ..AuditFilter::default()
    };
    let page = c.api(0).audit(&ten(None)).await.unwrap();
    assert_eq!(page.records.len(), 10);
    let next = page.next_after.unwrap();
    assert_eq!(next, 10);
    let page2 = c.api(0).audit(&ten(Some(next))).await.unwrap();
    assert_eq!(page2.records[0].seq, 11);
    let future = "2999-01-01T00:00:00Z";
    let none = c
        .api(0)
        .audit(&AuditFilter {
            since: Some(future.into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert!(none.records.is_empty(), "{none:?}");
    // Raw: query strings the typed filter cannot write (an unknown format or parameter).
    for bad in ["since=yesterday", "limit=0", "format=xml", "bogus=1"] {
        let (s, p) = get_raw(&c, 0, &format!("/v1/audit?{bad}")).await;
        assert_eq!(s, 400, "{bad}: {p}");
        assert_eq!(p["code"], "invalid_request", "{bad}: {p}");
    }

    // kill -9 the leader; the new one extends the same chain.
    c.nodes[leader].kill();
    let new_leader = c.leader().await;
    assert_ne!(new_leader, leader);
    c.api(new_leader)
        .acquire_lock(
            &LockKey::parse("release/train").unwrap(),
            &acquire_request("after-failover", "30s"),
        )
        .await
        .unwrap();
    c.nodes[leader].start().await;

    // A node that joins now can only get the early records from a snapshot.
    let joiner = c.spawn_joiner().await;
    let (id, addr) = (c.nodes[joiner].id, c.nodes[joiner].addr.clone());
    let member = AddMemberRequest {
        id,
        addr,
        voter: true,
    };
    c.api(new_leader).add_member(&member).await.unwrap();
    let reference = c.audit(new_leader).await.unwrap();
    assert_eq!(verify(&reference), Ok(reference.len() as u64));
    assert!(reference.len() > recs.len());
    assert_eq!(&reference[..recs.len()], &recs[..], "history rewritten");
    assert!(reference
        .iter()
        .any(|r| r.action == "lock.acquire" && r.target == "lock/release/train"));
    for node in 0..c.nodes.len() {
        eventually(
            &format!("node {node} to hold the same chain"),
            Duration::from_secs(30),
            || async {
                let mine = c.audit(node).await?;
                if mine.len() < reference.len() || mine[..reference.len()] != reference[..] {
                    return Err(format!("{} records so far", mine.len()));
                }
                verify(&mine).map_err(|e| e.to_string())?;
                Ok(())
            },
        )
        .await;
    }
    let st = c.status(joiner).await.unwrap();
    assert!(st.snapshot.is_some(), "joiner has no snapshot: {st:?}");

    // `sluice audit`: export from the joiner, verify, tamper, verify again.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, c.pki.ca_pem()).unwrap();
    let file = dir.path().join("audit.jsonl");
    let file_s = file.to_str().unwrap();
    let (code, _, err) = sluice(&c, joiner, &ca, &["audit", "export", "--out", file_s]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = sluice(&c, joiner, &ca, &["audit", "verify", "--file", file_s]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("ok: "), "{out}");
    let (code, out, err) = sluice(&c, 1, &ca, &["audit", "verify"]);
    assert_eq!(code, Some(0), "live: {out}{err}");

    let mut lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines[6]["actor"] = json!("token:someone-innocent");
    let tampered: String = lines.iter().map(|v| format!("{v}\n")).collect();
    std::fs::write(&file, tampered).unwrap();
    let (code, out, err) = sluice(&c, joiner, &ca, &["audit", "verify", "--file", file_s]);
    assert_eq!(code, Some(65), "{out}{err}");
    assert!(err.contains("record 7"), "{err}");

    let (code, out, err) = sluice(
        &c,
        0,
        &ca,
        &["audit", "list", "--action", "token", "--output", "json"],
    );
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["records"][0]["action"], "token.create");
}
