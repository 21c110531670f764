//! `GET /agent/v1/openapi.json`: the OpenAPI 3.1 document of the agent API.
//!
//! Written by hand in `openapi.json` (sorted keys; the schemas it shares with the
//! coordinator's document — health checks, names, problems — are the same text) and
//! compiled in. Coordinators and `client` certificates may read it. The tests below and
//! `agent/tests/api.rs` keep it honest: its routes equal the router's, every `$ref`
//! resolves, the shared schemas equal the coordinator's, and what serde emits (and real
//! answers of a running agent) fit the schemas.

use axum::http::header;
use axum::response::IntoResponse;

/// The document, as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /agent/v1/openapi.json`.
pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use serde::Serialize;
    use serde_json::{json, Value};
    use sluice_common::agent_api::*;
    use sluice_tests::openapi::{
        assert_fits, assert_refs_resolve, assert_routes_match, misfits_of,
    };

    fn doc() -> Value {
        serde_json::from_str(super::DOCUMENT).expect("openapi.json is JSON")
    }

    fn fits<T: Serialize + serde::de::DeserializeOwned>(schema: &str, example: Value) {
        let t: T = serde_json::from_value(example.clone())
            .unwrap_or_else(|e| panic!("{schema} example refused by serde: {e}"));
        assert_fits(&doc(), schema, &serde_json::to_value(&t).unwrap());
        assert_fits(&doc(), schema, &example);
    }

    #[test]
    fn document_is_openapi_3_1_with_the_routes_of_the_router() {
        let d = doc();
        assert!(d["openapi"].as_str().unwrap().starts_with("3.1."));
        assert!(assert_refs_resolve(&d) > 40);
        assert_routes_match(&d, include_str!("api/mod.rs"));
    }

    #[test]
    fn what_serde_accepts_and_emits_fits_the_schemas() {
        let fence = json!({"key": "service/api", "token": 17});
        fits::<DeployRequest>(
            "DeployRequest",
            json!({"fence": fence, "service": "api", "image": "api:v2",
                   "container_port": 8080, "host_port": 20000, "env": {"A": "1"},
                   "health": {"kind": "http", "path": "/health", "timeout": "2s",
                              "interval": "1s", "retries": 10, "start_period": "0s"},
                   "previous_health": {"kind": "none"}, "deadline": "10m",
                   "limits": {"memory_bytes": 1024, "millicpus": 250},
                   "privileged": true, "network_mode": "host", "pid_mode": "host",
                   "cap_add": ["NET_ADMIN"], "mounts": ["data:/var/lib/data:ro"],
                   "spec": {"command": ["serve"], "volumes": ["/srv:/srv:ro"],
                            "resources": {"memory": "256m", "cpus": 1.5, "pids_limit": 64},
                            "restart": "always", "stop_signal": "SIGQUIT", "stop_grace": "5s",
                            "networks": [{"name": "backend", "aliases": ["api"]}],
                            "labels": {"team": "web"}, "tmpfs": ["/tmp"],
                            "log": {"driver": "local"}}}),
        );
        fits::<RollbackRequest>(
            "RollbackRequest",
            json!({"fence": fence, "service": "api", "health": {"kind": "tcp"},
                   "discard_replaced": true}),
        );
        fits::<AbortRequest>(
            "AbortRequest",
            json!({"fence": fence, "reason": "deadline"}),
        );
        fits::<RemoveServiceRequest>("RemoveServiceRequest", json!({"fence": fence}));
        let at = "2025-11-25T10:30:00.123Z";
        fits::<OperationView>(
            "OperationView",
            json!({"id": "0191d2a0-7c4e-7b3a-9f1e-2d3c4b5a6978", "kind": "deploy",
                   "service": "api", "image": "api:v2", "state": "rolled_back",
                   "phase": "restored", "steps": [{"name": "pull", "started_at": at,
                   "finished_at": null, "ok": null, "detail": ""}], "log_tail": "boom",
                   "error": "unhealthy", "fence": fence, "started_at": at,
                   "finished_at": at, "container": "c1", "previous_container": null,
                   "resumed": 1}),
        );
        fits::<ServiceList>(
            "ServiceList",
            json!({"services": [{"service": "api", "containers": [{"id": "c0",
                   "image": "api:v1", "deployment": null, "state": "running",
                   "current": true, "previous": false, "host_port": 20000,
                   "exit_code": null}]}]}),
        );
        fits::<RemovedService>(
            "RemovedService",
            json!({"service": "api", "removed": ["c0"]}),
        );
        fits::<ImageCheck>(
            "ImageCheck",
            json!({"image": "api:v2", "present": false, "id": null}),
        );
        fits::<PortProbe>(
            "PortProbe",
            json!({"port": 20000, "bound": true, "service": "api"}),
        );
        fits::<FenceView>("FenceView", json!({"key": "service/api", "highest": null}));
        fits::<AgentHealth>(
            "AgentHealth",
            json!({"server": "web-1", "docker_reachable": true,
                   "docker_version": "20.10", "docker_error": null}),
        );
        // And it is strict where serde is: an unknown field is refused by both.
        let bad = json!({"fence": fence, "reason": "x", "colour": "red"});
        assert!(serde_json::from_value::<AbortRequest>(bad.clone()).is_err());
        assert!(!misfits_of(&doc(), "AbortRequest", &bad).is_empty());
    }
}
