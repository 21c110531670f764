//! The documentation in the repository stays true: the API reference in `docs/api/` is what
//! the running daemons serve (rendered from their live OpenAPI documents), and the README
//! and `docs/` link only to files that are in the repository.
//!
//! After an API change: `SLUICE_UPDATE_DOCS=1 cargo test -p sluice-coordinator --test docs`.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sluice_common::tls::Role;
use sluice_tests::agent::AgentProc;
use sluice_tests::apidoc::render;
use sluice_tests::cluster::{Cluster, NodeOpts};
use sluice_tests::pki::Pki;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Compares `docs/api/<file>` with `rendered` (or rewrites it when asked to).
fn check(file: &str, rendered: &str) {
    let path = root().join("docs/api").join(file);
    if std::env::var_os("SLUICE_UPDATE_DOCS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, rendered).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == rendered,
        "docs/api/{file} is stale: run `SLUICE_UPDATE_DOCS=1 cargo test -p sluice-coordinator --test docs` and commit it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_reference_is_what_the_daemons_serve() {
    let c = Cluster::start(
        Path::new(env!("CARGO_BIN_EXE_sluice-coordinator")),
        1,
        NodeOpts::default(),
    )
    .await;
    let coordinator = c.api(0).openapi().await.unwrap();
    check(
        "coordinator.md",
        &render(&coordinator, "Coordinator API reference"),
    );

    let agent = AgentProc::start("docs-1", &[], "27980-27989", "");
    let as_operator = Pki::shared().client_as(Role::Client, "docs");
    let r = as_operator
        .get(format!("https://{}/agent/v1/openapi.json", agent.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let agent_doc: Value = r.json().await.unwrap();
    check("agent.md", &render(&agent_doc, "Agent API reference"));
    // An agent's certificate may not read it (only coordinators and operators).
    let r = Pki::shared()
        .client_as(Role::Agent, "docs-1")
        .get(format!("https://{}/agent/v1/openapi.json", agent.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// The Markdown link targets of `text` (inline links only), without `#anchors`.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let end = rest.find(')').unwrap_or(rest.len());
        out.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    out
}

#[test]
fn the_readme_and_docs_link_only_inside_the_repository() {
    let mut files = vec![root().join("README.md")];
    for e in std::fs::read_dir(root().join("docs")).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "md") {
            files.push(e.path());
        }
    }
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            !text.contains("../shared"),
            "{} points outside the repository (../shared)",
            f.display()
        );
        for target in link_targets(&text) {
            let path = target.split('#').next().unwrap_or("");
            if path.is_empty() {
                continue;
            }
            assert!(
                !path.contains("://"),
                "{} links outside the repository: {target}",
                f.display()
            );
            let resolved = f.parent().unwrap().join(path);
            assert!(
                resolved.exists(),
                "{} links to {target}, which is not in the repository",
                f.display()
            );
        }
    }
}
