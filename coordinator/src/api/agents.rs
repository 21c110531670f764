//! `/v1/agents`: registration and heartbeats from agents.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use sluice_common::agent_api::{AgentHeartbeat, AgentRegistration};
use sluice_common::names::ServerName;
use sluice_common::problem::ErrorCode;
use sluice_common::tls::{PeerIdentity, Role};

use super::error::{ApiError, ApiJson};
use super::openapi::{NotFound, ServerPath};
use super::App;
use crate::agents::Change;
use crate::node::Empty;
use crate::state::Command;

/// `POST /v1/agents/register`: only the agent whose certificate names `reg.server` (the
/// route guard has already required an agent certificate); a Raft write only when
/// something changed.
#[utoipa::path(
    post,
    path = "/v1/agents/register",
    operation_id = "registerAgent",
    tag = "agents",
    summary = "An agent announces itself. Only an `agent` certificate naming `server`.",
    request_body = AgentRegistration,
    responses(
        (status = 200, description = "Registered.", body = Empty),
    ),
)]
pub async fn register(
    State(app): State<App>,
    peer: Option<Extension<PeerIdentity>>,
    ApiJson(reg): ApiJson<AgentRegistration>,
) -> Result<Json<Empty>, ApiError> {
    match peer {
        Some(Extension(p)) if p.role == Role::Agent && p.name == reg.server.as_str() => {}
        Some(Extension(p)) => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "the certificate of {p} may not register server {}",
                    reg.server
                ),
            ))
        }
        None => {
            return Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "registration needs the agent's certificate",
            ))
        }
    }
    let unchanged = app.node.read(|a| {
        a.state.servers.get(&reg.server).is_some_and(|r| {
            r.up && r.agent_addr == reg.agent_addr
                && (r.labels_pinned || r.labels == reg.labels)
                && r.port_range == reg.port_range
                && r.docker_version == reg.docker_version
                && r.agent_version.as_deref() == Some(reg.agent_version.as_str())
        }) && reg.bound_ports.as_ref().is_none_or(|b| {
            let reported: std::collections::BTreeSet<u16> = b.iter().copied().collect();
            a.state
                .ports
                .server(&reg.server)
                .is_some_and(|p| *p.host_bound() == reported)
        })
    });
    if !unchanged {
        app.node
            .propose(
                &format!("agent:{}", reg.server),
                Command::RegisterAgent { registration: reg },
            )
            .await?;
    }
    Ok(Json(Empty {}))
}

/// `POST /v1/agents/{server}/heartbeat`: kept in the leader's memory; a follower passes it on
/// (the route guard admits only that server's agent certificate, or a coordinator's).
#[utoipa::path(
    post,
    path = "/v1/agents/{server}/heartbeat",
    operation_id = "agentHeartbeat",
    tag = "agents",
    summary = "An agent's heartbeat (kept in the leader's memory; followers forward it). That server's `agent` certificate, or a coordinator's.",
    params(ServerPath),
    request_body = AgentHeartbeat,
    responses(
        (status = 200, description = "Noted.", body = Empty),
        (status = 404, response = NotFound),
    ),
)]
pub async fn heartbeat(
    State(app): State<App>,
    Path(server): Path<String>,
    ApiJson(hb): ApiJson<AgentHeartbeat>,
) -> Result<Json<Empty>, ApiError> {
    let server = ServerName::parse(&server)?;
    if server != hb.server {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("path names {server} but the body names {}", hb.server),
        ));
    }
    let leading = app.node.is_leader();
    if !leading {
        app.node
            .forward_to_leader::<_, Empty>(&format!("/v1/agents/{server}/heartbeat"), &hb)
            .await?;
        return Ok(Json(Empty {}));
    }
    let changes = app.agents.beat(&app.node, &hb).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!("server {server} is not registered; register first"),
        )
    })?;
    for c in changes {
        let cmd = match c {
            Change::Up => Command::SetAgentUp {
                server: server.clone(),
                up: true,
            },
            Change::Ports(ports) => Command::SetHostBound {
                server: server.clone(),
                ports,
            },
        };
        app.node.propose(&format!("agent:{server}"), cmd).await?;
    }
    Ok(Json(Empty {}))
}
