//! One driver for every agent operation (deploy and rollback): submit, long-poll until it
//! ends, record each change in the deployment's server step.
//!
//! Operations are keyed by id on the agent, so submitting again (after a lost answer, a
//! leader change, an agent restart) never runs anything twice. The decisions — what to do
//! after each answer, and what an operation's state means for the server's step — are pure
//! functions ([`next`], [`outcome`]) with unit tests; [`Driver::run_operation`] only does
//! the calls.

use std::time::Duration;

use sluice_common::agent_api::{OperationState, OperationView};
use sluice_common::api::{ServerStepState, ServerStepView};
use uuid::Uuid;

use super::{Driver, Stop, AGENT_RETRY, POLL};
use crate::agent_client::AgentError;

/// Which kind of operation a step is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The deployment's deploy on the server.
    Deploy,
    /// A rollback to the kept previous container.
    Rollback,
}

/// At most this many answers are waited for in a rollback (each a long-poll or a retry).
const ROLLBACK_ROUNDS: u32 = 120;

/// Where the driving of one operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The kind.
    pub kind: Kind,
    /// The agent has accepted the operation (so polling it is meaningful).
    pub submitted: bool,
    /// May submit it (false: only wait for one submitted earlier).
    pub may_submit: bool,
    /// Time since driving began.
    pub elapsed: Duration,
    /// Past this, the deploy is aborted.
    pub deadline: Option<Duration>,
    /// Answers so far.
    pub rounds: u32,
    /// Waiting for a canary's weight, not for the operation to end: the agent's long-poll
    /// wakes on a change it sees after the poll began, and the weight may have been applied
    /// between the answer to the weight request and the poll, so polls are short.
    pub for_weight: bool,
}

/// The long-poll while waiting for a canary's weight (see [`Progress::for_weight`]).
const WEIGHT_POLL: Duration = Duration::from_millis(200);

/// What the agent said last.
#[derive(Debug)]
pub enum Heard {
    /// Nothing asked yet.
    Nothing,
    /// It was submitted and still runs (after a retry): poll it.
    Waiting,
    /// The operation.
    Op(Box<OperationView>),
    /// The agent does not know the operation (it was never accepted).
    Unknown,
    /// An error.
    Err(AgentError),
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    /// Submit the operation.
    Submit,
    /// Long-poll it for at most this long.
    Poll(Duration),
    /// Ask again after a backoff; the step shows `detail` meanwhile if given.
    Retry {
        /// What to show.
        detail: Option<String>,
    },
    /// The progress deadline passed: tell the agent to stop, and fail the server.
    Abort(Duration),
    /// Finished: `None` for success, else why the server failed.
    Finished(Option<String>),
    /// An agent saw a newer fencing token: this leader was superseded.
    Deposed(String),
}

/// The next move after `heard`.
pub fn next(p: &Progress, heard: &Heard) -> Move {
    if let Some(deadline) = p.deadline {
        if p.elapsed > deadline {
            return Move::Abort(deadline);
        }
    }
    if p.kind == Kind::Rollback && p.rounds >= ROLLBACK_ROUNDS {
        return Move::Finished(Some("rollback did not finish".into()));
    }
    let longest = if p.for_weight { WEIGHT_POLL } else { POLL };
    let poll = || {
        Move::Poll(p.deadline.map_or(longest, |d| {
            // Never long-poll past the progress deadline.
            longest.min(d.saturating_sub(p.elapsed) + Duration::from_millis(50))
        }))
    };
    match heard {
        Heard::Nothing | Heard::Unknown if p.may_submit => Move::Submit,
        Heard::Nothing | Heard::Waiting => poll(),
        // Only waiting, for an operation the agent does not know: nothing runs there.
        Heard::Unknown => Move::Finished(None),
        Heard::Op(op) if op.state == OperationState::Running => poll(),
        Heard::Op(_) => Move::Finished(None),
        Heard::Err(AgentError::Stale { detail }) => Move::Deposed(detail.clone()),
        Heard::Err(AgentError::Busy { detail }) => Move::Retry {
            detail: Some(detail.clone()),
        },
        Heard::Err(AgentError::Refused { detail, .. }) => Move::Finished(Some(match p.kind {
            Kind::Deploy => format!("agent refused: {detail}"),
            Kind::Rollback => detail.clone(),
        })),
        Heard::Err(AgentError::Unreachable { .. } | AgentError::Protocol { .. }) => {
            Move::Retry { detail: None }
        }
    }
}

