//! Container registries as the coordinator sees them: validation checks that an image
//! exists in its registry without pulling it, and resolves its tag to the digest every
//! server then pulls (Registry HTTP API v2: `HEAD /v2/<name>/manifests/<ref>`).
//!
//! Authentication follows the registry's `WWW-Authenticate` challenge: HTTP basic with the
//! stored login, or the bearer-token flow (a token from the challenge's `realm` for
//! `repository:<name>:pull`, fetched with the login if there is one — Docker Hub, GHCR,
//! GitLab, Harbor). TLS is the process's one rustls stack; the system roots are trusted,
//! plus `[registries] ca_file` for a private CA. The login is never logged: errors carry
//! the host and a status, never a header.
//!
//! # Layout
//! - `challenge`: the pure part (URLs, challenges, what a status means), unit-tested.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{ACCEPT, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde::Deserialize;
use sluice_common::api::RegistryCredentials;
use sluice_common::image::ImageRef;

mod challenge;

pub use challenge::ResolveError;
use challenge::{classify, manifest_url, parse_challenge, token_scope, Challenge, MANIFEST_ACCEPT};

/// `[registries]`: how the coordinators reach container registries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    /// A PEM file of CA certificates trusted for registries besides the system's roots (a
    /// private registry with its own CA). Default: none.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// Talks Registry HTTP API v2.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
}

/// How a request authenticates.
enum Auth<'a> {
    Basic(&'a RegistryCredentials),
    Bearer(String),
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

impl RegistryClient {
    /// A client trusting the system roots and `config.ca_file`'s certificates.
    pub fn from_config(config: &RegistriesConfig) -> Result<Self, String> {
        let mut b = reqwest::Client::builder()
            .https_only(true)
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(4))
            .no_proxy();
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("{}: no certificate in it", path.display()));
            }
            b = b.tls_certs_merge(certs);
        }
        let http = b
            .build()
            .map_err(|e| format!("registry client: {}", chain(&e)))?;
        Ok(Self { http })
    }

    /// Resolves `image` (which names a registry) to the digest of its manifest, with
    /// `login` if one is stored for its host.
    pub async fn resolve(
        &self,
        image: &ImageRef,
        login: Option<&RegistryCredentials>,
    ) -> Result<String, ResolveError> {
        let host = image.registry().unwrap_or_default().to_string();
        let Some((url, name)) = manifest_url(image) else {
            return Err(ResolveError::Unexpected {
                host,
                detail: "nothing: the image names no registry".into(),
            });
        };
        let mut resp = self.manifest(&host, &url, None, false).await?;
        let mut authenticated = false;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge);
            let auth = match challenge {
                Some(Challenge::Basic) => login.map(Auth::Basic),
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope,
                }) => Some(Auth::Bearer(
                    self.token(
                        &host,
                        &realm,
                        service.as_deref(),
                        &token_scope(scope.as_deref(), &name),
                        login,
                    )
                    .await?,
                )),
                None => None,
            };
            if let Some(auth) = auth {
                authenticated = login.is_some();
                resp = self.manifest(&host, &url, Some(&auth), false).await?;
            }
        }
        let status = resp.status();
        if status != StatusCode::OK {
            return Err(classify(
                status.as_u16(),
                &host,
                &image.to_string(),
                authenticated,
            ));
        }
        if let Some(d) = digest_header(&resp) {
            return Ok(d);
        }
        // Some registries leave the digest off a HEAD: hash the manifest itself.
        let auth = match login {
            Some(l) if authenticated => Some(Auth::Basic(l)),
            _ => None,
        };
        let body = self
            .manifest(&host, &url, auth.as_ref(), true)
            .await?
            .bytes()
            .await
            .map_err(|e| unreachable(&host, &e))?;
        use sha2::{Digest, Sha256};
        let hex: String = Sha256::digest(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(format!("sha256:{hex}"))
    }

    async fn manifest(
        &self,
        host: &str,
        url: &str,
        auth: Option<&Auth<'_>>,
        get: bool,
    ) -> Result<reqwest::Response, ResolveError> {
        let req = if get {
            self.http.get(url)
        } else {
            self.http.head(url)
        };
        let req = req.header(ACCEPT, MANIFEST_ACCEPT);
        let req = match auth {
            Some(Auth::Basic(l)) => req.basic_auth(l.username.as_str(), Some(l.password.expose())),
            Some(Auth::Bearer(t)) => req.bearer_auth(t),
            None => req,
        };
        req.send().await.map_err(|e| unreachable(host, &e))
    }

    /// A pull token from `realm`, asked with `login` if there is one.
    async fn token(
        &self,
        host: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        login: Option<&RegistryCredentials>,
    ) -> Result<String, ResolveError> {
        let mut query = vec![("scope", scope)];
        if let Some(s) = service {
            query.push(("service", s));
        }
        let mut req = self.http.get(realm).query(&query);
        if let Some(l) = login {
            req = req.basic_auth(l.username.as_str(), Some(l.password.expose()));
        }
        let resp = req.send().await.map_err(|e| unreachable(host, &e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(classify(
                status.as_u16(),
                host,
                "a pull token",
                login.is_some(),
            ));
        }
        let t: TokenAnswer = resp.json().await.map_err(|e| ResolveError::Unexpected {
            host: host.to_string(),
            detail: format!("a token answer that is not JSON: {e}"),
        })?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ResolveError::Unexpected {
                host: host.to_string(),
                detail: "a token answer without a token".into(),
            })
    }
}

fn digest_header(resp: &reqwest::Response) -> Option<String> {
    let d = resp.headers().get("docker-content-digest")?.to_str().ok()?;
    let hex = d.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| d.to_ascii_lowercase())
}

fn unreachable(host: &str, e: &reqwest::Error) -> ResolveError {
    ResolveError::Unreachable {
        host: host.to_string(),
        detail: if e.is_timeout() {
            "no answer in time".to_string()
        } else {
            chain(e)
        },
    }
}

/// An error with its causes, `a: b: c` (reqwest's own message alone says little).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
