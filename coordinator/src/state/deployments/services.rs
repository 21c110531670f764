//! What runs where, per service: kept in step with finished deployments.

use std::borrow::Cow;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_common::names::ServerName;
use uuid::Uuid;

use super::{Deployment, Deployments};

/// What runs where, per service, after successful deployments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// Per server: image, port and the deployment that put it there.
    pub servers: BTreeMap<ServerName, Placement>,
    /// Successful deployments, oldest first (manual rollback pops the last).
    pub history: Vec<Uuid>,
}

/// A service's version on one server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// The image.
    pub image: sluice_common::image::ImageRef,
    /// The host port.
    pub port: u16,
    /// The deployment.
    pub deployment: Uuid,
    /// The health check it was deployed with: restoring this version later judges it by
    /// this check, not by the one of the version that failed (absent in older records).
    #[serde(default)]
    pub health: Option<sluice_common::api::HealthCheck>,
}

impl Deployments {
    /// The service's version index: the sequence number of its latest deployment, 0 when
    /// it has none. A plan reports it; `check_index` compares against it. Every accepted
    /// deployment of the service raises it (sequence numbers only grow).
    pub fn service_index(&self, service: &sluice_common::names::ServiceName) -> u64 {
        self.index
            .by_service
            .get(service)
            .and_then(|ids| ids.last())
            .map_or(0, |(seq, _)| *seq)
    }

    /// A deployment that changed servers succeeded: it is what runs there now.
    pub(super) fn record_success(&mut self, d: &Deployment) {
        let rec = self.services.entry(d.request.service.clone()).or_default();
        for s in d.servers.values() {
            if let Some(port) = s.port {
                rec.servers.insert(
                    s.server.clone(),
                    Placement {
                        image: d.request.image.clone(),
                        port,
                        deployment: d.id,
                        health: Some(d.request.health.clone()),
                    },
                );
            }
        }
        rec.history.push(d.id);
    }

    /// A successful deployment was rolled back by hand: the service is back on the
    /// success before it, or on nothing where there was none.
    pub(super) fn record_manual_rollback(&mut self, d: &Deployment) {
        let prev = {
            let rec = self.services.entry(d.request.service.clone()).or_default();
            rec.history.retain(|x| *x != d.id);
            rec.history.last().copied()
        };
        let prev = prev.and_then(|p| self.all.get(&p)).map(Cow::into_owned);
        let rec = self.services.entry(d.request.service.clone()).or_default();
        for server in &d.targets {
            let placed = prev.as_ref().and_then(|p| {
                let port = p.servers.get(server)?.port?;
                Some(Placement {
                    image: p.request.image.clone(),
                    port,
                    deployment: p.id,
                    health: Some(p.request.health.clone()),
                })
            });
            match placed {
                Some(p) => {
                    rec.servers.insert(server.clone(), p);
                }
                None => {
                    rec.servers.remove(server);
                }
            }
        }
    }
}
