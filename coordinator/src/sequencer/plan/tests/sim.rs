//! The simulated world the planner tests run in.

use sluice_common::api::{CreateDeploymentRequest, HealthCheck, ServerStepState};
use sluice_common::deployment::{DeploymentEvent, DeploymentState, SubState};
use sluice_common::names::ServerName;
use sluice_common::time::Timestamp;
use uuid::Uuid;

use super::super::{plan, step_of, Action, Observed, Validated};
use crate::sequencer::history;
use crate::state::deployments::{Deployment, DeploymentCommand, Deployments};
use sluice_common::api::ServerStepView;
use sluice_common::locks::LockTable;

pub fn server(i: usize) -> ServerName {
    ServerName::parse(&format!("web-{i}")).unwrap()
}

pub fn health(path: &str) -> HealthCheck {
    serde_json::from_value(serde_json::json!({"kind": "http", "path": path})).unwrap()
}

pub struct Sim {
    pub deps: Deployments,
    pub locks: LockTable,
    pub index: u64,
    pub id: Uuid,
    pub seen: Observed,
    /// Time passed beyond one second per applied entry, in milliseconds.
    pub later: u64,
}

impl Sim {
    /// A deployment of `image` to `n` servers, `extra` merged into the request.
    pub fn new(n: usize, extra: serde_json::Value) -> Self {
        let mut req = serde_json::json!({
            "service": "api", "image": "app:v2", "container_port": 8080,
            "servers": (1..=n).map(|i| format!("web-{i}")).collect::<Vec<_>>(),
            "health": {"kind": "http", "path": "/v2"},
        });
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        let request: CreateDeploymentRequest = serde_json::from_value(req).unwrap();
        let mut sim = Sim {
            deps: Deployments::default(),
            locks: LockTable::default(),
            index: 0,
            id: Uuid::new_v4(),
            seen: Observed::default(),
            later: 0,
        };
        sim.apply(DeploymentCommand::Create {
            id: sim.id,
            request: Box::new(request),
            targets: (1..=n).map(server).collect(),
            idempotency: None,
            actor: "ci".into(),
        })
        .unwrap();
        sim
    }

    pub fn d(&self) -> std::borrow::Cow<'_, Deployment> {
        self.deps.all.get(&self.id).unwrap()
    }

    pub fn now(&self) -> Timestamp {
        Timestamp(1_000_000 + self.index * 1000 + self.later)
    }

    pub fn apply(&mut self, cmd: DeploymentCommand) -> Result<(), String> {
        self.index += 1;
        let now = self.now();
        self.deps
            .apply(&mut self.locks, &cmd, self.index, now)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    pub fn plan(&mut self) -> Action {
        self.seen.now = self.now();
        self.seen.previous = history::restored(&self.deps, &self.deps.all.get(&self.id).unwrap());
        let d = self.d().into_owned();
        if d.token.is_none() && !d.lifecycle.wants_lock() {
            self.seen.fenced = true;
        }
        plan(&d, &self.seen)
    }

    /// Plans and applies proposals (and re-fences) until the plan asks for something else.
    pub fn run(&mut self) -> Action {
        for _ in 0..20 {
            match self.plan() {
                Action::Propose(cmd) => self.apply(cmd).unwrap(),
                Action::Refence => {
                    let cmd = DeploymentCommand::Refence {
                        id: self.id,
                        lock_ttl: crate::sequencer::LOCK_TTL,
                    };
                    match self.apply(cmd) {
                        Ok(()) => self.seen.fenced = true,
                        Err(why) => self.seen.lock_lost = Some(why),
                    }
                }
                other => return other,
            }
        }
        panic!("the plan does not settle");
    }

    /// Validation as the executor records it: ports per server, and the result.
    pub fn validated(&mut self, failures: &[&str], already_running: bool) {
        for s in self.d().targets.clone() {
            let mut step = step_of(&self.d(), &s);
            step.port = Some(20000);
            self.set_step(step);
        }
        self.seen.validated = Some(Validated {
            failures: failures.iter().map(|f| f.to_string()).collect(),
            already_running,
        });
    }

    pub fn set_step(&mut self, step: ServerStepView) {
        self.apply(DeploymentCommand::Progress {
            id: self.id,
            phase: None,
            validation: None,
            server: Some(step),
        })
        .unwrap();
    }

    /// The agents report each server of a batch: `Ok` healthy, `Err` restored by the agent.
    pub fn batch(&mut self, results: &[(usize, Result<(), &str>)]) {
        let mut failures = Vec::new();
        for (i, r) in results {
            let mut step = step_of(&self.d(), &server(*i));
            step.operation = Some(self.id);
            match r {
                Ok(()) => step.state = ServerStepState::Succeeded,
                Err(why) => {
                    step.state = ServerStepState::RestoredByAgent;
                    step.detail = why.to_string();
                    failures.push(format!("{}: {why}", server(*i)));
                }
            }
            self.set_step(step);
        }
        self.seen.batch_failures = Some(failures);
    }

    pub fn sub(&self) -> (DeploymentState, SubState) {
        (self.d().state(), self.d().lifecycle.sub_state())
    }

    pub fn lock_held(&self) -> bool {
        self.locks.get(&self.d().lock_key(), self.now()).is_some()
    }

    /// A new leader takes over: it has seen nothing yet.
    pub fn failover(&mut self) {
        self.seen = Observed::default();
    }
}

pub fn deploy_batch(a: &Action) -> Vec<ServerName> {
    match a {
        Action::Deploy { servers, .. } => servers.clone(),
        other => panic!("expected a deploy, got {other:?}"),
    }
}

pub fn proposed_event(a: &Action) -> (DeploymentEvent, Option<String>) {
    match a {
        Action::Propose(DeploymentCommand::Event { event, failure, .. }) => {
            (*event, failure.clone())
        }
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Through validation; returns the first deploy action.
pub fn to_first_batch(sim: &mut Sim) -> Action {
    assert_eq!(sim.run(), Action::Validate);
    sim.validated(&[], false);
    sim.run()
}
