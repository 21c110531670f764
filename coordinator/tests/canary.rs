//! `canary` end to end (issue 16): a real coordinator, two real agents each with its own
//! real `sluice-proxy`, the real Docker daemon, a load of ≥ 200 requests/s on each
//! server's public port, and (for the PromQL gates) a real Prometheus from Debian.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use sluice_common::analysis::Outcome;
use sluice_common::api::DeploymentView;
use sluice_common::deployment::DeploymentState;
use sluice_tests::cluster::NodeOpts;
use sluice_tests::load::LoadReport;
use sluice_tests::prometheus::PrometheusProc;

use support::proxied::*;

/// The canary steps as the test saw them start: (step, when its weight was set on every
/// server, as the record's server steps say).
async fn watch_steps(env: &Env, id: &str) -> (DeploymentView, Vec<(u32, Instant)>) {
    let mut seen: Vec<(u32, Instant)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let d = env.api().deployment(id).await.expect("the deployment");
        if let Some(c) = &d.canary {
            // A step counts once every server holds its weight (the shift has finished).
            let held = d.servers.iter().all(|s| {
                s.detail
                    .contains(&format!("canary: {}% of new requests", c.weight))
                    || c.step >= c.steps
            });
            if held && seen.last().is_none_or(|(s, _)| *s != c.step) {
                seen.push((c.step, Instant::now()));
            }
        }
        if !d.state.is_active() {
            return (d, seen);
        }
        assert!(
            Instant::now() < deadline,
            "the canary did not settle: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The share of responses from `version` among those to requests sent in `[from, to)`.
fn share(r: &LoadReport, from: Instant, to: Instant, version: &str) -> (f64, usize) {
    let all: Vec<_> = r.seen_between(from, to).collect();
    let hits = all.iter().filter(|s| s.first_line == version).count();
    (hits as f64 / all.len().max(1) as f64, all.len())
}

/// A good v2 over two servers, 10 % / 50 % (then 100 %), judged by the built-in error
/// ratio at every step: the observed share of v2 at each step is within ±5 points of its
/// weight on both servers, it is promoted, and no request fails.
#[tokio::test(flavor = "multi_thread")]
async fn a_good_canary_moves_traffic_step_by_step_and_is_promoted() {
    let env = Env::start(&["cn1a", "cn1b"], "cn-good").await;
    let first = env.deploy("v1", json!({})).await;
    assert_eq!(first.state, DeploymentState::Success, "{first:?}");
    let ports = [Env::port(&first, "cn1a"), Env::port(&first, "cn1b")];
    let loads = [Env::load(ports[0]), Env::load(ports[1])];
    let canary = json!({
        "steps": [{"weight": 10, "pause": "5s"}, {"weight": 50, "pause": "5s"}],
        "analysis": {"interval": "1s", "count": 2, "checks": [{"kind": "error_ratio", "max": 0.05}]},
    });
    let created = env
        .api()
        .create_deployment(
            &env.request("v2", json!({"strategy": "canary", "canary": canary})),
            None,
        )
        .await
        .expect("accepted");
    let id = created.deployment.id.to_string();
    let (d, steps) = watch_steps(&env, &id).await;
    assert_eq!(d.state, DeploymentState::Success, "{d:?}");
    let done = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let [la, lb] = loads;
    let reports = [la.stop().await, lb.stop().await];
    let canary = d.canary.as_ref().expect("the canary's record");
    assert_eq!((canary.step, canary.weight), (2, 100), "{canary:?}");
    assert!(
        canary
            .measurements
            .iter()
            .filter(|m| m.outcome == Outcome::Successful)
            .count()
            >= 4,
        "{:?}",
        canary.measurements
    );
    let at = |k: u32| steps.iter().find(|(s, _)| *s == k).map(|(_, t)| *t);
    // What the test saw, for a failure to explain itself: each step's start and the share
    // of v2 in every half second.
    let t0 = steps.first().map(|(_, t)| *t).unwrap_or_else(Instant::now);
    let timeline: Vec<String> = (0..60)
        .map(|i| {
            let from = t0 + Duration::from_millis(500 * i);
            let (got, n) = share(&reports[0], from, from + Duration::from_millis(500), "v2");
            format!("{:.1}s {:.0}% of {n}", i as f64 / 2.0, got * 100.0)
        })
        .collect();
    let seen: Vec<String> = steps
        .iter()
        .map(|(k, t)| format!("step {k} at {:.2}s", t.duration_since(t0).as_secs_f64()))
        .collect();
    eprintln!("{seen:?}\n{timeline:?}");
    for (k, weight) in [(0u32, 0.10), (1, 0.50)] {
        let from = at(k).expect("the step was seen") + Duration::from_millis(300);
        let to = at(k + 1).expect("the next step was seen") - Duration::from_millis(300);
        for (server, r) in ["cn1a", "cn1b"].iter().zip(&reports) {
            let (got, n) = share(r, from, to, "v2");
            eprintln!(
                "step {}: {server}: {:.1}% v2 of {n} responses",
                k + 1,
                got * 100.0
            );
            assert!(n > 300, "step {k} on {server}: only {n} responses");
            assert!(
                (got - weight).abs() <= 0.05,
                "step {} on {server}: {:.1}% of responses from v2, the weight is {:.0}%",
                k + 1,
                got * 100.0,
                weight * 100.0
            );
        }
    }
    for (server, r) in ["cn1a", "cn1b"].iter().zip(&reports) {
        assert_lossless(server, r);
        all_from(r, done, "v2").unwrap();
    }
}

/// A v2 that answers 500 on 20 % of its requests fails the built-in error-ratio check at
/// its first step: both servers go back to v1 at once, the deployment ends rolled_back
/// with the failing measurement in its record, and the only failed requests are v2's own
/// 500s during that step.
#[tokio::test(flavor = "multi_thread")]
async fn a_canary_failing_its_error_ratio_goes_back_on_every_server() {
    let env = Env::start(&["cn2a", "cn2b"], "cn-bad").await;
    let first = env.deploy("v1", json!({})).await;
    let ports = [Env::port(&first, "cn2a"), Env::port(&first, "cn2b")];
    let loads = [Env::load(ports[0]), Env::load(ports[1])];
    let canary = json!({
        "steps": [{"weight": 20, "pause": "1m"}, {"weight": 50, "pause": "1m"}],
        "analysis": {"interval": "1s", "count": 5, "checks": [{"kind": "error_ratio", "max": 0.05}]},
    });
    let env_vars = json!({"TESTAPP_ERROR_PERCENT": {"value": "20"}});
    let started = Instant::now();
    let d = env
        .deploy(
            "v2",
            json!({"strategy": "canary", "canary": canary, "env": env_vars}),
        )
        .await;
    let settled = Instant::now();
    assert_eq!(d.state, DeploymentState::RolledBack, "{d:?}");
    let failure = d.failure.clone().unwrap_or_default();
    assert!(
        failure.starts_with("canary analysis failed at step 1: error_ratio"),
        "{failure}"
    );
    let c = d.canary.as_ref().expect("the canary's record");
    let failed = c
        .measurements
        .iter()
        .find(|m| m.outcome == Outcome::Failed)
        .expect("a failed measurement");
    assert!(failed.value.unwrap() > 0.05, "{failed:?}");
    assert_eq!(failed.condition, "value <= 0.05");
    assert!(
        settled.duration_since(started) < Duration::from_secs(40),
        "the canary took {:?} to go back",
        settled.duration_since(started)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (server, load) in ["cn2a", "cn2b"].iter().zip(loads) {
        let r = load.stop().await;
        // Every failure is v2's own 500, none a refused or reset connection.
        for f in &r.failures {
            assert!(
                f.error.starts_with("status 500: failing on purpose"),
                "{server}: {f:?}"
            );
        }
        assert!(!r.failures.is_empty(), "{server}: v2 got no request");
        // v2 never served more than its share: at most 20 % of its 20 % failed.
        let total = r.ok as f64 + r.failures.len() as f64;
        assert!(
            (r.failures.len() as f64) < 0.2 * 0.2 * total + 20.0,
            "{server}: {} of {total} failed",
            r.failures.len()
        );
        assert!(r.failures.iter().all(|f| f.sent < settled), "{server}");
        all_from(&r, after, "v1").unwrap();
    }
}

/// A PromQL gate whose query matches nothing holds the canary at its step and fails it
/// (no data is a failure); a Prometheus stopped mid-analysis counts against the
/// consecutive-error limit, then fails it too. Both end rolled_back with the
/// measurements in the record.
#[tokio::test(flavor = "multi_thread")]
async fn promql_gates_fail_on_no_data_and_on_a_prometheus_that_stops() {
    let mut prom = PrometheusProc::start(&[]).await;
    let opts = NodeOpts {
        extra_toml: format!("[analysis]\nprometheus_url = \"{}\"\n", prom.url),
        ..NodeOpts::default()
    };
    let env = Env::start_with(&["cn3"], "cn-promql", opts).await;
    env.deploy("v1", json!({})).await;
    let gate = |query: &str, errors: u32| {
        json!({"strategy": "canary", "canary": {
            "steps": [{"weight": 10, "pause": "1m"}],
            "analysis": {"interval": "1s", "count": 30, "consecutive_error_limit": errors,
                "checks": [{"kind": "prometheus", "name": "gate", "query": query,
                            "success": {"op": ">=", "threshold": 1.0}}]},
        }})
    };
    let d = env
        .deploy("v2", gate("sum(sluice_no_such_metric_total)", 4))
        .await;
    assert_eq!(d.state, DeploymentState::RolledBack, "{d:?}");
    let m = &d.canary.as_ref().unwrap().measurements;
    assert_eq!(m.len(), 1, "the first no-data measurement fails it: {m:?}");
    assert_eq!(m[0].check, "gate");
    assert_eq!(m[0].outcome, Outcome::Failed);
    assert!(m[0].detail.starts_with("no data"), "{m:?}");
    assert_eq!(d.canary.as_ref().unwrap().step, 0, "it never advanced");

    // A gate that passes (`vector(1)`) until Prometheus is stopped.
    let created = env
        .api()
        .create_deployment(&env.request("v2", gate("vector(1)", 2)), None)
        .await
        .unwrap();
    let id = created.deployment.id.to_string();
    sluice_tests::eventually::eventually(
        "a passing measurement",
        Duration::from_secs(60),
        || async {
            let d = env.api().deployment(&id).await.map_err(|e| e.to_string())?;
            let ok = d.canary.as_ref().is_some_and(|c| {
                c.measurements
                    .iter()
                    .any(|m| m.outcome == Outcome::Successful)
            });
            if ok {
                Ok(())
            } else {
                Err(format!("{:?}", d.canary))
            }
        },
    )
    .await;
    prom.kill();
    let d = env.settled(&id).await;
    assert_eq!(d.state, DeploymentState::RolledBack, "{d:?}");
    let m = &d.canary.as_ref().unwrap().measurements;
    let errors = m.iter().filter(|m| m.outcome == Outcome::Error).count();
    assert_eq!(
        errors, 3,
        "the limit of 2 errors in a row, then one more: {m:?}"
    );
    assert!(
        d.failure.as_deref().unwrap_or("").contains("gate"),
        "{:?}",
        d.failure
    );
}

/// `sluice pause`, `resume`, `promote` and `abort` from the CLI: exit 0 when recorded,
/// `abort --wait` 0 once rolled back, 65 for a deployment that is no canary in progress;
/// a deployer scoped to another service gets 77 (403) and changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_promotes_pauses_and_aborts_within_its_scope() {
    let env = Env::start(&["cn4"], "cn-cli").await;
    env.deploy("v1", json!({})).await;
    let canary = json!({"steps": [{"weight": 30, "until_promoted": true}, {"weight": 60, "until_promoted": true}]});
    let created = env
        .api()
        .create_deployment(
            &env.request("v2", json!({"strategy": "canary", "canary": canary})),
            None,
        )
        .await
        .unwrap();
    let id = created.deployment.id.to_string();
    sluice_tests::eventually::eventually("the first step", Duration::from_secs(60), || async {
        let d = env.api().deployment(&id).await.map_err(|e| e.to_string())?;
        match &d.canary {
            Some(c) if d.servers.iter().all(|s| s.detail.contains("30%")) => Ok(c.step),
            _ => Err(format!("{:?} {:?}", d.phase, d.servers)),
        }
    })
    .await;
    let admin = env.cluster.admin_token.clone();
    let other = env
        .api()
        .create_token(
            &serde_json::from_value(
                json!({"name": "other-ci", "role": "deployer", "services": ["elsewhere"]}),
            )
            .unwrap(),
        )
        .await
        .unwrap()
        .secret;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, env.cluster.pki.ca_pem()).unwrap();
    let sluice = |token: &str, args: &[&str]| {
        let node = &env.cluster.nodes[0];
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .env("SLUICE_ADDR", &node.addr)
            .env("SLUICE_CA", &ca)
            .env("SLUICE_TOKEN", token)
            .output()
            .expect("run sluice");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Someone else's deployer may not touch it.
    for verb in ["promote", "abort", "pause"] {
        let (code, err) = sluice(&other, &[verb, &id]);
        assert_eq!(code, Some(77), "{verb}: {err}");
    }
    let (code, err) = sluice(&admin, &["pause", &id]);
    assert_eq!(code, Some(0), "{err}");
    let d = env.api().deployment(&id).await.unwrap();
    assert!(d.canary.as_ref().unwrap().paused.is_some(), "{d:?}");
    assert_eq!(sluice(&admin, &["resume", &id]).0, Some(0));
    let (code, err) = sluice(&admin, &["abort", "--wait", &id]);
    assert_eq!(code, Some(0), "{err}");
    let d = env.api().deployment(&id).await.unwrap();
    assert_eq!(d.state, DeploymentState::RolledBack, "{d:?}");
    // Settled: nothing left to promote.
    let (code, err) = sluice(&admin, &["promote", &id]);
    assert_eq!(code, Some(65), "{err}");
    // The audit trail has the step, the pause, the resume and the abort, by whom.
    let filter = sluice_common::client::AuditFilter {
        service: Some("cn-cli".into()),
        ..Default::default()
    };
    let records = env.api().audit(&filter).await.unwrap().records;
    let target = format!("deployment/{id}");
    let actions: Vec<&str> = records
        .iter()
        .filter(|r| r.target == target)
        .map(|r| r.action.as_str())
        .collect();
    for want in [
        "deployment.canary_step",
        "deployment.canary_paused",
        "deployment.canary_resumed",
        "deployment.cancel_requested",
        "deployment.rolled_back",
    ] {
        assert!(actions.contains(&want), "{want} missing from {actions:?}");
    }
    // A promote of a held canary goes straight to 100 %.
    let created = env
        .api()
        .create_deployment(
            &env.request("v2", json!({"strategy": "canary", "canary": canary})),
            None,
        )
        .await
        .unwrap();
    let id = created.deployment.id.to_string();
    sluice_tests::eventually::eventually("the first step", Duration::from_secs(60), || async {
        let d = env.api().deployment(&id).await.map_err(|e| e.to_string())?;
        d.canary
            .map(|_| ())
            .ok_or_else(|| d.phase.as_str().to_string())
    })
    .await;
    let (code, err) = sluice(&admin, &["promote", "--wait", &id]);
    assert_eq!(code, Some(0), "{err}");
    let d = env.api().deployment(&id).await.unwrap();
    assert_eq!(d.state, DeploymentState::Success, "{d:?}");
    assert_eq!(d.canary.unwrap().weight, 100);
}

/// Waits until every server of deployment `id` holds the canary at `weight` %, asking
/// node `node`; returns the deployment then.
async fn held_at(env: &Env, node: usize, id: &str, weight: u32) -> DeploymentView {
    let want = format!("canary: {weight}% of new requests");
    sluice_tests::eventually::eventually(
        &format!("every server at {weight}%"),
        Duration::from_secs(60),
        || async {
            let d = env
                .cluster
                .api(node)
                .deployment(id)
                .await
                .map_err(|e| e.to_string())?;
            if d.canary.is_some() && d.servers.iter().all(|s| s.detail.contains(&want)) {
                Ok(d)
            } else {
                Err(format!("{:?}: {:?}", d.phase, d.servers))
            }
        },
    )
    .await
}

/// The leader killed (-9) mid-step: the new leader resumes the canary at the same step
/// with a larger token (no step replayed), the agent then refuses a weight change carrying
/// the old leader's token, and the canary is promoted through the new leader; the service
/// never loses a request.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_leader_resumes_the_step_and_the_old_token_is_refused() {
    let mut env = Env::start_cluster(&["cn5"], "cn-failover", 3, NodeOpts::default()).await;
    let first = env.deploy("v1", json!({})).await;
    let load = Env::load(Env::port(&first, "cn5"));
    let canary = json!({"steps": [{"weight": 30, "until_promoted": true}]});
    let created = env
        .api()
        .create_deployment(
            &env.request("v2", json!({"strategy": "canary", "canary": canary})),
            None,
        )
        .await
        .unwrap();
    let id = created.deployment.id.to_string();
    let before = held_at(&env, 0, &id, 30).await;
    let old_token = before.token.expect("a token");
    let leader = env.cluster.leader().await;
    env.cluster.nodes[leader].kill();
    let other = env.cluster.others(leader)[0];
    // The new leader re-fences (a larger token) and sets the same step's weight again.
    let after = sluice_tests::eventually::eventually(
        "the new leader's token on the deployment",
        Duration::from_secs(60),
        || async {
            let d = env
                .cluster
                .api(other)
                .deployment(&id)
                .await
                .map_err(|e| e.to_string())?;
            match d.token {
                Some(t) if t > old_token => Ok(d),
                t => Err(format!("token {t:?}")),
            }
        },
    )
    .await;
    let c = after.canary.as_ref().expect("the canary's record");
    assert_eq!((c.step, c.weight), (0, 30), "no step replayed: {c:?}");
    // What the old leader would still send: refused by the agent as stale.
    let agent = &env.agents[0];
    let http = env
        .cluster
        .pki
        .client_as(sluice_common::tls::Role::Coordinator, "coordinator-1");
    // Once the agent has seen the new leader's token (its re-applied step)...
    sluice_tests::eventually::eventually(
        "the agent saw the new token",
        Duration::from_secs(30),
        || async {
            let v: serde_json::Value = http
                .get(format!(
                    "https://{}/agent/v1/fence/service/cn-failover",
                    agent.addr
                ))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            match v["highest"].as_u64() {
                Some(h) if h > old_token.0 => Ok(()),
                _ => Err(v.to_string()),
            }
        },
    )
    .await;
    // ...the old leader's late weight change is refused as stale, and changes nothing.
    let late = http
        .put(format!(
            "https://{}/agent/v1/operations/{id}/weight",
            agent.addr
        ))
        .json(
            &json!({"fence": {"key": "service/cn-failover", "token": old_token.0}, "weight": 100}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 409);
    let body: serde_json::Value = late.json().await.unwrap();
    assert_eq!(body["code"], "stale_fencing_token", "{body}");
    let d = env.cluster.api(other).deployment(&id).await.unwrap();
    assert_eq!(
        d.canary.unwrap().weight,
        30,
        "the refused change changed nothing"
    );
    env.cluster
        .api(other)
        .canary_action(&id, sluice_common::api::CanaryAction::Promote)
        .await
        .unwrap();
    let d = sluice_tests::eventually::eventually("success", Duration::from_secs(60), || async {
        let d = env
            .cluster
            .api(other)
            .deployment(&id)
            .await
            .map_err(|e| e.to_string())?;
        if d.state.is_active() {
            Err(d.phase.as_str().to_string())
        } else {
            Ok(d)
        }
    })
    .await;
    assert_eq!(d.state, DeploymentState::Success, "{d:?}");
    let done = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = load.stop().await;
    assert_lossless("across the failover", &r);
    all_from(&r, done, "v2").unwrap();
}

/// The agent killed (-9) mid-step and started again: the proxy kept splitting meanwhile,
/// the agent finds its canary, checks the new version again and holds on; the next step
/// and the end go through, and no request fails.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_restarted_mid_step_keeps_the_weight() {
    let mut env = Env::start(&["cn6"], "cn-agent").await;
    let first = env.deploy("v1", json!({})).await;
    let load = Env::load(Env::port(&first, "cn6"));
    let canary = json!({"steps": [{"weight": 40, "until_promoted": true}]});
    let created = env
        .api()
        .create_deployment(
            &env.request("v2", json!({"strategy": "canary", "canary": canary})),
            None,
        )
        .await
        .unwrap();
    let id = created.deployment.id.to_string();
    held_at(&env, 0, &id, 40).await;
    env.agents[0].kill();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.agents[0].spawn();
    let up = Instant::now();
    // While the agent was gone the proxy kept splitting.
    let mid = load.snapshot();
    let (got, n) = share(&mid, down, up, "v2");
    assert!(n > 100, "{n} responses while the agent was down");
    assert!(
        (got - 0.4).abs() <= 0.08,
        "{:.1}% v2 while the agent was down",
        got * 100.0
    );
    env.api()
        .canary_action(&id, sluice_common::api::CanaryAction::Promote)
        .await
        .unwrap();
    let d = env.settled(&id).await;
    assert_eq!(d.state, DeploymentState::Success, "{d:?}");
    let done = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = load.stop().await;
    assert_lossless("across the agent's restart", &r);
    all_from(&r, done, "v2").unwrap();
}

/// A cordoned server takes no new deployment (validation says so, every other check still
/// reported) while what runs there keeps serving; `servers list` shows it, and an uncordon
/// lets the next deployment through.
#[tokio::test(flavor = "multi_thread")]
async fn a_cordoned_server_takes_no_new_deployment_and_keeps_serving() {
    let env = Env::start(&["cn7"], "cn-cordon").await;
    let first = env.deploy("v1", json!({})).await;
    let load = Env::load(Env::port(&first, "cn7"));
    let name = sluice_common::names::ServerName::parse("cn7").unwrap();
    let v = env.api().cordon_server(&name, true).await.unwrap();
    assert!(v.cordoned && !v.forbidden, "{v:?}");
    let listed = env.api().servers().await.unwrap();
    assert!(listed.iter().any(|s| s.name == name && s.cordoned));
    let d = env
        .deploy("v2", json!({"strategy": "canary", "canary": {}}))
        .await;
    assert_eq!(d.state, DeploymentState::Failed, "{d:?}");
    let check = d
        .validation
        .iter()
        .find(|c| c.check == "server_allowed")
        .expect("the server_allowed check");
    assert!(!check.ok && check.detail.contains("cordoned"), "{check:?}");
    assert!(d.validation.len() > 1, "every other check is reported too");
    assert!(d.servers.iter().all(|s| s.operation.is_none()), "{d:?}");
    let v = env.api().cordon_server(&name, false).await.unwrap();
    assert!(!v.cordoned);
    let d = env.deploy("v2", json!({})).await;
    assert_eq!(d.state, DeploymentState::Success, "{d:?}");
    let r = load.stop().await;
    assert_lossless("while cordoned", &r);
    // The list filters by acceptance time: since the last one, only it; until it, the rest.
    let at = d.created_at.to_string();
    let filter =
        |since: Option<&str>, until: Option<&str>| sluice_common::client::DeploymentFilter {
            service: Some("cn-cordon".into()),
            since: since.map(str::to_string),
            until: until.map(str::to_string),
            ..Default::default()
        };
    let newer = env
        .api()
        .deployments(&filter(Some(&at), None))
        .await
        .unwrap();
    assert_eq!(newer.deployments.len(), 1, "{newer:?}");
    assert_eq!(newer.deployments[0].id, d.id);
    let older = env
        .api()
        .deployments(&filter(None, Some(&at)))
        .await
        .unwrap();
    assert_eq!(
        older.deployments.len(),
        2,
        "v1 and the refused one: {older:?}"
    );
    let bad = env
        .api()
        .deployments(&filter(Some("yesterday"), None))
        .await;
    assert!(bad.is_err(), "{bad:?}");
}
