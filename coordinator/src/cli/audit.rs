//! `sluice audit list|export|verify`: read the audit trail and check its hash chain.
//!
//! `verify` re-computes every record's SHA-256 and its link to the record before it, from
//! an export file (`--file`) or straight from the cluster, and names the first record that
//! does not fit (exit 65). Verifying a file someone could have edited is the point: export
//! regularly to storage the cluster cannot write, and verify the copy.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use sluice_common::audit::{verify, verify_archived, AuditRecord};

use super::http::{value, Conn};
use super::output::{cell, table, OutputArg};
use super::CliError;
use sluice_common::client::AuditFilter;

/// `sluice audit`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List records, oldest first (filters combine).
    List(ListArgs),
    /// Write the whole chain as JSON lines (stdout, or `--out FILE`).
    Export(ExportArgs),
    /// Check the hash chain of an export file, or of the cluster's trail.
    Verify(VerifyArgs),
}

/// `sluice audit list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Only this actor (`token:ci`, `system:sequencer`).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this action (`lock.acquire`) or family (`deployment`).
    #[arg(long)]
    pub action: Option<String>,
    /// From this time on (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// Records after this sequence number.
    #[arg(long)]
    pub after: Option<u64>,
    /// At most this many (1–1000).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    #[command(flatten)]
    pub output: OutputArg,
    #[command(flatten)]
    pub conn: Conn,
}

/// `sluice audit export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub conn: Conn,
}

/// `sluice audit verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// An export (JSON lines); without it, the cluster's trail is fetched and checked.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// A node's audit archive (`<data_dir>/audit-archive`): the whole chain is checked,
    /// from record 1 through the archived segments into the live records, and a broken
    /// record is named with its file. Without it only the live records are checked.
    #[arg(long)]
    pub archive: Option<PathBuf>,
    /// Where the cluster is (only without `--file`).
    #[arg(long, env = "SLUICE_ADDR")]
    pub addr: Option<String>,
    /// A token (only without `--file`).
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The project CA (only without `--file`).
    #[arg(long, env = "SLUICE_CA")]
    pub ca: Option<PathBuf>,
}

/// Runs `sluice audit ...`.
pub async fn run(cmd: AuditCommand) -> Result<(), CliError> {
    match cmd {
        AuditCommand::List(a) => list(a).await,
        AuditCommand::Export(a) => export(a).await,
        AuditCommand::Verify(a) => verify_cmd(a).await,
    }
}

async fn list(a: ListArgs) -> Result<(), CliError> {
    let filter = AuditFilter {
        service: a.service,
        actor: a.actor,
        action: a.action,
        since: a.since,
        until: a.until,
        after: a.after,
        limit: Some(a.limit as u64),
    };
    let v = value(&a.conn.api()?.audit(&filter).await?);
    a.output.print(&v, |v| {
        let rows: Vec<Vec<String>> = v["records"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                ["seq", "at", "actor", "action", "target", "outcome"]
                    .iter()
                    .map(|k| cell(&r[*k]))
                    .collect()
            })
            .collect();
        println!(
            "{}",
            table(
                &["SEQ", "AT", "ACTOR", "ACTION", "TARGET", "OUTCOME"],
                &rows
            )
        );
        if let Some(n) = v["next_after"].as_u64() {
            println!("more: --after {n}");
        }
    });
    Ok(())
}

async fn fetch_export(conn: &Conn) -> Result<String, CliError> {
    Ok(conn.api()?.audit_export().await?)
}

async fn export(a: ExportArgs) -> Result<(), CliError> {
    let body = fetch_export(&a.conn).await?;
    match a.out {
        Some(path) => std::fs::write(&path, body).map_err(|source| CliError::Io { path, source }),
        None => std::io::stdout()
            .write_all(body.as_bytes())
            .map_err(|source| CliError::Io {
                path: "stdout".into(),
                source,
            }),
    }
}

/// Parses JSON lines; a line that is not a record is named by its line number.
fn parse(text: &str) -> Result<Vec<AuditRecord>, CliError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<AuditRecord>(l)
                .map_err(|e| CliError::Data(format!("line {}: not an audit record: {e}", i + 1)))
        })
        .collect()
}

async fn verify_cmd(a: VerifyArgs) -> Result<(), CliError> {
    let (text, source) = match &a.file {
        Some(path) => (
            std::fs::read_to_string(path).map_err(|source| CliError::NoInput {
                path: path.clone(),
                source,
            })?,
            path.display().to_string(),
        ),
        None => {
            let conn = Conn {
                addr: a.addr.clone().ok_or_else(|| {
                    CliError::Usage(
                        "give --file, or --addr/SLUICE_ADDR to check the cluster".into(),
                    )
                })?,
                token: a.token.clone().unwrap_or_default(),
                ca: a.ca.clone(),
            };
            (fetch_export(&conn).await?, conn.base())
        }
    };
    let records = parse(&text)?;
    if let Some(dir) = &a.archive {
        return verify_with_archive(dir, &records, &source);
    }
    match verify(&records) {
        Ok(n) => {
            let head = records.last().map_or("-", |r| r.hash.as_str());
            let first = records.first().map_or(0, |r| r.seq);
            println!("ok: {n} records from seq {first} verify ({source}); head {head}");
            Ok(())
        }
        Err(e) => Err(CliError::Data(format!(
            "audit chain broken at record {}: {e}",
            e.seq()
        ))),
    }
}

/// The archive in `dir` and the live records `live` (read before the archive, so a
/// checkpoint in between only makes the archive overlap them) as one chain.
fn verify_with_archive(dir: &Path, live: &[AuditRecord], source: &str) -> Result<(), CliError> {
    let mut segments =
        crate::raft::archive::read_segments(dir).map_err(|e| CliError::Data(e.to_string()))?;
    if let Some(first_live) = live.first().map(|r| r.seq) {
        for s in &mut segments {
            s.records.retain(|r| r.seq < first_live);
        }
        segments.retain(|s| !s.records.is_empty());
    }
    match verify_archived(&segments, live) {
        Ok(n) => {
            let archived: usize = segments.iter().map(|s| s.records.len()).sum();
            let head = live.last().map_or("-", |r| r.hash.as_str());
            println!(
                "ok: {n} records verify: {archived} archived in {} file(s) of {}, {} live ({source}); head {head}",
                segments.len(),
                dir.display(),
                live.len()
            );
            Ok(())
        }
        Err(e) => Err(CliError::Data(format!(
            "audit chain broken at record {} in {}: {}",
            e.error.seq(),
            match &e.file {
                Some(f) => dir.join(f).display().to_string(),
                None => "the live chain".to_string(),
            },
            e.error
        ))),
    }
}
