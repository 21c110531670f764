use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use proptest::prelude::*;
use sluice_common::locks::{Acquire, FencingToken};
use sluice_common::names::{Holder, LockKey};
use sluice_common::time::Timestamp;

use super::*;
use crate::state::State;

#[derive(Debug, Clone)]
struct Item {
    key: Option<LockKey>,
    size: usize,
    n: usize,
}

impl Batchable for Item {
    fn key(&self) -> Option<&LockKey> {
        self.key.as_ref()
    }
    fn size(&self) -> usize {
        self.size
    }
}

fn item(n: usize, key: Option<&str>, size: usize) -> Item {
    Item {
        key: key.map(|k| LockKey::parse(k).unwrap()),
        size,
        n,
    }
}

fn ns(v: &[Item]) -> Vec<usize> {
    v.iter().map(|i| i.n).collect()
}

#[test]
fn a_second_command_on_a_key_waits_for_the_next_batch_and_others_go_ahead() {
    let mut q = VecDeque::from([
        item(0, Some("a"), 1),
        item(1, None, 1),
        item(2, Some("a"), 1),
        item(3, Some("b"), 1),
        item(4, Some("a"), 1),
    ]);
    let limits = Limits::default();
    assert_eq!(ns(&take_batch(&mut q, limits)), [0, 1, 3]);
    assert_eq!(ns(&take_batch(&mut q, limits)), [2]);
    assert_eq!(ns(&take_batch(&mut q, limits)), [4]);
    assert!(q.is_empty());
}

#[test]
fn batches_are_bounded_by_count_and_bytes_but_never_empty() {
    let mut q: VecDeque<Item> = (0..5).map(|n| item(n, None, 400)).collect();
    let limits = Limits {
        count: 2,
        bytes: 1000,
    };
    assert_eq!(ns(&take_batch(&mut q, limits)), [0, 1]);
    let limits = Limits {
        count: 10,
        bytes: 1000,
    };
    assert_eq!(ns(&take_batch(&mut q, limits)), [2, 3]);
    let mut big = VecDeque::from([item(7, None, 5000), item(8, None, 1)]);
    assert_eq!(ns(&take_batch(&mut big, limits)), [7]);
    assert_eq!(ns(&take_batch(&mut big, limits)), [8]);
}

/// A lock operation as a client would send it: a release or renewal names the token the
/// client holds (the current holder's, or a stale one).
#[derive(Debug, Clone)]
enum Op {
    Acquire { key: u8, who: u8, ttl_ms: u64 },
    Release { key: u8, stale: bool },
    Renew { key: u8, stale: bool },
}

fn op() -> impl Strategy<Value = (Op, u64)> {
    let key = 0u8..4;
    let o = prop_oneof![
        (key.clone(), 0u8..3, 50u64..2000).prop_map(|(key, who, ttl_ms)| Op::Acquire {
            key,
            who,
            ttl_ms
        }),
        (key.clone(), any::<bool>()).prop_map(|(key, stale)| Op::Release { key, stale }),
        (key, any::<bool>()).prop_map(|(key, stale)| Op::Renew { key, stale }),
    ];
    (o, 0u64..400)
}

fn key_of(op: &Op) -> LockKey {
    let k = match op {
        Op::Acquire { key, .. } | Op::Release { key, .. } | Op::Renew { key, .. } => key,
    };
    LockKey::parse(&format!("k{k}")).unwrap()
}

