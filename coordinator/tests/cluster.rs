//! Real coordinator processes on loopback with real sled files: elections, forwarding,
//! kill -9 of leaders, restarts, snapshots, fencing tokens and the port ledger.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_common::api::{
    AcquireLockRequest, AddMemberRequest, AllocatePortRequest, LockView, PortAllocationView,
    PutServerRequest, RenewLockRequest,
};
use sluice_common::client::ClientError;
use sluice_common::locks::FencingToken;
use sluice_common::names::{LockKey, ServerName, ServiceName};
use sluice_common::ports::PortRange;
use sluice_common::problem::{ErrorCode, Problem};
use sluice_common::time::DurationSpec;
use sluice_tests::cluster::{acquire_request, refusal, Cluster, NodeOpts};
use sluice_tests::eventually::eventually;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sluice-coordinator"))
}

/// A raw request, for the malformed ones the typed client cannot send: the status and the
/// body (JSON, else its text).
async fn try_call(
    c: &Cluster,
    method: reqwest::Method,
    node: usize,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let mut req = c.http.request(method, c.nodes[node].url(path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("{path} on node {node}: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

async fn call(
    c: &Cluster,
    method: reqwest::Method,
    node: usize,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    try_call(c, method, node, path, body).await.unwrap()
}

fn server(s: &str) -> ServerName {
    ServerName::parse(s).unwrap()
}

fn key(s: &str) -> LockKey {
    LockKey::parse(s).unwrap()
}

async fn put_server(c: &Cluster, node: usize, name: &str, range: &str) {
    let req = PutServerRequest {
        agent_addr: "127.0.0.1:1".into(),
        labels: Vec::new(),
        port_range: PortRange::parse(range).unwrap(),
        forbidden: false,
    };
    c.api(node).put_server(&server(name), &req).await.unwrap();
}

/// `POST /v1/ports/{server}/{service}` with an empty body (the lowest free port).
async fn allocate(c: &Cluster, node: usize, name: &str, service: &str) -> PortAllocationView {
    let service = ServiceName::parse(service).unwrap();
    c.api(node)
        .allocate_port(&server(name), &service, &AllocatePortRequest::default())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()))
}

async fn acquire(
    c: &Cluster,
    node: usize,
    k: &str,
    holder: &str,
    ttl: &str,
) -> Result<LockView, ClientError> {
    c.api(node)
        .acquire_lock(&key(k), &acquire_request(holder, ttl))
        .await
}

async fn release(c: &Cluster, node: usize, k: &str, token: u64) -> Result<LockView, ClientError> {
    c.api(node).release_lock(&key(k), FencingToken(token)).await
}

/// Retries a write across running nodes until one acknowledges it (a leader change may
/// make a single attempt answer 503).
async fn acquire_anywhere(c: &Cluster, k: &str, holder: &str) -> u64 {
    eventually(
        "an acknowledged acquire",
        Duration::from_secs(20),
        || async {
            for i in (0..c.nodes.len()).filter(|&i| c.nodes[i].is_running()) {
                match acquire(c, i, k, holder, "60s").await {
                    Ok(l) => return Ok(l.token.0),
                    // A node that is still starting refuses connections: try the next one.
                    Err(ClientError::Transport { .. }) => continue,
                    Err(e) if e.status().is_some_and(|s| s.as_u16() == 503) => continue,
                    Err(e) => return Err(format!("unexpected {e:?}")),
                }
            }
            Err("no node acknowledged".into())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_forward_writes_and_survive_leader_kill() {
    let mut c = Cluster::start(bin(), 3, NodeOpts::default()).await;
    let leader = c.leader().await;
    let follower = c.others(leader)[0];

    // A write through a follower lands (forwarded to the leader).
    put_server(&c, follower, "web-1", "20000-20100").await;
    let mut acked = Vec::new();
    for i in 0..20 {
        let svc = format!("svc-{i}");
        let b = allocate(&c, follower, "web-1", &svc).await;
        acked.push((ServiceName::parse(&svc).unwrap(), b.port));
    }
    let lock = acquire(&c, follower, "service/api", "ci-1", "60s")
        .await
        .unwrap();

    // kill -9 the leader: a new one is elected and serves writes.
    c.nodes[leader].kill();
    let new_leader = c.leader().await;
    assert_ne!(new_leader, leader);
    let survivor = c.others(new_leader)[0];
    allocate(&c, survivor, "web-1", "after-kill").await;

    // Everything acknowledged before the kill is still there, on every live node.
    for node in [new_leader, survivor] {
        let ports = c.api(node).server_ports(&server("web-1")).await.unwrap();
        for (svc, port) in &acked {
            assert_eq!(
                ports.assignments.get(svc),
                Some(port),
                "{svc} on node {node}"
            );
        }
        let l = c.api(node).lock(&key("service/api")).await.unwrap();
        assert_eq!(l.token, lock.token);
    }

    // The killed node comes back and catches up.
    c.nodes[leader].start().await;
    eventually(
        "the restarted node to catch up",
        Duration::from_secs(20),
        || async {
            let s = c.status(leader).await?;
            let l = c.status(new_leader).await?;
            if s.applied == l.applied && s.leader == l.leader {
                Ok(())
            } else {
                Err(format!("restarted {s:?} vs leader {l:?}"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fencing_tokens_grow_across_two_leader_changes_and_one_racer_wins() {
    let mut c = Cluster::start(bin(), 3, NodeOpts::default()).await;
    let mut tokens = Vec::new();
    for round in 0..3 {
        for _ in 0..3 {
            let t = acquire_anywhere(&c, "migration/db", "ci").await;
            tokens.push(t);
            let node = c.leader().await;
            release(&c, node, "migration/db", t).await.unwrap();
        }
        if round < 2 {
            let l = c.leader().await;
            c.nodes[l].kill();
            c.leader().await;
            c.nodes[l].start().await;
        }
    }
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens must strictly increase: {tokens:?}"
    );

    // Two clients race for one lock through different nodes: exactly one wins.
    let leader = c.leader().await;
    let other = c.others(leader)[0];
    let (a, b) = tokio::join!(
        acquire(&c, leader, "service/race", "a", "60s"),
        acquire(&c, other, "service/race", "b", "60s"),
    );
    let wins = [&a, &b].iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "a: {a:?}, b: {b:?}");
    let loser = if a.is_ok() { b } else { a };
    let (s, p) = refusal(loser);
    assert_eq!((s, p.code), (409, ErrorCode::LockHeld));
    let ext = |name: &str| p.extensions.get(name).is_some_and(Value::is_string);
    assert!(ext("holder") && ext("expires_at"), "{p:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_clients_allocate_a_thousand_ports_without_duplicates() {
    let c = Cluster::start(bin(), 3, NodeOpts::default()).await;
    put_server(&c, 0, "big", "20000-32000").await;
    let tasks = (0..10).map(|client| {
        let http = c.http.clone();
        let urls: Vec<String> = (0..3).map(|n| c.nodes[n].url("")).collect();
        tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..100 {
                // Raw: these POSTs send no body at all (it is optional), unlike the client.
                let url = format!("{}/v1/ports/big/c{client}-s{i}", urls[(client + i) % 3]);
                let r = http.post(url).send().await.expect("send");
                assert_eq!(r.status(), 200);
                let b: Value = r.json().await.unwrap();
                got.push(b["port"].as_u64().unwrap());
            }
            got
        })
    });
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(all.len(), 1000);
    assert_eq!(distinct.len(), 1000, "a port was handed out twice");
    // None lost: the ledger holds exactly these, on every node.
    for n in 0..3 {
        let v = c.api(n).server_ports(&server("big")).await.unwrap();
        let ledger: BTreeSet<u64> = v.assignments.values().map(|&p| u64::from(p)).collect();
        assert_eq!(ledger, distinct, "node {n}");
        assert_eq!(v.used, 1000);
        assert_eq!(v.free, 12001 - 1000);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn full_restart_keeps_state_and_a_late_node_catches_up_by_snapshot() {
    let opts = NodeOpts {
        snapshot_every: 50,
        logs_to_keep: 0,
        ..NodeOpts::default()
    };
    let mut c = Cluster::start(bin(), 3, opts).await;
    put_server(&c, 0, "web-1", "20000-21000").await;
    for i in 0..120 {
        allocate(&c, i % 3, "web-1", &format!("s{i}")).await;
    }
    let before = c.api(0).server_ports(&server("web-1")).await.unwrap();

    // Stop every node (kill -9), start them again: state intact.
    for n in &mut c.nodes {
        n.kill();
    }
    for n in &mut c.nodes {
        n.start().await;
    }
    let leader = c.leader().await;
    let after = c.api(leader).server_ports(&server("web-1")).await.unwrap();
    if after.assignments != before.assignments {
        let mut st = String::new();
        for i in 0..3 {
            st.push_str(&format!("{:?}\n", c.status(i).await));
        }
        panic!(
            "lost writes across restart; leader {leader}\n{st}\n{}",
            c.logs()
        );
    }

    // A node added late can only get the early state from a snapshot: the leader has
    // purged the log behind its snapshot.
    let status = eventually(
        "the leader to purge its log",
        Duration::from_secs(10),
        || async {
            let st = c.status(leader).await?;
            match st.purged {
                Some(p) if p > 0 => Ok(st),
                _ => Err(format!("not purged yet: {st:?}")),
            }
        },
    )
    .await;
    assert!(status.snapshot.is_some(), "no snapshot: {status:?}");
    let joiner = c.spawn_joiner().await;
    let addr = c.nodes[joiner].addr.clone();
    let id = c.nodes[joiner].id;
    let req = AddMemberRequest {
        id,
        addr,
        voter: true,
    };
    let b = c
        .api(leader)
        .add_member(&req)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert!(b.members.iter().any(|m| m.id == id && m.voter), "{b:?}");
    eventually(
        "the new node to hold the state",
        Duration::from_secs(20),
        || async {
            let st = c.status(joiner).await?;
            if st.snapshot.is_none() {
                return Err(format!("no snapshot installed yet: {st:?}"));
            }
            Ok(())
        },
    )
    .await;
    let on_joiner = c.api(joiner).server_ports(&server("web-1")).await.unwrap();
    assert_eq!(on_joiner.assignments, before.assignments);

    // And it can be removed again.
    let b = c.api(leader).remove_member(&id.to_string()).await.unwrap();
    assert!(!b.members.iter().any(|m| m.id == id), "{b:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn lapsed_lease_is_taken_over_with_a_larger_token() {
    let c = Cluster::start(bin(), 3, NodeOpts::default()).await;
    let first = acquire(&c, 1, "service/api", "old", "1s").await.unwrap();
    let (s, held) = refusal(acquire(&c, 2, "service/api", "new", "30s").await);
    assert_eq!((s, held.code), (409, ErrorCode::LockHeld));
    // Waiting is done by the server: it answers once the lease lapses.
    let started = Instant::now();
    let waits = AcquireLockRequest {
        wait: Some(DurationSpec::parse("10s").unwrap()),
        ..acquire_request("new", "30s")
    };
    let second = c
        .api(2)
        .acquire_lock(&key("service/api"), &waits)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(9));
    assert!(second.token > first.token);
    assert_eq!(second.holder.as_str(), "new");
    // The old holder can no longer release or renew.
    let (s, b) = refusal(release(&c, 0, "service/api", first.token.0).await);
    assert_eq!((s, b.code), (409, ErrorCode::LockNotHeld));
    let renew = RenewLockRequest {
        token: first.token,
        ttl: DurationSpec::parse("30s").unwrap(),
    };
    let (s, b) = refusal(c.api(0).renew_lock(&key("service/api"), &renew).await);
    assert_eq!((s, b.code), (409, ErrorCode::LockNotHeld));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_quorum_writes_fail_fast_with_503() {
    let opts = NodeOpts {
        request_timeout: "2s",
        ..NodeOpts::default()
    };
    let mut c = Cluster::start(bin(), 3, opts).await;
    let leader = c.leader().await;
    for i in c.others(leader) {
        c.nodes[i].kill();
    }
    let started = Instant::now();
    let (s, b) = refusal(acquire(&c, leader, "service/api", "ci", "10s").await);
    assert_eq!((s, b.code), (503, ErrorCode::Unavailable), "{b:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let (s, b) = refusal(c.api(leader).locks().await);
    assert_eq!((s, b.code), (503, ErrorCode::Unavailable));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_problem_json_with_stable_codes() {
    let c = Cluster::start(bin(), 1, NodeOpts::default()).await;
    // Raw: malformed paths, bodies and methods that the typed client cannot send.
    let cases: Vec<(reqwest::Method, &str, Option<Value>, u16, &str)> = vec![
        (
            reqwest::Method::POST,
            "/v1/locks/Bad Key",
            Some(json!({"holder": "x"})),
            400,
            "invalid_request",
        ),
        (
            reqwest::Method::POST,
            "/v1/locks/a",
            Some(json!({"holder": ""})),
            400,
            "invalid_request",
        ),
        (
            reqwest::Method::POST,
            "/v1/locks/a",
            Some(json!({"holder": "x", "ttl": "5"})),
            400,
            "invalid_request",
        ),
        (
            reqwest::Method::POST,
            "/v1/locks/a",
            Some(json!({"holder": "x", "extra": 1})),
            400,
            "invalid_request",
        ),
        (
            reqwest::Method::DELETE,
            "/v1/locks/a?token=abc",
            None,
            400,
            "invalid_request",
        ),
        (
            reqwest::Method::DELETE,
            "/v1/locks/a?token=5",
            None,
            409,
            "lock_not_held",
        ),
        (
            reqwest::Method::POST,
            "/v1/ports/nope/api",
            None,
            404,
            "not_found",
        ),
        (
            reqwest::Method::POST,
            "/v1/ports/UPPER/api",
            None,
            400,
            "invalid_request",
        ),
        (
            reqwest::Method::PUT,
            "/v1/servers/web-1",
            Some(json!({"agent_addr": "a:1", "port_range": "9-1"})),
            400,
            "invalid_request",
        ),
        (reqwest::Method::GET, "/v1/nothing", None, 404, "not_found"),
        (
            reqwest::Method::PUT,
            "/v1/cluster",
            None,
            405,
            "method_not_allowed",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let (s, b) = call(&c, method.clone(), 0, path, body).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (status, Some(code)),
            "{method} {path}: {b}"
        );
        assert_eq!(b["status"], status);
        assert!(b["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:sluice:problem:"));
    }
    // Wrong content type and oversized bodies.
    let r = c
        .http
        .post(c.nodes[0].url("/v1/locks/a"))
        .body("{\"holder\":\"x\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let big = json!({"holder": "x", "reason": "r".repeat(2 * 1024 * 1024)});
    let (s, b) = call(&c, reqwest::Method::POST, 0, "/v1/locks/a", Some(big)).await;
    assert_eq!((s, b["code"].as_str()), (413, Some("payload_too_large")));
}

/// Polls `GET /readyz` on node `i` until it answers `status`; returns how long that took
/// and, for an error status, the problem.
async fn readyz_turns(
    c: &Cluster,
    i: usize,
    status: u16,
    within: Duration,
) -> (Duration, Option<Problem>) {
    let since = Instant::now();
    eventually(
        &format!("node {i}'s /readyz to answer {status}"),
        within,
        || async {
            match c.api(i).readyz().await {
                Ok(_) if status == 200 => Ok((since.elapsed(), None)),
                Err(ClientError::Problem {
                    status: s,
                    problem,
                    from_status: false,
                }) if s.as_u16() == status => Ok((since.elapsed(), Some(*problem))),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

/// Issue 13 #4: `/readyz` means "in contact with a quorum". A leader whose two followers
/// stopped answered 200 for as long as it was watched (37 s) while every write timed out;
/// now it turns unready within about two election timeouts, refuses writes at once, and a
/// lone follower turns unready too.
#[tokio::test(flavor = "multi_thread")]
async fn readiness_follows_quorum_contact_and_a_lone_leader_refuses_work_at_once() {
    let mut c = Cluster::start(bin(), 3, NodeOpts::default()).await;
    let leader = c.leader().await;
    for i in 0..3 {
        readyz_turns(&c, i, 200, Duration::from_secs(10)).await;
    }
    for i in c.others(leader) {
        c.nodes[i].kill();
    }
    let (took, why) = readyz_turns(&c, leader, 503, Duration::from_secs(5)).await;
    eprintln!("the leader turned unready {took:?} after its followers were killed");
    let why = why.unwrap();
    assert_eq!(why.code, ErrorCode::Unavailable, "{why:?}");
    assert!(why.detail.contains("quorum"), "{why:?}");
    // Work is refused at once, not after the 5 s request timeout.
    let asked = Instant::now();
    let (s, b) = refusal(acquire(&c, leader, "service/api", "ci", "10s").await);
    assert_eq!((s, b.code), (503, ErrorCode::Unavailable), "{b:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "refused after {:?}",
        asked.elapsed()
    );

    // The others come back: the cluster is ready again; then a lone follower.
    for i in 0..3 {
        if !c.nodes[i].is_running() {
            c.nodes[i].start().await;
        }
    }
    let leader = c.leader().await;
    readyz_turns(&c, leader, 200, Duration::from_secs(10)).await;
    let follower = c.others(leader)[0];
    for i in 0..3 {
        if i != follower {
            c.nodes[i].kill();
        }
    }
    readyz_turns(&c, follower, 503, Duration::from_secs(5)).await;
}

/// Issue 13 #6: the leader removed itself, then was asked to remove another member. That
/// panicked openraft ("Only leader is allowed to call update_effective_membership()") and
/// the process lived on answering 500. Now the second change is refused cleanly (or, once
/// the removed leader has stepped down, forwarded to the new leader), nothing panics, and
/// the cluster keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_removed_leader_refuses_membership_changes_cleanly() {
    let mut c = Cluster::start(bin(), 3, NodeOpts::default()).await;
    let leader = c.leader().await;
    let leader_id = c.nodes[leader].id;
    let other = c.others(leader)[0];
    let other_id = c.nodes[other].id;
    c.api(leader)
        .remove_member(&leader_id.to_string())
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", c.logs()));
    let second = c.api(leader).remove_member(&other_id.to_string()).await;
    eprintln!("the second removal through the removed leader: {second:?}");
    let clean = match &second {
        Ok(_) => true,
        Err(ClientError::Problem {
            status,
            problem,
            from_status: false,
        }) => {
            status.as_u16() == 409
                && matches!(
                    problem.code,
                    ErrorCode::NotAVoter | ErrorCode::MembershipChangeInProgress
                )
        }
        Err(_) => false,
    };
    assert!(clean, "{second:?}");
    // The remaining voters keep taking writes.
    let token = acquire_anywhere(&c, "service/after-removal", "ci").await;
    assert!(token > 0);
    // No node panicked, and every one still answers without a 500.
    let logs = c.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    for i in 0..3 {
        assert!(c.nodes[i].exited().is_none(), "node {i} exited\n{logs}");
        if let Err(e) = c.api(i).cluster().await {
            panic!("node {i}: {e:?}");
        }
    }
}
