//! The lock table and fencing tokens.
//!
//! A lock is granted by a Raft entry, and **the fencing token is that entry's log index**.
//! The caller hands the index in; this module only insists that each grant's token is larger
//! than every token granted before, which Raft log indices guarantee across terms and
//! leaders. Time is the state machine's deterministic clock, handed in as `now`; a lease is
//! live while `now < expires_at`.
//!
//! Renew and release are compare-and-set on the token, so a holder whose lease lapsed and
//! was taken over cannot touch the new holder's lock.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::names::{Holder, LockKey};
use crate::time::Timestamp;

/// A fencing token: the Raft log index of the entry that granted a lock.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct FencingToken(pub u64);

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A granted lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The lock's key.
    pub key: LockKey,
    /// Who holds it.
    pub holder: Holder,
    /// Why, for the humans who find it held.
    pub reason: String,
    /// The fencing token of the grant.
    pub token: FencingToken,
    /// When it was granted (state-machine clock).
    pub acquired_at: Timestamp,
    /// When it lapses unless renewed.
    pub expires_at: Timestamp,
}

impl Lease {
    /// Whether the lease is still in force at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }
}

/// Why a lock operation was refused. Every variant carries what the caller needs to act.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LockError {
    /// Someone else holds the lock.
    #[error("lock {} is held by {} until {} ({})", .lease.key, .lease.holder, .lease.expires_at, .lease.reason)]
    Held {
        /// The current lease.
        lease: Box<Lease>,
    },
    /// No live or lapsed lease with this key exists.
    #[error("lock {key} is not held")]
    NotHeld {
        /// The key.
        key: LockKey,
    },
    /// The token does not match the current grant (a newer holder has it).
    #[error("token {offered} does not match lock {key}'s current token {current}")]
    TokenMismatch {
        /// The key.
        key: LockKey,
        /// What the caller sent.
        offered: FencingToken,
        /// The current grant's token.
        current: FencingToken,
    },
    /// The lease lapsed before this renewal; the caller must acquire again.
    #[error("lock {key} expired at {expired_at}; acquire it again")]
    Expired {
        /// The key.
        key: LockKey,
        /// When it lapsed.
        expired_at: Timestamp,
    },
    /// A grant's token was not larger than an earlier one. Raft indices make this
    /// impossible; it is checked anyway because fencing depends on it.
    #[error("token {offered} is not larger than the last granted token {last}")]
    TokenNotIncreasing {
        /// The last token granted.
        last: FencingToken,
        /// The offered token.
        offered: FencingToken,
    },
    /// A zero lease would lapse the instant it was granted.
    #[error("lease duration must be positive")]
    ZeroTtl,
}

/// A request to take a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acquire {
    /// The key.
    pub key: LockKey,
    /// Who asks.
    pub holder: Holder,
    /// Why.
    pub reason: String,
    /// For how long.
    pub ttl: Duration,
}

/// A grant, and the lapsed lease it replaced, if any (for the audit trail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The new lease.
    pub lease: Lease,
    /// A lapsed lease that was taken over.
    pub took_over: Option<Lease>,
}

/// Every lease, live or lapsed-but-not-yet-swept, plus the largest token ever granted.
///
/// Tokens are Raft log indices, and one entry may carry several commands (group commit),
/// so several keys may be granted the same token; one key never is: a token is refused
/// unless it is larger than every earlier grant's, or equal to the last one for a key not
/// yet granted at it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockTable {
    leases: BTreeMap<LockKey, Lease>,
    last_token: FencingToken,
    /// The keys granted at `last_token`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    last_keys: BTreeSet<LockKey>,
}

impl LockTable {
    /// Grants `req` with `token` at `now`, unless a live lease holds the key.
    pub fn acquire(
        &mut self,
        req: Acquire,
        token: FencingToken,
        now: Timestamp,
    ) -> Result<Grant, LockError> {
        if req.ttl.is_zero() {
            return Err(LockError::ZeroTtl);
        }
        if token < self.last_token
            || (token == self.last_token && self.last_keys.contains(&req.key))
        {
            return Err(LockError::TokenNotIncreasing {
                last: self.last_token,
                offered: token,
            });
        }
        if let Some(l) = self.leases.get(&req.key) {
            if l.is_live(now) {
                return Err(LockError::Held {
                    lease: Box::new(l.clone()),
                });
            }
        }
        let lease = Lease {
            key: req.key.clone(),
            holder: req.holder,
            reason: req.reason,
            token,
            acquired_at: now,
            expires_at: now.plus(req.ttl),
        };
        if token > self.last_token {
            self.last_token = token;
            self.last_keys.clear();
        }
        self.last_keys.insert(req.key.clone());
        let took_over = self.leases.insert(req.key, lease.clone());
        Ok(Grant { lease, took_over })
    }

    fn current(&self, key: &LockKey, token: FencingToken) -> Result<&Lease, LockError> {
        let l = self
            .leases
            .get(key)
            .ok_or_else(|| LockError::NotHeld { key: key.clone() })?;
        if l.token != token {
            return Err(LockError::TokenMismatch {
                key: key.clone(),
                offered: token,
                current: l.token,
            });
        }
        Ok(l)
    }

    /// Extends a live lease to `now + ttl`; compare-and-set on the token.
    pub fn renew(
        &mut self,
        key: &LockKey,
        token: FencingToken,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Lease, LockError> {
        if ttl.is_zero() {
            return Err(LockError::ZeroTtl);
        }
        let l = self.current(key, token)?;
        if !l.is_live(now) {
            return Err(LockError::Expired {
                key: key.clone(),
                expired_at: l.expires_at,
            });
        }
        let lease = self.leases.get_mut(key).expect("checked above");
        lease.expires_at = now.plus(ttl);
        Ok(lease.clone())
    }

    /// Releases a lease; compare-and-set on the token. Releasing a lapsed lease that nobody
    /// took over succeeds, so a slow holder's clean-up never errors spuriously.
    pub fn release(&mut self, key: &LockKey, token: FencingToken) -> Result<Lease, LockError> {
        self.current(key, token)?;
        Ok(self.leases.remove(key).expect("checked above"))
    }

    /// Removes every lapsed lease, returning them.
    pub fn expire(&mut self, now: Timestamp) -> Vec<Lease> {
        let lapsed: Vec<LockKey> = self
            .leases
            .values()
            .filter(|l| !l.is_live(now))
            .map(|l| l.key.clone())
            .collect();
        lapsed
            .into_iter()
            .filter_map(|k| self.leases.remove(&k))
            .collect()
    }

    /// The live lease on `key`.
    pub fn get(&self, key: &LockKey, now: Timestamp) -> Option<&Lease> {
        self.leases.get(key).filter(|l| l.is_live(now))
    }

    /// Every live lease, by key.
    pub fn live(&self, now: Timestamp) -> impl Iterator<Item = &Lease> {
        self.leases.values().filter(move |l| l.is_live(now))
    }

    /// The largest token ever granted.
    pub fn last_token(&self) -> FencingToken {
        self.last_token
    }
}

#[cfg(test)]
mod tests;
