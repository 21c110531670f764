//! The persisted fence: the highest fencing token seen per lock key.
//!
//! The decision is `sluice_common::fence::Fence` (pure); this wraps it in one mutex so that
//! judging a claim, persisting the advanced token and starting the operation it admits happen
//! as one step. Two requests racing with tokens 7 and 8 can therefore never both start.
//!
//! Every refusal of a stale token is logged (`warn`, with key, offered and highest token) and
//! counted per key for `sluice_agent_fencing_refusals_total`: the evidence that a deposed
//! coordinator was stopped here.

use std::collections::BTreeMap;
use std::sync::Mutex;

use sluice_common::fence::{Fence, FenceClaim, FenceVerdict, StaleToken};
use sluice_common::locks::FencingToken;
use sluice_common::names::LockKey;

/// Why a fenced admission failed.
#[derive(Debug)]
pub enum Admit<E> {
    /// The token is lower than one already seen.
    Stale(StaleToken),
    /// The commit step refused or failed; the fence did not move.
    Refused(E),
}

/// The fence, behind its admission lock.
#[derive(Debug)]
pub struct FenceTable {
    inner: Mutex<Fence>,
    refusals: Mutex<BTreeMap<LockKey, u64>>,
}

impl FenceTable {
    /// The fence as loaded from the store.
    pub fn new(fence: Fence) -> Self {
        Self {
            inner: Mutex::new(fence),
            refusals: Mutex::default(),
        }
    }

    /// Stale tokens refused since the process started, per lock key.
    pub fn refusals(&self) -> BTreeMap<LockKey, u64> {
        self.refusals.lock().expect("poisoned").clone()
    }

    /// The highest token seen for `key`.
    pub fn highest(&self, key: &LockKey) -> Option<FencingToken> {
        self.inner.lock().expect("poisoned").highest(key)
    }

    /// Judges `claim`; if acceptable, runs `commit` under the same lock, passing the claim
    /// to persist when the fence advances (`None` for an equal-token retry). Only when
    /// `commit` succeeds is the claim recorded in memory.
    pub fn admit_with<T, E>(
        &self,
        claim: &FenceClaim,
        commit: impl FnOnce(Option<&FenceClaim>) -> Result<T, E>,
    ) -> Result<T, Admit<E>> {
        let mut fence = self.inner.lock().expect("poisoned");
        let verdict = match fence.judge(claim) {
            Ok(v) => v,
            Err(stale) => {
                tracing::warn!(
                    code = %sluice_common::problem::ErrorCode::StaleFencingToken,
                    key = %stale.key,
                    offered = stale.offered.0,
                    highest = stale.highest.0,
                    "refused a stale fencing token"
                );
                *self
                    .refusals
                    .lock()
                    .expect("poisoned")
                    .entry(stale.key.clone())
                    .or_default() += 1;
                return Err(Admit::Stale(stale));
            }
        };
        let advance = matches!(verdict, FenceVerdict::Advanced { .. }).then_some(claim);
        let out = commit(advance).map_err(Admit::Refused)?;
        fence.admit(claim).map_err(Admit::Stale)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(t: u64) -> FenceClaim {
        FenceClaim {
            key: LockKey::parse("service/api").unwrap(),
            token: FencingToken(t),
        }
    }

    #[test]
    fn a_refused_commit_leaves_the_fence_alone() {
        let f = FenceTable::new(Fence::default());
        let r: Result<(), Admit<&str>> = f.admit_with(&claim(5), |_| Err("no"));
        assert!(matches!(r, Err(Admit::Refused("no"))));
        assert_eq!(f.highest(&claim(0).key), None);
        let persisted = f.admit_with(&claim(5), |adv| Ok::<_, ()>(adv.is_some()));
        assert!(matches!(persisted, Ok(true)));
        let retry = f.admit_with(&claim(5), |adv| Ok::<_, ()>(adv.is_some()));
        assert!(matches!(retry, Ok(false)));
        let stale = f.admit_with(&claim(4), |_| Ok::<_, ()>(()));
        assert!(matches!(stale, Err(Admit::Stale(_))));
        assert_eq!(f.refusals().get(&claim(0).key), Some(&1));
    }
}
