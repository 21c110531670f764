#![no_main]
//! Agent API types (both directions): the first byte picks the type, the rest is the body.

use libfuzzer_sys::fuzz_target;
use sluice_common::agent_api as a;
use sluice_fuzz::wire;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 16 {
        0 => wire::<a::DeployRequest>(body),
        1 => wire::<a::RemoveServiceRequest>(body),
        2 => wire::<a::RollbackRequest>(body),
        3 => wire::<a::OperationView>(body),
        4 => wire::<a::ServiceList>(body),
        5 => wire::<a::ServiceStatus>(body),
        6 => wire::<a::ImageCheck>(body),
        7 => wire::<a::FenceView>(body),
        8 => wire::<a::PortProbe>(body),
        9 => wire::<a::AgentHealth>(body),
        10 => wire::<a::AgentRegistration>(body),
        11 => wire::<a::AgentHeartbeat>(body),
        12 => wire::<a::RemovedService>(body),
        13 => wire::<a::Limits>(body),
        14 => wire::<a::StepView>(body),
        _ => wire::<sluice_common::fence::FenceClaim>(body),
    }
});
