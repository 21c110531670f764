//! Who may call what: the one route guard in front of every endpoint of the listener.
//!
//! | paths | caller |
//! |---|---|
//! | `/healthz`, `/readyz`, `/metrics`, `/v1/openapi.json` | anyone (liveness probes carry no credentials; the API description is static) |
//! | `/raft/*`, `/internal/*` | a `coordinator` certificate |
//! | `/v1/agents/register` | an `agent` certificate naming the server in the body (checked in the handler) |
//! | `/v1/agents/{server}/heartbeat` | that server's `agent` certificate, or a `coordinator` forwarding it |
//! | `/ui/login`, `/ui/assets/*` | anyone (the console's sign-in page and its static files) |
//! | every other `/ui` path | a console session cookie whose role allows it (a `GET` without one is sent to the sign-in page) |
//! | every other path | a bearer token whose role allows it, or a `client` certificate |
//!
//! The session cookie is accepted on `/ui` only, and bearer tokens are not accepted there:
//! a browser's ambient credential never reaches the API, and a script cannot forge a
//! console form without the session's CSRF token (see [`ConsoleSession`]).
//!
//! Roles: a viewer reads (`GET`); a deployer also deploys, rolls back, cancels (aborts),
//! promotes, pauses and resumes canaries, and takes
//! locks, all within its `services` when it has a scope (the deploy handlers check the
//! service, this guard checks `service/<name>` lock keys); an admin does everything,
//! servers, ports, cluster membership and tokens included.
//!
//! A `client` certificate from the project CA counts as an admin: it is the operator's own
//! CLI on a workstation, issued by hand with the CA key, which can mint any certificate
//! anyway; tokens are for machines (CI).
//!
//! A token is looked up by the SHA-256 of the secret in this node's copy of the replicated
//! state, so a revocation takes effect on a node as soon as it has applied the entry (the
//! revoking request waits for that on the node it was sent to). Secrets are never logged:
//! refusals say which rule failed, not what was presented.

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use sluice_common::names::ServiceName;
use sluice_common::problem::ErrorCode;
use sluice_common::tls::{PeerIdentity, Role};

use super::console::console_session;
use super::error::ApiError;
use super::App;
use crate::state::tokens::TokenRole;

/// The authenticated caller of a `/v1` request, in the request's extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who, for audit records: `token:<name>`, `cert:<name>` or `bootstrap-admin`.
    pub actor: String,
    /// What it may do.
    pub role: TokenRole,
    /// For deployers: the services it may touch (empty: all).
    pub services: Vec<ServiceName>,
}

impl Caller {
    /// Refuses unless this caller may deploy, roll back or cancel `service`.
    pub fn may_deploy(&self, service: &ServiceName) -> Result<(), ApiError> {
        match self.role {
            TokenRole::Admin => Ok(()),
            TokenRole::Viewer => Err(forbidden("a viewer cannot change deployments")),
            TokenRole::Deployer => {
                if self.services.is_empty() || self.services.contains(service) {
                    Ok(())
                } else {
                    Err(forbidden(format!(
                        "{} may not deploy service {service}",
                        self.actor
                    )))
                }
            }
        }
    }
}

/// The hex SHA-256 of a token secret: what is stored and compared.
pub fn hash_secret(secret: &str) -> String {
    format!("{:x}", Sha256::digest(secret.as_bytes()))
}

pub(super) fn forbidden(detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, detail)
}

pub(super) fn unauthenticated(detail: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthenticated, detail)
}

