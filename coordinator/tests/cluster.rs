//! Real coordinator processes on loopback with real sled files: elections, forwarding,
//! kill -9 of leaders, restarts, snapshots, fencing tokens and the port ledger.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_tests::cluster::{Cluster, NodeOpts};
use sluice_tests::eventually::eventually;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sluice-coordinator"))
}

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

async fn post(c: &Cluster, node: usize, path: &str, body: Value) -> (u16, Value) {
    call(c, reqwest::Method::POST, node, path, Some(body)).await
}

async fn get(c: &Cluster, node: usize, path: &str) -> (u16, Value) {
    call(c, reqwest::Method::GET, node, path, None).await
}

async fn put_server(c: &Cluster, node: usize, name: &str, range: &str) {
    let (s, b) = call(
        c,
        reqwest::Method::PUT,
        node,
        &format!("/v1/servers/{name}"),
        Some(json!({"agent_addr": "127.0.0.1:1", "port_range": range})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
}

async fn acquire(c: &Cluster, node: usize, key: &str, holder: &str, ttl: &str) -> (u16, Value) {
    post(
        c,
        node,
        &format!("/v1/locks/{key}"),
        json!({"holder": holder, "ttl": ttl}),
    )
    .await
}

async fn release(c: &Cluster, node: usize, key: &str, token: u64) -> (u16, Value) {
    call(
        c,
        reqwest::Method::DELETE,
        node,
        &format!("/v1/locks/{key}?token={token}"),
        None,
    )
    .await
}

/// Retries a write across running nodes until one acknowledges it (a leader change may
/// make a single attempt answer 503).
async fn acquire_anywhere(c: &Cluster, key: &str, holder: &str) -> u64 {
    eventually(
        "an acknowledged acquire",
        Duration::from_secs(20),
        || async {
            for i in (0..c.nodes.len()).filter(|&i| c.nodes[i].is_running()) {
                let body = json!({"holder": holder, "ttl": "60s"});
                // A node that is still starting refuses connections: try the next one.
                let path = format!("/v1/locks/{key}");
                let Ok((s, b)) = try_call(c, reqwest::Method::POST, i, &path, Some(body)).await
                else {
                    continue;
                };
                if s == 201 {
                    return Ok(b["token"].as_u64().unwrap());
                }
                if s != 503 {
                    return Err(format!("unexpected {s}: {b}"));
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
        let (s, b) = post(&c, follower, &format!("/v1/ports/web-1/svc-{i}"), json!({})).await;
        assert_eq!(s, 200, "{b}");
        acked.push((format!("svc-{i}"), b["port"].as_u64().unwrap()));
    }
    let (s, lock) = acquire(&c, follower, "service/api", "ci-1", "60s").await;
    assert_eq!(s, 201, "{lock}");

    // kill -9 the leader: a new one is elected and serves writes.
    c.nodes[leader].kill();
    let new_leader = c.leader().await;
    assert_ne!(new_leader, leader);
    let survivor = c.others(new_leader)[0];
    let (s, b) = post(&c, survivor, "/v1/ports/web-1/after-kill", json!({})).await;
    assert_eq!(s, 200, "{b}\n{}", c.logs());

    // Everything acknowledged before the kill is still there, on every live node.
    for node in [new_leader, survivor] {
        let (s, ports) = get(&c, node, "/v1/ports/web-1").await;
        assert_eq!(s, 200);
        for (svc, port) in &acked {
            assert_eq!(
                ports["assignments"][svc].as_u64(),
                Some(*port),
                "{svc} on node {node}"
            );
        }
        let (s, l) = get(&c, node, "/v1/locks/service/api").await;
        assert_eq!(s, 200, "{l}");
        assert_eq!(l["token"], lock["token"]);
    }

    // The killed node comes back and catches up.
    c.nodes[leader].start().await;
    eventually(
        "the restarted node to catch up",
        Duration::from_secs(20),
        || async {
            let s = c.status(leader).await?;
            let l = c.status(new_leader).await?;
            if s["applied"] == l["applied"] && s["leader"] == l["leader"] {
                Ok(())
            } else {
                Err(format!("restarted {s} vs leader {l}"))
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
            let (s, b) = release(&c, node, "migration/db", t).await;
            assert_eq!(s, 200, "{b}");
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
    let wins = [a.0, b.0].iter().filter(|s| **s == 201).count();
    assert_eq!(wins, 1, "a: {a:?}, b: {b:?}");
    let loser = if a.0 == 201 { &b } else { &a };
    assert_eq!(loser.0, 409);
    assert_eq!(loser.1["code"], "lock_held");
    assert!(loser.1["holder"].is_string() && loser.1["expires_at"].is_string());
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
        let (_, v) = get(&c, n, "/v1/ports/big").await;
        let ledger: BTreeSet<u64> = v["assignments"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_u64().unwrap())
            .collect();
        assert_eq!(ledger, distinct, "node {n}");
        assert_eq!(v["used"], 1000);
        assert_eq!(v["free"], 12001 - 1000);
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
        let (s, b) = post(&c, i % 3, &format!("/v1/ports/web-1/s{i}"), json!({})).await;
        assert_eq!(s, 200, "{b}");
    }
    let (_, before) = get(&c, 0, "/v1/ports/web-1").await;

    // Stop every node (kill -9), start them again: state intact.
    for n in &mut c.nodes {
        n.kill();
    }
    for n in &mut c.nodes {
        n.start().await;
    }
    let leader = c.leader().await;
    let (s, after) = get(&c, leader, "/v1/ports/web-1").await;
    assert_eq!(s, 200);
    if after["assignments"] != before["assignments"] {
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
            match st["purged"].as_u64() {
                Some(p) if p > 0 => Ok(st),
                _ => Err(format!("not purged yet: {st}")),
            }
        },
    )
    .await;
    assert!(
        status["snapshot"].as_u64().is_some(),
        "no snapshot: {status}"
    );
    let joiner = c.spawn_joiner().await;
    let addr = c.nodes[joiner].addr.clone();
    let id = c.nodes[joiner].id;
    let (s, b) = post(
        &c,
        leader,
        "/v1/cluster/members",
        json!({"id": id, "addr": addr}),
    )
    .await;
    assert_eq!(s, 200, "{b}\n{}", c.logs());
    let members = b["members"].as_array().unwrap();
    assert!(
        members.iter().any(|m| m["id"] == id && m["voter"] == true),
        "{b}"
    );
    eventually(
        "the new node to hold the state",
        Duration::from_secs(20),
        || async {
            let st = c.status(joiner).await?;
            if st["snapshot"].as_u64().is_none() {
                return Err(format!("no snapshot installed yet: {st}"));
            }
            Ok(())
        },
    )
    .await;
    let (s, on_joiner) = get(&c, joiner, "/v1/ports/web-1").await;
    assert_eq!(s, 200);
    assert_eq!(on_joiner["assignments"], before["assignments"]);

    // And it can be removed again.
    let (s, b) = call(
        &c,
        reqwest::Method::DELETE,
        leader,
        &format!("/v1/cluster/members/{id}"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(!b["members"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == id));
}

#[tokio::test(flavor = "multi_thread")]
async fn lapsed_lease_is_taken_over_with_a_larger_token() {
    let c = Cluster::start(bin(), 3, NodeOpts::default()).await;
    let (s, first) = acquire(&c, 1, "service/api", "old", "1s").await;
    assert_eq!(s, 201);
    let (s, held) = acquire(&c, 2, "service/api", "new", "30s").await;
    assert_eq!((s, held["code"].as_str()), (409, Some("lock_held")));
    // Waiting is done by the server: it answers once the lease lapses.
    let started = Instant::now();
    let (s, second) = post(
        &c,
        2,
        "/v1/locks/service/api",
        json!({"holder": "new", "ttl": "30s", "wait": "10s"}),
    )
    .await;
    assert_eq!(s, 201, "{second}");
    assert!(started.elapsed() < Duration::from_secs(9));
    assert!(second["token"].as_u64() > first["token"].as_u64());
    assert_eq!(second["holder"], "new");
    // The old holder can no longer release or renew.
    let (s, b) = release(&c, 0, "service/api", first["token"].as_u64().unwrap()).await;
    assert_eq!((s, b["code"].as_str()), (409, Some("lock_not_held")));
    let (s, b) = call(
        &c,
        reqwest::Method::PATCH,
        0,
        "/v1/locks/service/api",
        Some(json!({"token": first["token"], "ttl": "30s"})),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (409, Some("lock_not_held")));
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
    let (s, b) = acquire(&c, leader, "service/api", "ci", "10s").await;
    assert_eq!(s, 503, "{b}");
    assert_eq!(b["code"], "unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let (s, b) = get(&c, leader, "/v1/locks").await;
    assert_eq!((s, b["code"].as_str()), (503, Some("unavailable")));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_problem_json_with_stable_codes() {
    let c = Cluster::start(bin(), 1, NodeOpts::default()).await;
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
    let (s, b) = post(&c, 0, "/v1/locks/a", big).await;
    assert_eq!((s, b["code"].as_str()), (413, Some("payload_too_large")));
}

/// Polls `GET /readyz` on node `i` until it answers `status`; returns how long that took
/// and the body.
async fn readyz_turns(c: &Cluster, i: usize, status: u16, within: Duration) -> (Duration, Value) {
    let since = Instant::now();
    eventually(
        &format!("node {i}'s /readyz to answer {status}"),
        within,
        || async {
            match try_call(c, reqwest::Method::GET, i, "/readyz", None).await? {
                (s, b) if s == status => Ok((since.elapsed(), b)),
                (s, b) => Err(format!("{s} {b}")),
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
    assert_eq!(why["code"], "unavailable", "{why}");
    assert!(
        why["detail"].as_str().unwrap_or("").contains("quorum"),
        "{why}"
    );
    // Work is refused at once, not after the 5 s request timeout.
    let asked = Instant::now();
    let (s, b) = acquire(&c, leader, "service/api", "ci", "10s").await;
    assert_eq!((s, b["code"].as_str()), (503, Some("unavailable")), "{b}");
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
    let (s, b) = call(
        &c,
        reqwest::Method::DELETE,
        leader,
        &format!("/v1/cluster/members/{leader_id}"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}\n{}", c.logs());
    let (s, b) = call(
        &c,
        reqwest::Method::DELETE,
        leader,
        &format!("/v1/cluster/members/{other_id}"),
        None,
    )
    .await;
    eprintln!("the second removal through the removed leader: {s} {b}");
    assert!(
        s == 200
            || (s == 409
                && matches!(
                    b["code"].as_str(),
                    Some("not_a_voter" | "membership_change_in_progress")
                )),
        "{s} {b}"
    );
    // The remaining voters keep taking writes.
    let token = acquire_anywhere(&c, "service/after-removal", "ci").await;
    assert!(token > 0);
    // No node panicked, and every one still answers without a 500.
    let logs = c.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    for i in 0..3 {
        assert!(c.nodes[i].exited().is_none(), "node {i} exited\n{logs}");
        let (s, b) = call(&c, reqwest::Method::GET, i, "/v1/cluster", None).await;
        assert_eq!(s, 200, "node {i}: {b}");
    }
}
