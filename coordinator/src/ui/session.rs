//! Sign-in and sign-out.
//!
//! The token is posted in a form body (never a URL), checked like a bearer token, and
//! exchanged for a fresh random session secret that only the browser holds, in an
//! `HttpOnly`, `Secure`, `SameSite=Strict` cookie. The cluster stores the secret's SHA-256
//! (`state::sessions`), so every node accepts the session and sign-out, a Raft entry,
//! ends it everywhere. The token itself is dropped once checked: it is in no page, no log,
//! no record.

use std::time::{Duration, SystemTime};

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use sluice_common::time::Timestamp;

use super::html::esc;
use super::{api_error, error_page, page, Ctx};
use crate::api::auth::hash_secret;
use crate::api::console::SESSION_COOKIE;
use crate::api::App;
use crate::state::sessions::{SessionCommand, SessionRecord};
use crate::state::tokens::TokenRole;
use crate::state::Command;

/// How long a console session lasts (a working day; sign in again after).
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

fn login_page(status: StatusCode, message: Option<&str>) -> Response {
    let alert = message.map_or(String::new(), |m| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m))
    });
    page(
        None,
        status,
        "Sign in",
        &format!(
            "{alert}<form method=\"post\" action=\"/ui/login\" class=\"card login\">\
             <label for=\"token\">API token (viewer, deployer or admin)</label>\
             <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required>\
             <button type=\"submit\">Sign in</button>\
             <p class=\"hint\">The token is exchanged for a session cookie valid {} hours; \
             it is not kept by the browser.</p></form>",
            SESSION_TTL.as_secs() / 3600
        ),
    )
}

/// `GET /ui/login`.
pub async fn form() -> Response {
    login_page(StatusCode::OK, None)
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct SignIn {
    token: String,
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignIn { token: <redacted> }")
    }
}

/// A form posted from another origin (a login CSRF) is refused: browsers send `Origin`
/// with every POST. The host is the `Host` header (HTTP/1.1) or the `:authority` (h2).
fn same_origin(headers: &HeaderMap, uri: &Uri) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    origin.strip_prefix("https://") == Some(host)
}

/// `POST /ui/login`: checks the token, opens a session, sets the cookie.
pub async fn sign_in(
    State(app): State<App>,
    uri: Uri,
    headers: HeaderMap,
    form: Result<Form<SignIn>, FormRejection>,
) -> Response {
    if !same_origin(&headers, &uri) {
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        return error_page(
            None,
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!(
                "a sign-in posted from another origin ({}) is refused",
                origin.unwrap_or("?")
            ),
        );
    }
    let Ok(Form(form)) = form else {
        return login_page(StatusCode::BAD_REQUEST, Some("Give an API token."));
    };
    let hash = hash_secret(form.token.trim());
    drop(form);
    let who = if app.bootstrap_admin.as_deref() == Some(hash.as_str()) {
        Some((
            "bootstrap-admin".to_string(),
            None,
            TokenRole::Admin,
            Vec::new(),
        ))
    } else {
        app.node.read(|a| {
            a.state.tokens.find_live(&hash).map(|t| {
                (
                    format!("token:{}", t.name),
                    Some(t.name.clone()),
                    t.role,
                    t.services.clone(),
                )
            })
        })
    };
    let Some((actor, token, role, services)) = who else {
        tracing::info!("console sign-in refused: unknown or revoked token");
        return login_page(StatusCode::UNAUTHORIZED, Some("Unknown or revoked token."));
    };
    let secret = match crate::api::tokens::new_secret() {
        Ok(s) => s,
        Err(e) => return api_error(None, e),
    };
    let now = Timestamp::from_system(SystemTime::now());
    let cmd = SessionCommand::Open {
        hash: hash_secret(&secret),
        session: SessionRecord {
            actor: actor.clone(),
            token,
            role,
            services,
            created_at: now,
            expires_at: now.plus(SESSION_TTL),
        },
    };
    if let Err(e) = propose(&app, &actor, cmd).await {
        return api_error(None, e);
    }
    tracing::info!(%actor, "console session opened");
    let cookie = format!(
        "{SESSION_COOKIE}={secret}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    with_cookie(Redirect::to("/ui/").into_response(), &cookie)
}

async fn propose(
    app: &App,
    actor: &str,
    cmd: SessionCommand,
) -> Result<(), crate::api::error::ApiError> {
    app.node.propose(actor, Command::Session { cmd }).await?;
    // The next request (the redirect) must find the session on this node.
    app.node.linearizable().await?;
    Ok(())
}

fn with_cookie(mut r: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// The sign-out form (and every other button's): the CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    /// The session's CSRF token.
    pub csrf: Option<String>,
    /// The confirmation box of a button.
    pub confirm: Option<String>,
}

/// `POST /ui/logout`: closes the session on the cluster and clears the cookie.
pub async fn sign_out(
    State(app): State<App>,
    ctx: Ctx,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let csrf = form.ok().and_then(|Form(f)| f.csrf);
    if let Some(r) = ctx.csrf_refusal(csrf.as_deref()) {
        return r;
    }
    let cmd = SessionCommand::Close {
        hash: ctx.session.hash.clone(),
    };
    if let Err(e) = propose(&app, &ctx.caller.actor, cmd).await {
        return api_error(Some(&ctx), e);
    }
    tracing::info!(actor = %ctx.caller.actor, "console session closed");
    let cookie = format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    with_cookie(Redirect::to("/ui/login").into_response(), &cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_origin_may_post_the_sign_in() {
        let path: Uri = "/ui/login".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("c1:7000"));
        assert!(same_origin(&h, &path));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://c1:7000"));
        assert!(same_origin(&h, &path));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h, &path));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://c1:7000"));
        assert!(!same_origin(&h, &path));
        // h2: no Host header, the authority is in the URI.
        let h2: Uri = "https://c1:7000/ui/login".parse().unwrap();
        h.remove(header::HOST);
        h.insert(header::ORIGIN, HeaderValue::from_static("https://c1:7000"));
        assert!(same_origin(&h, &h2));
        assert!(!same_origin(&h, &path));
    }
}