/// The refusal as a response; a 401 says how to authenticate.
fn deny(e: ApiError) -> Response {
    let unauthenticated = e.0.code == ErrorCode::Unauthenticated;
    let mut r = e.into_response();
    if unauthenticated {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

fn require_cert(peer: Option<&PeerIdentity>, roles: &[Role]) -> Result<(), ApiError> {
    match peer {
        None => Err(unauthenticated(
            "this endpoint needs a client certificate from the project CA",
        )),
        Some(p) if roles.contains(&p.role) => Ok(()),
        Some(p) => Err(forbidden(format!(
            "a {} certificate may not call this endpoint",
            p.role
        ))),
    }
}

/// The middleware: authenticates, checks the role against the method and path, and puts
/// a [`Caller`] into the extensions of `/v1` requests.
pub async fn guard(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let peer = req.extensions().get::<PeerIdentity>().cloned();
    match classify(&path) {
        Area::Open => {}
        Area::Internal => {
            if let Err(e) = require_cert(peer.as_ref(), &[Role::Coordinator]) {
                return deny(e);
            }
        }
        Area::AgentRegister => {
            if let Err(e) = require_cert(peer.as_ref(), &[Role::Agent]) {
                return deny(e);
            }
        }
        Area::AgentHeartbeat(server) => {
            if let Err(e) = require_cert(peer.as_ref(), &[Role::Agent, Role::Coordinator]) {
                return deny(e);
            }
            if let Some(p) = &peer {
                if p.role == Role::Agent && p.name != server {
                    return forbidden(format!(
                        "the certificate of agent {} may not speak for server {server}",
                        p.name
                    ))
                    .into_response();
                }
            }
        }
        Area::UiOpen => {}
        Area::Ui => {
            let Some((caller, session)) = console_session(&app, &req) else {
                if req.method() == Method::GET || req.method() == Method::HEAD {
                    return axum::response::Redirect::to("/ui/login").into_response();
                }
                return deny(unauthenticated("sign in to the console first"));
            };
            if let Err(e) = super::console::authorize(&caller, req.method(), &path) {
                return deny(e);
            }
            req.extensions_mut().insert(caller);
            req.extensions_mut().insert(session);
        }
        Area::Api => {
            let caller = match authenticate(&app, peer.as_ref(), &req) {
                Ok(c) => c,
                Err(e) => return deny(e),
            };
            if let Err(e) = authorize(&caller, req.method(), &path) {
                return deny(e);
            }
            req.extensions_mut().insert(caller);
        }
    }
    next.run(req).await
}

enum Area {
    Open,
    Internal,
    AgentRegister,
    AgentHeartbeat(String),
    UiOpen,
    Ui,
    Api,
}

fn classify(path: &str) -> Area {
    if matches!(
        path,
        "/healthz" | "/readyz" | "/metrics" | "/v1/openapi.json"
    ) {
        return Area::Open;
    }
    if path.starts_with("/raft/") || path.starts_with("/internal/") {
        return Area::Internal;
    }
    if path == "/ui/login" || path.starts_with("/ui/assets/") {
        return Area::UiOpen;
    }
    if path == "/ui" || path.starts_with("/ui/") {
        return Area::Ui;
    }
    if path == "/v1/agents/register" {
        return Area::AgentRegister;
    }
    if let Some(server) = path
        .strip_prefix("/v1/agents/")
        .and_then(|r| r.strip_suffix("/heartbeat"))
    {
        if !server.contains('/') {
            return Area::AgentHeartbeat(server.to_string());
        }
    }
    Area::Api
}

fn authenticate(app: &App, peer: Option<&PeerIdentity>, req: &Request) -> Result<Caller, ApiError> {
    if let Some(p) = peer {
        if p.role == Role::Client {
            return Ok(Caller {
                actor: format!("cert:{}", p.name),
                role: TokenRole::Admin,
                services: Vec::new(),
            });
        }
    }
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(unauthenticated("a bearer token is required"));
    };
    let secret = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| unauthenticated("the Authorization header must be `Bearer <token>`"))?;
    let hash = hash_secret(secret);
    if app.bootstrap_admin.as_deref() == Some(hash.as_str()) {
        return Ok(Caller {
            actor: "bootstrap-admin".into(),
            role: TokenRole::Admin,
            services: Vec::new(),
        });
    }
    app.node
        .read(|a| {
            a.state.tokens.find_live(&hash).map(|t| Caller {
                actor: format!("token:{}", t.name),
                role: t.role,
                services: t.services.clone(),
            })
        })
        .ok_or_else(|| unauthenticated("unknown or revoked token"))
}

