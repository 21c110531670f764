//! The request `sluice deploy` and `sluice plan` send: built from the flags, or from a
//! service file (`--file sluice.toml --tag TAG`); and `sluice validate`.

use serde_json::{json, Map, Value};
use sluice_common::api::CreateDeploymentRequest;

use super::super::http::as_request;
use super::super::service_file::{self, Offline, Process};
use super::super::CliError;
use super::DeployArgs;

/// The requests to send: the flags' one, or one per chosen service of the file.
pub(crate) fn requests(a: &DeployArgs) -> Result<Vec<CreateDeploymentRequest>, CliError> {
    let Some(path) = &a.file else {
        return Ok(vec![as_request(&body(a)?)?]);
    };
    let flags = [
        ("--image", a.image.is_some()),
        ("--server", !a.servers.is_empty()),
        ("--selector", !a.selector.is_empty()),
        ("--env", !a.env.is_empty()),
        ("--secret-env", !a.secret_env.is_empty()),
        ("--port", a.port.is_some()),
        ("--strategy", a.strategy.is_some()),
        ("--canary", a.canary.is_some()),
        ("--spec", a.spec.is_some()),
        ("--allow-label", !a.allow_labels.is_empty()),
    ];
    if let Some((flag, _)) = flags.iter().find(|(_, given)| *given) {
        return Err(CliError::Usage(format!(
            "{flag} does not go with --file: the file describes the service"
        )));
    }
    let file = load(path)?;
    let dir = path
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let mut reqs = service_file::requests(
        &file,
        a.service.as_deref(),
        a.tag.as_deref(),
        &Process { dir },
    )
    .map_err(CliError::Data)?;
    if let Some(n) = a.check_index {
        if reqs.len() > 1 {
            return Err(CliError::Usage(
                "--check-index applies to one service: add --service".into(),
            ));
        }
        for r in &mut reqs {
            r.check_index = Some(n);
        }
    }
    Ok(reqs)
}

fn load(path: &std::path::Path) -> Result<service_file::ServiceFile, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::NoInput {
        path: path.to_path_buf(),
        source,
    })?;
    service_file::parse(&text).map_err(|e| CliError::Data(format!("{}: {e}", path.display())))
}

/// `sluice validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The service file.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "PATH",
        default_value = "sluice.toml"
    )]
    pub file: std::path::PathBuf,
    /// The tag deploys will pass (checks the image names none of its own).
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
}

/// Runs `sluice validate`: the file parses and every service makes a valid request, without
/// a coordinator (values taken from the environment or files are not read). Exit 0 valid,
/// 65 not (the message names the line and column), 66 no such file.
pub fn validate(a: &ValidateArgs) -> Result<(), CliError> {
    let file = load(&a.file)?;
    let reqs = service_file::requests(&file, None, a.tag.as_deref(), &Offline)
        .map_err(|e| CliError::Data(format!("{}: {e}", a.file.display())))?;
    for r in &reqs {
        println!(
            "{}: service {} ok ({})",
            a.file.display(),
            r.service,
            r.image
        );
    }
    Ok(())
}

fn split_env(
    pairs: &[String],
    secret: bool,
    into: &mut Map<String, Value>,
) -> Result<(), CliError> {
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--env {p:?}: expected KEY=VALUE")))?;
        into.insert(k.to_string(), json!({"value": v, "secret": secret}));
    }
    Ok(())
}

pub(crate) fn body(a: &DeployArgs) -> Result<Value, CliError> {
    let need = || CliError::Usage("give --service and --image, or --file".into());
    if a.servers.is_empty() && a.selector.is_empty() {
        return Err(CliError::Usage("name a --server or a --selector".into()));
    }
    let mut env = Map::new();
    split_env(&a.env, false, &mut env)?;
    split_env(&a.secret_env, true, &mut env)?;
    let mut health = match a.health.as_str() {
        "tcp" => json!({"kind": "tcp"}),
        "docker" => json!({"kind": "docker"}),
        "none" => json!({"kind": "none"}),
        p if p.starts_with('/') => json!({"kind": "http", "path": p}),
        other => {
            return Err(CliError::Usage(format!(
                "--health {other:?}: use an HTTP path like /health, tcp, docker or none"
            )))
        }
    };
    // Each tuning flag belongs to the kinds that have the field; elsewhere it is a mistake
    // worth saying (the API would refuse the unknown field anyway).
    let probing = matches!(health["kind"].as_str(), Some("http" | "tcp"));
    let tuning = [
        (
            "--health-interval",
            "interval",
            a.health_interval.as_ref().map(|v| json!(v)),
            probing,
        ),
        (
            "--health-timeout",
            "timeout",
            a.health_timeout.as_ref().map(|v| json!(v)),
            probing,
        ),
        (
            "--health-retries",
            "retries",
            a.health_retries.map(|v| json!(v)),
            probing,
        ),
        (
            "--health-start-period",
            "start_period",
            a.health_start_period.as_ref().map(|v| json!(v)),
            probing,
        ),
        (
            "--health-deadline",
            "deadline",
            a.health_deadline.as_ref().map(|v| json!(v)),
            health["kind"] == "docker",
        ),
    ];
    for (flag, field, value, applies) in tuning {
        let Some(value) = value else { continue };
        if !applies {
            return Err(CliError::Usage(format!(
                "{flag} does not apply to --health {}",
                a.health
            )));
        }
        health[field] = value;
    }
    let mut b = json!({
        "service": a.service.as_deref().ok_or_else(need)?,
        "image": a.image.as_deref().ok_or_else(need)?, "servers": a.servers, "selector": a.selector,
        "container_port": a.container_port, "env": env, "health": health,
        "allow_labels": a.allow_labels,
    });
    if let Some(p) = a.port {
        b["port"] = json!(p);
    }
    if let Some(w) = &a.lock_wait {
        b["lock_wait"] = json!(w);
    }
    if let Some(s) = &a.strategy {
        b["strategy"] = json!(s);
    }
    if let Some(d) = &a.min_healthy {
        b["min_healthy"] = json!(d);
    }
    if let Some(d) = &a.drain_timeout {
        b["drain_timeout"] = json!(d);
    }
    if let Some(c) = &a.canary {
        b["canary"] = super::super::canary::spec_arg(c)?;
    }
    if let Some(n) = a.max_parallel {
        b["max_parallel"] = json!(n);
    }
    if let Some(d) = &a.progress_deadline {
        b["progress_deadline"] = json!(d);
    }
    if let Some(s) = &a.spec {
        b["spec"] = super::super::plan::spec_arg(s)?;
    }
    if let Some(n) = a.check_index {
        b["check_index"] = json!(n);
    }
    Ok(b)
}
