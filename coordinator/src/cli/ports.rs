//! `sluice ports [SERVER]`: the port ledger, one server or all.

use clap::Args;
use serde_json::Value;
use sluice_common::names::ServerName;

use super::http::{checked, value, Conn};
use super::output::{cell, table, OutputArg};
use super::CliError;

/// `sluice ports`.
#[derive(Debug, Args)]
pub struct PortsArgs {
    /// Only this server.
    pub server: Option<String>,
    #[command(flatten)]
    pub output: OutputArg,
    #[command(flatten)]
    pub conn: Conn,
}

/// Runs `sluice ports`.
pub async fn run(a: PortsArgs) -> Result<(), CliError> {
    let v = match &a.server {
        Some(s) => {
            let s = checked(ServerName::parse, s)?;
            value(&a.conn.api()?.server_ports(&s).await?)
        }
        None => value(&a.conn.api()?.ports().await?),
    };
    a.output.print(&v, |v| {
        let servers = match v["servers"].as_array() {
            Some(all) => all.clone(),
            None => vec![v.clone()],
        };
        println!("{}", text(&servers));
    });
    Ok(())
}

/// One row per assignment, then a row per server for ports bound on the host by something
/// Sluice did not start.
fn text(servers: &[Value]) -> String {
    let mut rows = Vec::new();
    for s in servers {
        let server = cell(&s["server"]);
        for (service, port) in s["assignments"].as_object().into_iter().flatten() {
            rows.push(vec![server.clone(), cell(port), service.clone()]);
        }
        let assigned: Vec<&Value> = s["assignments"]
            .as_object()
            .map(|m| m.values().collect())
            .unwrap_or_default();
        for p in s["host_bound"].as_array().into_iter().flatten() {
            if !assigned.contains(&p) {
                rows.push(vec![server.clone(), cell(p), "(bound on the host)".into()]);
            }
        }
    }
    let mut out = table(&["SERVER", "PORT", "SERVICE"], &rows);
    for s in servers {
        out.push_str(&format!(
            "\n{}: range {}, {} used, {} free",
            cell(&s["server"]),
            cell(&s["range"]),
            cell(&s["used"]),
            cell(&s["free"])
        ));
    }
    out
}
