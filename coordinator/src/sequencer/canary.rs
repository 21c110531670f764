//! The executor's part of a canary: setting a step's weight on every target server at once
//! (deploying the new version beside the old where it is not yet), measuring the analysis's
//! checks, and aborting every server's canary at once.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use futures_util::future::join_all;
use sluice_common::agent_api::{AbortRequest, WeightRequest};
use sluice_common::analysis::Sample;
use sluice_common::api::{AnalysisCheck, ServerStepState};
use sluice_common::fence::FenceClaim;
use sluice_common::locks::FencingToken;
use sluice_common::names::ServerName;
use sluice_common::time::Timestamp;

use super::analysis;
use super::operation::{Call, Ended, Kind};
use super::plan::{step_of, Observed, Readings};
use super::{Driver, Stop};
use crate::agent_client::AgentClient;
use crate::state::deployments::{Deployment, DeploymentCommand};

impl Driver {
    /// Sets step `step`'s weight on every target server, concurrently; records the servers
    /// that failed (their agents restored them) for the plan.
    pub(super) async fn shift(
        &self,
        d: &Deployment,
        step: u32,
        weight: u32,
        last: bool,
        deadline: Duration,
        seen: &mut Observed,
    ) -> Result<(), Stop> {
        let token = d
            .token
            .ok_or_else(|| Stop::Refused("no fencing token".into()))?;
        let runs = d
            .canary_weights(step)
            .into_iter()
            .filter_map(|(s, w)| w.map(|w| (s, w)))
            .map(|(s, w)| self.weigh_on(d, token, s, w, last, deadline, seen));
        let mut failures = Vec::new();
        for r in join_all(runs).await {
            failures.extend(r?);
        }
        if failures.is_empty() {
            seen.shifted = Some(step);
            tracing::info!(deployment = %d.id, step, weight, "canary weight set on the step's servers");
        }
        seen.batch_failures = Some(failures);
        Ok(())
    }

    /// One server's part of a shift: deploy the canary there (first step), or give its
    /// running canary the new weight; `Some(why)` when the server failed.
    #[allow(clippy::too_many_arguments)]
    async fn weigh_on(
        &self,
        d: &Deployment,
        token: FencingToken,
        server: ServerName,
        weight: u32,
        last: bool,
        deadline: Duration,
        seen: &Observed,
    ) -> Result<Option<String>, Stop> {
        let mut step = step_of(d, &server);
        match step.state {
            ServerStepState::Pending => {
                return self
                    .deploy_on(d, token, server, deadline, seen, Some((weight, last)))
                    .await
            }
            // The deploy there ended at 100 % already (there was no old version to share
            // traffic with): nothing to move.
            ServerStepState::Succeeded => return Ok(None),
            ServerStepState::Deploying => {}
            _ => return Ok(Some(format!("{server}: {}", step.detail))),
        }
        let Some(addr) = self.agent_addr(&server) else {
            return Ok(Some(format!("{server}: not registered")));
        };
        let req = WeightRequest {
            fence: FenceClaim {
                key: d.lock_key(),
                token,
            },
            weight,
        };
        let submit = || async { AgentClient::known(self.agents.weight(&addr, d.id, &req).await?) };
        let call = Call {
            deployment: d.id,
            op: d.id,
            addr: &addr,
            kind: Kind::Deploy,
            submit: Some(submit),
            deadline: Some(deadline),
            until_weight: (!last).then_some(weight),
        };
        Ok(match self.run_operation(&mut step, call).await? {
            Ended::Ok => None,
            Ended::Failed(why) => Some(why),
            Ended::DeadlinePassed(deadline) => Some(format!(
                "{server}: the canary did not reach {weight}% within {deadline:?}"
            )),
        })
    }

    /// Reads every server's proxy counters; past the step's baseline, measures every check
    /// over the interval since and records the measurements (one entry).
    pub(super) async fn measure(
        &self,
        d: &Deployment,
        step: u32,
        seen: &mut Observed,
    ) -> Result<(), Stop> {
        // Only the servers that run the new version have its counters.
        let holding = d
            .targets
            .iter()
            .filter(|s| step_of(d, s).state != ServerStepState::Pending);
        let reads = holding.map(|server| async move {
            let got = match self.agent_addr(server) {
                None => Err("not registered".to_string()),
                Some(addr) => self
                    .agents
                    .traffic(&addr, d.id)
                    .await
                    .map_err(|e| e.to_string()),
            };
            (server.clone(), got)
        });
        let servers: BTreeMap<ServerName, _> = join_all(reads).await.into_iter().collect();
        let now = Timestamp::from_system(SystemTime::now());
        let after = Readings {
            step,
            at: now,
            servers,
        };
        let step_at = d.canary.as_ref().map(|c| c.step_at).unwrap_or_default();
        let before = seen
            .readings
            .replace(after.clone())
            .filter(|r| r.step == step && r.at >= step_at);
        let (Some(before), Some(a)) = (before, d.canary_spec().analysis.clone()) else {
            return Ok(());
        };
        let mut measurements = analysis::builtins(&a.checks, step, &before, &after);
        for check in a.checks.iter().filter(|c| c.needs_prometheus()) {
            let AnalysisCheck::Prometheus { query, .. } = check else {
                continue;
            };
            let sample = match &self.prometheus {
                Some(p) => p.query(query).await,
                None => {
                    Sample::Error("no Prometheus is configured ([analysis] prometheus_url)".into())
                }
            };
            let detail = format!("query {query}");
            measurements.push(analysis::record(check, step, now, sample, detail));
        }
        for m in &measurements {
            tracing::info!(deployment = %d.id, step, check = %m.check, value = ?m.value, outcome = ?m.outcome, detail = %m.detail, "canary measurement");
        }
        self.deployment_cmd(DeploymentCommand::CanaryMeasured {
            id: d.id,
            step,
            measurements,
        })
        .await
    }

    /// Aborts the canary on every server that still holds one, all at once: each agent
    /// sets its proxy's weight for the new version to 0, drains and removes it.
    pub(super) async fn abort_canary(&self, d: &Deployment, token: FencingToken) {
        if d.request.strategy != sluice_common::api::Strategy::Canary {
            return;
        }
        let reason = d
            .failure
            .clone()
            .unwrap_or_else(|| "the canary was aborted".into());
        let aborts = d
            .targets
            .iter()
            .filter(|s| step_of(d, s).state == ServerStepState::Deploying)
            .filter_map(|s| self.agent_addr(s).map(|a| (s.clone(), a)))
            .map(|(server, addr)| {
                let req = AbortRequest {
                    fence: FenceClaim {
                        key: d.lock_key(),
                        token,
                    },
                    reason: reason.clone(),
                };
                async move {
                    if let Err(e) = self.agents.abort(&addr, d.id, &req).await {
                        tracing::warn!(%server, error = %e, "could not abort the canary there; the rollback retries");
                    }
                }
            });
        join_all(aborts).await;
    }
}
