//! Every state a deployment can really be in, and the one function that moves it.
//!
//! The six public states of DESIGN.md ([`DeploymentState`]) are what the API shows; a
//! deployment's whole truth also says whether a cancel was asked for, whether a success was
//! a no-op, and where a rollback stands. [`Lifecycle`] holds all of it in one value, so
//! "failed" can no longer be read as "final" by mistake: [`Lifecycle::needs_driving`],
//! [`Lifecycle::wants_lock`] and [`Lifecycle::sub_state`] are the only readings.
//!
//! [`Lifecycle::apply`] takes one [`Input`] and returns the next lifecycle together with
//! what happens to the service lock in the same Raft entry ([`LockEffect`]). Every change of
//! the public state goes through [`super::transition`], DESIGN.md's table; an input the
//! lifecycle does not allow is refused here, before anything else is touched.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{transition, DeploymentEvent, DeploymentState};

/// Where a rollback of a deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rollback {
    /// None is due (nothing was touched, or nothing was asked).
    None,
    /// Due: a failure touched servers, or a manual rollback was asked for; the sequencer has
    /// not started it yet.
    Due,
    /// The sequencer is restoring the previous version.
    Running,
    /// It could not restore the previous version and stopped: an operator must act. The
    /// service lock was released.
    GaveUp,
}

impl Rollback {
    fn in_flight(self) -> bool {
        matches!(self, Self::Due | Self::Running)
    }
}

/// A deployment's whole state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Lifecycle {
    /// Accepted, waiting for the service lock.
    Pending {
        /// A cancel was asked for.
        cancel_requested: bool,
    },
    /// Holding the lock; running the pre-flight checks.
    Validating {
        /// A cancel was asked for.
        cancel_requested: bool,
    },
    /// Changing servers.
    InProgress {
        /// A cancel was asked for (honoured between batches of servers).
        cancel_requested: bool,
    },
    /// Every target server runs the new version healthy.
    Success {
        /// Nothing was touched: the image already ran healthy everywhere.
        noop: bool,
        /// A manual rollback of it.
        rollback: Rollback,
    },
    /// Something failed.
    Failed {
        /// The automatic rollback of the servers it touched.
        rollback: Rollback,
    },
    /// The previous version runs healthy again everywhere this deployment touched.
    RolledBack,
}

/// The sub-state the API shows beside the public state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubState {
    /// `pending`: waiting for the service lock.
    Waiting,
    /// `validating`, `in_progress`: working.
    Running,
    /// `pending`, `validating`, `in_progress`: a cancel was asked for and is being honoured.
    CancelRequested,
    /// `success`, `failed`, `rolled_back`: final.
    Done,
    /// `success`: final, and nothing was touched.
    Noop,
    /// `failed` (servers were touched) or `success` (a manual rollback was asked for): the
    /// rollback is due.
    RollbackDue,
    /// `failed`, `success`: the rollback runs.
    RollingBack,
    /// `failed`, `success`: the rollback could not restore the previous version, or the
    /// deployment lost its lock; nothing drives it any more and an operator must act.
    GaveUp,
}

impl SubState {
    /// Every sub-state.
    pub const ALL: [SubState; 8] = [
        Self::Waiting,
        Self::Running,
        Self::CancelRequested,
        Self::Done,
        Self::Noop,
        Self::RollbackDue,
        Self::RollingBack,
        Self::GaveUp,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Running => "running",
            Self::CancelRequested => "cancel_requested",
            Self::Done => "done",
            Self::Noop => "noop",
            Self::RollbackDue => "rollback_due",
            Self::RollingBack => "rolling_back",
            Self::GaveUp => "gave_up",
        }
    }
}

impl fmt::Display for SubState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What moves a lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    /// One of DESIGN.md's events.
    Event {
        /// The event.
        event: DeploymentEvent,
        /// With [`DeploymentEvent::AllHealthy`]: nothing was touched.
        noop: bool,
        /// With [`DeploymentEvent::StepFailed`]: some server was touched, so a rollback is
        /// due and the lock is kept for it.
        touched: bool,
    },
    /// Someone asked to cancel.
    RequestCancel,
    /// Someone asked to roll a successful deployment back.
    RequestRollback,
    /// The sequencer starts the due rollback.
    BeginRollback,
    /// The sequencer stops driving it (the rollback failed, or its lock was lost).
    GiveUp,
}

