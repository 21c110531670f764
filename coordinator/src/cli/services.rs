//! `sluice services`: what runs where.

use clap::Args;
use serde_json::Value;

use super::http::{value, Conn};
use super::output::{cell, table, OutputArg};
use super::CliError;

/// `sluice services`.
#[derive(Debug, Args)]
pub struct ServicesArgs {
    #[command(flatten)]
    pub output: OutputArg,
    #[command(flatten)]
    pub conn: Conn,
}

/// Runs `sluice services`.
pub async fn run(a: ServicesArgs) -> Result<(), CliError> {
    let v = value(&a.conn.api()?.services().await?);
    a.output.print(&v, |v| println!("{}", text(v)));
    Ok(())
}

/// One row per service and server; a service with a deployment in flight says so.
fn text(v: &Value) -> String {
    let mut rows = Vec::new();
    for s in v.as_array().into_iter().flatten() {
        let active = cell(&s["active_deployment"]);
        let servers = s["servers"].as_array().cloned().unwrap_or_default();
        if servers.is_empty() {
            rows.push(vec![
                cell(&s["service"]),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                active.clone(),
            ]);
        }
        for srv in servers {
            rows.push(vec![
                cell(&s["service"]),
                cell(&srv["server"]),
                cell(&srv["image"]),
                cell(&srv["port"]),
                if srv["agent_up"] == true {
                    "up"
                } else {
                    "down"
                }
                .into(),
                active.clone(),
            ]);
        }
    }
    table(
        &["SERVICE", "SERVER", "IMAGE", "PORT", "AGENT", "IN FLIGHT"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn one_row_per_server() {
        let v = json!([{"service": "api", "active_deployment": null, "servers": [
            {"server": "web-1", "image": "api:v1", "port": 20000, "deployment": "d", "agent_up": true},
            {"server": "web-2", "image": "api:v1", "port": 20001, "deployment": "d", "agent_up": false},
        ]}]);
        let t = super::text(&v);
        assert!(t.contains("api      web-1   api:v1  20000  up"), "{t}");
        assert!(t.contains("web-2   api:v1  20001  down   -"), "{t}");
    }
}
