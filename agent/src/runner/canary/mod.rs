//! The `canary` runner: `blue_green`'s, with the switch in steps. The new version starts
//! beside the old one and is checked directly; then, instead of taking all traffic, it
//! gets the weight the coordinator asks for (the old one the rest), and the operation
//! holds both, watching the new one, until the coordinator asks for another weight. At
//! 100 it finishes as a `blue_green` deploy does (the old one drains, the new one is
//! watched for `min_healthy`, the old one is stopped and kept). An abort, or a failed
//! watch, switches all traffic back to the old one at once and removes the new one.
//! [`plan::next`] decides (pure, unit-tested); [`crate::runner::perform`] performs.

pub mod plan;
#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::health::{self, Outcome};
use crate::runner::exec::{Exec, Fail, Halt};
use crate::runner::perform::request_health;
use crate::runtime::Runtime;

/// How long one watch round of a held canary lasts (rounds repeat until released).
const HOLD_ROUND: Duration = Duration::from_secs(3600);

impl<R: Runtime> Exec<'_, R> {
    /// Holds a canary's weight, watching `container` all along: `Ok` once the coordinator
    /// asks for another weight; a failure when the new version fails its watch or the
    /// operation is aborted.
    pub async fn hold(&self, container: &str) -> Result<(), Fail> {
        let rec = self.record();
        let hc = request_health(&rec.request);
        let target = self.probe_target(container).await;
        let reweigh = self
            .cell
            .until(|r| r.canary_want.is_some() && r.canary_want != r.view.canary_weight);
        let watch = async {
            loop {
                let out = health::watch(
                    self.rt,
                    &self.env.probes,
                    container,
                    target,
                    &hc,
                    HOLD_ROUND,
                    &self.env.cancel,
                    |_| {},
                )
                .await;
                match out {
                    Outcome::Healthy(_) => continue,
                    Outcome::Unhealthy(e) => return Err(Fail::Step(e)),
                    Outcome::Interrupted => return Err(Fail::Halt(Halt::Interrupted)),
                }
            }
        };
        tokio::select! {
            _ = reweigh => Ok(()),
            why = self.cell.halted() => Err(Fail::Step(why)),
            r = watch => r,
        }
    }
}
