use super::*;
use proptest::prelude::*;

fn key(s: &str) -> LockKey {
    LockKey::parse(s).unwrap()
}

fn req(k: &str, who: &str, ttl_ms: u64) -> Acquire {
    Acquire {
        key: key(k),
        holder: Holder::parse(who).unwrap(),
        reason: format!("{who} deploys"),
        ttl: Duration::from_millis(ttl_ms),
    }
}

#[test]
fn one_holder_at_a_time() {
    let mut t = LockTable::default();
    let g = t
        .acquire(
            req("service/api", "ci-1", 1000),
            FencingToken(5),
            Timestamp(0),
        )
        .unwrap();
    assert_eq!(g.lease.token, FencingToken(5));
    assert_eq!(g.lease.expires_at, Timestamp(1000));
    assert!(g.took_over.is_none());
    let err = t
        .acquire(
            req("service/api", "ci-2", 1000),
            FencingToken(6),
            Timestamp(999),
        )
        .unwrap_err();
    match &err {
        LockError::Held { lease: l } => assert_eq!(l.holder.as_str(), "ci-1"),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("held by ci-1"));
    // A refused grant does not consume the token ordering.
    assert_eq!(t.last_token(), FencingToken(5));
    // Another key is independent.
    t.acquire(
        req("service/web", "ci-2", 1000),
        FencingToken(6),
        Timestamp(999),
    )
    .unwrap();
}

#[test]
fn lapsed_lease_is_taken_over_with_a_larger_token() {
    let mut t = LockTable::default();
    t.acquire(req("k", "old", 1000), FencingToken(5), Timestamp(0))
        .unwrap();
    assert!(t.get(&key("k"), Timestamp(999)).is_some());
    assert!(t.get(&key("k"), Timestamp(1000)).is_none());
    let g = t
        .acquire(req("k", "new", 1000), FencingToken(9), Timestamp(1000))
        .unwrap();
    assert_eq!(g.took_over.unwrap().holder.as_str(), "old");
    // The old holder can neither renew nor release the new holder's lock.
    assert!(matches!(
        t.renew(
            &key("k"),
            FencingToken(5),
            Duration::from_secs(1),
            Timestamp(1001)
        ),
        Err(LockError::TokenMismatch {
            current: FencingToken(9),
            ..
        })
    ));
    assert!(matches!(
        t.release(&key("k"), FencingToken(5)),
        Err(LockError::TokenMismatch { .. })
    ));
    assert_eq!(
        t.release(&key("k"), FencingToken(9))
            .unwrap()
            .holder
            .as_str(),
        "new"
    );
    assert_eq!(
        t.release(&key("k"), FencingToken(9)),
        Err(LockError::NotHeld { key: key("k") })
    );
}

#[test]
fn tokens_must_increase() {
    let mut t = LockTable::default();
    t.acquire(req("a", "x", 10), FencingToken(5), Timestamp(0))
        .unwrap();
    for stale in [0, 4] {
        assert_eq!(
            t.acquire(req("b", "x", 10), FencingToken(stale), Timestamp(0)),
            Err(LockError::TokenNotIncreasing {
                last: FencingToken(5),
                offered: FencingToken(stale)
            })
        );
    }
}

#[test]
fn one_entry_grants_a_token_to_many_keys_but_to_a_key_once() {
    let mut t = LockTable::default();
    t.acquire(req("a", "x", 10), FencingToken(5), Timestamp(0))
        .unwrap();
    // Another key in the same entry (group commit) shares the index.
    t.acquire(req("b", "x", 10), FencingToken(5), Timestamp(0))
        .unwrap();
    t.release(&key("a"), FencingToken(5)).unwrap();
    // The same key twice at one index never, even after a release in between.
    assert_eq!(
        t.acquire(req("a", "y", 10), FencingToken(5), Timestamp(0)),
        Err(LockError::TokenNotIncreasing {
            last: FencingToken(5),
            offered: FencingToken(5)
        })
    );
    t.acquire(req("a", "y", 10), FencingToken(6), Timestamp(0))
        .unwrap();
    assert_eq!(t.last_token(), FencingToken(6));
}

