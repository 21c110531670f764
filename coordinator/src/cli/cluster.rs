//! `sluice cluster status|add|remove`: the coordinators' Raft membership (admin).

use clap::Subcommand;
use serde_json::Value;

use super::http::{value, Conn};
use super::output::{cell, table, OutputArg};
use super::CliError;
use sluice_common::api::AddMemberRequest;

/// `sluice cluster ...`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The answering node's view: role, leader, term, log indices, members.
    Status {
        #[command(flatten)]
        output: OutputArg,
        #[command(flatten)]
        conn: Conn,
    },
    /// Add a coordinator: it joins as a learner, catches up, then becomes a voter.
    Add {
        /// Its Raft node id (unique, non-zero).
        id: u64,
        /// Its advertised address (`host:port`).
        #[arg(value_name = "ADDR")]
        member_addr: String,
        /// Keep it a learner (a non-voting replica).
        #[arg(long)]
        learner: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Remove a coordinator from the membership.
    Remove {
        /// Its Raft node id.
        id: u64,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Runs a cluster subcommand.
pub async fn run(cmd: ClusterCommand) -> Result<(), CliError> {
    let (v, output) = match cmd {
        ClusterCommand::Status { output, conn } => (value(&conn.api()?.cluster().await?), output),
        ClusterCommand::Add {
            id,
            member_addr: addr,
            learner,
            conn,
        } => {
            if id == 0 {
                return Err(CliError::Usage("node id 0 is reserved".into()));
            }
            let body = AddMemberRequest {
                id,
                addr: addr.clone(),
                voter: !learner,
            };
            eprintln!("adding node {id} at {addr}; this waits for it to catch up");
            let v = value(&conn.api()?.add_member(&body).await?);
            (v, OutputArg::default())
        }
        ClusterCommand::Remove { id, conn } => {
            let v = value(&conn.api()?.remove_member(&id.to_string()).await?);
            (v, OutputArg::default())
        }
    };
    output.print(&v, |v| println!("{}", text(v)));
    Ok(())
}

fn text(v: &Value) -> String {
    let leader = v["leader"].as_u64();
    let rows: Vec<Vec<String>> = v["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let role = if m["id"].as_u64() == leader && leader.is_some() {
                "leader"
            } else if m["voter"] == true {
                "voter"
            } else {
                "learner"
            };
            vec![cell(&m["id"]), cell(&m["addr"]), role.into()]
        })
        .collect();
    format!(
        "node {} is {}; leader {}, term {}, committed {}, applied {}\n{}",
        cell(&v["node_id"]),
        cell(&v["state"]),
        cell(&v["leader"]),
        cell(&v["term"]),
        cell(&v["committed"]),
        cell(&v["applied"]),
        table(&["ID", "ADDRESS", "ROLE"], &rows)
    )
}
