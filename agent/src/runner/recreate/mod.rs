//! The `recreate` runner: the recreate deploy of DESIGN.md, and the explicit rollback.
//!
//! Deploy: ensure the image → create the new container → stop (keep) the old one → start the
//! new one → health check → success: keep one previous container, prune older ones of this
//! service only; failure: capture the new container's last log lines, remove it, start the
//! previous one, check it, and report `rolled_back` (or `failed` when that did not work).
//!
//! Rollback: stop the current container, start the kept previous one, check it; the replaced
//! one becomes the kept previous, so a rollback can itself be rolled back. If the previous
//! one is unhealthy, it is stopped (not removed) and the replaced one restarted.
//!
//! [`plan::next`] decides every step (pure, unit-tested path by path); [`run`] performs them
//! through the [`Runtime`]. Every step is idempotent and the [`Stage`] is persisted before
//! each step that changes what serves, so a resumed run continues truthfully: if the new
//! container had been started and still runs, its health check is redone; if it died, the
//! previous one is restored; and the record says the agent restarted.

pub mod plan;
#[cfg(test)]
mod tests;