/// Records `op` in `step`; `Some(outcome)` once it is final (`None` inside: success).
pub fn outcome(
    step: &mut ServerStepView,
    op: &OperationView,
    kind: Kind,
) -> Option<Option<String>> {
    let rollback = kind == Kind::Rollback;
    // What went wrong, and for a restore what was done about it.
    step.detail = match (&op.error, op.state) {
        (Some(e), OperationState::RolledBack) => format!("{e}; {}", op.phase),
        (Some(e), _) => e.clone(),
        (None, _) => op.phase.clone(),
    };
    if op.log_tail.is_some() {
        step.log_tail = op.log_tail.clone();
    }
    let failed = |step: &ServerStepView| Some(Some(format!("{}: {}", step.server, step.detail)));
    match (op.state, rollback) {
        (OperationState::Running, _) => None,
        (OperationState::Succeeded, false) => {
            step.state = ServerStepState::Succeeded;
            Some(None)
        }
        (OperationState::Succeeded, true) => {
            step.state = ServerStepState::RolledBack;
            Some(None)
        }
        (OperationState::RolledBack, _) => {
            step.state = if rollback {
                ServerStepState::RolledBack
            } else {
                ServerStepState::RestoredByAgent
            };
            failed(step)
        }
        (OperationState::Failed, false) => {
            // With no previous container nothing ran before, and the agent removed the
            // failed one: the server is as it was.
            step.state = if op.previous_container.is_none() {
                ServerStepState::RestoredByAgent
            } else {
                ServerStepState::Failed
            };
            failed(step)
        }
        (OperationState::Failed, true) => {
            step.state = ServerStepState::RollbackFailed;
            failed(step)
        }
    }
}

/// How the driving of an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It succeeded (or, only waiting, nothing runs there).
    Ok,
    /// The server failed: why.
    Failed(String),
    /// The progress deadline passed first.
    DeadlinePassed(Duration),
}

/// A jitter seed per operation and server.
fn jitter_seed(id: Uuid, step: &ServerStepView) -> u64 {
    let (hi, lo) = id.as_u64_pair();
    step.server
        .as_str()
        .bytes()
        .fold(hi ^ lo, |h, b| h.rotate_left(5) ^ u64::from(b))
}

/// How one operation is reached.
pub struct Call<'a, S> {
    /// The deployment (whose record holds the step).
    pub deployment: Uuid,
    /// The operation's id on the agent.
    pub op: Uuid,
    /// The agent's address.
    pub addr: &'a str,
    /// The kind.
    pub kind: Kind,
    /// Submits it (`None`: only wait for one submitted earlier).
    pub submit: Option<S>,
    /// Past this, abort.
    pub deadline: Option<Duration>,
    /// `canary`: the driving ends once the (still running) operation holds the new version
    /// at this weight.
    pub until_weight: Option<u32>,
}

/// Whether a running canary deploy holds the new version at `weight`.
pub fn holds(op: &OperationView, weight: Option<u32>) -> bool {
    op.state == OperationState::Running && weight.is_some() && op.canary_weight == weight
}

impl Driver {
    /// Persists `step` and notes it as what the record now holds.
    async fn record(
        &self,
        deployment: Uuid,
        step: &ServerStepView,
        recorded: &mut Option<ServerStepView>,
    ) -> Result<(), Stop> {
        self.step(deployment, step.clone()).await?;
        *recorded = Some(step.clone());
        Ok(())
    }
}

impl<S> std::fmt::Debug for Call<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("deployment", &self.deployment)
            .field("op", &self.op)
            .field("addr", &self.addr)
            .field("kind", &self.kind)
            .field("submits", &self.submit.is_some())
            .field("deadline", &self.deadline)
            .field("until_weight", &self.until_weight)
            .finish()
    }
}

