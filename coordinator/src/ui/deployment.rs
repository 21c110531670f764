//! One deployment: its state, timeline, per-server steps, validation, log tails, canary
//! steps and measurements, and (for who may act on its service) the buttons.
//!
//! Live without a reload: the page's script follows `GET /ui/deployments/{id}/events` (the
//! API's SSE stream, served under `/ui` so the session cookie admits it) and on each event
//! swaps in `GET /ui/deployments/{id}/live`, the same HTML the page was rendered with.
//! Without JavaScript the page is complete as served.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use sluice_common::api::DeploymentView;
use sluice_common::deployment::{DeploymentState, SubState};

use super::html::{badge, esc, t, table, when, wire};
use super::session::CsrfForm;
use super::{api_error, error_page, harden, page, Ctx};
use crate::api::App;

async fn load(app: &App, ctx: &Ctx, id: &str) -> Result<DeploymentView, Response> {
    crate::api::deployments::get(State(app.clone()), Path(id.to_string()))
        .await
        .map(|j| j.0)
        .map_err(|e| api_error(Some(ctx), e))
}

/// `GET /ui/deployments/{id}`.
pub async fn show(State(app): State<App>, ctx: Ctx, Path(id): Path<String>) -> Response {
    match load(&app, &ctx, &id).await {
        Ok(d) => {
            let body = format!(
                "<p class=\"sub\">{} <code>{}</code> · {}</p>\
                 <div id=\"live\" data-live=\"/ui/deployments/{id}/live\" data-events=\"/ui/deployments/{id}/events\" aria-live=\"polite\">{}</div>",
                t(&d.service),
                t(&d.image),
                esc(&d.id.to_string()),
                live_html(&ctx, &d),
                id = d.id
            );
            page(Some(&ctx), StatusCode::OK, "Deployment", &body)
        }
        Err(r) => r,
    }
}

/// `GET /ui/deployments/{id}/live`: the changing part of the page.
pub async fn live(State(app): State<App>, ctx: Ctx, Path(id): Path<String>) -> Response {
    match load(&app, &ctx, &id).await {
        Ok(d) => {
            let mut r = live_html(&ctx, &d).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            harden(r)
        }
        Err(r) => r,
    }
}

fn settled(d: &DeploymentView) -> bool {
    matches!(
        d.sub_state,
        SubState::Done | SubState::Noop | SubState::GaveUp
    )
}

fn live_html(ctx: &Ctx, d: &DeploymentView) -> String {
    let state = wire(&d.state);
    let mut out = format!(
        "<section class=\"card summary\" data-settled=\"{}\"><dl>\
         <dt>state</dt><dd><span id=\"state\" data-state=\"{}\">{}</span> <span class=\"muted\">{}</span></dd>\
         <dt>phase</dt><dd id=\"phase\">{}</dd>\
         <dt>targets</dt><dd>{}</dd><dt>by</dt><dd>{}</dd>\
         <dt>created</dt><dd>{}</dd><dt>updated</dt><dd>{}</dd>\
         <dt>lock token</dt><dd>{}</dd></dl>",
        settled(d),
        esc(&state),
        badge(&state),
        t(d.sub_state),
        esc(d.phase.as_str()),
        d.targets.iter().map(t).collect::<Vec<_>>().join(", "),
        t(&d.actor),
        when(d.created_at),
        when(d.updated_at),
        d.token.map_or("—".into(), t),
    );
    if let Some(f) = &d.failure {
        out.push_str(&format!("<p class=\"error\" role=\"alert\">{}</p>", esc(f)));
    }
    if d.noop {
        out.push_str("<p>The image already ran healthy everywhere: nothing was touched.</p>");
    }
    out.push_str(&buttons(ctx, d));
    out.push_str("</section>");
    out.push_str(&timeline(d));
    out.push_str(&steps(d));
    out.push_str(&validation(d));
    out.push_str(&canary(d));
    let env: Vec<Vec<String>> = d.env.iter().map(|(k, v)| vec![t(k), esc(v)]).collect();
    if !env.is_empty() {
        out.push_str(&table(
            "Environment (secret values redacted)",
            &["name", "value"],
            &env,
        ));
    }
    out
}

