//! The removal of a service (`DELETE /agent/v1/services/{service}`), as an operation:
//! list the service's containers and persist the list ([`Stage::Removing`]), then remove
//! them. Idempotent (removing a missing container is fine) and resumable: a restarted agent
//! removes the persisted list again, so the answer names every container the removal
//! took, whichever process removed it.

use sluice_common::agent_api::OperationState;

use super::exec::{settle, Exec, Halt};
use crate::record::{Finish, OpRecord, OpRequest, Removal, Stage};
use crate::runtime::{short, DockerError, Runtime};

/// What this run has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The containers were listed and the list persisted, or why not.
    pub listed: Option<Result<(), String>>,
    /// The listed containers were removed, or why not.
    pub removed: Option<Result<(), String>>,
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// List the service's containers; persist them and [`Stage::Removing`].
    List,
    /// Remove the listed containers ("remove containers").
    RemoveAll,
    /// Finish the operation.
    Finish(Finish),
}

/// The step after `rec` and `obs`; `None` once finished (or not a removal).
pub fn next(rec: &OpRecord, obs: &Observed) -> Option<Step> {
    if !matches!(rec.request, OpRequest::Remove(_)) {
        return None;
    }
    let finish = |state, phase: &str, error| {
        Some(Step::Finish(Finish {
            state,
            phase: phase.to_string(),
            error,
        }))
    };
    match rec.stage {
        Stage::Start => match &obs.listed {
            Some(Err(e)) => finish(
                OperationState::Failed,
                "failed before anything was changed",
                Some(format!("{e} (nothing was changed)")),
            ),
            _ => Some(Step::List),
        },
        Stage::Removing => match &obs.removed {
            None => Some(Step::RemoveAll),
            Some(Err(e)) => finish(
                OperationState::Failed,
                "failed while removing the containers",
                Some(e.clone()),
            ),
            Some(Ok(())) => {
                let n = rec.removal.as_ref().map_or(0, |r| r.containers.len());
                finish(
                    OperationState::Succeeded,
                    &format!("removed {n} container(s)"),
                    None,
                )
            }
        },
        _ => None,
    }
}

/// Runs a removal from its persisted stage to its end (or to shutdown).
pub async fn run<R: Runtime>(x: &Exec<'_, R>) -> Result<(), Halt> {
    let mut obs = Observed::default();
    while let Some(step) = next(&x.record(), &obs) {
        match step {
            Step::List => {
                let service = x.cell.view().service;
                let listed = match x.rt.service_containers(&service).await {
                    Ok(cs) => {
                        x.update(|r| {
                            r.removal = Some(Removal {
                                containers: cs.into_iter().map(|c| c.id).collect(),
                                failure: None,
                            });
                            r.stage = Stage::Removing;
                        })?;
                        Ok(())
                    }
                    Err(e) => {
                        failed(x, &e)?;
                        Err(e.to_string())
                    }
                };
                obs.listed = Some(listed);
            }
            Step::RemoveAll => {
                let ids = x.record().removal.map(|r| r.containers).unwrap_or_default();
                let service = x.cell.view().service;
                let mut kind = None;
                let r = x
                    .step("remove containers", async {
                        // Traffic first: the proxy stops listening on the service's port
                        // (which the ledger is about to free).
                        let unrouted = x.unroute_quietly(&service).await?;
                        for id in &ids {
                            if let Err(e) = x.rt.remove(id).await {
                                kind = Some(e.clone());
                                return Err(e.into());
                            }
                        }
                        let shown: Vec<&str> = ids.iter().map(|c| short(c)).collect();
                        let mut detail = if shown.is_empty() {
                            "nothing to remove".to_string()
                        } else {
                            format!("removed {}", shown.join(", "))
                        };
                        if unrouted {
                            detail.push_str("; its sluice-proxy route removed");
                        }
                        Ok(((), detail))
                    })
                    .await;
                if let Some(e) = &kind {
                    failed(x, e)?;
                }
                obs.removed = Some(settle(r)?);
            }
            Step::Finish(f) => x.update(|r| r.conclude(f))?,
        }
    }
    Ok(())
}

