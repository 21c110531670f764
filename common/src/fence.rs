//! The agent-side fence: the highest fencing token seen per lock key.
//!
//! Every command the coordinator sends an agent carries `(lock key, token)`. A token lower
//! than the highest seen for that key comes from a deposed holder (an old leader, a lapsed
//! lease) and is refused; an equal token is the same holder retrying and is allowed; a
//! higher one advances the fence. The agent persists this table (see `agent/src/fence.rs`);
//! the decision itself is here, pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::locks::FencingToken;
use crate::names::LockKey;

/// A `(lock key, token)` pair, as carried on every fenced agent request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FenceClaim {
    /// The lock the sender holds.
    pub key: LockKey,
    /// The token of its grant.
    pub token: FencingToken,
}

/// What the fence decided for an acceptable token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceVerdict {
    /// The token is the highest seen so far; the fence moved up (from `previous`).
    Advanced {
        /// The previous highest token, if any.
        previous: Option<FencingToken>,
    },
    /// The token equals the highest seen: the same holder retrying.
    Retry,
}

/// A lower token than one already seen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stale fencing token {offered} for lock {key}: token {highest} has been seen")]
pub struct StaleToken {
    /// The key.
    pub key: LockKey,
    /// What was offered.
    pub offered: FencingToken,
    /// The highest token seen.
    pub highest: FencingToken,
}

/// Highest token seen, per key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    highest: BTreeMap<LockKey, FencingToken>,
}

impl Fence {
    /// Judges `claim` and, if acceptable, records it.
    pub fn admit(&mut self, claim: &FenceClaim) -> Result<FenceVerdict, StaleToken> {
        let verdict = self.judge(claim)?;
        if let FenceVerdict::Advanced { .. } = verdict {
            self.highest.insert(claim.key.clone(), claim.token);
        }
        Ok(verdict)
    }

    /// Judges `claim` without recording it.
    pub fn judge(&self, claim: &FenceClaim) -> Result<FenceVerdict, StaleToken> {
        match self.highest.get(&claim.key) {
            Some(&h) if claim.token < h => Err(StaleToken {
                key: claim.key.clone(),
                offered: claim.token,
                highest: h,
            }),
            Some(&h) if claim.token == h => Ok(FenceVerdict::Retry),
            prev => Ok(FenceVerdict::Advanced {
                previous: prev.copied(),
            }),
        }
    }

    /// The highest token seen for `key`.
    pub fn highest(&self, key: &LockKey) -> Option<FencingToken> {
        self.highest.get(key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn claim(k: &str, t: u64) -> FenceClaim {
        FenceClaim {
            key: LockKey::parse(k).unwrap(),
            token: FencingToken(t),
        }
    }

    #[test]
    fn lower_refused_equal_retry_higher_advances() {
        let mut f = Fence::default();
        assert_eq!(
            f.admit(&claim("service/api", 10)),
            Ok(FenceVerdict::Advanced { previous: None })
        );
        assert_eq!(f.admit(&claim("service/api", 10)), Ok(FenceVerdict::Retry));
        let stale = f.admit(&claim("service/api", 9)).unwrap_err();
        assert_eq!(stale.highest, FencingToken(10));
        assert!(stale.to_string().contains("stale fencing token 9"));
        assert_eq!(
            f.admit(&claim("service/api", 12)),
            Ok(FenceVerdict::Advanced {
                previous: Some(FencingToken(10))
            })
        );
        // Keys are independent.
        assert!(f.admit(&claim("service/web", 1)).is_ok());
        assert_eq!(
            f.highest(&claim("service/api", 0).key),
            Some(FencingToken(12))
        );
        // judge does not record.
        assert!(f.judge(&claim("service/x", 5)).is_ok());
        assert_eq!(f.highest(&claim("service/x", 0).key), None);
    }

    proptest! {
        /// The recorded highest token never decreases, and a token is admitted exactly when
        /// it is at least the highest admitted before it.
        #[test]
        fn monotone(tokens in proptest::collection::vec((0..2usize, 0..50u64), 1..100)) {
            let mut f = Fence::default();
            let mut max: [Option<u64>; 2] = [None, None];
            for (k, t) in tokens {
                let c = claim(&format!("k{k}"), t);
                let ok = f.admit(&c).is_ok();
                prop_assert_eq!(ok, max[k].is_none_or(|m| t >= m));
                if ok { max[k] = Some(max[k].map_or(t, |m| m.max(t))); }
                prop_assert_eq!(f.highest(&c.key).map(|x| x.0), max[k]);
            }
        }
    }
}
