//! `sluice servers list|forbid|allow|cordon|uncordon|labels`: the servers deployments go
//! to, and their policy. Changing policy needs an admin token.

use clap::Subcommand;
use serde_json::Value;
use sluice_common::names::{Label, ServerName};

use super::http::{checked, value, Conn};
use super::output::{cell, table, OutputArg};
use super::CliError;
use sluice_common::api::SetLabelsRequest;

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
    /// Cordon a server: no new deployment is placed on it (validation says so); what runs
    /// there keeps serving.
    Cordon {
        /// The server.
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// End a server's cordon.
    Uncordon {
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
            let v = value(&conn.api()?.servers().await?);
            output.print(&v, |v| println!("{}", text(v)));
            Ok(())
        }
        ServersCommand::Forbid { name, conn } => change(&conn, &name, Change::Forbid).await,
        ServersCommand::Allow { name, conn } => change(&conn, &name, Change::Allow).await,
        ServersCommand::Cordon { name, conn } => change(&conn, &name, Change::Cordon(true)).await,
        ServersCommand::Uncordon { name, conn } => {
            change(&conn, &name, Change::Cordon(false)).await
        }
        ServersCommand::Labels { name, labels, conn } => {
            let labels = labels
                .iter()
                .map(|l| checked(Label::parse, l))
                .collect::<Result<_, _>>()?;
            change(&conn, &name, Change::Labels(SetLabelsRequest { labels })).await
        }
    }
}

/// What `sluice servers forbid|allow|labels` changes.
enum Change {
    Forbid,
    Allow,
    Cordon(bool),
    Labels(SetLabelsRequest),
}

async fn change(conn: &Conn, name: &str, what: Change) -> Result<(), CliError> {
    let name = checked(ServerName::parse, name)?;
    let api = conn.api()?;
    let v = value(&match what {
        Change::Forbid => api.forbid_server(&name).await?,
        Change::Allow => api.allow_server(&name).await?,
        Change::Cordon(c) => api.cordon_server(&name, c).await?,
        Change::Labels(req) => api.set_server_labels(&name, &req).await?,
    });
    eprintln!(
        "server {name}: {}, labels {}",
        policy(&v),
        cell(&v["labels"])
    );
    Ok(())
}

/// `allowed`, `forbidden`, `cordoned` or `forbidden, cordoned`.
fn policy(s: &Value) -> String {
    match (s["forbidden"] == true, s["cordoned"] == true) {
        (false, false) => "allowed".into(),
        (true, false) => "forbidden".into(),
        (false, true) => "cordoned".into(),
        (true, true) => "forbidden, cordoned".into(),
    }
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
                policy(s),
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