#[test]
fn renew_extends_only_live_leases() {
    let mut t = LockTable::default();
    t.acquire(req("k", "x", 1000), FencingToken(1), Timestamp(0))
        .unwrap();
    let l = t
        .renew(
            &key("k"),
            FencingToken(1),
            Duration::from_secs(5),
            Timestamp(500),
        )
        .unwrap();
    assert_eq!(l.expires_at, Timestamp(5500));
    assert_eq!(
        t.renew(
            &key("k"),
            FencingToken(1),
            Duration::from_secs(5),
            Timestamp(5500)
        ),
        Err(LockError::Expired {
            key: key("k"),
            expired_at: Timestamp(5500)
        })
    );
    // A lapsed lease nobody took over can still be released by its holder.
    t.release(&key("k"), FencingToken(1)).unwrap();
    assert_eq!(
        t.renew(&key("k"), FencingToken(1), Duration::ZERO, Timestamp(0)),
        Err(LockError::ZeroTtl)
    );
    assert_eq!(
        t.acquire(req("k", "x", 0), FencingToken(2), Timestamp(0)),
        Err(LockError::ZeroTtl)
    );
}

#[test]
fn expire_sweeps_lapsed_leases() {
    let mut t = LockTable::default();
    t.acquire(req("a", "x", 100), FencingToken(1), Timestamp(0))
        .unwrap();
    t.acquire(req("b", "x", 300), FencingToken(2), Timestamp(0))
        .unwrap();
    let gone = t.expire(Timestamp(200));
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].key, key("a"));
    assert_eq!(t.live(Timestamp(200)).count(), 1);
    assert!(t.expire(Timestamp(200)).is_empty());
}

#[derive(Debug, Clone)]
enum Op {
    Acquire(usize, usize, u64),
    Renew(usize, usize, u64),
    Release(usize, usize),
    Expire,
    Tick(u64),
}

proptest! {
    /// Random interleavings of holders: never two live holders of a key, every grant's token
    /// exceeds every earlier grant's, and renew/release succeed only for the current token.
    #[test]
    fn invariants(ops in proptest::collection::vec(
        prop_oneof![
            (0..3usize, 0..4usize, 1..500u64).prop_map(|(k, h, t)| Op::Acquire(k, h, t)),
            (0..3usize, 0..4usize, 1..500u64).prop_map(|(k, h, t)| Op::Renew(k, h, t)),
            (0..3usize, 0..4usize).prop_map(|(k, h)| Op::Release(k, h)),
            Just(Op::Expire),
            (0..300u64).prop_map(Op::Tick),
        ], 1..200))
    {
        let keys: Vec<LockKey> = (0..3).map(|i| key(&format!("k{i}"))).collect();
        let mut t = LockTable::default();
        let mut now = Timestamp(0);
        let mut index = 0u64;
        let mut granted: Vec<FencingToken> = Vec::new();
        // What each holder believes its token for each key is.
        let mut held: BTreeMap<(usize, usize), FencingToken> = BTreeMap::new();
        for op in ops {
            index += 1; // every op consumes a log index, like Raft entries do
            match op {
                Op::Acquire(k, h, ttl) => {
                    let live_before = t.get(&keys[k], now).cloned();
                    let r = t.acquire(
                        Acquire {
                            key: keys[k].clone(),
                            holder: Holder::parse(&format!("h{h}")).unwrap(),
                            reason: String::new(),
                            ttl: Duration::from_millis(ttl),
                        },
                        FencingToken(index),
                        now,
                    );
                    match (r, live_before) {
                        (Ok(g), None) => {
                            if let Some(last) = granted.last() {
                                prop_assert!(g.lease.token > *last);
                            }
                            granted.push(g.lease.token);
                            held.insert((k, h), g.lease.token);
                        }
                        (Err(LockError::Held { lease: l }), Some(live)) => prop_assert_eq!(*l, live),
                        (r, live) => prop_assert!(false, "{:?} with live {:?}", r, live),
                    }
                }
                Op::Renew(k, h, ttl) => {
                    let token = held.get(&(k, h)).copied().unwrap_or(FencingToken(0));
                    let current = t.get(&keys[k], now).map(|l| l.token);
                    let r = t.renew(&keys[k], token, Duration::from_millis(ttl), now);
                    prop_assert_eq!(r.is_ok(), current == Some(token));
                }
                Op::Release(k, h) => {
                    let token = held.get(&(k, h)).copied().unwrap_or(FencingToken(0));
                    let r = t.release(&keys[k], token);
                    if r.is_ok() {
                        held.remove(&(k, h));
                    }
                }
                Op::Expire => {
                    for l in t.expire(now) {
                        prop_assert!(!l.is_live(now));
                    }
                }
                Op::Tick(ms) => now = Timestamp(now.0 + ms),
            }
            // At most one live lease per key, by construction of the map; and it is the
            // latest grant for that key.
            for k in &keys {
                if let Some(l) = t.get(k, now) {
                    prop_assert!(l.token <= t.last_token());
                    prop_assert!(l.expires_at > now);
                }
            }
        }
    }
}
