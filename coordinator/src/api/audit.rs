//! `GET /v1/audit`: the audit trail, filtered and paged, as JSON or JSON lines.

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use sluice_common::audit::{AuditPage, AuditRecord};
use sluice_common::problem::{ErrorCode, Problem};
use sluice_common::time::Timestamp;

use super::error::ApiError;
use super::App;
use sluice_common::names::ServiceName;

/// The filters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only records about this service.
    #[param(value_type = Option<ServiceName>)]
    service: Option<String>,
    /// Only records by this actor (exact).
    actor: Option<String>,
    /// Only this action (`lock.acquire`), or a family (`deployment`).
    action: Option<String>,
    /// At or after this time (RFC 3339).
    #[param(value_type = Option<Timestamp>)]
    since: Option<String>,
    /// Before this time (RFC 3339).
    #[param(value_type = Option<Timestamp>)]
    until: Option<String>,
    /// Records after this sequence number (paging).
    after: Option<u64>,
    /// Page size: default 100, at most 1000. Ignored by `format=jsonl`, which exports every
    /// matching record.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 1000, default = 100)]
    limit: Option<usize>,
    /// `json` (a page) or `jsonl` (an export, one record per line).
    #[param(value_type = Option<String>, pattern = "^(json|jsonl)$", default = "json")]
    format: Option<String>,
}

fn bad(field: &str, detail: String) -> ApiError {
    ApiError::from(
        Problem::new(ErrorCode::InvalidRequest, detail.clone()).with_field(field, detail),
    )
}

/// An RFC 3339 query parameter, refused by name when it does not parse.
pub(super) fn time(field: &str, v: Option<&String>) -> Result<Option<Timestamp>, ApiError> {
    v.map(|s| {
        Timestamp::parse(s).map_err(|e| bad(field, format!("{field}: {e} (RFC 3339 expected)")))
    })
    .transpose()
}

/// `GET /v1/audit`.
#[utoipa::path(
    get,
    path = "/v1/audit",
    operation_id = "listAudit",
    tag = "audit",
    summary = "The audit trail, oldest first, filtered and paged.",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page (`format=json`) or every matching record as JSON lines (`format=jsonl`).", content((AuditPage = "application/json"), (String = "application/x-ndjson"))),
    ),
)]
pub async fn list(
    State(app): State<App>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
    if let Some(s) = &q.service {
        sluice_common::names::ServiceName::parse(s)?;
    }
    let since = time("since", q.since.as_ref())?;
    let until = time("until", q.until.as_ref())?;
    let jsonl = match q.format.as_deref() {
        None | Some("json") => false,
        Some("jsonl") => true,
        Some(other) => return Err(bad("format", format!("format {other:?}: json or jsonl"))),
    };
    let limit = match q.limit {
        _ if jsonl => usize::MAX,
        None => 100,
        Some(n @ 1..=1000) => n,
        Some(n) => return Err(bad("limit", format!("limit {n}: 1 to 1000"))),
    };
    let matches = |r: &AuditRecord| {
        q.service
            .as_deref()
            .is_none_or(|s| r.service.as_deref() == Some(s))
            && q.actor.as_deref().is_none_or(|a| r.actor == a)
            && q.action.as_deref().is_none_or(|a| {
                r.action == a
                    || r.action
                        .strip_prefix(a)
                        .is_some_and(|rest| rest.starts_with('.'))
            })
            && since.is_none_or(|t| r.at >= t)
            && until.is_none_or(|t| r.at < t)
    };
    app.node.linearizable().await?;
    let page = app.node.read(|a| {
        let mut records = Vec::new();
        let mut next_after = None;
        for r in a.state.audit.after(q.after.unwrap_or(0)) {
            if !matches(r) {
                continue;
            }
            if records.len() == limit {
                next_after = records.last().map(|r: &AuditRecord| r.seq);
                break;
            }
            records.push(r.clone());
        }
        AuditPage {
            records,
            next_after,
        }
    });
    if !jsonl {
        return Ok(Json(page).into_response());
    }
    let mut body = String::new();
    for r in &page.records {
        body.push_str(&serde_json::to_string(r).expect("records encode"));
        body.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}
