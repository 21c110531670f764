//! What the agent reports about its host: its health, the services' containers, images,
//! ports and the fence.

use axum::extract::{Path, State};
use axum::Json;
use sluice_common::agent_api::{
    AgentHealth, ContainerView, FenceView, ImageCheck, PortProbe, ServiceList, ServiceStatus,
};
use sluice_common::image::ImageRef;
use sluice_common::names::LockKey;
use sluice_common::problem::{ErrorCode, Problem};

use super::{invalid, service_name, ApiError, Shared};
use crate::runtime::{pick_previous, Container, Runtime};

/// How long the health answer waits for the proxy's.
const PROXY_STATUS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

pub(super) async fn health(State(a): Shared) -> Json<AgentHealth> {
    let r = a.engine.reachability();
    let proxy = tokio::time::timeout(PROXY_STATUS_TIMEOUT, a.proxy.status()).await;
    let (proxy_version, proxy_error) = match proxy {
        Ok(Ok(s)) => (Some(s.version), None),
        Ok(Err(e)) => (None, Some(e.to_string())),
        Err(_) => (
            None,
            Some(format!("no answer within {PROXY_STATUS_TIMEOUT:?}")),
        ),
    };
    Json(AgentHealth {
        server: a.config.name.to_string(),
        docker_reachable: r.reachable,
        docker_version: r.version,
        docker_error: r.error,
        proxy_reachable: proxy_version.is_some(),
        proxy_version,
        proxy_error: proxy_error
            .map(|e| format!("{e} (socket {})", a.config.proxy_socket.display())),
        policy: Some(crate::policy::container(&a.config.policy)),
    })
}

fn views(containers: &[Container]) -> Vec<ContainerView> {
    let current = containers.iter().find(|c| c.running).map(|c| c.id.as_str());
    let previous = pick_previous(containers, current)
        .filter(|c| !c.running)
        .map(|c| c.id.as_str());
    containers
        .iter()
        .map(|c| ContainerView {
            id: c.id.clone(),
            image: c.image.clone(),
            deployment: c.deployment,
            state: c.status.clone(),
            current: c.running,
            previous: Some(c.id.as_str()) == previous,
            host_port: c.host_port,
            exit_code: c.exit_code,
        })
        .collect()
}

pub(super) async fn list_services(State(a): Shared) -> Result<Json<ServiceList>, ApiError> {
    let all = a.engine.all_containers().await?;
    let mut services: Vec<ServiceStatus> = Vec::new();
    let mut i = 0;
    while i < all.len() {
        let name = all[i].0.clone();
        let group: Vec<Container> = all[i..]
            .iter()
            .take_while(|(s, _)| *s == name)
            .map(|(_, c)| c.clone())
            .collect();
        i += group.len();
        services.push(ServiceStatus {
            service: name,
            containers: views(&group),
        });
    }
    Ok(Json(ServiceList { services }))
}

pub(super) async fn service_status(
    State(a): Shared,
    Path(service): Path<String>,
) -> Result<Json<ServiceStatus>, ApiError> {
    let service = service_name(&service)?;
    let containers = a.engine.service_containers(&service).await?;
    if containers.is_empty() {
        return Err(ApiError::from(Problem::new(
            ErrorCode::NotFound,
            format!("service {service} has no containers on this server"),
        )));
    }
    Ok(Json(ServiceStatus {
        service,
        containers: views(&containers),
    }))
}

pub(super) async fn image(
    State(a): Shared,
    Path(image): Path<String>,
) -> Result<Json<ImageCheck>, ApiError> {
    let image = ImageRef::parse(&image).map_err(|e| invalid("image", e.reason))?;
    let id = a.engine.image_id(&image.to_string()).await?;
    Ok(Json(ImageCheck {
        image,
        present: id.is_some(),
        id,
    }))
}

pub(super) async fn port(
    State(a): Shared,
    Path(port): Path<String>,
) -> Result<Json<PortProbe>, ApiError> {
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| invalid("port", format!("{port:?} is not a port number (1-65535)")))?;
    let bound = a.engine.port_bound(a.config.host_ip, port).await;
    let service = if bound {
        // A container that publishes the port itself (recreate), else a proxy route.
        let direct = a.engine.all_containers().await.ok().and_then(|all| {
            all.into_iter()
                .find(|(_, c)| c.running && c.host_port == Some(port))
                .map(|(s, _)| s)
        });
        match direct {
            Some(s) => Some(s),
            None => a.proxy.routes().await.ok().and_then(|routes| {
                routes
                    .into_iter()
                    .find(|r| r.spec.listen.port() == port)
                    .map(|r| r.service)
            }),
        }
    } else {
        None
    };
    Ok(Json(PortProbe {
        port,
        bound,
        service,
    }))
}

pub(super) async fn fence(
    State(a): Shared,
    Path(key): Path<String>,
) -> Result<Json<FenceView>, ApiError> {
    let key = LockKey::parse(&key).map_err(|e| invalid("key", e.reason))?;
    Ok(Json(FenceView {
        highest: a.ops.fence().highest(&key),
        key,
    }))
}