impl Input {
    /// A plain event.
    pub fn event(event: DeploymentEvent) -> Self {
        Self::Event {
            event,
            noop: false,
            touched: false,
        }
    }
}

/// What the same Raft entry does with the service lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockEffect {
    /// Take it (the entry's index is the token).
    Take,
    /// Leave it as it is.
    Keep,
    /// Release it, if this deployment holds it.
    Release,
}

/// The outcome of [`Lifecycle::apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The next lifecycle.
    pub to: Lifecycle,
    /// What happens to the lock.
    pub lock: LockEffect,
}

/// An input the lifecycle does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a deployment that is {from} ({sub}) cannot take {input}")]
pub struct Refused {
    /// The public state.
    pub from: DeploymentState,
    /// The sub-state.
    pub sub: SubState,
    /// What was refused.
    pub input: InputName,
}

/// An input's name, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputName(Input);

impl fmt::Display for InputName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Input::Event { event, .. } => write!(f, "event {event:?}"),
            Input::RequestCancel => f.write_str("a cancel"),
            Input::RequestRollback => f.write_str("a rollback request"),
            Input::BeginRollback => f.write_str("the start of a rollback"),
            Input::GiveUp => f.write_str("giving up"),
        }
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::NEW
    }
}

impl Lifecycle {
    /// A new deployment.
    pub const NEW: Lifecycle = Lifecycle::Pending {
        cancel_requested: false,
    };

    /// The public state.
    pub fn state(self) -> DeploymentState {
        match self {
            Self::Pending { .. } => DeploymentState::Pending,
            Self::Validating { .. } => DeploymentState::Validating,
            Self::InProgress { .. } => DeploymentState::InProgress,
            Self::Success { .. } => DeploymentState::Success,
            Self::Failed { .. } => DeploymentState::Failed,
            Self::RolledBack => DeploymentState::RolledBack,
        }
    }

    /// The sub-state.
    pub fn sub_state(self) -> SubState {
        let rollback = |r: Rollback, done: SubState| match r {
            Rollback::None => done,
            Rollback::Due => SubState::RollbackDue,
            Rollback::Running => SubState::RollingBack,
            Rollback::GaveUp => SubState::GaveUp,
        };
        match self {
            _ if self.cancel_requested() => SubState::CancelRequested,
            Self::Pending { .. } => SubState::Waiting,
            Self::Validating { .. } | Self::InProgress { .. } => SubState::Running,
            Self::Success { noop: true, .. } => SubState::Noop,
            Self::Success { rollback: r, .. } | Self::Failed { rollback: r } => {
                rollback(r, SubState::Done)
            }
            Self::RolledBack => SubState::Done,
        }
    }

    /// Whether a cancel was asked for (only ever while active).
    pub fn cancel_requested(self) -> bool {
        matches!(
            self,
            Self::Pending {
                cancel_requested: true
            } | Self::Validating {
                cancel_requested: true
            } | Self::InProgress {
                cancel_requested: true
            }
        )
    }

    /// Whether it succeeded without touching anything.
    pub fn noop(self) -> bool {
        matches!(self, Self::Success { noop: true, .. })
    }

    /// Whether a manual rollback is asked for and not finished.
    pub fn rollback_requested(self) -> bool {
        matches!(self, Self::Success { rollback, .. } if rollback.in_flight())
    }

    /// Whether a rollback (automatic or manual) is due or running.
    pub fn rolling_back(self) -> bool {
        match self {
            Self::Success { rollback, .. } | Self::Failed { rollback } => rollback.in_flight(),
            _ => false,
        }
    }

    /// Whether the sequencer still has work to do on it.
    pub fn needs_driving(self) -> bool {
        self.state().is_active() || self.rolling_back()
    }

    /// Whether it needs the service lock to act: validating, deploying or rolling back. The
    /// lock may be taken again (re-fenced) or renewed only then; a pending deployment takes
    /// it with [`DeploymentEvent::Start`].
    pub fn wants_lock(self) -> bool {
        matches!(self, Self::Validating { .. } | Self::InProgress { .. }) || self.rolling_back()
    }

