use super::*;
use sluice_common::agent_api::OperationKind;
use sluice_common::fence::FenceClaim;
use sluice_common::names::{LockKey, ServerName, ServiceName};
use sluice_common::problem::ErrorCode;
use sluice_common::time::Timestamp;

fn progress(kind: Kind) -> Progress {
    Progress {
        kind,
        submitted: false,
        may_submit: true,
        elapsed: Duration::ZERO,
        deadline: Some(Duration::from_secs(60)),
        rounds: 0,
        for_weight: false,
    }
}

#[test]
fn waiting_for_a_canary_weight_polls_briefly() {
    let mut p = progress(Kind::Deploy);
    p.submitted = true;
    let running = heard(op(OperationState::Running, None, true));
    assert_eq!(next(&p, &running), Move::Poll(POLL));
    p.for_weight = true;
    assert_eq!(next(&p, &running), Move::Poll(WEIGHT_POLL));
}

fn op(state: OperationState, error: Option<&str>, previous: bool) -> OperationView {
    let service = ServiceName::parse("api").unwrap();
    OperationView {
        id: Uuid::nil(),
        kind: OperationKind::Deploy,
        service: service.clone(),
        image: None,
        state,
        phase: "health check 3/10".into(),
        steps: Vec::new(),
        log_tail: error.map(|_| "panic: boom".into()),
        error: error.map(String::from),
        fence: FenceClaim {
            key: LockKey::for_service(&service),
            token: Default::default(),
        },
        started_at: Timestamp(0),
        finished_at: None,
        container: Some("new".into()),
        previous_container: previous.then(|| "old".into()),
        resumed: 0,
        canary_weight: None,
    }
}

#[test]
fn a_canary_is_held_once_the_agent_applies_the_weight_asked_for() {
    let mut o = op(OperationState::Running, None, true);
    assert!(!holds(&o, Some(10)), "no weight applied yet");
    o.canary_weight = Some(10);
    assert!(holds(&o, Some(10)));
    assert!(!holds(&o, Some(50)), "still at the previous step's weight");
    assert!(!holds(&o, None), "not a canary shift");
    o.state = OperationState::RolledBack;
    assert!(
        !holds(&o, Some(10)),
        "a finished operation is judged by its state"
    );
}

fn heard(o: OperationView) -> Heard {
    Heard::Op(Box::new(o))
}

fn step() -> ServerStepView {
    ServerStepView::pending(&ServerName::parse("web-1").unwrap())
}

#[test]
fn submit_first_then_long_poll_within_the_deadline() {
    let mut p = progress(Kind::Deploy);
    assert_eq!(next(&p, &Heard::Nothing), Move::Submit);
    p.submitted = true;
    let running = heard(op(OperationState::Running, None, true));
    assert_eq!(next(&p, &running), Move::Poll(POLL));
    // Near the deadline the long-poll is cut to what is left.
    p.elapsed = Duration::from_secs(57);
    assert_eq!(
        next(&p, &running),
        Move::Poll(Duration::from_secs(3) + Duration::from_millis(50))
    );
    // Past it: abort.
    p.elapsed = Duration::from_secs(61);
    assert_eq!(next(&p, &running), Move::Abort(Duration::from_secs(60)));
}

#[test]
fn an_operation_the_agent_lost_is_submitted_again() {
    let mut p = progress(Kind::Deploy);
    p.submitted = true;
    assert_eq!(next(&p, &Heard::Unknown), Move::Submit);
    // Only waiting (a rollback settling a deploy): nothing runs there.
    p.may_submit = false;
    assert_eq!(next(&p, &Heard::Unknown), Move::Finished(None));
    assert_eq!(next(&p, &Heard::Nothing), Move::Poll(POLL));
}

#[test]
fn agent_errors_by_type() {
    let p = progress(Kind::Deploy);
    let e = |e| Heard::Err(e);
    assert_eq!(
        next(
            &p,
            &e(AgentError::Stale {
                detail: "token 3 < 7".into()
            })
        ),
        Move::Deposed("token 3 < 7".into())
    );
    assert_eq!(
        next(
            &p,
            &e(AgentError::Busy {
                detail: "op x runs".into()
            })
        ),
        Move::Retry {
            detail: Some("op x runs".into())
        }
    );
    let unreachable = AgentError::Unreachable {
        addr: "a".into(),
        reason: "refused".into(),
    };
    assert_eq!(next(&p, &e(unreachable)), Move::Retry { detail: None });
    let refused = || AgentError::Refused {
        code: ErrorCode::Forbidden,
        detail: "policy forbids privileged".into(),
    };
    assert_eq!(
        next(&p, &e(refused())),
        Move::Finished(Some("agent refused: policy forbids privileged".into()))
    );
    assert_eq!(
        next(&progress(Kind::Rollback), &e(refused())),
        Move::Finished(Some("policy forbids privileged".into()))
    );
}

#[test]
fn a_rollback_gives_up_after_its_rounds() {
    let mut p = progress(Kind::Rollback);
    p.deadline = None;
    p.submitted = true;
    p.rounds = ROLLBACK_ROUNDS;
    assert_eq!(
        next(&p, &Heard::Waiting),
        Move::Finished(Some("rollback did not finish".into()))
    );
    // A deploy has its deadline instead.
    let mut p = progress(Kind::Deploy);
    p.rounds = 10_000;
    assert_eq!(next(&p, &Heard::Nothing), Move::Submit);
}

#[test]
fn what_an_operation_means_for_the_step() {
    let mut s = step();
    assert_eq!(
        outcome(
            &mut s,
            &op(OperationState::Running, None, true),
            Kind::Deploy
        ),
        None
    );
    assert_eq!(s.detail, "health check 3/10");
    assert_eq!(
        outcome(
            &mut s,
            &op(OperationState::Succeeded, None, true),
            Kind::Deploy
        ),
        Some(None)
    );
    assert_eq!(s.state, ServerStepState::Succeeded);

    // Failed, restored by the agent: the server is as it was, the reason kept.
    let mut s = step();
    let o = outcome(
        &mut s,
        &op(OperationState::RolledBack, Some("unhealthy"), true),
        Kind::Deploy,
    );
    assert_eq!(o, Some(Some("web-1: unhealthy; health check 3/10".into())));
    assert_eq!(s.state, ServerStepState::RestoredByAgent);
    assert_eq!(s.log_tail.as_deref(), Some("panic: boom"));

    // Failed with a previous container: it could not be restored.
    let mut s = step();
    outcome(
        &mut s,
        &op(OperationState::Failed, Some("x"), true),
        Kind::Deploy,
    );
    assert_eq!(s.state, ServerStepState::Failed);
    // Failed with nothing before: the agent removed the new one; nothing runs.
    let mut s = step();
    outcome(
        &mut s,
        &op(OperationState::Failed, Some("x"), false),
        Kind::Deploy,
    );
    assert_eq!(s.state, ServerStepState::RestoredByAgent);

    // Rollbacks.
    let mut s = step();
    outcome(
        &mut s,
        &op(OperationState::Succeeded, None, true),
        Kind::Rollback,
    );
    assert_eq!(s.state, ServerStepState::RolledBack);
    let mut s = step();
    let o = outcome(
        &mut s,
        &op(OperationState::Failed, Some("y"), true),
        Kind::Rollback,
    );
    assert_eq!(s.state, ServerStepState::RollbackFailed);
    assert_eq!(o, Some(Some("web-1: y".into())));
}
