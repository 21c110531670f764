//! The one place the CLI talks HTTPS to a coordinator: where it is ([`Conn`]), the client,
//! and how an answer that is not a success becomes a [`CliError`] (and so an exit code).
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
use reqwest::Method;
use serde_json::Value;
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

    /// An HTTPS client that trusts `--ca` (or the system roots). Requests time out after
    /// 30 s; streams ([`Conn::stream`]) have no overall timeout.
    pub(crate) fn client(&self) -> Result<reqwest::Client, CliError> {
        self.client_with(Some(Duration::from_secs(30)))
    }

    /// A client whose requests time out after `timeout` (`None`: never, for streams).
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

    /// Sends a request and returns the response if it succeeded; a failure becomes the
    /// [`CliError`] its status and problem code call for.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<reqwest::Response, CliError> {
        self.send_with(self.client()?, method, path, body, idempotency_key)
            .await
    }

    /// A long-lived GET (server-sent events): no overall timeout.
    pub(crate) async fn stream(&self, path: &str) -> Result<reqwest::Response, CliError> {
        let client = self.client_with(None)?;
        self.send_with(client, Method::GET, path, None, None).await
    }

    /// Like [`Conn::json`], for a request the server may hold for up to `server_wait`
    /// (a lock acquire with a wait): the client waits that long plus the usual 30 s.
    pub(crate) async fn json_waiting(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        server_wait: Duration,
    ) -> Result<Value, CliError> {
        let client = self.client_with(Some(server_wait + Duration::from_secs(30)))?;
        self.send_with(client, method, path, Some(body), None)
            .await?
            .json()
            .await
            .map_err(|e| CliError::Unavailable(format!("reading the answer to {path}: {e}")))
    }

    async fn send_with(
        &self,
        client: reqwest::Client,
        method: Method,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<reqwest::Response, CliError> {
        let url = format!("{}{path}", self.base());
        let mut req = client.request(method, &url).bearer_auth(self.token.trim());
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| CliError::Unavailable(format!("{url}: {e}")))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let problem: Value = resp.json().await.unwrap_or(Value::Null);
        Err(problem_error(status, &problem))
    }

    /// Sends a request and returns the JSON answer.
    pub(crate) async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        self.send(method, path, body, None)
            .await?
            .json()
            .await
            .map_err(|e| CliError::Unavailable(format!("reading the answer to {path}: {e}")))
    }

    /// Whether `GET path` succeeds within `timeout` (a readiness probe: any failure to
    /// answer is just "not yet"; only a client that cannot be built is an error).
    pub(crate) async fn answers(&self, path: &str, timeout: Duration) -> Result<bool, CliError> {
        let client = self.client_with(Some(timeout))?;
        Ok(self
            .send_with(client, Method::GET, path, None, None)
            .await
            .is_ok())
    }

    /// `GET path` as JSON.
    pub(crate) async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.json(Method::GET, path, None).await
    }
}

/// A problem+json answer as a [`CliError`]: the detail, then each invalid field on its own line.
pub(crate) fn problem_error(status: reqwest::StatusCode, problem: &Value) -> CliError {
    let mut msg = format!("{status}: {}", problem["detail"].as_str().unwrap_or(""));
    for e in problem["errors"].as_array().into_iter().flatten() {
        msg.push_str(&format!(
            "\n  {}: {}",
            e["field"].as_str().unwrap_or(""),
            e["message"].as_str().unwrap_or("")
        ));
    }
    match (status.as_u16(), problem["code"].as_str()) {
        (401 | 403, _) => CliError::Auth(msg),
        (_, Some("lock_held")) => CliError::Busy(msg),
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
    use serde_json::json;

    #[test]
    fn problems_map_to_exit_codes() {
        let code = |status: u16, p: Value| {
            problem_error(reqwest::StatusCode::from_u16(status).unwrap(), &p).exit_code()
        };
        assert_eq!(code(401, json!({"code": "unauthenticated"})), 77);
        assert_eq!(code(403, json!({"code": "forbidden"})), 77);
        assert_eq!(code(409, json!({"code": "lock_held"})), 75);
        assert_eq!(code(409, json!({"code": "lock_not_held"})), 65);
        assert_eq!(code(400, Value::Null), 65);
        assert_eq!(code(503, json!({"code": "unavailable"})), 69);
    }

    #[test]
    fn field_errors_are_listed() {
        let e = problem_error(
            reqwest::StatusCode::BAD_REQUEST,
            &json!({"detail": "invalid", "errors": [{"field": "ttl", "message": "needs a unit"}]}),
        );
        assert!(e.to_string().ends_with("\n  ttl: needs a unit"), "{e}");
    }
}
