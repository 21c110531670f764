//! `GET /v1/openapi.json` from a real coordinator process: the generated document, with or
//! without credentials, while the rest of `/v1` still wants them; and the router serving
//! exactly what the document describes, answering with bodies that fit it. (The document's
//! agreement with the wire types is checked by the unit tests in `api/openapi.rs`.)
//!
//! Raw HTTP throughout: the point is the wire (content types, status codes for every
//! method, bodies validated against the document), not what the typed client reads.

use std::path::Path;

use serde_json::Value;
use sluice_common::tls::Role;
use sluice_coordinator::api::openapi::document_json;
use sluice_tests::cluster::{Cluster, NodeOpts};
use sluice_tests::openapi::{documented_routes, misfits, response_schema, METHODS};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sluice-coordinator"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_is_served_to_anyone() {
    let c = Cluster::start(bin(), 1, NodeOpts::default()).await;
    let anonymous = c.pki.client(None).build().expect("client");
    let want: Value = serde_json::from_str(document_json()).unwrap();
    for (who, client) in [("admin", &c.http), ("anonymous", &anonymous)] {
        let resp = client
            .get(c.nodes[0].url("/v1/openapi.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{who}");
        assert_eq!(resp.headers()["content-type"], "application/json", "{who}");
        let got: Value = resp.json().await.unwrap();
        assert_eq!(got, want, "{who}");
        assert_eq!(got["openapi"], "3.1.0");
    }
    // Opening the document opened nothing else.
    let resp = anonymous
        .get(c.nodes[0].url("/v1/cluster"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = anonymous
        .get(c.nodes[0].url("/v1/openapi.json/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

/// A value for a path parameter that the router routes (the handler may well refuse it).
fn sample(path: &str, param: &str) -> &'static str {
    match param {
        "key" => "probe/a",
        "id" if path.starts_with("/v1/cluster") => "99",
        "id" => "00000000-0000-4000-8000-000000000000",
        "name" if path.starts_with("/v1/tokens") => "probe",
        "service" => "web",
        _ => "web-1",
    }
}

/// Whether an answer is the router's own (no route, wrong method) rather than a handler's:
/// only the fallbacks set `instance`.
fn from_the_router(status: u16, body: &Value) -> bool {
    matches!(status, 404 | 405)
        && body["instance"].is_string()
        && matches!(
            body["code"].as_str(),
            Some("not_found" | "method_not_allowed")
        )
}

/// Every documented operation is routed (its handler answers, whatever it makes of the
/// probe's input), every other method on a documented path is 405, and every JSON answer
/// fits the schema the document gives for its status.
#[tokio::test(flavor = "multi_thread")]
async fn the_router_serves_what_the_document_describes() {
    let c = Cluster::start(bin(), 1, NodeOpts::default()).await;
    let agent = c.pki.client_as(Role::Agent, "web-1");
    let doc: Value = serde_json::from_str(document_json()).unwrap();
    let routes = documented_routes(&doc);
    assert_eq!(routes.len(), 48);
    let mut checked = 0;
    for path in routes
        .iter()
        .map(|(_, p)| p.clone())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let concrete: String = path
            .split('/')
            .map(
                |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(param) => sample(&path, param).to_string(),
                    None => seg.to_string(),
                },
            )
            .collect::<Vec<_>>()
            .join("/");
        let client = if path.starts_with("/v1/agents/") {
            &agent
        } else {
            &c.http
        };
        for method in METHODS {
            if method == "head" {
                continue; // axum answers HEAD wherever it answers GET
            }
            let op = &doc["paths"][&path][method];
            let documented = routes.contains(&(method.to_string(), path.clone()));
            let mut url = c.nodes[0].url(&concrete);
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "query" && p["required"] == true {
                    url.push_str(&format!("?{}=1", p["name"].as_str().unwrap()));
                }
            }
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut req = client.request(m, &url);
            if op.get("requestBody").is_some() {
                req = req.header("content-type", "application/json").body("{}");
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let ctype = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let text = resp.text().await.unwrap();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if !documented {
                assert_eq!(status, 405, "{method} {path}: {text}");
                assert_eq!(body["code"], "method_not_allowed", "{method} {path}");
                continue;
            }
            assert!(
                !from_the_router(status, &body),
                "{method} {path} is documented but not routed: {text}"
            );
            // (The document itself was compared whole above.)
            if ctype.contains("json") && !ctype.contains("ndjson") && path != "/v1/openapi.json" {
                let schema = response_schema(&doc, method, &path, status, &ctype)
                    .unwrap_or_else(|| panic!("{method} {path}: {status} {ctype} undocumented"));
                let mut out = Vec::new();
                misfits(
                    &doc,
                    schema,
                    &body,
                    &format!("{method} {path} {status}"),
                    &mut out,
                );
                let shown: String = text.chars().take(600).collect();
                assert!(out.is_empty(), "{shown}\n{}", out.join("\n"));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 48);
}