/// The buttons this caller may press now, each a form with the CSRF token and a
/// confirmation box the browser requires (the script asks again).
fn buttons(ctx: &Ctx, d: &DeploymentView) -> String {
    if !ctx.may_act(&d.service) {
        return String::new();
    }
    let active = matches!(
        d.state,
        DeploymentState::Pending | DeploymentState::Validating | DeploymentState::InProgress
    ) && !d.cancel_requested;
    let mut actions: Vec<(&str, &str)> = Vec::new();
    if d.state == DeploymentState::Success && !d.rollback_requested && !d.noop {
        actions.push(("rollback", "Roll back"));
    }
    if active {
        if d.canary.is_some() {
            if !d.canary.as_ref().is_some_and(|c| c.promoted) {
                actions.push(("promote", "Promote"));
            }
            actions.push(("abort", "Abort"));
        } else {
            actions.push(("cancel", "Cancel"));
        }
    }
    actions
        .iter()
        .map(|(action, label)| {
            format!(
                "<form method=\"post\" action=\"/ui/deployments/{id}/{action}\" class=\"action\" data-confirm=\"{label} deployment {id} of {svc}?\">{csrf}\
                 <label><input type=\"checkbox\" name=\"confirm\" value=\"yes\" required> I mean it</label>\
                 <button type=\"submit\" id=\"btn-{action}\">{label}</button></form>",
                id = d.id,
                svc = t(&d.service),
                csrf = ctx.csrf_field(),
            )
        })
        .collect()
}

fn timeline(d: &DeploymentView) -> String {
    let rows: Vec<Vec<String>> = d
        .transitions
        .iter()
        .map(|tr| {
            vec![
                when(tr.at),
                format!("{} → {}", badge(&wire(&tr.from)), badge(&wire(&tr.to))),
                esc(&tr.reason),
            ]
        })
        .collect();
    table("Timeline", &["when", "transition", "why"], &rows)
}

fn steps(d: &DeploymentView) -> String {
    let mut tails = String::new();
    let rows: Vec<Vec<String>> = d
        .servers
        .iter()
        .map(|s| {
            if let Some(tail) = &s.log_tail {
                tails.push_str(&format!(
                    "<details open><summary>Log tail on {}</summary><pre>{}</pre></details>",
                    t(&s.server),
                    esc(tail)
                ));
            }
            vec![
                t(&s.server),
                badge(&wire(&s.state)),
                s.port.map_or("—".into(), t),
                esc(&s.detail),
            ]
        })
        .collect();
    table("Servers", &["server", "step", "port", "detail"], &rows) + &tails
}

fn validation(d: &DeploymentView) -> String {
    if d.validation.is_empty() {
        return String::new();
    }
    let failed = d.validation.iter().filter(|c| !c.ok).count();
    let mut checks: Vec<_> = d.validation.iter().collect();
    checks.sort_by_key(|c| c.ok); // failed ones first
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            vec![
                esc(&c.check),
                t(&c.server),
                badge(if c.ok { "passed" } else { "failed" }),
                esc(&c.detail),
                format!("{} ms", c.duration_ms),
            ]
        })
        .collect();
    table(
        &format!("Validation ({failed} failed of {})", d.validation.len()),
        &["check", "server", "result", "detail", "took"],
        &rows,
    )
}

fn canary(d: &DeploymentView) -> String {
    let Some(c) = &d.canary else {
        return String::new();
    };
    let mut out = format!(
        "<section class=\"card\"><h2>Canary</h2><p>step {} of {} · weight {} % · since {}{}{}</p></section>",
        c.step.saturating_add(1).min(c.steps.saturating_add(1)),
        c.steps,
        c.weight,
        when(c.step_at),
        c.paused.as_ref().map_or(String::new(), |p| format!(" · paused: {}", esc(p))),
        if c.promoted { " · promoted" } else { "" },
    );
    let rows: Vec<Vec<String>> = c
        .measurements
        .iter()
        .rev()
        .take(50)
        .map(|m| {
            vec![
                when(m.at),
                t(m.step),
                esc(&m.check),
                m.value.map_or("no data".into(), |v| format!("{v:.4}")),
                esc(&m.condition),
                badge(&wire(&m.outcome)),
                esc(&m.detail),
            ]
        })
        .collect();
    out.push_str(&table(
        "Analysis measurements (newest first, last 50)",
        &[
            "when",
            "step",
            "check",
            "value",
            "condition",
            "outcome",
            "detail",
        ],
        &rows,
    ));
    out
}

