//! The web console at `/ui/`: server-rendered pages over the same state the API reads,
//! served by every coordinator on its HTTPS listener.
//!
//! # Layout
//! - [`html`]: the one escaping function and the few builders the pages use;
//! - [`session`]: sign-in with an API token, exchanged for a session cookie; sign-out;
//! - [`fleet`]: services × servers, and the servers;
//! - [`deployment`]: one deployment (live over the API's SSE stream) and its buttons;
//! - [`lists`]: deployments, locks, the audit trail, the cluster.
//!
//! The assets (one stylesheet, one small script) are compiled into the binary. Pages work
//! without JavaScript; the script only makes the deployment page live and asks for a
//! confirmation before a button acts. The route guard (`api::auth`) admits a `/ui` request
//! only with a live session, and `api::console` decides what a session may post; every
//! form carries the session's CSRF token, checked by [`Ctx::csrf_refusal`].
//!
//! Nothing here is in the OpenAPI document: the console is not an API.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::api::auth::Caller;
use crate::api::console::ConsoleSession;
use crate::api::error::ApiError;
use crate::api::App;

mod deployment;
mod fleet;
pub mod html;
mod lists;
mod session;

use html::esc;

/// Console forms are a CSRF token and a few words.
const FORM_LIMIT: usize = 16 * 1024;

/// The console's routes (behind the same route guard as everything else).
pub fn router() -> Router<App> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(fleet::show))
        .route("/ui/login", get(session::form).post(session::sign_in))
        .route("/ui/logout", post(session::sign_out))
        .route("/ui/assets/app.css", get(css))
        .route("/ui/assets/app.js", get(js))
        .route("/ui/assets/icon.svg", get(icon))
        .route("/ui/deployments", get(lists::deployments))
        .route("/ui/deployments/{id}", get(deployment::show))
        .route("/ui/deployments/{id}/live", get(deployment::live))
        .route(
            "/ui/deployments/{id}/events",
            get(crate::api::deployments::events),
        )
        .route("/ui/deployments/{id}/{action}", post(deployment::act))
        .route("/ui/locks", get(lists::locks))
        .route("/ui/audit", get(lists::audit))
        .route("/ui/audit/export", get(lists::audit_export))
        .route("/ui/cluster", get(lists::cluster))
        .layer(axum::extract::DefaultBodyLimit::max(FORM_LIMIT))
}

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");
const ICON: &str = include_str!("assets/icon.svg");

async fn css() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

async fn js() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}

async fn icon() -> Response {
    asset(ICON, "image/svg+xml")
}

fn asset(body: &'static str, ctype: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Who is looking: the caller and its console session, as the route guard left them.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The caller (role and scope of the token that signed in).
    pub caller: Caller,
    /// The session (its CSRF token).
    pub session: ConsoleSession,
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let caller = parts.extensions.get::<Caller>().cloned();
        let session = parts.extensions.get::<ConsoleSession>().cloned();
        match (caller, session) {
            (Some(caller), Some(session)) => Ok(Self { caller, session }),
            _ => Err(Redirect::to("/ui/login").into_response()),
        }
    }
}

impl Ctx {
    /// The refusal (403, as a page) of a form without this session's CSRF token.
    pub fn csrf_refusal(&self, presented: Option<&str>) -> Option<Response> {
        match presented {
            Some(p) if self.session.csrf_ok(p) => None,
            _ => Some(error_page(
                Some(self),
                StatusCode::FORBIDDEN,
                "forbidden",
                "This form is missing its CSRF token or carries a stale one. Reload the page and try again.",
            )),
        }
    }

    /// The hidden CSRF field of a form.
    pub fn csrf_field(&self) -> String {
        format!(
            "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
            esc(&self.session.csrf)
        )
    }

    /// Whether this caller may press the buttons of a deployment of `service`.
    pub fn may_act(&self, service: &sluice_common::names::ServiceName) -> bool {
        self.caller.may_deploy(service).is_ok()
    }
}

/// The security headers of every page: nothing from elsewhere (no CDN, no inline script),
/// not framed, not cached, no referrer sent to other origins (`same-origin` rather than
/// `no-referrer`, under which browsers send `Origin: null` with the page's own forms).
fn harden(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// A whole page: the navigation (for a signed-in caller), the title and `body` (HTML).
pub fn page(ctx: Option<&Ctx>, status: StatusCode, title: &str, body: &str) -> Response {
    let nav = match ctx {
        None => String::new(),
        Some(c) => format!(
            "<nav aria-label=\"Console\"><a class=\"brand\" href=\"/ui/\">Sluice</a>\
             <a href=\"/ui/\">Fleet</a><a href=\"/ui/deployments\">Deployments</a>\
             <a href=\"/ui/locks\">Locks</a><a href=\"/ui/audit\">Audit</a>\
             <a href=\"/ui/cluster\">Cluster</a>\
             <span class=\"who\">{} <span class=\"role\">{}</span></span>\
             <form method=\"post\" action=\"/ui/logout\" class=\"inline\">{}\
             <button type=\"submit\">Sign out</button></form></nav>",
            esc(&c.caller.actor),
            esc(&c.caller.role.to_string()),
            c.csrf_field()
        ),
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Sluice</title><link rel=\"stylesheet\" href=\"/ui/assets/app.css\">\
         <link rel=\"icon\" href=\"/ui/assets/icon.svg\" type=\"image/svg+xml\">\
         <script src=\"/ui/assets/app.js\" defer></script></head>\
         <body><header>{nav}</header><main id=\"main\"><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(title)
    );
    let mut r = (status, html).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    harden(r)
}

/// An error as a readable page with its stable code.
pub fn error_page(ctx: Option<&Ctx>, status: StatusCode, code: &str, detail: &str) -> Response {
    page(
        ctx,
        status,
        "Refused",
        &format!(
            "<p class=\"error\" role=\"alert\"><code>{}</code>: {}</p><p><a href=\"/ui/\">Back to the fleet</a></p>",
            esc(code),
            esc(detail)
        ),
    )
}

/// An API error as a page.
pub fn api_error(ctx: Option<&Ctx>, e: ApiError) -> Response {
    let p = e.0;
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error_page(ctx, status, p.code.as_str(), &p.detail)
}
