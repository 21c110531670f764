//! The console's side of the route guard ([`super::auth`]): its session cookie, the CSRF
//! token derived from it, and what a console session may post.

use axum::extract::Request;
use axum::http::{header, Method};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::auth::{forbidden, hash_secret, Caller};
use super::error::ApiError;
use super::App;
use crate::state::tokens::TokenRole;

/// The console's session cookie. The `__Host-` prefix makes browsers insist on `Secure`,
/// `Path=/` and no `Domain`, so no other host or plain-HTTP page can set or shadow it.
pub const SESSION_COOKIE: &str = "__Host-sluice_session";

/// The console session of a `/ui` request, in its extensions beside the [`Caller`].
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    /// The hex SHA-256 of the cookie's secret: what sign-out closes.
    pub hash: String,
    /// The CSRF token every console form carries: an HMAC of a fixed label keyed by the
    /// session's secret. Only a page of this origin, served to this session, holds it; it
    /// needs no state of its own and is the same on every node.
    pub csrf: String,
}

impl ConsoleSession {
    /// The session of the cookie secret `secret`.
    pub fn new(secret: &str) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(b"sluice-console-csrf");
        let csrf = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            hash: hash_secret(secret),
            csrf,
        }
    }

    /// Whether `presented` is this session's CSRF token (compared in constant time).
    pub fn csrf_ok(&self, presented: &str) -> bool {
        presented.len() == self.csrf.len()
            && presented
                .bytes()
                .zip(self.csrf.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// The caller behind the request's console session cookie, if it names a live session
/// whose token (when it came from one) is not revoked.
pub(super) fn console_session(app: &App, req: &Request) -> Option<(Caller, ConsoleSession)> {
    let secret = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())?;
    let session = ConsoleSession::new(&secret);
    let now = sluice_common::time::Timestamp::from_system(std::time::SystemTime::now());
    let caller = app.node.read(|a| {
        let s = a.state.sessions.find_live(&session.hash, now)?;
        if let Some(name) = &s.token {
            a.state.tokens.by_name.get(name).filter(|t| !t.revoked)?;
        }
        Some(Caller {
            actor: s.actor.clone(),
            role: s.role,
            services: s.services.clone(),
        })
    })?;
    Some((caller, session))
}

/// Whether `caller` may `method` on console `path`: everyone reads and signs out;
/// deployers and admins post the deployment buttons (their scope is checked by the same
/// handlers as the API's); nothing else changes state through the console.
pub(super) fn authorize(caller: &Caller, method: &Method, path: &str) -> Result<(), ApiError> {
    if method == Method::GET || method == Method::HEAD || path == "/ui/logout" {
        return Ok(());
    }
    let action = path.strip_prefix("/ui/deployments/").is_some_and(|rest| {
        ["/rollback", "/cancel", "/abort", "/promote"]
            .iter()
            .any(|a| rest.ends_with(a))
    });
    match caller.role {
        TokenRole::Deployer | TokenRole::Admin if action => Ok(()),
        _ => Err(forbidden(format!(
            "a {} session may not {method} {path}",
            caller.role
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_common::names::ServiceName;

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
    fn console_posts_follow_the_role() {
        let viewer = caller(TokenRole::Viewer, &[]);
        let deployer = caller(TokenRole::Deployer, &["api"]);
        let post = Method::POST;
        assert!(authorize(&viewer, &Method::GET, "/ui/deployments/x").is_ok());
        assert!(authorize(&viewer, &post, "/ui/logout").is_ok());
        assert!(authorize(&viewer, &post, "/ui/deployments/x/rollback").is_err());
        assert!(authorize(&deployer, &post, "/ui/deployments/x/rollback").is_ok());
        assert!(authorize(&deployer, &post, "/ui/servers/x/cordon").is_err());
    }

    #[test]
    fn csrf_tokens_are_per_session_and_compared_whole() {
        let a = ConsoleSession::new("secret-a");
        let b = ConsoleSession::new("secret-b");
        assert_ne!(a.csrf, b.csrf);
        assert_eq!(a.csrf.len(), 64);
        assert!(a.csrf_ok(&a.csrf.clone()));
        assert!(!a.csrf_ok(&b.csrf));
        assert!(!a.csrf_ok(""));
        assert!(!a.csrf_ok(&a.csrf[..63]));
    }
}
