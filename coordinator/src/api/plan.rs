//! `POST /v1/deployments/plan`: a dry run, like `nomad job plan`. It runs every check a
//! deployment's validation runs, takes no lock and writes nothing (no Raft entry: the port
//! check reads the ledger), and answers per server what would change, with the service's
//! version index to deploy against (`check_index`).

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::extract::State;
use axum::{Extension, Json};
use sluice_common::api::{
    diff_server, CreateDeploymentRequest, DeploymentPlan, PlanAction, Running,
};
use sluice_common::deployment::{Lifecycle, Phase};
use sluice_common::time::Timestamp;
use uuid::Uuid;

use super::auth::Caller;
use super::error::{ApiError, ApiJson};
use super::openapi::BadRequest;
use super::App;
use crate::state::deployments::Deployment;

/// `POST /v1/deployments/plan`.
#[utoipa::path(
    post,
    path = "/v1/deployments/plan",
    operation_id = "planDeployment",
    tag = "deployments",
    summary = "What a deployment would change, per server, without doing it: every validation check runs, nothing is locked or written. Deployers within their scope, admins.",
    request_body = CreateDeploymentRequest,
    responses(
        (status = 200, description = "The plan: the checks, per server what would change (environment by name only), and the service's version index for `check_index`.", body = DeploymentPlan),
        (status = 400, response = BadRequest),
    ),
)]
pub async fn plan(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<CreateDeploymentRequest>,
) -> Result<Json<DeploymentPlan>, ApiError> {
    caller.may_deploy(&req.service)?;
    super::deployments::check_body(&req)?;
    let targets = super::deployments::resolve_targets(&app, &req)?;
    app.node.linearizable().await?;
    let now = Timestamp::from_system(SystemTime::now());
    // A deployment that exists only here: validation reads its request and targets.
    let d = Deployment {
        id: Uuid::nil(),
        seq: 0,
        request: req.clone(),
        targets: targets.clone(),
        lifecycle: Lifecycle::NEW,
        phase: Phase::new("plan").expect("a valid phase"),
        token: None,
        transitions: Vec::new(),
        validation: Vec::new(),
        servers: BTreeMap::new(),
        failure: None,
        cancel_requested_at: None,
        canary: None,
        image_digest: None,
        actor: caller.actor.clone(),
        created_at: now,
        updated_at: now,
    };
    let v = crate::sequencer::validate::run_dry(&app.driver, &d).await;
    let ports: BTreeMap<_, _> = v.ports.iter().cloned().collect();
    let (index, running) = app.node.read(|a| {
        let st = &a.state.deployments;
        let record = st.services.get(&req.service);
        let running = targets
            .iter()
            .map(|server| {
                let p = record.and_then(|r| r.servers.get(server))?;
                let by = st.all.get(&p.deployment)?;
                Some((p.image.clone(), p.port, by.request.clone()))
            })
            .collect::<Vec<_>>();
        (st.service_index(&req.service), running)
    });
    let servers = targets
        .iter()
        .zip(running)
        .map(|(server, now)| {
            // Stored secret values are sealed: compare what the container gets.
            let now = now.map(|(image, port, mut request)| {
                if let Ok(plain) =
                    crate::secrets::env::open(&app.secrets, &request.service, &request.env)
                {
                    for (name, value) in plain {
                        if let Some(var) = request.env.get_mut(&name) {
                            var.value = value;
                        }
                    }
                }
                (image, port, request)
            });
            let running = now.as_ref().map(|(image, port, request)| Running {
                image,
                port: *port,
                request,
            });
            diff_server(server, running, &req, ports.get(server).copied())
        })
        .collect::<Vec<_>>();
    Ok(Json(DeploymentPlan {
        service: req.service.clone(),
        index,
        valid: v.results.iter().all(|r| r.ok),
        changes: servers.iter().any(|s| s.action != PlanAction::None),
        image_digest: v.digest.clone(),
        validation: v.results,
        servers,
    }))
}