/// The command for `op` given what the client knows from `s` (the state before the batch:
/// the batcher never puts two commands on one key in a batch, so for this key it is also
/// the state right before this command).
fn command(s: &State, op: &Op, at: Timestamp) -> Command {
    let key = key_of(op);
    let held = s.locks.get(&key, at).map(|l| l.token);
    let token = |stale: bool| match held {
        Some(t) if !stale => t,
        Some(t) => FencingToken(t.0.saturating_sub(1)),
        None => FencingToken(0),
    };
    match op {
        Op::Acquire { who, ttl_ms, .. } => Command::AcquireLock {
            acquire: Acquire {
                key,
                holder: Holder::parse(&format!("h{who}")).unwrap(),
                reason: "prop".into(),
                ttl: Duration::from_millis(*ttl_ms),
            },
        },
        Op::Release { stale, .. } => Command::ReleaseLock {
            token: token(*stale),
            key,
        },
        Op::Renew { stale, .. } => Command::RenewLock {
            token: token(*stale),
            key,
            ttl: Duration::from_secs(1),
        },
    }
}

/// The outcome without token values (they are log indices, and differ by construction).
fn shape(r: &Response) -> String {
    match r {
        Response::Lock { outcome: Ok(l) } => format!("ok {}", l.holder),
        Response::Lock { outcome: Err(e) } => format!("err {e:?}")
            .split(['{', '('])
            .next()
            .unwrap_or_default()
            .to_string(),
        other => format!("{other:?}"),
    }
}

proptest! {
    /// Batching any sequence of lock commands gives the same outcomes and the same holders
    /// as applying them one entry each, and a key's tokens still only grow.
    #[test]
    fn batching_gives_the_same_state_as_one_by_one(
        ops in proptest::collection::vec(op(), 1..60),
        count in 1usize..8,
    ) {
        // Timestamps only grow, as the leader's clock stamps them.
        let mut t = 0;
        let timed: Vec<(Op, Timestamp)> = ops
            .into_iter()
            .map(|(o, dt)| { t += dt; (o, Timestamp(1_000_000 + t)) })
            .collect();
        let mut queue: VecDeque<Item> = timed
            .iter()
            .enumerate()
            .map(|(n, (o, _))| Item { key: Some(key_of(o)), size: 1, n })
            .collect();

        let mut batched = State::default();
        let mut order = Vec::new();
        let mut batched_shapes = Vec::new();
        let mut grants: BTreeMap<LockKey, Vec<FencingToken>> = BTreeMap::new();
        let mut index = 10;
        while !queue.is_empty() {
            let batch = take_batch(&mut queue, Limits { count, bytes: usize::MAX });
            let reqs: Vec<Request> = batch
                .iter()
                .map(|i| {
                    let (o, at) = &timed[i.n];
                    Request { at: *at, actor: "p".into(), cmd: command(&batched, o, *at) }
                })
                .collect();
            index += 1 + (index % 3); // blank and membership entries take indices too
            let answers = batched.apply_payload(&Payload::batch(reqs.clone()), index);
            prop_assert_eq!(answers.len(), reqs.len());
            for (i, (req, a)) in batch.iter().zip(reqs.iter().zip(&answers)) {
                if let (Command::AcquireLock { acquire }, Response::Lock { outcome: Ok(l) }) =
                    (&req.cmd, a)
                {
                    grants.entry(acquire.key.clone()).or_default().push(l.token);
                }
                order.push(i.n);
                batched_shapes.push(shape(a));
            }
        }

        let mut single = State::default();
        let mut single_shapes = Vec::new();
        for (i, n) in order.iter().enumerate() {
            let (o, at) = &timed[*n];
            let req = Request { at: *at, actor: "p".into(), cmd: command(&single, o, *at) };
            single_shapes.push(shape(&single.apply(&req, 10_000 + i as u64)));
        }

        prop_assert_eq!(batched_shapes, single_shapes);
        for k in 0..4u8 {
            let key = LockKey::parse(&format!("k{k}")).unwrap();
            prop_assert_eq!(
                batched.locks.get(&key, Timestamp(1_000_000 + t)).map(|l| l.holder.clone()),
                single.locks.get(&key, Timestamp(1_000_000 + t)).map(|l| l.holder.clone())
            );
        }
        for tokens in grants.values() {
            prop_assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{:?}", tokens);
        }
    }
}