    /// Applies one input.
    pub fn apply(self, input: Input) -> Result<Transition, Refused> {
        use Lifecycle as L;
        let refused = Refused {
            from: self.state(),
            sub: self.sub_state(),
            input: InputName(input),
        };
        let go = |to: Lifecycle, lock: LockEffect| Ok(Transition { to, lock });
        match (self, input) {
            (
                _,
                Input::Event {
                    event,
                    noop,
                    touched,
                },
            ) => {
                let next = transition(self.state(), event).map_err(|_| refused)?;
                let cancel_requested = self.cancel_requested();
                match (next, self) {
                    (DeploymentState::Validating, _) => {
                        go(L::Validating { cancel_requested }, LockEffect::Take)
                    }
                    (DeploymentState::InProgress, _) => {
                        go(L::InProgress { cancel_requested }, LockEffect::Keep)
                    }
                    (DeploymentState::Success, _) => go(
                        L::Success {
                            noop,
                            rollback: Rollback::None,
                        },
                        LockEffect::Release,
                    ),
                    (DeploymentState::Failed, L::InProgress { .. }) if touched => go(
                        L::Failed {
                            rollback: Rollback::Due,
                        },
                        LockEffect::Keep,
                    ),
                    (DeploymentState::Failed, _) => go(
                        L::Failed {
                            rollback: Rollback::None,
                        },
                        LockEffect::Release,
                    ),
                    // Only a rollback that is due or running completes.
                    (DeploymentState::RolledBack, _) if self.rolling_back() => {
                        go(L::RolledBack, LockEffect::Release)
                    }
                    _ => Err(refused),
                }
            }
            (L::Pending { .. }, Input::RequestCancel) => go(
                L::Pending {
                    cancel_requested: true,
                },
                LockEffect::Keep,
            ),
            (L::Validating { .. }, Input::RequestCancel) => go(
                L::Validating {
                    cancel_requested: true,
                },
                LockEffect::Keep,
            ),
            (L::InProgress { .. }, Input::RequestCancel) => go(
                L::InProgress {
                    cancel_requested: true,
                },
                LockEffect::Keep,
            ),
            (
                L::Success {
                    noop: false,
                    rollback: Rollback::None | Rollback::GaveUp,
                },
                Input::RequestRollback,
            ) => go(
                L::Success {
                    noop: false,
                    rollback: Rollback::Due,
                },
                // The lock was released when it succeeded; the sequencer re-takes it.
                LockEffect::Keep,
            ),
            (L::Success { noop, rollback }, Input::BeginRollback) if rollback.in_flight() => go(
                L::Success {
                    noop,
                    rollback: Rollback::Running,
                },
                LockEffect::Keep,
            ),
            (L::Failed { rollback }, Input::BeginRollback) if rollback.in_flight() => go(
                L::Failed {
                    rollback: Rollback::Running,
                },
                LockEffect::Keep,
            ),
            (L::Success { noop, rollback }, Input::GiveUp) if rollback.in_flight() => go(
                L::Success {
                    noop,
                    rollback: Rollback::GaveUp,
                },
                LockEffect::Release,
            ),
            (L::Failed { rollback }, Input::GiveUp) if rollback.in_flight() => go(
                L::Failed {
                    rollback: Rollback::GaveUp,
                },
                LockEffect::Release,
            ),
            // A validating or deploying deployment that lost its lock fails as its checks
            // or its step would have, and nothing drives it any more.
            (L::Validating { .. } | L::InProgress { .. }, Input::GiveUp) => {
                let event = if matches!(self, L::Validating { .. }) {
                    DeploymentEvent::ChecksFailed
                } else {
                    DeploymentEvent::StepFailed
                };
                transition(self.state(), event).map_err(|_| refused)?;
                go(
                    L::Failed {
                        rollback: Rollback::GaveUp,
                    },
                    LockEffect::Release,
                )
            }
            _ => Err(refused),
        }
    }
}

#[cfg(test)]
mod tests;