/// Whether `caller`'s role allows `method` on `path` (service scopes of deployments are
/// checked by the handlers, which know the service).
fn authorize(caller: &Caller, method: &Method, path: &str) -> Result<(), ApiError> {
    let read = method == Method::GET || method == Method::HEAD;
    let denied = || forbidden(format!("a {} token may not {method} {path}", caller.role));
    match caller.role {
        TokenRole::Admin => Ok(()),
        _ if path == "/v1/tokens" || path.starts_with("/v1/tokens/") => Err(denied()),
        _ if path == "/v1/registries" || path.starts_with("/v1/registries/") => Err(denied()),
        _ if read => Ok(()),
        TokenRole::Viewer => Err(denied()),
        TokenRole::Deployer => {
            let deployment_action = path.strip_prefix("/v1/deployments/").is_some_and(|rest| {
                ["/rollback", "/cancel", "/promote", "/pause", "/resume"]
                    .iter()
                    .any(|a| rest.ends_with(a))
            });
            if method == Method::POST && (path == "/v1/deployments" || deployment_action) {
                return Ok(());
            }
            if let Some(key) = path.strip_prefix("/v1/locks/") {
                if let Some(service) = key.strip_prefix("service/") {
                    if !caller.services.is_empty()
                        && !caller.services.iter().any(|s| s.as_str() == service)
                    {
                        return Err(forbidden(format!(
                            "{} may not lock service {service}",
                            caller.actor
                        )));
                    }
                }
                return Ok(());
            }
            Err(denied())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: TokenRole, services: &[&str]) -> Caller {
        Caller {
            actor: "token:t".into(),
            role,
            services: services
                .iter()
                .map(|s| ServiceName::parse(s).unwrap())
                .collect(),
        }
    }

    #[test]
    fn roles_map_onto_methods_and_paths() {
        let viewer = caller(TokenRole::Viewer, &[]);
        let deployer = caller(TokenRole::Deployer, &["api"]);
        let admin = caller(TokenRole::Admin, &[]);
        let cases = [
            (&viewer, Method::GET, "/v1/deployments", true),
            (&viewer, Method::POST, "/v1/deployments", false),
            (&viewer, Method::GET, "/v1/tokens", false),
            (&deployer, Method::POST, "/v1/deployments", true),
            (&deployer, Method::POST, "/v1/deployments/x/rollback", true),
            (&deployer, Method::POST, "/v1/deployments/x/cancel", true),
            (&deployer, Method::POST, "/v1/deployments/x/promote", true),
            (&viewer, Method::POST, "/v1/deployments/x/promote", false),
            (&deployer, Method::POST, "/v1/locks/service/api", true),
            (&deployer, Method::POST, "/v1/locks/service/web", false),
            (&deployer, Method::DELETE, "/v1/locks/other", true),
            (&deployer, Method::PUT, "/v1/servers/web-1", false),
            (&deployer, Method::POST, "/v1/ports/web-1/api", false),
            (&deployer, Method::POST, "/v1/cluster/members", false),
            (&deployer, Method::POST, "/v1/tokens", false),
            (&admin, Method::POST, "/v1/tokens", true),
            (&viewer, Method::GET, "/v1/registries", false),
            (&deployer, Method::GET, "/v1/registries/r.example", false),
            (&deployer, Method::PUT, "/v1/registries/r.example", false),
            (&admin, Method::PUT, "/v1/registries/r.example", true),
            (&admin, Method::GET, "/v1/registries", true),
            (&admin, Method::DELETE, "/v1/cluster/members/3", true),
        ];
        for (c, m, p, ok) in cases {
            assert_eq!(authorize(c, &m, p).is_ok(), ok, "{:?} {m} {p}", c.role);
        }
    }

    #[test]
    fn scopes_limit_deployers_only() {
        let api = ServiceName::parse("api").unwrap();
        let web = ServiceName::parse("web").unwrap();
        let scoped = caller(TokenRole::Deployer, &["api"]);
        assert!(scoped.may_deploy(&api).is_ok());
        assert!(scoped.may_deploy(&web).is_err());
        assert!(caller(TokenRole::Deployer, &[]).may_deploy(&web).is_ok());
        assert!(caller(TokenRole::Admin, &[]).may_deploy(&web).is_ok());
        assert!(caller(TokenRole::Viewer, &[]).may_deploy(&web).is_err());
    }

    #[test]
    fn paths_are_classified() {
        assert!(matches!(classify("/healthz"), Area::Open));
        assert!(matches!(classify("/raft/vote"), Area::Internal));
        assert!(matches!(classify("/internal/v1/propose"), Area::Internal));
        assert!(matches!(
            classify("/v1/agents/register"),
            Area::AgentRegister
        ));
        assert!(
            matches!(classify("/v1/agents/web-1/heartbeat"), Area::AgentHeartbeat(s) if s == "web-1")
        );
        assert!(matches!(classify("/v1/agents/a/b/heartbeat"), Area::Api));
        assert!(matches!(classify("/v1/servers"), Area::Api));
        assert!(matches!(classify("/nothing"), Area::Api));
        assert!(matches!(classify("/ui/login"), Area::UiOpen));
        assert!(matches!(classify("/ui/assets/app.js"), Area::UiOpen));
        assert!(matches!(classify("/ui/"), Area::Ui));
        assert!(matches!(classify("/ui"), Area::Ui));
        assert!(matches!(classify("/uix"), Area::Api));
    }

    #[test]
    fn hashes_are_hex_sha256() {
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
