//! The deployment state machine of DESIGN.md, as a pure function.
//!
//! ```text
//! pending ──start──▶ validating ──checks_passed──▶ in_progress ──all_healthy──▶ success
//!    │                   │                             │                          │
//!    └─cancel/lock_timeout  └─checks_failed            └─step_failed              │
//!              ▼                  ▼                          ▼                     │
//!            failed ◀────────── failed                    failed                   │
//!                                                            └─rollback_completed─▶ rolled_back ◀─┘
//! ```
//!
//! The sequencer proposes an event; every replica applies it through [`transition`] in its
//! Raft state machine, so a replica can never hold a state the table does not allow.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::names::InvalidValue;

mod lifecycle;

pub use lifecycle::{
    Input, InputName, Lifecycle, LockEffect, Refused, Rollback, SubState, Transition,
};

/// Where a deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    /// Accepted, waiting for the service lock.
    Pending,
    /// Holding the lock; running the pre-flight checks.
    Validating,
    /// Changing servers.
    InProgress,
    /// Every target server runs the new version healthy.
    Success,
    /// Something failed; if servers were touched, a rollback is due.
    Failed,
    /// The previous version runs healthy again everywhere this deployment touched.
    RolledBack,
}

impl DeploymentState {
    /// Every state, in lifecycle order.
    pub const ALL: [DeploymentState; 6] = [
        Self::Pending,
        Self::Validating,
        Self::InProgress,
        Self::Success,
        Self::Failed,
        Self::RolledBack,
    ];

    /// Whether the sequencer is still working on it.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Pending | Self::Validating | Self::InProgress)
    }

    /// The wire name (`in_progress`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Validating => "validating",
            Self::InProgress => "in_progress",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
        }
    }
}

impl fmt::Display for DeploymentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentEvent {
    /// The sequencer took the service lock and starts validating.
    Start,
    /// Cancelled before it started.
    Cancel,
    /// The service lock could not be had within the request's wait.
    LockTimeout,
    /// Every pre-flight check passed.
    ChecksPassed,
    /// At least one pre-flight check failed.
    ChecksFailed,
    /// Every target server reports the new version healthy.
    AllHealthy,
    /// A step or health check failed (or the progress deadline passed).
    StepFailed,
    /// The previous version runs healthy again on every server touched.
    RollbackCompleted,
}

impl DeploymentEvent {
    /// Every event.
    pub const ALL: [DeploymentEvent; 8] = [
        Self::Start,
        Self::Cancel,
        Self::LockTimeout,
        Self::ChecksPassed,
        Self::ChecksFailed,
        Self::AllHealthy,
        Self::StepFailed,
        Self::RollbackCompleted,
    ];
}

/// An event that the current state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a deployment in state {from} cannot take event {event:?}")]
pub struct TransitionError {
    /// The state.
    pub from: DeploymentState,
    /// The refused event.
    pub event: DeploymentEvent,
}

/// The transition table. Every pair not listed is refused.
pub fn transition(
    from: DeploymentState,
    event: DeploymentEvent,
) -> Result<DeploymentState, TransitionError> {
    use DeploymentEvent as E;
    use DeploymentState as S;
    match (from, event) {
        (S::Pending, E::Start) => Ok(S::Validating),
        (S::Pending, E::Cancel | E::LockTimeout) => Ok(S::Failed),
        (S::Validating, E::ChecksPassed) => Ok(S::InProgress),
        (S::Validating, E::ChecksFailed) => Ok(S::Failed),
        (S::InProgress, E::AllHealthy) => Ok(S::Success),
        (S::InProgress, E::StepFailed) => Ok(S::Failed),
        (S::Failed | S::Success, E::RollbackCompleted) => Ok(S::RolledBack),
        _ => Err(TransitionError { from, event }),
    }
}

/// Human-readable progress inside a state ("pulling image", "health check 3/10"): at most
/// 200 characters, no control characters. Progress without new states.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Phase(String);

impl Phase {
    /// Validates a phase text.
    pub fn new(s: impl Into<String>) -> Result<Self, InvalidValue> {
        let s = s.into();
        if s.chars().count() > 200 {
            return Err(InvalidValue::new(
                "phase",
                &s,
                "is longer than 200 characters",
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(InvalidValue::new(
                "phase",
                &s,
                "must not contain control characters",
            ));
        }
        Ok(Self(s))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Phase {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, InvalidValue> {
        Self::new(s)
    }
}

impl From<Phase> for String {
    fn from(p: Phase) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use DeploymentEvent as E;
    use DeploymentState as S;

    /// DESIGN.md's table, written out independently of `transition`'s match.
    const DESIGN_TABLE: [(S, E, S); 9] = [
        (S::Pending, E::Start, S::Validating),
        (S::Pending, E::Cancel, S::Failed),
        (S::Pending, E::LockTimeout, S::Failed),
        (S::Validating, E::ChecksPassed, S::InProgress),
        (S::Validating, E::ChecksFailed, S::Failed),
        (S::InProgress, E::AllHealthy, S::Success),
        (S::InProgress, E::StepFailed, S::Failed),
        (S::Failed, E::RollbackCompleted, S::RolledBack),
        (S::Success, E::RollbackCompleted, S::RolledBack),
    ];

    #[test]
    fn exactly_the_design_table() {
        for from in S::ALL {
            for event in E::ALL {
                let want = DESIGN_TABLE
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                match (transition(from, event), want) {
                    (Ok(to), Some(w)) => assert_eq!(to, w, "{from} + {event:?}"),
                    (Err(e), None) => {
                        assert_eq!(e, TransitionError { from, event });
                    }
                    (got, want) => panic!("{from} + {event:?}: got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn rolled_back_is_final() {
        for e in E::ALL {
            assert!(transition(S::RolledBack, e).is_err());
        }
    }

    #[test]
    fn wire_names() {
        assert_eq!(
            serde_json::to_string(&S::InProgress).unwrap(),
            "\"in_progress\""
        );
        assert_eq!(S::RolledBack.to_string(), "rolled_back");
        for s in S::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
    }

    #[test]
    fn phases() {
        Phase::new("health check 3/10").unwrap();
        Phase::new("a\nb").unwrap_err();
        Phase::new("x".repeat(201)).unwrap_err();
    }

    proptest! {
        /// Random event sequences from `pending` only ever visit states reachable through
        /// the table, and a refused event leaves the state unchanged.
        #[test]
        fn only_table_states_reachable(events in proptest::collection::vec(0..8usize, 0..40)) {
            let reachable: BTreeSet<(S, S)> =
                DESIGN_TABLE.iter().map(|(f, _, t)| (*f, *t)).collect();
            let mut state = S::Pending;
            for i in events {
                let event = E::ALL[i];
                match transition(state, event) {
                    Ok(next) => {
                        prop_assert!(reachable.contains(&(state, next)));
                        // Once settled, a deployment never becomes active again.
                        prop_assert!(state.is_active() || !next.is_active());
                        state = next;
                    }
                    Err(e) => prop_assert_eq!(e.from, state),
                }
            }
        }
    }
}
