use super::*;

fn lt(t: f64) -> Condition {
    Condition {
        op: Cmp::Lt,
        threshold: t,
    }
}

fn ge(t: f64) -> Condition {
    Condition {
        op: Cmp::Ge,
        threshold: t,
    }
}

fn limits(count: u32, failure_limit: u32) -> Limits {
    Limits {
        count,
        failure_limit,
        inconclusive_limit: 0,
        consecutive_error_limit: 4,
    }
}

use Outcome::{Error as E, Failed as F, Inconclusive as I, Successful as S};

#[test]
fn no_data_and_nan_fail_whatever_the_conditions_say() {
    for (success, failure) in [
        (Some(lt(1.0)), None),
        (None, Some(ge(1.0))),
        (Some(lt(1.0)), Some(ge(1.0))),
    ] {
        assert_eq!(
            measure(&Sample::NoData, success.as_ref(), failure.as_ref()),
            F
        );
        assert_eq!(
            measure(&Sample::Value(f64::NAN), success.as_ref(), failure.as_ref()),
            F
        );
    }
}

#[test]
fn conditions_decide_as_argo_rollouts_does() {
    let v = |x| Sample::Value(x);
    // Only a success condition: not meeting it fails.
    assert_eq!(measure(&v(0.01), Some(&lt(0.05)), None), S);
    assert_eq!(measure(&v(0.2), Some(&lt(0.05)), None), F);
    // Only a failure condition: not meeting it succeeds.
    assert_eq!(measure(&v(0.2), None, Some(&ge(0.1))), F);
    assert_eq!(measure(&v(0.01), None, Some(&ge(0.1))), S);
    // Both: the failure condition wins; neither met is inconclusive.
    assert_eq!(measure(&v(0.01), Some(&lt(0.05)), Some(&ge(0.1))), S);
    assert_eq!(measure(&v(0.5), Some(&lt(0.05)), Some(&ge(0.1))), F);
    assert_eq!(measure(&v(0.07), Some(&lt(0.05)), Some(&ge(0.1))), I);
    assert_eq!(measure(&v(0.5), Some(&lt(1.0)), Some(&ge(0.1))), F);
    // An error is an error, not a failure.
    assert_eq!(
        measure(
            &Sample::Error("connection refused".into()),
            Some(&lt(0.05)),
            None
        ),
        E
    );
}

#[test]
fn an_analysis_succeeds_once_count_measurements_stayed_within_the_limits() {
    let l = limits(3, 1);
    assert_eq!(judge(&[], &l), Verdict::Running);
    assert_eq!(judge(&[S, S], &l), Verdict::Running);
    assert_eq!(judge(&[S, F, S], &l), Verdict::Successful);
    // A count of 0 still takes one measurement.
    assert_eq!(judge(&[], &limits(0, 0)), Verdict::Running);
    assert_eq!(judge(&[S], &limits(0, 0)), Verdict::Successful);
}

#[test]
fn the_first_failure_past_the_limit_fails_at_once() {
    assert_eq!(judge(&[F], &limits(5, 0)), Verdict::Failed);
    assert_eq!(judge(&[S, F], &limits(5, 1)), Verdict::Running);
    assert_eq!(judge(&[S, F, S, F], &limits(5, 1)), Verdict::Failed);
}

#[test]
fn inconclusive_measurements_pause_past_their_limit() {
    assert_eq!(judge(&[S, I], &limits(3, 0)), Verdict::Inconclusive);
    let tolerant = Limits {
        inconclusive_limit: 1,
        ..limits(3, 0)
    };
    assert_eq!(judge(&[S, I, S], &tolerant), Verdict::Successful);
}

#[test]
fn only_consecutive_errors_count_and_they_do_not_count_as_measurements() {
    let l = limits(2, 0);
    // Four errors in a row are tolerated, the fifth is not.
    assert_eq!(judge(&[E, E, E, E], &l), Verdict::Running);
    assert_eq!(judge(&[E, E, E, E, E], &l), Verdict::Errored);
    // A measurement in between resets the run.
    assert_eq!(judge(&[E, E, E, E, S, E, E, E, E], &l), Verdict::Running);
    assert_eq!(judge(&[E, S, E, S], &l), Verdict::Successful);
}

#[test]
fn conditions_read_and_print_as_written() {
    let c: Condition = serde_json::from_str(r#"{"op": "<=", "threshold": 0.5}"#).unwrap();
    assert_eq!(c.to_string(), "value <= 0.5");
    assert!(c.holds(0.5) && !c.holds(0.51));
    assert!(serde_json::from_str::<Condition>(r#"{"op": "==", "threshold": 1}"#).is_err());
    let l: Limits = serde_json::from_str(r#"{"count": 3}"#).unwrap();
    assert_eq!(l.consecutive_error_limit, 4);
}