/// `POST /ui/deployments/{id}/{action}`: roll back, cancel, promote or abort, through the
/// same handlers as the API (same scope checks, same audit records).
pub async fn act(
    State(app): State<App>,
    ctx: Ctx,
    Path((id, action)): Path<(String, String)>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let form = form.ok().map(|Form(f)| f);
    if let Some(r) = ctx.csrf_refusal(form.as_ref().and_then(|f| f.csrf.as_deref())) {
        return r;
    }
    if form.as_ref().and_then(|f| f.confirm.as_deref()) != Some("yes") {
        return error_page(
            Some(&ctx),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "tick the confirmation box to go ahead",
        );
    }
    let (s, c, p) = (State(app), Extension(ctx.caller.clone()), Path(id.clone()));
    let done = match action.as_str() {
        "rollback" => crate::api::deployments::rollback(s, c, p).await,
        // A canary's abort is its cancel.
        "cancel" | "abort" => crate::api::deployments::cancel(s, c, p).await,
        "promote" => crate::api::canary::promote(s, c, p).await,
        other => {
            return error_page(
                Some(&ctx),
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no console action {other:?}"),
            )
        }
    };
    match done {
        Ok(_) => Redirect::to(&format!("/ui/deployments/{}", esc(&id))).into_response(),
        Err(e) => api_error(Some(&ctx), e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::auth::Caller;
    use crate::api::console::ConsoleSession;
    use crate::state::tokens::TokenRole;
    use serde_json::json;

    fn ctx(role: TokenRole, services: &[&str]) -> Ctx {
        Ctx {
            caller: Caller {
                actor: "token:t".into(),
                role,
                services: services
                    .iter()
                    .map(|s| sluice_common::names::ServiceName::parse(s).unwrap())
                    .collect(),
            },
            session: ConsoleSession::new("session-secret"),
        }
    }

    /// A failed canary whose agent-reported texts carry markup.
    fn failed_canary() -> DeploymentView {
        let evil = "<script>alert(1)</script>";
        serde_json::from_value(json!({
            "id": "0190a6e2-0000-7000-8000-000000000001", "service": "web",
            "image": "web:v2", "state": "in_progress", "sub_state": "running",
            "phase": "canary step 1/2", "token": 7, "targets": ["web-1"],
            "transitions": [{"from": "validating", "to": "in_progress", "at": "2026-01-01T00:00:00Z", "reason": evil}],
            "validation": [
                {"check": "image_exists", "server": "web-1", "ok": true, "detail": "present", "duration_ms": 3},
                {"check": "port_available", "server": "web-1", "ok": false, "detail": evil, "duration_ms": 5}
            ],
            "servers": [{"server": "web-1", "port": 20000, "state": "deploying", "operation": null,
                         "rollback_operation": null, "detail": "30%", "log_tail": evil}],
            "failure": null,
            "canary": {"step": 0, "steps": 2, "weight": 30, "step_at": "2026-01-01T00:00:00Z",
                       "paused": null, "promoted": false, "measurements": [
                {"step": 0, "check": "errors", "at": "2026-01-01T00:00:01Z", "value": 0.5,
                 "condition": "value <= 0.05", "outcome": "failed", "detail": evil}]},
            "noop": false, "rollback_requested": false, "cancel_requested": false,
            "env": {"DB_PASSWORD": "<redacted>"}, "actor": "token:ci",
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:02Z"
        }))
        .expect("a deployment view")
    }

    #[test]
    fn agent_texts_are_escaped_and_failures_shown() {
        let html = live_html(&ctx(TokenRole::Viewer, &[]), &failed_canary());
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("Validation (1 failed of 2)"));
        assert!(html.contains("Log tail on web-1"));
        assert!(html.contains("step 1 of 2 · weight 30 %"));
        assert!(html.contains("value &lt;= 0.05"));
        assert!(html.contains("data-settled=\"false\""));
    }

    #[test]
    fn buttons_follow_role_scope_and_state() {
        let d = failed_canary();
        let forms = |c: &Ctx| live_html(c, &d).matches("<form").count();
        assert_eq!(forms(&ctx(TokenRole::Viewer, &[])), 0);
        assert_eq!(forms(&ctx(TokenRole::Deployer, &["other"])), 0);
        let own = live_html(&ctx(TokenRole::Deployer, &["web"]), &d);
        assert!(
            own.contains("/promote\"") && own.contains("/abort\""),
            "{own}"
        );
        assert!(!own.contains("/rollback\""));
        assert!(own.contains("name=\"csrf\""));
        let mut done = d.clone();
        done.state = DeploymentState::Success;
        done.sub_state = SubState::Done;
        let admin = live_html(&ctx(TokenRole::Admin, &[]), &done);
        assert!(admin.contains("/rollback\"") && !admin.contains("/abort\""));
    }
}
