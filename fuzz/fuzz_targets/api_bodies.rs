#![no_main]
//! v1 API request bodies and views, and problem+json: the first byte picks the type, the
//! rest is the body.

use libfuzzer_sys::fuzz_target;
use sluice_common::{api, problem};
use sluice_fuzz::wire;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 16 {
        0 => wire::<api::AcquireLockRequest>(body),
        1 => wire::<api::RenewLockRequest>(body),
        2 => wire::<sluice_common::audit::AuditPage>(body),
        3 => wire::<api::AllocatePortRequest>(body),
        4 => wire::<api::PutServerRequest>(body),
        5 => wire::<api::SetLabelsRequest>(body),
        6 => wire::<api::AddMemberRequest>(body),
        7 => wire::<api::CreateDeploymentRequest>(body),
        8 => wire::<api::Policy>(body),
        9 => wire::<api::HealthCheck>(body),
        10 => wire::<api::DeploymentView>(body),
        11 => wire::<api::ServerView>(body),
        12 => wire::<api::LockList>(body),
        13 => wire::<api::PortsList>(body),
        14 => wire::<api::ClusterStatus>(body),
        _ => wire::<problem::Problem>(body),
    }
});
