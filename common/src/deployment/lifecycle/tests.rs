use super::*;
use proptest::prelude::*;
use DeploymentEvent as E;
use Lifecycle as L;

/// Every lifecycle value that can be reached.
fn all() -> Vec<Lifecycle> {
    let rollbacks = [
        Rollback::None,
        Rollback::Due,
        Rollback::Running,
        Rollback::GaveUp,
    ];
    let mut v = Vec::new();
    for c in [false, true] {
        v.push(L::Pending {
            cancel_requested: c,
        });
        v.push(L::Validating {
            cancel_requested: c,
        });
        v.push(L::InProgress {
            cancel_requested: c,
        });
    }
    // A no-op has nothing to roll back: it is only ever `Success { noop: true, None }`.
    v.push(L::Success {
        noop: true,
        rollback: Rollback::None,
    });
    for r in rollbacks {
        v.push(L::Success {
            noop: false,
            rollback: r,
        });
    }
    for r in rollbacks {
        v.push(L::Failed { rollback: r });
    }
    v.push(L::RolledBack);
    v
}

/// Every input there is.
fn inputs() -> Vec<Input> {
    let mut v = vec![
        Input::RequestCancel,
        Input::RequestRollback,
        Input::BeginRollback,
        Input::GiveUp,
    ];
    for event in E::ALL {
        for noop in [false, true] {
            for touched in [false, true] {
                v.push(Input::Event {
                    event,
                    noop,
                    touched,
                });
            }
        }
    }
    v
}

fn ev(event: E) -> Input {
    Input::event(event)
}

#[test]
fn a_public_state_changes_only_as_designs_table_allows() {
    for from in all() {
        for input in inputs() {
            let Ok(t) = from.apply(input) else { continue };
            let (a, b) = (from.state(), t.to.state());
            if a != b {
                assert!(
                    E::ALL.iter().any(|e| transition(a, *e) == Ok(b)),
                    "{from:?} + {input:?} -> {:?} is not in the table",
                    t.to
                );
            }
        }
    }
}

#[test]
fn whatever_stops_wanting_the_lock_releases_it() {
    for from in all() {
        for input in inputs() {
            let Ok(t) = from.apply(input) else { continue };
            if from.wants_lock() && !t.to.wants_lock() {
                assert_eq!(t.lock, LockEffect::Release, "{from:?} + {input:?}");
            }
            if t.to.wants_lock() {
                assert_ne!(t.lock, LockEffect::Release, "{from:?} + {input:?}");
            }
            if t.lock == LockEffect::Take {
                assert!(matches!(from, L::Pending { .. }), "{from:?} + {input:?}");
                assert!(matches!(
                    input,
                    Input::Event {
                        event: E::Start,
                        ..
                    }
                ));
            }
        }
    }
}

#[test]
fn sub_states_are_consistent_with_the_readings() {
    for l in all() {
        let sub = l.sub_state();
        assert_eq!(
            sub == SubState::CancelRequested,
            l.cancel_requested(),
            "{l:?}"
        );
        assert_eq!(
            matches!(sub, SubState::RollbackDue | SubState::RollingBack),
            l.rolling_back(),
            "{l:?}"
        );
        if !l.needs_driving() {
            assert!(
                matches!(sub, SubState::Done | SubState::Noop | SubState::GaveUp),
                "{l:?} is settled but shows {sub}"
            );
        }
        // Pending needs driving but not the lock yet; anything wanting the lock is driven.
        assert!(!l.wants_lock() || l.needs_driving(), "{l:?}");
    }
    // Wire names.
    for s in SubState::ALL {
        assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
    }
}

#[test]
fn cancel_is_asked_for_only_while_active_and_kept_through_start() {
    for l in all() {
        let r = l.apply(Input::RequestCancel);
        assert_eq!(r.is_ok(), l.state().is_active(), "{l:?}");
        if let Ok(t) = r {
            assert!(t.to.cancel_requested());
            assert_eq!(t.to.state(), l.state());
            assert_eq!(t.lock, LockEffect::Keep);
        }
    }
    let asked = L::Pending {
        cancel_requested: true,
    };
    let t = asked.apply(ev(E::Start)).unwrap();
    assert!(t.to.cancel_requested() && t.lock == LockEffect::Take);
    let t = asked.apply(ev(E::Cancel)).unwrap();
    assert_eq!(
        t.to,
        L::Failed {
            rollback: Rollback::None
        }
    );
}

#[test]
fn a_failure_that_touched_servers_keeps_the_lock_for_its_rollback() {
    let deploying = L::InProgress {
        cancel_requested: false,
    };
    let failed = |touched| {
        deploying.apply(Input::Event {
            event: E::StepFailed,
            noop: false,
            touched,
        })
    };
    let t = failed(true).unwrap();
    assert_eq!(t.to.sub_state(), SubState::RollbackDue);
    assert_eq!(t.lock, LockEffect::Keep);
    assert!(t.to.needs_driving() && t.to.wants_lock());
    let t = failed(false).unwrap();
    assert_eq!(t.to.sub_state(), SubState::Done);
    assert_eq!(t.lock, LockEffect::Release);
    assert!(!t.to.needs_driving());
    // Nothing to roll back: a completion is refused.
    assert!(t.to.apply(ev(E::RollbackCompleted)).is_err());
}

