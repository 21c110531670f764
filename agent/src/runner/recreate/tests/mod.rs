//! The recreate runner, path by path: the pure plan ([`plans`]), then the executor over
//! the in-memory runtime (real persistence in a temporary store, no Docker, no sockets, no
//! sleeps: health outcomes are the fake's scripted Docker HEALTHCHECK statuses) for
//! deploys ([`deploys`]), resumed operations ([`resumes`]) and rollbacks ([`rollbacks`]),
//! and what is on disk at each Docker change ([`persistence`]).

mod deploys;
mod persistence;
mod plans;
mod resumes;
mod rollbacks;

use serde_json::json;
use sluice_common::agent_api::OperationState;
use sluice_common::fence::FenceClaim;
use uuid::Uuid;

use super::plan::{next, Observed, Step};
use crate::record::{Finish, OpRecord, OpRequest, Stage};
use crate::runner::testkit::*;
use crate::runtime::fake::Call;
use crate::runtime::DockerError;

/// Admits a deploy of `image` for service `api` under token 3, checked by Docker's HEALTHCHECK.
fn deploy(k: &Kit, image: &str, extra: serde_json::Value) -> std::sync::Arc<crate::ops::OpCell> {
    k.admit_deploy(deploy_request("api", image, 3, docker_check(), extra))
}