impl Driver {
    /// Drives one operation to its end, recording the step as it goes.
    pub(super) async fn run_operation<S, F>(
        &self,
        step: &mut ServerStepView,
        call: Call<'_, S>,
    ) -> Result<Ended, Stop>
    where
        S: Fn() -> F,
        F: std::future::Future<Output = Result<OperationView, AgentError>>,
    {
        let started = tokio::time::Instant::now();
        let mut retries = AGENT_RETRY.retries(jitter_seed(call.op, step));
        let mut p = Progress {
            kind: call.kind,
            submitted: call.submit.is_none(),
            may_submit: call.submit.is_some(),
            elapsed: Duration::ZERO,
            deadline: call.deadline,
            rounds: 0,
            for_weight: call.until_weight.is_some(),
        };
        let mut heard = Heard::Nothing;
        // What the record holds for this server: read once, then kept in step here (only
        // this driver writes this server's step), so an answer costs no read of the record.
        let mut recorded = self.recorded_step(call.deployment, &step.server);
        loop {
            if !self.is_leader() {
                return Err(Stop::Leadership("deposed mid-operation".into()));
            }
            p.elapsed = started.elapsed();
            heard = match next(&p, &heard) {
                Move::Submit => match call.submit.as_ref().map(|s| s()) {
                    Some(f) => match f.await {
                        Ok(op) => {
                            p.submitted = true;
                            Heard::Op(Box::new(op))
                        }
                        Err(e) => Heard::Err(e),
                    },
                    None => Heard::Unknown,
                },
                Move::Poll(wait) => match self.agents.operation(call.addr, call.op, wait).await {
                    Ok(Some(op)) => Heard::Op(Box::new(op)),
                    Ok(None) => {
                        p.submitted = false;
                        Heard::Unknown
                    }
                    Err(e) => Heard::Err(e),
                },
                Move::Retry { detail } => {
                    if let Some(detail) = detail {
                        step.detail = detail;
                        self.record(call.deployment, step, &mut recorded).await?;
                    } else if let Heard::Err(e) = &heard {
                        match call.kind {
                            Kind::Deploy => {
                                tracing::warn!(server = %step.server, error = %e, "agent unreachable; retrying until the progress deadline")
                            }
                            Kind::Rollback => {
                                tracing::warn!(server = %step.server, error = %e, "agent not ready for the rollback; retrying")
                            }
                        }
                    }
                    tokio::time::sleep(retries.next_delay()).await;
                    if p.submitted {
                        Heard::Waiting
                    } else {
                        Heard::Nothing
                    }
                }
                Move::Abort(deadline) => return Ok(Ended::DeadlinePassed(deadline)),
                Move::Finished(None) => return Ok(Ended::Ok),
                Move::Finished(Some(why)) => {
                    if let Heard::Err(AgentError::Refused { detail, .. }) = &heard {
                        step.detail = detail.clone();
                        self.record(call.deployment, step, &mut recorded).await?;
                    }
                    return Ok(Ended::Failed(format!("{}: {why}", step.server)));
                }
                Move::Deposed(detail) => {
                    step.detail = detail.clone();
                    self.record(call.deployment, step, &mut recorded).await?;
                    return Err(Stop::Leadership(format!("{}: {detail}", step.server)));
                }
            };
            p.rounds += 1;
            if let Heard::Op(op) = &heard {
                if call.kind == Kind::Deploy && step.state == ServerStepState::Pending {
                    // Touched only once the agent has accepted the operation.
                    step.state = ServerStepState::Deploying;
                }
                let mut done = outcome(step, op, call.kind);
                if holds(op, call.until_weight) {
                    step.detail = format!(
                        "canary: {}% of new requests to the new version",
                        op.canary_weight.unwrap_or_default()
                    );
                    done = Some(None);
                }
                if recorded.as_ref() != Some(step) {
                    self.record(call.deployment, step, &mut recorded).await?;
                }
                match done {
                    Some(None) => return Ok(Ended::Ok),
                    Some(Some(why)) => return Ok(Ended::Failed(why)),
                    None => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
