//! `sluice plan`: what `sluice deploy` with the same flags would change, per server, without
//! doing it (`POST /v1/deployments/plan`).
//!
//! Exit codes: 0 nothing would change; 2 something would; 65 the request or one of the
//! checks is invalid (the checks are listed); the usual 64/69/77 otherwise.

use serde_json::Value;
use sluice_common::api::{DeploymentPlan, PlanAction};

use super::deploy::DeployArgs;
use super::CliError;

/// `--spec JSON` or `--spec @FILE`: the container spec object.
pub(super) fn spec_arg(s: &str) -> Result<Value, CliError> {
    let text = match s.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|source| CliError::NoInput {
            path: path.into(),
            source,
        })?,
        None => s.to_string(),
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(CliError::Usage("--spec: expected a JSON object".into())),
        Err(e) => Err(CliError::Usage(format!("--spec: not JSON: {e}"))),
    }
}

/// Runs `sluice plan`.
pub async fn run(a: DeployArgs) -> Result<(), CliError> {
    // Every service's plan is shown; the exit status is the worst (invalid, changes, none).
    let mut worst: Result<(), CliError> = Ok(());
    for req in super::deploy::request::requests(&a)? {
        let plan = a.conn.api()?.plan_deployment(&req).await?;
        let v = serde_json::to_value(&plan).expect("serializable");
        a.output.print(&v, |_| print!("{}", render(&plan)));
        worst = match (worst, outcome(&plan)) {
            (Err(CliError::Data(m)), _) | (_, Err(CliError::Data(m))) => Err(CliError::Data(m)),
            (Err(e), _) | (_, Err(e)) => Err(e),
            (Ok(()), Ok(())) => Ok(()),
        };
    }
    worst
}

/// The plan as the exit status: invalid 65, changes 2, nothing 0.
pub(crate) fn outcome(plan: &DeploymentPlan) -> Result<(), CliError> {
    if !plan.valid {
        let failed: Vec<String> = plan
            .validation
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{} on {}: {}", c.check, c.server, c.detail))
            .collect();
        return Err(CliError::Data(format!(
            "the plan's checks failed:\n  {}",
            failed.join("\n  ")
        )));
    }
    if plan.changes {
        return Err(CliError::Exit {
            code: 2,
            message: String::new(),
        });
    }
    Ok(())
}

/// The plan as text: the index, then per server its action and each change.
pub(crate) fn render(plan: &DeploymentPlan) -> String {
    let mut out = format!(
        "plan for {} (index {}; deploy with --check-index {})\n",
        plan.service, plan.index, plan.index
    );
    if let Some(d) = &plan.image_digest {
        out += &format!("  image digest now: {d}\n");
    }
    for c in plan.validation.iter().filter(|c| !c.ok) {
        out += &format!("  check {} on {} failed: {}\n", c.check, c.server, c.detail);
    }
    for s in &plan.servers {
        let action = match s.action {
            PlanAction::Create => "+ create",
            PlanAction::Update => "~ update",
            PlanAction::None => "  no change",
        };
        out += &format!("{action} {}\n", s.server);
        let show = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        if let Some(i) = &s.image {
            out += &format!(
                "    image: {} -> {}\n",
                show(i.from.as_ref().map(|x| x.to_string())),
                show(i.to.as_ref().map(|x| x.to_string()))
            );
        }
        if let Some(p) = &s.port {
            out += &format!(
                "    port: {} -> {}\n",
                show(p.from.map(|x| x.to_string())),
                show(p.to.map(|x| x.to_string()))
            );
        }
        for (what, names) in [
            ("env added", &s.env.added),
            ("env removed", &s.env.removed),
            ("env changed", &s.env.changed),
        ] {
            if !names.is_empty() {
                let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
                out += &format!("    {what}: {}\n", names.join(", "));
            }
        }
        if !s.spec.is_empty() {
            out += &format!("    spec: {}\n", s.spec.join(", "));
        }
        if !s.settings.is_empty() {
            out += &format!("    settings: {}\n", s.settings.join(", "));
        }
    }
    out
}
