//! The one place the CLI talks HTTPS to a coordinator: where it is ([`Conn`]), the typed
//! client of every call ([`sluice_common::client::Client`]), and how an answer that is not
//! a success becomes a [`CliError`] (and so an exit code).
//!
//! The coordinator is `--addr`/`SLUICE_ADDR` (`https://host:port`, or just `host:port`),
//! the caller's token `--token`/`SLUICE_TOKEN`, and the CA that signed the coordinator's
//! certificate `--ca`/`SLUICE_CA` (without it, the system's roots: for an API behind a
//! public certificate).
//!
//! Errors are RFC 9457 problem+json with a stable `code`; the mapping is:
//! 401/403 → 77 (`EX_NOPERM`); `lock_held` → 75 (`EX_TEMPFAIL`: someone else has it, retry
//! later); other 4xx → 65 (`EX_DATAERR`); 5xx and unreachable → 69 (`EX_UNAVAILABLE`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use sluice_common::client::{Client, ClientError};
use sluice_common::problem::{ErrorCode, Problem};
use sluice_common::tls::Role;

use super::CliError;

/// Where the coordinator is and how to authenticate.
#[derive(Debug, Args)]
pub struct Conn {
    /// The coordinator API (`https://host:port` or `host:port`).
    #[arg(long, env = "SLUICE_ADDR")]
    pub addr: String,
    /// A bearer token's secret (viewer for reads, deployer or admin for changes).
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The project CA certificate (PEM) the coordinator's certificate must chain to.
    #[arg(long, env = "SLUICE_CA")]
    pub ca: Option<PathBuf>,
}

impl Conn {
    /// `https://host:port`, without a trailing slash.
    pub(crate) fn base(&self) -> String {
        let a = self.addr.trim_end_matches('/');
        if a.starts_with("https://") {
            a.to_string()
        } else {
            format!("https://{a}")
        }
    }

    /// An HTTPS client that trusts `--ca` (or the system roots), whose requests time out
    /// after `timeout` (`None`: never, for streams).
    fn client_with(&self, timeout: Option<Duration>) -> Result<reqwest::Client, CliError> {
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
        }
        .connect_timeout(Duration::from_secs(10));
        match timeout {
            Some(t) => builder.timeout(t),
            None => builder,
        }
        .build()
        .map_err(|e| CliError::Data(format!("HTTPS client: {e}")))
    }

    /// The typed API client ([`sluice_common::client`]): requests time out after 30 s.
    pub(crate) fn api(&self) -> Result<Client, CliError> {
        self.api_with(Some(Duration::from_secs(30)))
    }

    /// The API client for requests that time out after `timeout` (`None`: never, for the
    /// deployment event stream).
    pub(crate) fn api_with(&self, timeout: Option<Duration>) -> Result<Client, CliError> {
        Ok(Client::new(self.client_with(timeout)?, self.base()).with_token(self.token.trim()))
    }
}

/// A request body the CLI assembled as JSON, read into its wire type exactly as the
/// coordinator reads it ([`sluice_common::edge::parse`]): what the coordinator would refuse
/// is refused here with the same problem, so the same message and exit code.
pub(crate) fn as_request<T: serde::de::DeserializeOwned>(
    body: &serde_json::Value,
) -> Result<T, CliError> {
    let bytes = serde_json::to_vec(body).expect("JSON serializes");
    sluice_common::edge::parse(&bytes).map_err(|e| {
        let status =
            reqwest::StatusCode::from_u16(e.0.status).unwrap_or(reqwest::StatusCode::BAD_REQUEST);
        problem_error(status, &e.0)
    })
}

/// A typed answer as the JSON the CLI prints and reads (the same text the server sent: the
/// client and the server share the wire types).
pub(crate) fn value(answer: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(answer).expect("wire types serialize")
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Problem {
                status, problem, ..
            } => problem_error(status, &problem),
            other => CliError::Unavailable(other.to_string()),
        }
    }
}

/// A problem+json answer as a [`CliError`]: the detail, then each invalid field on its own line.
pub(crate) fn problem_error(status: reqwest::StatusCode, problem: &Problem) -> CliError {
    let mut msg = format!("{status}: {}", problem.detail);
    for e in &problem.errors {
        msg.push_str(&format!("\n  {}: {}", e.field, e.message));
    }
    match (status.as_u16(), problem.code) {
        (401 | 403, _) => CliError::Auth(msg),
        // Both pass with time: the lock is released; a new plan gives the new index.
        (_, ErrorCode::LockHeld | ErrorCode::ServiceChanged) => CliError::Busy(msg),
        (s, _) if s >= 500 => CliError::Unavailable(msg),
        _ => CliError::Data(msg),
    }
}

/// Checks a value with one of `sluice_common`'s validated types before it goes into a URL
/// path, so a typo is a usage error (64) and never a different path.
pub(crate) fn checked<T, E: std::fmt::Display>(
    parse: impl FnOnce(&str) -> Result<T, E>,
    s: &str,
) -> Result<T, CliError> {
    parse(s).map_err(|e| CliError::Usage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(code: ErrorCode) -> Problem {
        Problem::new(code, "")
    }

    #[test]
    fn problems_map_to_exit_codes() {
        let code = |status: u16, p: Problem| {
            problem_error(reqwest::StatusCode::from_u16(status).unwrap(), &p).exit_code()
        };
        assert_eq!(code(401, problem(ErrorCode::Unauthenticated)), 77);
        assert_eq!(code(403, problem(ErrorCode::Forbidden)), 77);
        assert_eq!(code(409, problem(ErrorCode::LockHeld)), 75);
        assert_eq!(code(409, problem(ErrorCode::LockNotHeld)), 65);
        assert_eq!(code(400, problem(ErrorCode::InvalidRequest)), 65);
        assert_eq!(code(503, problem(ErrorCode::Unavailable)), 69);
    }

    #[test]
    fn field_errors_are_listed() {
        let e = problem_error(
            reqwest::StatusCode::BAD_REQUEST,
            &Problem::new(ErrorCode::InvalidRequest, "invalid").with_field("ttl", "needs a unit"),
        );
        assert!(e.to_string().ends_with("\n  ttl: needs a unit"), "{e}");
    }
}