/// Records how Docker failed the removal (the HTTP answer mirrors it).
fn failed<R: Runtime>(x: &Exec<'_, R>, e: &DockerError) -> Result<(), Halt> {
    x.update(|r| r.removal.get_or_insert_with(Removal::default).failure = Some(e.kind()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::testkit::*;
    use crate::runtime::fake::Call;

    #[tokio::test]
    async fn removes_every_container_of_the_service_and_says_which() {
        let k = Kit::new();
        let a = k.rt.existing("api", "app:v1", false);
        let b = k.rt.existing("api", "app:v2", true);
        let other = k.rt.existing("web", "app:v1", true);
        let cell = k.admit_remove("api", 3);
        k.run(&cell).await;
        let rec = cell.record();
        assert_eq!(rec.view.state, OperationState::Succeeded, "{:?}", rec.view);
        assert_eq!(rec.view.phase, "removed 2 container(s)");
        let removal = rec.removal.unwrap();
        assert_eq!(removal.containers, vec![b.clone(), a.clone()]);
        assert!(k.rt.of("api").is_empty());
        assert!(k.rt.get(&other).is_some(), "another service is untouched");
        assert_eq!(steps(&cell), ["remove containers"]);
    }

    #[tokio::test]
    async fn a_listing_failure_changes_nothing_and_is_classified() {
        let k = Kit::new();
        k.rt.existing("api", "app:v1", true);
        k.rt.fail(
            Call::List,
            None,
            DockerError::Unavailable("socket gone".into()),
        );
        let cell = k.admit_remove("api", 3);
        k.run(&cell).await;
        let rec = cell.record();
        assert_eq!(rec.view.state, OperationState::Failed);
        assert_eq!(
            rec.view.error.as_deref(),
            Some("docker is unreachable: socket gone (nothing was changed)")
        );
        assert_eq!(
            rec.removal.unwrap().failure,
            Some(crate::runtime::ErrorKind::Unavailable)
        );
        assert_eq!(k.rt.of("api").len(), 1);
    }

    #[tokio::test]
    async fn a_refused_removal_fails_with_its_class() {
        let k = Kit::new();
        k.rt.existing("api", "app:v1", true);
        k.rt.fail(Call::Remove, None, DockerError::Refused("busy".into()));
        let cell = k.admit_remove("api", 3);
        k.run(&cell).await;
        let rec = cell.record();
        assert_eq!(rec.view.state, OperationState::Failed);
        assert_eq!(rec.view.error.as_deref(), Some("docker refused: busy"));
        assert_eq!(
            rec.removal.unwrap().failure,
            Some(crate::runtime::ErrorKind::Refused)
        );
    }

    #[tokio::test]
    async fn a_resumed_removal_reports_what_the_first_run_listed() {
        let k = Kit::new();
        let a = k.rt.existing("api", "app:v1", true);
        let cell = k.admit_remove("api", 3);
        // The first process listed the container, removed it and died.
        cell.update(|r| {
            r.removal = Some(Removal {
                containers: vec![a.clone()],
                failure: None,
            });
            r.stage = Stage::Removing;
        })
        .unwrap();
        k.rt.vanish(&a);
        k.resume(&cell).await;
        let rec = cell.record();
        assert_eq!(rec.view.state, OperationState::Succeeded);
        assert_eq!(rec.removal.unwrap().containers, vec![a]);
        assert_eq!(rec.view.resumed, 1);
    }

    #[test]
    fn the_plan_lists_then_removes_then_finishes() {
        let k = Kit::new();
        let cell = k.admit_remove("api", 3);
        let mut rec = cell.record();
        let mut obs = Observed::default();
        assert_eq!(next(&rec, &obs), Some(Step::List));
        rec.stage = Stage::Removing;
        obs.listed = Some(Ok(()));
        assert_eq!(next(&rec, &obs), Some(Step::RemoveAll));
        obs.removed = Some(Ok(()));
        assert!(matches!(
            next(&rec, &obs),
            Some(Step::Finish(Finish {
                state: OperationState::Succeeded,
                ..
            }))
        ));
        rec.stage = Stage::Done;
        assert_eq!(next(&rec, &obs), None);
    }
}
