use std::time::Duration;

use sluice_common::locks::{Acquire, FencingToken};
use sluice_common::names::{Holder, LockKey};
use sluice_common::time::Timestamp;

use super::*;

fn acquire(key: &str, who: &str) -> Request {
    Request {
        at: Timestamp(1_000),
        actor: "token:test".into(),
        cmd: Command::AcquireLock {
            acquire: Acquire {
                key: LockKey::parse(key).unwrap(),
                holder: Holder::parse(who).unwrap(),
                reason: "test".into(),
                ttl: Duration::from_secs(30),
            },
        },
    }
}

#[test]
fn both_formats_round_trip() {
    for p in [
        Payload::One(acquire("a", "x")),
        Payload::batch(vec![acquire("a", "x"), acquire("b", "y")]),
    ] {
        let bytes = serde_json::to_vec(&p).unwrap();
        assert_eq!(serde_json::from_slice::<Payload>(&bytes).unwrap(), p);
    }
}

#[test]
fn a_format_one_entry_reads_as_one_request() {
    // The bytes every release before group commit wrote.
    let old = serde_json::to_vec(&acquire("a", "x")).unwrap();
    assert_eq!(
        serde_json::from_slice::<Payload>(&old).unwrap(),
        Payload::One(acquire("a", "x"))
    );
}

#[test]
fn a_node_that_reads_one_request_refuses_a_batch() {
    let batch = serde_json::to_vec(&Payload::batch(vec![acquire("a", "x")])).unwrap();
    let err = serde_json::from_slice::<Request>(&batch).unwrap_err();
    assert!(err.to_string().contains("missing field"), "{err}");
}

#[test]
fn a_newer_batch_format_is_refused_by_name() {
    let mut v = serde_json::to_value(Payload::batch(vec![acquire("a", "x")])).unwrap();
    v["batch"] = 3.into();
    let err = serde_json::from_value::<Payload>(v).unwrap_err();
    assert!(err.to_string().contains("batch format 3"), "{err}");
    let err = serde_json::from_str::<Payload>(r#"{"actor":"x"}"#).unwrap_err();
    assert!(err.to_string().contains("neither"), "{err}");
}

#[test]
fn a_batch_applies_in_order_at_its_index_with_an_answer_each() {
    let mut s = State::default();
    let answers = s.apply_payload(
        &Payload::batch(vec![
            acquire("a", "x"),
            acquire("b", "y"),
            acquire("a", "z"),
        ]),
        41,
    );
    assert_eq!(answers.len(), 3);
    let token = |r: &Response| match r {
        Response::Lock { outcome } => outcome.as_ref().ok().map(|l| l.token),
        other => panic!("{other:?}"),
    };
    assert_eq!(token(&answers[0]), Some(FencingToken(41)));
    assert_eq!(token(&answers[1]), Some(FencingToken(41)));
    // The same key again in one entry is refused (held), never granted a second time.
    assert_eq!(token(&answers[2]), None);
    // Each grant has its own audit record (a refused acquire has none).
    assert_eq!(s.audit.records().len(), 2);
}

#[test]
fn the_lock_a_command_touches() {
    let s = State::default();
    assert_eq!(
        s.lock_touched(&acquire("a", "x").cmd),
        Some(LockKey::parse("a").unwrap())
    );
    assert_eq!(
        s.lock_touched(&Command::ReleaseLock {
            key: LockKey::parse("b").unwrap(),
            token: FencingToken(3)
        }),
        Some(LockKey::parse("b").unwrap())
    );
    assert_eq!(
        s.lock_touched(&Command::NotifyDelivered {
            sink: "x".into(),
            seq: 1
        }),
        None
    );
}
