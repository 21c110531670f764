//! Bounded state through a real coordinator process: 2,000 deployments of one service
//! created and finished through the real API (each fails validation at once: its server's
//! agent address answers nothing, so no agent is needed and the Raft commands are the real
//! ones: create, start with the service lock, checks failed) with a limit of 50. The history
//! is cut to the limit by the leader's prune entries, stays cut across a restart (snapshot
//! plus log), and `sluice_deployments_total` still counts every deployment. Idempotency keys
//! expire on the real clock with a short configured expiry.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use sluice_common::api::PutServerRequest;
use sluice_common::client::{Client, DeploymentFilter};
use sluice_common::names::ServerName;
use sluice_common::ports::PortRange;
use sluice_tests::cluster::{deployment_request, refusal, Cluster, NodeOpts};
use sluice_tests::eventually::eventually;

const LIMIT: usize = 50;
const CREATED: usize = 2000;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sluice-coordinator"))
}

fn opts(ttl: &str) -> NodeOpts {
    NodeOpts {
        snapshot_every: 20,
        logs_to_keep: 0,
        extra_toml: format!(
            "[retention]\ndeployments_per_service = {LIMIT}\nidempotency_ttl = \"{ttl}\"\n\
             prune_interval = \"200ms\"\n"
        ),
        ..NodeOpts::default()
    }
}

async fn unreachable_server(c: &Cluster) {
    let server = PutServerRequest {
        agent_addr: "127.0.0.1:1".into(),
        labels: Vec::new(),
        port_range: PortRange::parse("20000-20999").unwrap(),
        forbidden: false,
    };
    c.api(0)
        .put_server(&ServerName::parse("web-1").unwrap(), &server)
        .await
        .unwrap();
}

fn request(image: &str) -> sluice_common::api::CreateDeploymentRequest {
    deployment_request(&json!({
        "service": "api", "image": image, "servers": ["web-1"],
        "container_port": 8080, "health": {"kind": "tcp"}
    }))
}

/// The deployments of `api` kept: (how many, how many still active).
async fn kept(api: &Client) -> Result<(usize, usize), String> {
    let filter = DeploymentFilter {
        service: Some("api".into()),
        limit: Some(500),
        ..DeploymentFilter::default()
    };
    let list = api.deployments(&filter).await.map_err(|e| e.to_string())?;
    let active = list
        .deployments
        .iter()
        .filter(|d| d.state.is_active())
        .count();
    Ok((list.deployments.len(), active))
}

/// `sluice_deployments_total` summed over the statuses of service `api`, and checked
/// against the duration histogram's count.
async fn total(api: &Client) -> Result<u64, String> {
    let text = api.metrics().await.map_err(|e| e.to_string())?;
    let sum = |metric: &str| {
        text.lines()
            .filter(|l| l.starts_with(metric) && l.contains("service=\"api\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    let total = sum("sluice_deployments_total{");
    let observed = sum("sluice_deployment_duration_seconds_count{");
    if total != observed {
        return Err(format!("{total} deployments counted, {observed} durations"));
    }
    Ok(text
        .lines()
        .filter(|l| l.starts_with("sluice_deployments_total{") && l.contains("service=\"api\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

#[tokio::test(flavor = "multi_thread")]
async fn history_is_cut_to_the_limit_and_stays_cut_across_a_restart() {
    let mut c = Cluster::start(bin(), 1, opts("24h")).await;
    unreachable_server(&c).await;
    for i in 0..CREATED {
        c.api(0)
            .create_deployment(&request(&format!("app:v{i}")), None)
            .await
            .unwrap();
    }
    let api = c.api(0);
    eventually(
        "every deployment to settle and the history to be cut",
        Duration::from_secs(120),
        || async {
            match kept(&api).await? {
                (n, 0) if n == LIMIT => Ok(()),
                other => Err(format!("(kept, active) = {other:?}")),
            }
        },
    )
    .await;
    assert_eq!(total(&api).await.unwrap(), CREATED as u64);
    let audit = c.audit(0).await.unwrap();
    let pruned: u64 = audit
        .iter()
        .filter(|r| r.action == "deployments.pruned")
        .map(|r| r.details["deployments"].as_u64().unwrap())
        .sum();
    assert_eq!(pruned, (CREATED - LIMIT) as u64);
    assert!(audit
        .iter()
        .filter(|r| r.action == "deployments.pruned")
        .all(|r| r.actor == "system:retention"));

    // A restart loads the snapshot (taken every 20 entries) and replays the rest: the same
    // fifty, the same totals.
    c.nodes[0].kill();
    c.nodes[0].start().await;
    let api = c.api(0);
    let after = eventually(
        "the restarted node to answer",
        Duration::from_secs(30),
        || {
            let api = api.clone();
            async move { kept(&api).await }
        },
    )
    .await;
    assert_eq!(after, (LIMIT, 0));
    assert_eq!(total(&api).await.unwrap(), CREATED as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_is_forgotten_after_its_expiry() {
    let c = Cluster::start(bin(), 1, opts("3s")).await;
    unreachable_server(&c).await;
    let api = c.api(0);
    let first = api
        .create_deployment(&request("app:v1"), Some("build-42"))
        .await
        .unwrap();
    assert!(!first.replayed);
    let replay = api
        .create_deployment(&request("app:v1"), Some("build-42"))
        .await
        .unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.deployment.id, first.deployment.id);
    let (status, problem) = refusal(
        api.create_deployment(&request("app:v2"), Some("build-42"))
            .await,
    );
    assert_eq!(
        (status, problem.code.as_str()),
        (422, "idempotency_key_reused")
    );

    // After three seconds the key names nothing: the other body makes a new deployment.
    let started = std::time::Instant::now();
    let second = eventually("the key to expire", Duration::from_secs(20), || {
        let api = api.clone();
        async move {
            match api
                .create_deployment(&request("app:v2"), Some("build-42"))
                .await
            {
                Ok(c) => Ok(c),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await;
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(!second.replayed);
    assert_ne!(second.deployment.id, first.deployment.id);
}
