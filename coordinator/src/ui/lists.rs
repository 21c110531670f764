//! The list pages: deployments, locks, the audit trail, the cluster. Each reads through
//! the API's own handler (same filters, same validation, same limits); a filter form is a
//! plain `GET` form, so a filtered page is a link one can share.

use std::collections::BTreeMap;

use axum::extract::{Query, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use sluice_common::api::DeploymentList;
use sluice_common::audit::AuditPage;
use sluice_common::deployment::DeploymentState;
use sluice_common::problem::ErrorCode;

use super::html::{badge, esc, q, t, table, when, wire};
use super::{api_error, page, Ctx};
use crate::api::error::ApiError;
use crate::api::App;

/// The non-empty fields of a filter form, in order.
fn fields(raw: Option<&str>, allowed: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
    let pairs: Vec<(String, String)> = Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{}", raw.unwrap_or(""))
            .parse::<Uri>()
            .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "unreadable query"))?,
    )
    .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?
    .0;
    let mut out = BTreeMap::new();
    for (k, v) in pairs {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("unknown filter {k:?}"),
            ));
        }
        if !v.trim().is_empty() {
            out.insert(k, v.trim().to_string());
        }
    }
    Ok(out)
}

fn query_string(f: &BTreeMap<String, String>) -> String {
    f.iter()
        .map(|(k, v)| format!("{k}={}", q(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The API's query extractor over the given fields.
fn api_query<T: serde::de::DeserializeOwned>(
    f: &BTreeMap<String, String>,
) -> Result<Query<T>, axum::extract::rejection::QueryRejection> {
    let uri: Uri = format!("/?{}", query_string(f))
        .parse()
        .expect("percent-encoded");
    Query::try_from_uri(&uri)
}

fn input(name: &str, label: &str, value: Option<&String>) -> String {
    format!(
        "<label>{} <input name=\"{name}\" value=\"{}\"></label>",
        esc(label),
        esc(value.map_or("", |v| v.as_str()))
    )
}

/// `GET /ui/deployments?service=&state=&since=&until=&before=`.
pub async fn deployments(State(app): State<App>, ctx: Ctx, RawQuery(raw): RawQuery) -> Response {
    let f = match fields(
        raw.as_deref(),
        &["service", "state", "since", "until", "before", "limit"],
    ) {
        Ok(f) => f,
        Err(e) => return api_error(Some(&ctx), e),
    };
    let list: DeploymentList = match crate::api::deployments::list(State(app), api_query(&f)).await
    {
        Ok(j) => j.0,
        Err(e) => return api_error(Some(&ctx), e),
    };
    let states: String = [
        DeploymentState::Pending,
        DeploymentState::Validating,
        DeploymentState::InProgress,
        DeploymentState::Success,
        DeploymentState::Failed,
        DeploymentState::RolledBack,
    ]
    .iter()
    .map(|s| {
        let w = wire(s);
        let sel = if f.get("state") == Some(&w) {
            " selected"
        } else {
            ""
        };
        format!("<option{sel}>{w}</option>")
    })
    .collect();
    let mut body = format!(
        "<form method=\"get\" class=\"filters\">{}<label>state <select name=\"state\"><option value=\"\">any</option>{states}</select></label>{}{}<button type=\"submit\">Filter</button></form>",
        input("service", "service", f.get("service")),
        input("since", "since (RFC 3339)", f.get("since")),
        input("until", "until", f.get("until")),
    );
    let rows: Vec<Vec<String>> = list
        .deployments
        .iter()
        .map(|d| {
            vec![
                format!(
                    "<a href=\"/ui/deployments/{}\">{}</a>",
                    d.id,
                    &d.id.to_string()[..8]
                ),
                t(&d.service),
                format!("<code>{}</code>", t(&d.image)),
                badge(&wire(&d.state)),
                esc(d.phase.as_str()),
                t(&d.actor),
                when(d.created_at),
            ]
        })
        .collect();
    body.push_str(&table(
        "Deployments, newest first",
        &["id", "service", "image", "state", "phase", "by", "created"],
        &rows,
    ));
    if let Some(next) = &list.next {
        let mut nf = f.clone();
        nf.insert("before".into(), next.clone());
        body.push_str(&format!(
            "<p><a rel=\"next\" href=\"/ui/deployments?{}\">Older →</a></p>",
            esc(&query_string(&nf))
        ));
    }
    page(Some(&ctx), StatusCode::OK, "Deployments", &body)
}

/// `GET /ui/locks`.
pub async fn locks(State(app): State<App>, ctx: Ctx) -> Response {
    let list = match crate::api::locks::list(State(app)).await {
        Ok(j) => j.0,
        Err(e) => return api_error(Some(&ctx), e),
    };
    let rows: Vec<Vec<String>> = list
        .locks
        .iter()
        .map(|l| {
            vec![
                format!("<code>{}</code>", t(&l.key)),
                t(&l.holder),
                esc(&l.reason),
                t(l.token),
                when(l.acquired_at),
                format!("<time datetime=\"{0}\">{0}</time>", l.expires_at),
            ]
        })
        .collect();
    let body = table(
        "Held locks",
        &[
            "key",
            "holder",
            "reason",
            "fencing token",
            "acquired",
            "expires",
        ],
        &rows,
    );
    page(Some(&ctx), StatusCode::OK, "Locks", &body)
}

const AUDIT_FILTERS: [&str; 6] = ["service", "actor", "action", "since", "until", "after"];

async fn audit_records(app: App, f: &BTreeMap<String, String>) -> Result<Response, ApiError> {
    let query = api_query(f);
    crate::api::audit::list(State(app), query).await
}

/// `GET /ui/audit?service=&actor=&action=&since=&until=&after=[&verify=1]`.
pub async fn audit(State(app): State<App>, ctx: Ctx, RawQuery(raw): RawQuery) -> Response {
    let mut allowed = AUDIT_FILTERS.to_vec();
    allowed.push("verify");
    let mut f = match fields(raw.as_deref(), &allowed) {
        Ok(f) => f,
        Err(e) => return api_error(Some(&ctx), e),
    };
    let verify = f.remove("verify").is_some();
    let resp = match audit_records(app.clone(), &f).await {
        Ok(r) => r,
        Err(e) => return api_error(Some(&ctx), e),
    };
    let bytes = axum::body::to_bytes(resp.into_body(), 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let Ok(page_) = serde_json::from_slice::<AuditPage>(&bytes) else {
        return api_error(
            Some(&ctx),
            ApiError::new(ErrorCode::Internal, "unreadable audit page"),
        );
    };
    let mut body = format!(
        "<form method=\"get\" class=\"filters\">{}{}{}{}{}\
         <button type=\"submit\">Filter</button></form>\
         <p><a href=\"/ui/audit/export?{qs}\" download>Export these records (JSON lines)</a> · \
         <a href=\"/ui/audit?verify=1\">Verify the chain</a></p>",
        input("service", "service", f.get("service")),
        input("actor", "actor", f.get("actor")),
        input("action", "action", f.get("action")),
        input("since", "since (RFC 3339)", f.get("since")),
        input("until", "until", f.get("until")),
        qs = esc(&query_string(&f)),
    );
    if verify {
        let records = app.node.read(|a| a.state.audit.records().to_vec());
        body.push_str(&match sluice_common::audit::verify(&records) {
            Ok(n) => format!("<p class=\"ok\" role=\"status\" id=\"verify\">The chain of {n} records on this node is intact.</p>"),
            Err(e) => format!("<p class=\"error\" role=\"alert\" id=\"verify\">The chain is broken: {}</p>", t(e)),
        });
    }
    let rows: Vec<Vec<String>> = page_
        .records
        .iter()
        .map(|r| {
            vec![
                t(r.seq),
                when(r.at),
                esc(&r.actor),
                format!("<code>{}</code>", esc(&r.action)),
                esc(&r.target),
                esc(&r.outcome),
                format!(
                    "<code class=\"details\">{}</code>",
                    esc(&r.details.to_string())
                ),
            ]
        })
        .collect();
    body.push_str(&table(
        "Audit records, oldest first",
        &[
            "seq", "when", "actor", "action", "target", "outcome", "details",
        ],
        &rows,
    ));
    if let Some(next) = page_.next_after {
        let mut nf = f.clone();
        nf.insert("after".into(), next.to_string());
        body.push_str(&format!(
            "<p><a rel=\"next\" href=\"/ui/audit?{}\">Newer →</a></p>",
            esc(&query_string(&nf))
        ));
    }
    page(Some(&ctx), StatusCode::OK, "Audit", &body)
}

/// `GET /ui/audit/export?…`: every matching record as JSON lines, as a download.
pub async fn audit_export(State(app): State<App>, ctx: Ctx, RawQuery(raw): RawQuery) -> Response {
    let mut f = match fields(raw.as_deref(), &AUDIT_FILTERS) {
        Ok(f) => f,
        Err(e) => return api_error(Some(&ctx), e),
    };
    f.insert("format".into(), "jsonl".into());
    match audit_records(app, &f).await {
        Ok(mut r) => {
            r.headers_mut().insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"sluice-audit.jsonl\""),
            );
            r
        }
        Err(e) => api_error(Some(&ctx), e),
    }
}

/// `GET /ui/cluster`: this node's Raft view, and on the leader each follower's lag.
pub async fn cluster(State(app): State<App>, ctx: Ctx) -> Response {
    let s = crate::api::cluster::status(State(app.clone())).await.0;
    let metrics = app.node.raft.metrics().borrow().clone();
    let matched: BTreeMap<u64, Option<u64>> = metrics
        .replication
        .as_ref()
        .map(|r| r.iter().map(|(id, l)| (*id, l.map(|l| l.index))).collect())
        .unwrap_or_default();
    let opt = |v: Option<u64>| v.map_or("—".to_string(), |v| v.to_string());
    let mut body = format!(
        "<section class=\"card\"><dl><dt>answering node</dt><dd>{}</dd><dt>its role</dt><dd>{}</dd>\
         <dt>leader</dt><dd id=\"leader\">{}</dd><dt>term</dt><dd>{}</dd><dt>last log index</dt><dd>{}</dd>\
         <dt>committed</dt><dd>{}</dd><dt>applied</dt><dd>{}</dd><dt>snapshot</dt><dd>{}</dd>\
         <dt>purged</dt><dd>{}</dd></dl></section>",
        s.node_id,
        badge(&s.state.to_lowercase()),
        opt(s.leader),
        s.term,
        opt(s.last_log_index),
        opt(s.committed),
        opt(s.applied),
        opt(s.snapshot),
        opt(s.purged),
    );
    let rows: Vec<Vec<String>> = s
        .members
        .iter()
        .map(|m| {
            let lag = match (matched.get(&m.id), s.last_log_index) {
                (Some(Some(i)), Some(last)) => last.saturating_sub(*i).to_string(),
                (Some(None), _) => "nothing replicated yet".into(),
                _ if Some(m.id) == s.leader => "leader".into(),
                _ => "known on the leader".into(),
            };
            vec![
                t(m.id),
                esc(&m.addr),
                if m.voter { "voter" } else { "learner" }.into(),
                if Some(m.id) == s.leader {
                    badge("leader")
                } else {
                    String::new()
                },
                lag,
            ]
        })
        .collect();
    body.push_str(&table(
        "Members",
        &["id", "address", "kind", "", "replication lag (entries)"],
        &rows,
    ));
    page(Some(&ctx), StatusCode::OK, "Cluster", &body)
}