#[test]
fn the_automatic_rollback_runs_and_ends() {
    let due = L::Failed {
        rollback: Rollback::Due,
    };
    let running = due.apply(Input::BeginRollback).unwrap().to;
    assert_eq!(running.sub_state(), SubState::RollingBack);
    // Beginning again (a new leader resuming) changes nothing.
    assert_eq!(running.apply(Input::BeginRollback).unwrap().to, running);
    let done = running.apply(ev(E::RollbackCompleted)).unwrap();
    assert_eq!((done.to, done.lock), (L::RolledBack, LockEffect::Release));
    let gave_up = running.apply(Input::GiveUp).unwrap();
    assert_eq!(gave_up.to.sub_state(), SubState::GaveUp);
    assert_eq!(gave_up.lock, LockEffect::Release);
    assert!(!gave_up.to.needs_driving());
    assert!(gave_up.to.apply(ev(E::RollbackCompleted)).is_err());
}

#[test]
fn a_manual_rollback_of_a_success() {
    let ok = L::Success {
        noop: false,
        rollback: Rollback::None,
    };
    assert!(!ok.needs_driving() && !ok.wants_lock());
    let asked = ok.apply(Input::RequestRollback).unwrap().to;
    assert!(asked.rollback_requested() && asked.wants_lock());
    assert_eq!(asked.state(), DeploymentState::Success);
    // Asked twice: refused.
    assert!(asked.apply(Input::RequestRollback).is_err());
    let running = asked.apply(Input::BeginRollback).unwrap().to;
    let failed = running.apply(Input::GiveUp).unwrap().to;
    assert_eq!(failed.state(), DeploymentState::Success);
    assert_eq!(failed.sub_state(), SubState::GaveUp);
    // Once a rollback gave up, a human may ask again.
    assert!(failed.apply(Input::RequestRollback).is_ok());
    assert_eq!(
        running.apply(ev(E::RollbackCompleted)).unwrap().to,
        L::RolledBack
    );
    // A success that changed nothing has nothing to roll back.
    let noop = L::Success {
        noop: true,
        rollback: Rollback::None,
    };
    assert_eq!(noop.sub_state(), SubState::Noop);
    assert!(noop.apply(Input::RequestRollback).is_err());
}

#[test]
fn losing_the_lock_mid_flight_fails_and_stops_driving() {
    for l in [
        L::Validating {
            cancel_requested: false,
        },
        L::InProgress {
            cancel_requested: true,
        },
    ] {
        let t = l.apply(Input::GiveUp).unwrap();
        assert_eq!(t.to.state(), DeploymentState::Failed);
        assert_eq!(t.lock, LockEffect::Release);
        assert!(!t.to.needs_driving());
    }
    // Nothing to give up on a pending or settled deployment.
    for l in [
        L::NEW,
        L::RolledBack,
        L::Failed {
            rollback: Rollback::None,
        },
    ] {
        assert!(l.apply(Input::GiveUp).is_err(), "{l:?}");
    }
}

#[test]
fn start_only_from_pending() {
    for l in all() {
        let r = l.apply(ev(E::Start));
        assert_eq!(r.is_ok(), matches!(l, L::Pending { .. }), "{l:?}");
    }
}

#[test]
fn serialised_form() {
    let l = L::Failed {
        rollback: Rollback::Running,
    };
    let json = serde_json::to_string(&l).unwrap();
    assert_eq!(json, r#"{"state":"failed","rollback":"running"}"#);
    assert_eq!(serde_json::from_str::<Lifecycle>(&json).unwrap(), l);
    for l in all() {
        let back: Lifecycle = serde_json::from_str(&serde_json::to_string(&l).unwrap()).unwrap();
        assert_eq!(back, l);
    }
}

proptest! {
    /// Random inputs from a new deployment: a refused input changes nothing, a settled
    /// deployment is revived only by a manual rollback request, and rolled_back is final.
    #[test]
    fn random_walks(picks in proptest::collection::vec(0..44usize, 0..60)) {
        let inputs = inputs();
        let mut l = Lifecycle::NEW;
        for i in picks {
            let input = inputs[i % inputs.len()];
            match l.apply(input) {
                Ok(t) => {
                    if !l.needs_driving() {
                        prop_assert!(l != L::RolledBack);
                        prop_assert!(
                            input == Input::RequestRollback || t.to == l,
                            "{:?} + {:?} revived it as {:?}", l, input, t.to
                        );
                    }
                    l = t.to;
                }
                Err(e) => {
                    prop_assert_eq!(e.from, l.state());
                    prop_assert_eq!(e.sub, l.sub_state());
                }
            }
        }
    }
}
