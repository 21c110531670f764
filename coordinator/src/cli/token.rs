//! `sluice token create|list|revoke`: CI bearer tokens, over HTTPS to a coordinator.
//!
//! The coordinator is `--addr`/`SLUICE_ADDR` (`https://host:port`, or just `host:port`),
//! the caller's admin token `--token`/`SLUICE_TOKEN`, and the CA that signed the
//! coordinator's certificate `--ca`/`SLUICE_CA` (without it, the system's roots: for an API
//! behind a public certificate). `create` prints the new secret alone on stdout, and only
//! there, so `SECRET=$(sluice token create ...)` works; everything else goes to stderr.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use sluice_common::tls::Role;

use super::CliError;

/// Where the coordinator is and how to authenticate.
#[derive(Debug, Args)]
pub struct Conn {
    /// The coordinator API (`https://host:port` or `host:port`).
    #[arg(long, env = "SLUICE_ADDR")]
    pub addr: String,
    /// An admin token's secret.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The project CA certificate (PEM) the coordinator's certificate must chain to.
    #[arg(long, env = "SLUICE_CA")]
    pub ca: Option<PathBuf>,
}

/// `sluice token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print its secret (once: only its hash is kept).
    Create {
        /// A unique name (a-z, 0-9, '.', '_', '-'); never reused, even after revocation.
        #[arg(long)]
        name: String,
        /// viewer (reads), deployer (deploys, rollbacks, locks) or admin (everything).
        #[arg(long, value_parser = ["viewer", "deployer", "admin"])]
        role: String,
        /// For deployers: the only services it may deploy, comma-separated.
        #[arg(long, value_delimiter = ',')]
        services: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List tokens (names, roles, scopes; never secrets).
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke a token: it stops working at once.
    Revoke {
        /// The token's name.
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

impl Conn {
    pub(crate) fn base(&self) -> String {
        let a = self.addr.trim_end_matches('/');
        if a.starts_with("https://") {
            a.to_string()
        } else {
            format!("https://{a}")
        }
    }

    pub(crate) fn client(&self) -> Result<reqwest::Client, CliError> {
        let builder = match &self.ca {
            Some(path) => {
                let pem = std::fs::read_to_string(path).map_err(|source| {
                    if source.kind() == std::io::ErrorKind::NotFound {
                        CliError::NoInput {
                            path: path.clone(),
                            source,
                        }
                    } else {
                        CliError::Io {
                            path: path.clone(),
                            source,
                        }
                    }
                })?;
                sluice_common::tls::https_client(&pem, None, &[Role::Coordinator])?
            }
            None => reqwest::Client::builder().https_only(true),
        };
        builder
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| CliError::Data(format!("HTTPS client: {e}")))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base());
        let mut req = self
            .client()?
            .request(method, &url)
            .bearer_auth(self.token.trim());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| CliError::Data(format!("{url}: {e}")))?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(value)
        } else {
            let detail = value["detail"].as_str().unwrap_or("");
            Err(CliError::Data(format!("{url}: {status}: {detail}")))
        }
    }
}

/// Runs a token subcommand.
pub async fn run(cmd: TokenCommand) -> Result<(), CliError> {
    match cmd {
        TokenCommand::Create {
            name,
            role,
            services,
            conn,
        } => {
            let v = conn
                .send(
                    reqwest::Method::POST,
                    "/v1/tokens",
                    Some(json!({"name": name, "role": role, "services": services})),
                )
                .await?;
            let secret = v["secret"]
                .as_str()
                .ok_or_else(|| CliError::Data("the coordinator returned no secret".into()))?;
            eprintln!(
                "token {name} ({role}{}) created; its secret is shown this once:",
                scope(&v)
            );
            println!("{secret}");
            Ok(())
        }
        TokenCommand::List { conn } => {
            let v = conn.send(reqwest::Method::GET, "/v1/tokens", None).await?;
            println!("{:<24} {:<9} {:<8} SERVICES", "NAME", "ROLE", "STATE");
            for t in v.as_array().into_iter().flatten() {
                let state = if t["revoked"] == true {
                    "revoked"
                } else {
                    "active"
                };
                let services: Vec<&str> = t["services"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                println!(
                    "{:<24} {:<9} {:<8} {}",
                    t["name"].as_str().unwrap_or(""),
                    t["role"].as_str().unwrap_or(""),
                    state,
                    if services.is_empty() {
                        "*".to_string()
                    } else {
                        services.join(",")
                    }
                );
            }
            Ok(())
        }
        TokenCommand::Revoke { name, conn } => {
            if name.contains('/') {
                return Err(CliError::Usage(format!("invalid token name {name:?}")));
            }
            conn.send(reqwest::Method::DELETE, &format!("/v1/tokens/{name}"), None)
                .await?;
            eprintln!("token {name} revoked");
            Ok(())
        }
    }
}

fn scope(v: &Value) -> String {
    let s: Vec<&str> = v["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if s.is_empty() {
        String::new()
    } else {
        format!(", services {}", s.join(","))
    }
}
