//! `sluice servers list|forbid|allow|labels`: the servers deployments go to, and their
//! policy. Changing policy needs an admin token.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};
use sluice_common::names::{Label, ServerName};

use super::http::{checked, Conn};
use super::output::{cell, table, OutputArg};
use super::CliError;

/// `sluice servers ...`.
#[derive(Debug, Subcommand)]
pub enum ServersCommand {
    /// List servers: agent state, labels, policy, ports.
    List {
        #[command(flatten)]
        output: OutputArg,
        #[command(flatten)]
        conn: Conn,
    },
    /// Refuse every deployment to a server (validation fails with server_forbidden).
    Forbid {
        /// The server.
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Accept deployments to a server again.
    Allow {
        /// The server.
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Replace a server's labels (none given: remove them all).
    Labels {
        /// The server.
        name: String,
        /// `key=value` labels (a-z, 0-9, '-', '_', '.').
        labels: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Runs a servers subcommand.
pub async fn run(cmd: ServersCommand) -> Result<(), CliError> {
    match cmd {
        ServersCommand::List { output, conn } => {
            let v = conn.get("/v1/servers").await?;
            output.print(&v, |v| println!("{}", text(v)));
            Ok(())
        }
        ServersCommand::Forbid { name, conn } => change(&conn, &name, "forbid", None).await,
        ServersCommand::Allow { name, conn } => change(&conn, &name, "allow", None).await,
        ServersCommand::Labels { name, labels, conn } => {
            for l in &labels {
                checked(Label::parse, l)?;
            }
            change(&conn, &name, "labels", Some(json!({ "labels": labels }))).await
        }
    }
}

async fn change(conn: &Conn, name: &str, what: &str, body: Option<Value>) -> Result<(), CliError> {
    let name = checked(ServerName::parse, name)?;
    let path = format!("/v1/servers/{name}/{what}");
    let method = if body.is_some() {
        Method::PUT
    } else {
        Method::POST
    };
    let v = conn.json(method, &path, body.as_ref()).await?;
    eprintln!(
        "server {name}: {}, labels {}",
        if v["forbidden"] == true {
            "forbidden"
        } else {
            "allowed"
        },
        cell(&v["labels"])
    );
    Ok(())
}

fn text(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            vec![
                cell(&s["name"]),
                if s["up"] == true { "up" } else { "down" }.into(),
                if s["forbidden"] == true {
                    "forbidden"
                } else {
                    "allowed"
                }
                .into(),
                cell(&s["labels"]),
                cell(&s["agent_addr"]),
                cell(&s["port_range"]),
                format!("{}/{}", cell(&s["ports_used"]), cell(&s["ports_free"])),
                cell(&s["agent_version"]),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "AGENT",
            "POLICY",
            "LABELS",
            "ADDRESS",
            "PORTS",
            "USED/FREE",
            "VERSION",
        ],
        &rows,
    )
}
