//! The fleet: what runs where (services × servers), each service's last deployment, and
//! the servers. It reads through the same handlers as `GET /v1/services` and
//! `GET /v1/servers`, so the page lists what the API lists.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use sluice_common::api::{DeploymentView, ServerView, ServiceView};

use super::html::{age, badge, esc, t, table, when, wire};
use super::{api_error, page, Ctx};
use crate::api::App;

/// `GET /ui/`.
pub async fn show(State(app): State<App>, ctx: Ctx) -> Response {
    let services = match crate::api::deployments::services(State(app.clone())).await {
        Ok(s) => s.0,
        Err(e) => return api_error(Some(&ctx), e),
    };
    let servers = match crate::api::servers::list(State(app.clone())).await {
        Ok(s) => s.0,
        Err(e) => return api_error(Some(&ctx), e),
    };
    let last: BTreeMap<String, DeploymentView> = app.node.read(|a| {
        a.state
            .deployments
            .latest_per_service()
            .map(|(s, d)| (s.to_string(), d.view()))
            .collect()
    });
    let body = format!(
        "{}{}{}",
        matrix(&services, &servers),
        per_service(&services, &last),
        servers_table(&servers)
    );
    page(Some(&ctx), StatusCode::OK, "Fleet", &body)
}

fn matrix(services: &[ServiceView], servers: &[ServerView]) -> String {
    let mut head = vec!["service"];
    head.extend(servers.iter().map(|s| s.name.as_str()));
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|svc| {
            let mut row = vec![format!("<th scope=\"row\">{}</th>", t(&svc.service))];
            for srv in servers {
                row.push(match svc.servers.iter().find(|x| x.server == srv.name) {
                    None => "<span class=\"muted\">—</span>".into(),
                    Some(x) => format!(
                        "<code>{}</code><br>port {} · {} · <a href=\"/ui/deployments/{}\">deployment</a>",
                        t(&x.image),
                        x.port,
                        badge(if x.agent_up { "up" } else { "down" }),
                        x.deployment
                    ),
                });
            }
            row
        })
        .collect();
    // The row header cell is already a <th>: unwrap it from the <td> the table adds.
    table("Services × servers", &head, &rows)
        .replace("<td><th", "<th")
        .replace("</th></td>", "</th>")
}

fn per_service(services: &[ServiceView], last: &BTreeMap<String, DeploymentView>) -> String {
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|svc| {
            let d = last.get(svc.service.as_str());
            vec![
                t(&svc.service),
                d.map_or(String::new(), |d| {
                    format!(
                        "<a href=\"/ui/deployments/{}\">{}</a> {}",
                        d.id,
                        t(&d.image),
                        badge(&wire(&d.state))
                    )
                }),
                d.map_or(String::new(), |d| t(&d.actor)),
                d.map_or(String::new(), |d| when(d.updated_at)),
                svc.active_deployment.map_or("no".into(), |id| {
                    format!("<a href=\"/ui/deployments/{id}\">in flight</a>")
                }),
            ]
        })
        .collect();
    table(
        "Services",
        &["service", "last deployment", "by", "when", "active"],
        &rows,
    )
}

fn servers_table(servers: &[ServerView]) -> String {
    let rows: Vec<Vec<String>> = servers
        .iter()
        .map(|s| {
            let mut flags = Vec::new();
            if s.forbidden {
                flags.push(badge("forbidden"));
            }
            if s.cordoned {
                flags.push(badge("cordoned"));
            }
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|l| format!("<code>{}</code>", t(l)))
                .collect();
            vec![
                format!("<span data-server=\"{}\">{}</span>", t(&s.name), t(&s.name)),
                badge(if s.up { "up" } else { "down" }),
                s.last_heartbeat_ms
                    .map_or("<span class=\"muted\">not the leader</span>".into(), |ms| {
                        format!("{} ago", age(Duration::from_millis(ms)))
                    }),
                labels.join(" "),
                flags.join(" "),
                format!(
                    "{} used · {} free <span class=\"muted\">({})</span>",
                    s.ports_used,
                    s.ports_free,
                    t(s.port_range)
                ),
                format!(
                    "{} / docker {}",
                    esc(s.agent_version.as_deref().unwrap_or("?")),
                    esc(s.docker_version.as_deref().unwrap_or("?"))
                ),
            ]
        })
        .collect();
    table(
        "Servers",
        &[
            "server",
            "agent",
            "heartbeat",
            "labels",
            "policy",
            "ports",
            "versions",
        ],
        &rows,
    )
}
