//! `sluice deploy`: the request it builds, and a flag for every field.

use clap::{CommandFactory, Parser};
use serde_json::{json, Value};

/// Where each field of the deployment request (and of every health-check kind) is
/// set from `sluice deploy`. A field added to the API without a flag fails here.
const FLAGS: &[(&str, &[&str])] = &[
    ("service", &["service"]),
    ("image", &["image", "tag"]),
    ("servers", &["server"]),
    ("selector", &["selector"]),
    ("container_port", &["container-port"]),
    ("port", &["port"]),
    ("env", &["env", "secret-env"]),
    ("health", &["health"]),
    ("strategy", &["strategy"]),
    ("min_healthy", &["min-healthy"]),
    ("drain_timeout", &["drain-timeout"]),
    ("lock_wait", &["lock-wait"]),
    ("max_parallel", &["max-parallel"]),
    ("progress_deadline", &["progress-deadline"]),
    ("allow_labels", &["allow-label"]),
    ("spec", &["spec"]),
    ("check_index", &["check-index"]),
    ("canary", &["canary"]),
    ("health.kind", &["health"]),
    ("health.path", &["health"]),
    ("health.interval", &["health-interval"]),
    ("health.timeout", &["health-timeout"]),
    ("health.retries", &["health-retries"]),
    ("health.start_period", &["health-start-period"]),
    ("health.deadline", &["health-deadline"]),
];

#[test]
fn every_request_field_has_a_flag() {
    let doc: Value = serde_json::from_str(crate::api::openapi::document_json()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let props = |name: &str| -> Vec<String> {
        schemas[name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{name} has no properties"))
            .keys()
            .cloned()
            .collect()
    };
    let mut fields = props("CreateDeploymentRequest");
    // The kinds of health check, one `oneOf` alternative each.
    for kind in schemas["HealthCheck"]["oneOf"].as_array().unwrap() {
        let kind = kind["properties"]
            .as_object()
            .expect("a health check's fields");
        fields.extend(kind.keys().map(|f| format!("health.{f}")));
    }
    let cli = crate::cli::Cli::command();
    let deploy = cli
        .get_subcommands()
        .find(|c| c.get_name() == "deploy")
        .expect("sluice deploy");
    let longs: Vec<&str> = deploy
        .get_arguments()
        .filter_map(|a| a.get_long())
        .collect();
    for f in &fields {
        let (_, flags) = FLAGS
            .iter()
            .find(|(field, _)| field == f)
            .unwrap_or_else(|| panic!("request field {f} has no `sluice deploy` flag"));
        for flag in *flags {
            assert!(longs.contains(flag), "--{flag} (for {f}) is not a flag");
        }
    }
}

fn body_of(args: &[&str]) -> Result<Value, crate::cli::CliError> {
    let mut argv = vec!["sluice", "deploy", "--addr", "x:1", "--token", "t"];
    argv.extend_from_slice(args);
    match crate::cli::Cli::try_parse_from(argv)
        .expect("parses")
        .command
    {
        crate::cli::Command::Deploy(a) => super::request::body(&a),
        _ => unreachable!(),
    }
}

#[test]
fn flags_reach_the_request_and_the_api_accepts_it() {
    let b = body_of(&[
        "--service",
        "api",
        "--image",
        "app:v2",
        "--server",
        "web-1",
        "--health",
        "/health",
        "--health-interval",
        "200ms",
        "--health-timeout",
        "1s",
        "--health-retries",
        "5",
        "--health-start-period",
        "3s",
        "--strategy",
        "blue_green",
        "--min-healthy",
        "15s",
        "--drain-timeout",
        "5s",
        "--max-parallel",
        "2",
        "--progress-deadline",
        "5m",
        "--lock-wait",
        "30s",
        "--secret-env",
        "TOKEN=x",
    ])
    .unwrap();
    assert_eq!(b["health"]["interval"], "200ms");
    assert_eq!(b["health"]["retries"], 5);
    assert_eq!(b["max_parallel"], 2);
    assert_eq!(b["progress_deadline"], "5m");
    let req: sluice_common::api::CreateDeploymentRequest =
        serde_json::from_value(b).expect("the API accepts what the CLI sends");
    assert_eq!(req.max_parallel, Some(2));
    assert_eq!(req.strategy, sluice_common::api::Strategy::BlueGreen);
    assert_eq!(req.min_healthy.map(|d| d.get().as_secs()), Some(15));
    assert_eq!(req.drain_timeout.map(|d| d.get().as_secs()), Some(5));
    let docker = body_of(&[
        "--service",
        "api",
        "--image",
        "app:v2",
        "--server",
        "web-1",
        "--health",
        "docker",
        "--health-deadline",
        "2m",
    ])
    .unwrap();
    assert_eq!(
        docker["health"],
        json!({"kind": "docker", "deadline": "2m"})
    );
    let wrong = body_of(&[
        "--service",
        "api",
        "--image",
        "app:v2",
        "--server",
        "web-1",
        "--health",
        "none",
        "--health-retries",
        "3",
    ]);
    assert!(wrong.is_err());
}

#[test]
fn progress_lines_say_the_phase_once() {
    let line =
        |state: &str, phase: &str| super::progress_line(&json!({"state": state, "phase": phase}));
    assert_eq!(line("validating", "validating"), "validating");
    assert_eq!(line("rolled_back", "rolled back"), "rolled_back");
    assert_eq!(
        line("in_progress", "deploying to web-1"),
        "in_progress: deploying to web-1"
    );
    assert_eq!(line("pending", ""), "pending");
}

#[test]
fn the_live_line_rewrites_itself_and_never_wraps() {
    assert_eq!(
        super::live_line("in_progress: deploying", 7, 80),
        "\r\x1b[2Kin_progress: deploying (7s)"
    );
    assert_eq!(
        super::live_line("in_progress: deploying", 7, 12),
        "\r\x1b[2Kin_progress"
    );
}
