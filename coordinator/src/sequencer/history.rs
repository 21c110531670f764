//! What ran before a deployment, read from the replicated state (pure).
//!
//! A rollback restores, on each server, the version that ran there before the deployment,
//! and judges it by the health check that version was deployed with, never by the check of
//! the version that failed.

use std::collections::BTreeMap;

use sluice_common::api::HealthCheck;
use sluice_common::names::ServerName;

use crate::state::deployments::{Deployment, Deployments};

/// Per target server of `d`, the health check of the version now placed there by an
/// earlier deployment; a server where nothing of the service runs is absent. While `d` has
/// not succeeded, that is the version a failure of `d` restores.
pub fn placed(deps: &Deployments, d: &Deployment) -> BTreeMap<ServerName, HealthCheck> {
    let Some(rec) = deps.services.get(&d.request.service) else {
        return BTreeMap::new();
    };
    d.targets
        .iter()
        .filter_map(|server| {
            let p = rec.servers.get(server)?;
            let health = p
                .health
                .clone()
                .or_else(|| {
                    deps.all
                        .get(&p.deployment)
                        .map(|x| x.request.health.clone())
                })
                .unwrap_or_else(|| d.request.health.clone());
            Some((server.clone(), health))
        })
        .collect()
}

/// Per target server of a successful `d`, the health check of the version that ran there
/// before it (the success before `d` in the service's history); a server where nothing of
/// the service ran is absent. What a manual rollback of `d` restores.
pub fn before(deps: &Deployments, d: &Deployment) -> BTreeMap<ServerName, HealthCheck> {
    let prev = deps
        .services
        .get(&d.request.service)
        .and_then(|r| {
            let pos = r.history.iter().position(|x| *x == d.id)?;
            r.history.get(pos.checked_sub(1)?).copied()
        })
        .and_then(|p| deps.all.get(&p));
    let Some(prev) = prev else {
        return BTreeMap::new();
    };
    d.targets
        .iter()
        .filter(|s| prev.servers.get(*s).is_some_and(|step| step.port.is_some()))
        .map(|s| (s.clone(), prev.request.health.clone()))
        .collect()
}

/// What a rollback of `d` restores, per server: [`before`] for a manual rollback of a
/// success, else [`placed`].
pub fn restored(deps: &Deployments, d: &Deployment) -> BTreeMap<ServerName, HealthCheck> {
    if d.state() == sluice_common::deployment::DeploymentState::Success {
        before(deps, d)
    } else {
        placed(deps, d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::deployments::{DeploymentCommand, Placement, ServiceRecord};
    use sluice_common::api::{CreateDeploymentRequest, ServerStepState, ServerStepView};
    use sluice_common::locks::LockTable;
    use sluice_common::time::Timestamp;
    use uuid::Uuid;

    fn server(s: &str) -> ServerName {
        ServerName::parse(s).unwrap()
    }

    fn deployment(deps: &mut Deployments, image: &str, path: &str) -> Uuid {
        let request: CreateDeploymentRequest = serde_json::from_value(serde_json::json!({
            "service": "web", "image": image, "servers": ["a", "b"], "container_port": 80,
            "health": {"kind": "http", "path": path}
        }))
        .unwrap();
        let id = Uuid::new_v4();
        let cmd = DeploymentCommand::Create {
            id,
            request: Box::new(request),
            targets: vec![server("a"), server("b")],
            idempotency: None,
            actor: "t".into(),
        };
        deps.apply(&mut LockTable::default(), &cmd, 1, Timestamp(1))
            .unwrap();
        id
    }

    fn path(h: &HealthCheck) -> String {
        serde_json::to_value(h).unwrap()["path"]
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_first_deployment_has_nothing_before_it() {
        let mut deps = Deployments::default();
        let id = deployment(&mut deps, "app:v1", "/v1");
        let d = deps.all.get(&id).unwrap().clone();
        assert!(placed(&deps, &d).is_empty());
        assert!(before(&deps, &d).is_empty());
    }

    #[test]
    fn a_failure_restores_what_is_placed_judged_by_its_own_check() {
        let mut deps = Deployments::default();
        let v1 = deployment(&mut deps, "app:v1", "/v1");
        let v2 = deployment(&mut deps, "app:v2", "/v2");
        // v1 runs on `a` only.
        deps.services.insert(
            deps.all.get(&v1).unwrap().request.service.clone(),
            ServiceRecord {
                servers: BTreeMap::from([(
                    server("a"),
                    Placement {
                        image: deps.all.get(&v1).unwrap().request.image.clone(),
                        port: 20000,
                        deployment: v1,
                        // An older record without the check: the deployment's is used.
                        health: None,
                    },
                )]),
                history: vec![v1],
            },
        );
        let d = deps.all.get(&v2).unwrap().clone();
        let p = placed(&deps, &d);
        assert_eq!(p.keys().collect::<Vec<_>>(), vec![&server("a")]);
        assert_eq!(path(&p[&server("a")]), "/v1");
        assert_eq!(restored(&deps, &d), p);
    }

    #[test]
    fn a_manual_rollback_restores_the_success_before() {
        let mut deps = Deployments::default();
        let v1 = deployment(&mut deps, "app:v1", "/v1");
        let v2 = deployment(&mut deps, "app:v2", "/v2");
        // v1 reached `b` only; v2 succeeded on both.
        let mut step = ServerStepView::pending(&server("b"));
        step.port = Some(20000);
        step.state = ServerStepState::Succeeded;
        deps.all
            .get_mut(&v1)
            .unwrap()
            .servers
            .insert(server("b"), step);
        deps.services
            .entry(deps.all.get(&v1).unwrap().request.service.clone())
            .or_default()
            .history = vec![v1, v2];
        let d = deps.all.get(&v2).unwrap().clone();
        let b = before(&deps, &d);
        assert_eq!(b.keys().collect::<Vec<_>>(), vec![&server("b")]);
        assert_eq!(path(&b[&server("b")]), "/v1");
        // v1 itself had nothing before it.
        assert!(before(&deps, &deps.all.get(&v1).unwrap()).is_empty());
    }
}
