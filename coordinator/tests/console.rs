//! The web console (`/ui/`). Two layers:
//! - its sessions, CSRF tokens and roles over plain HTTPS against three real coordinators
//!   (no browser, no Docker): a session opened on one node works on another, sign-out and
//!   token revocation end it everywhere, a viewer's forged post and a post without the
//!   CSRF token are refused;
//! - the pages in a real headless Chromium (`sluice_tests::browser`) against a coordinator
//!   with a real agent, proxy and Docker: the fleet lists what the API lists, a deployment
//!   started by the CLI goes live to `success` on the open page, a deployer rolls back from
//!   the page, a viewer sees no button, no secret is in any page, no console error, no
//!   request off loopback. Screenshots of every page go to
//!   `$CARGO_TARGET_TMPDIR/console-screenshots/`.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use sluice_common::deployment::DeploymentState;
use sluice_tests::browser::Browser;
use sluice_tests::cluster::{Cluster, NodeOpts};
use sluice_tests::eventually::eventually;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sluice-coordinator"))
}

/// A browser-like client: the project CA trusted, no certificate, no token, no redirects.
fn anonymous(c: &Cluster) -> reqwest::Client {
    c.pki
        .client(None)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn token(c: &Cluster, name: &str, role: &str, services: &[&str]) -> String {
    c.api(0)
        .create_token(
            &serde_json::from_value(json!({"name": name, "role": role, "services": services}))
                .unwrap(),
        )
        .await
        .unwrap()
        .secret
}

/// Signs in on node `i`; the session cookie's value.
async fn sign_in(c: &Cluster, http: &reqwest::Client, i: usize, secret: &str) -> String {
    let resp = http
        .post(c.nodes[i].url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/ui/");
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in [
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=",
    ] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    assert!(!cookie.contains(secret));
    let value = cookie
        .strip_prefix("__Host-sluice_session=")
        .and_then(|r| r.split(';').next())
        .expect("the session cookie");
    value.to_string()
}

async fn get(
    c: &Cluster,
    http: &reqwest::Client,
    i: usize,
    path: &str,
    session: &str,
) -> (u16, String) {
    let r = http
        .get(c.nodes[i].url(path))
        .header("cookie", format!("__Host-sluice_session={session}"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn post(
    c: &Cluster,
    http: &reqwest::Client,
    path: &str,
    session: &str,
    body: &str,
) -> (u16, String) {
    let r = http
        .post(c.nodes[0].url(path))
        .header("cookie", format!("__Host-sluice_session={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..at + 64].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_replicated_and_forms_need_csrf_and_a_role() {
    let c = Cluster::start(bin(), 3, NodeOpts::default()).await;
    let http = anonymous(&c);
    let viewer = token(&c, "ui-viewer", "viewer", &[]).await;
    let deployer = token(&c, "ui-deployer", "deployer", &[]).await;

    // No session: pages send to the sign-in page; posts are refused; the sign-in page and
    // the assets are open.
    let r = http.get(c.nodes[0].url("/ui/")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/login");
    let (code, _) = post(&c, &http, "/ui/logout", "nope", "csrf=x").await;
    assert_eq!(code, 401);
    for open in ["/ui/login", "/ui/assets/app.css", "/ui/assets/app.js"] {
        assert_eq!(
            http.get(c.nodes[0].url(open))
                .send()
                .await
                .unwrap()
                .status(),
            200,
            "{open}"
        );
    }
    // A bearer token is not a console credential, and a session is not an API credential.
    let r = http
        .get(c.nodes[0].url("/ui/"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);

    // A wrong token: refused, and not echoed.
    let r = http
        .post(c.nodes[0].url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=sluice_wrong-token-value")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(!r.text().await.unwrap().contains("wrong-token-value"));
    // A sign-in form posted from another site is refused.
    let r = http
        .post(c.nodes[0].url("/ui/login"))
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={viewer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let session = sign_in(&c, &http, 0, &viewer).await;
    let r = http
        .get(c.nodes[0].url("/v1/servers"))
        .header("cookie", format!("__Host-sluice_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the cookie must not open the API");
    let (code, html) = get(&c, &http, 0, "/ui/", &session).await;
    assert_eq!(code, 200);
    assert!(html.contains("token:ui-viewer"));
    assert!(!html.contains(&viewer), "the token is in the page");
    // Every node accepts the session (it is in the replicated state).
    for i in 1..3 {
        eventually(
            "the session on every node",
            Duration::from_secs(10),
            || async {
                match get(&c, &http, i, "/ui/cluster", &session).await {
                    (200, _) => Ok(()),
                    (code, _) => Err(format!("node {i}: {code}")),
                }
            },
        )
        .await;
    }

    // A viewer's forged post is refused by role, whatever its CSRF token.
    let csrf = csrf_of(&html);
    let id = uuid::Uuid::new_v4();
    let forged = format!("csrf={csrf}&confirm=yes");
    for action in ["rollback", "cancel", "promote", "abort"] {
        let (code, body) = post(
            &c,
            &http,
            &format!("/ui/deployments/{id}/{action}"),
            &session,
            &forged,
        )
        .await;
        assert_eq!(code, 403, "{action}: {body}");
    }

    // A deployer's post without the CSRF token, or with another session's, is refused.
    let dsession = sign_in(&c, &http, 0, &deployer).await;
    let (_, dhtml) = get(&c, &http, 0, "/ui/", &dsession).await;
    let dcsrf = csrf_of(&dhtml);
    assert_ne!(dcsrf, csrf);
    let path = format!("/ui/deployments/{id}/rollback");
    for body in [
        "confirm=yes".to_string(),
        format!("csrf={csrf}&confirm=yes"),
    ] {
        let (code, page) = post(&c, &http, &path, &dsession, &body).await;
        assert_eq!(code, 403, "{body}: {page}");
        assert!(page.contains("CSRF"), "{page}");
    }
    // With it, the post reaches the API's handler: this deployment does not exist.
    let (code, page) = post(
        &c,
        &http,
        &path,
        &dsession,
        &format!("csrf={dcsrf}&confirm=yes"),
    )
    .await;
    assert_eq!(code, 404, "{page}");
    // Without the confirmation, nothing happens.
    let (code, _) = post(&c, &http, &path, &dsession, &format!("csrf={dcsrf}")).await;
    assert_eq!(code, 400);

    // Sign-out needs the CSRF token, then ends the session on every node.
    let (code, _) = post(&c, &http, "/ui/logout", &session, "").await;
    assert_eq!(code, 403);
    let (code, _) = post(&c, &http, "/ui/logout", &session, &format!("csrf={csrf}")).await;
    assert_eq!(code, 303);
    for i in 0..3 {
        eventually(
            "the session closed on every node",
            Duration::from_secs(10),
            || async {
                match get(&c, &http, i, "/ui/", &session).await {
                    (303, _) => Ok(()),
                    (code, _) => Err(format!("node {i}: {code}")),
                }
            },
        )
        .await;
    }

    // Revoking the token ends the sessions it opened.
    assert_eq!(get(&c, &http, 1, "/ui/", &dsession).await.0, 200);
    c.api(0)
        .revoke_token(&sluice_common::api::TokenName::parse("ui-deployer").unwrap())
        .await
        .unwrap();
    for i in 0..3 {
        eventually(
            "the revoked token's session refused",
            Duration::from_secs(10),
            || async {
                match get(&c, &http, i, "/ui/", &dsession).await {
                    (303, _) => Ok(()),
                    (code, _) => Err(format!("node {i}: {code}")),
                }
            },
        )
        .await;
    }

    // The audit trail has the sign-ins and the sign-out, and no secret.
    let records = c.audit(0).await.unwrap();
    let text = serde_json::to_string(&records).unwrap();
    assert!(records
        .iter()
        .any(|r| r.action == "console.sign_in" && r.actor == "token:ui-viewer"));
    assert!(records.iter().any(|r| r.action == "console.sign_out"));
    for secret in [&viewer, &deployer, &session, &dsession] {
        assert!(!text.contains(secret.as_str()));
    }
}

/// Signs in through the form, as a person would.
async fn browser_sign_in(b: &Browser, base: &str, secret: &str) {
    b.goto(&format!("{base}/ui/login")).await;
    b.eval(&format!(
        "document.getElementById('token').value = {secret:?}; \
         document.querySelector('form.login button').click(); true"
    ))
    .await;
    b.wait_for(
        "location.pathname === '/ui/' && document.readyState === 'complete' && !!document.querySelector('h1')",
        Duration::from_secs(20),
    )
    .await;
}

async fn shot(b: &Browser, name: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    b.screenshot(&dir.join(format!("{name}.png"))).await;
}

/// No secret in the page, no console error so far, no request off loopback.
async fn clean(b: &Browser, base: &str, secrets: &[&str]) -> String {
    let html = b.html().await;
    for s in secrets {
        assert!(
            !html.contains(s),
            "a secret in {}",
            b.eval("location.href").await
        );
    }
    // Docker adding and removing container interfaces makes Chromium drop open
    // connections with ERR_NETWORK_CHANGED; the event stream reconnects by itself (the
    // page still reaches each state below). Any other error fails.
    let errors: Vec<String> = b
        .errors()
        .into_iter()
        .filter(|e| !e.contains("net::ERR_NETWORK_CHANGED"))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    // A `data:` URL never leaves the browser (Chromium's network-error page, shown when
    // Docker's interface changes interrupt a load, embeds its images so).
    for url in b.requests() {
        assert!(
            url.starts_with(base) || url.starts_with("data:"),
            "a request off loopback: {url}"
        );
    }
    html
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_in_a_real_browser() {
    use sluice_common::api::AcquireLockRequest;
    use sluice_common::names::LockKey;
    use support::proxied::Env;

    let secret_value = "console-s3cret-Value";
    let env = Env::start(&["ui-1"], "console-web").await;
    let c = &env.cluster;
    let v1 = env
        .deploy(
            "v1",
            json!({"env": {"DB_PASSWORD": {"value": secret_value, "secret": true}}}),
        )
        .await;
    assert_eq!(v1.state, DeploymentState::Success, "{v1:?}");
    let viewer = token(c, "web-viewer", "viewer", &[]).await;
    let deployer = token(c, "web-deployer", "deployer", &["console-web"]).await;
    let secrets = [
        secret_value,
        viewer.as_str(),
        deployer.as_str(),
        c.admin_token.as_str(),
    ];
    let base = c.nodes[0].url("");
    let b = Browser::launch().await;

    // The fleet, as a viewer: what the API lists.
    browser_sign_in(&b, &base, &viewer).await;
    let html = clean(&b, &base, &secrets).await;
    assert!(html.contains("<h1>Fleet</h1>"));
    for s in env.api().services().await.unwrap() {
        assert!(
            html.contains(&format!("<th scope=\"row\">{}</th>", s.service)),
            "{}",
            s.service
        );
    }
    for s in env.api().servers().await.unwrap() {
        assert!(
            html.contains(&format!("data-server=\"{}\"", s.name)),
            "{}",
            s.name
        );
    }
    shot(&b, "fleet").await;

    // A deployment started from the CLI, followed live on its page. It waits for the
    // service lock, held here, so the page is open before it moves.
    let key = LockKey::parse("service/console-web").unwrap();
    let held = env
        .api()
        .acquire_lock(
            &key,
            &serde_json::from_value::<AcquireLockRequest>(
                json!({"holder": "console-test", "reason": "hold the deployment", "ttl": "2m"}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, c.pki.ca_pem()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "deploy",
            "--service",
            "console-web",
            "--image",
            &sluice_tests::testapp_image::image("v2"),
            "--server",
            "ui-1",
            "--health",
            "/health",
            "--health-interval",
            "100ms",
            "--strategy",
            "blue_green",
            "--min-healthy",
            "0s",
            "--drain-timeout",
            "2s",
            "--lock-wait",
            "2m",
            "--secret-env",
            &format!("DB_PASSWORD={secret_value}"),
        ])
        .env("SLUICE_ADDR", &c.nodes[0].addr)
        .env("SLUICE_CA", &ca)
        .env("SLUICE_TOKEN", &deployer)
        .output()
        .expect("run sluice");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without --wait it prints the new deployment's id.
    let id = stdout.trim().to_string();
    uuid::Uuid::parse_str(&id).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    b.goto(&format!("{base}/ui/deployments/{id}")).await;
    b.eval(
        "window.__seen = [document.getElementById('state').dataset.state]; \
         new MutationObserver(function () { \
           var s = document.getElementById('state'); \
           if (s && window.__seen[window.__seen.length - 1] !== s.dataset.state) \
             window.__seen.push(s.dataset.state); \
         }).observe(document.getElementById('live'), {childList: true, subtree: true}); true",
    )
    .await;
    env.api().release_lock(&key, held.token).await.unwrap();
    b.wait_for(
        "document.getElementById('state').dataset.state === 'success'",
        Duration::from_secs(120),
    )
    .await;
    // The same document all along (a reload would have dropped `__seen`).
    let seen = b.eval("window.__seen").await;
    let seen: Vec<String> = serde_json::from_value(seen).expect("the states seen");
    eprintln!("states seen on the open page: {seen:?}");
    assert_eq!(
        seen.first().map(String::as_str),
        Some("pending"),
        "{seen:?}"
    );
    assert_eq!(seen.last().map(String::as_str), Some("success"), "{seen:?}");
    // The steps between are rendered as they come, but a deployment that finishes within
    // one update of the page (or a stream that Docker's interface changes interrupted)
    // may show only the last: the live page's timeline names each transition either way.
    let html = clean(&b, &base, &secrets).await;
    assert!(
        html.contains("in_progress"),
        "the live page's timeline shows no in_progress step (seen: {seen:?})"
    );
    assert!(html.contains("DB_PASSWORD"));
    // A viewer is offered no button.
    assert_eq!(
        b.eval("document.querySelectorAll('form.action').length")
            .await,
        0
    );
    shot(&b, "deployment-viewer").await;

    // The list pages.
    for (path, name) in [
        ("/ui/deployments?service=console-web", "deployments"),
        ("/ui/locks", "locks"),
        ("/ui/audit?verify=1", "audit"),
        ("/ui/cluster", "cluster"),
    ] {
        b.goto(&format!("{base}{path}")).await;
        let html = clean(&b, &base, &secrets).await;
        match name {
            "deployments" => assert!(html.contains(&id[..8]), "{name}"),
            "audit" => assert!(html.contains("is intact"), "{name}"),
            "cluster" => assert!(html.contains("id=\"leader\">1<"), "{name}"),
            _ => {}
        }
        shot(&b, name).await;
    }

    // Sign out; a deployer signs in and rolls the deployment back from its page.
    b.eval("document.querySelector('form[action=\"/ui/logout\"] button').click(); true")
        .await;
    b.wait_for("location.pathname === '/ui/login'", Duration::from_secs(20))
        .await;
    browser_sign_in(&b, &base, &deployer).await;
    b.goto(&format!("{base}/ui/deployments/{id}")).await;
    b.wait_for(
        "!!document.getElementById('btn-rollback')",
        Duration::from_secs(10),
    )
    .await;
    shot(&b, "deployment-deployer").await;
    b.eval(
        "document.querySelector('form.action input[name=confirm]').checked = true; \
         document.getElementById('btn-rollback').click(); true",
    )
    .await;
    eventually(
        "rolled back through the page",
        Duration::from_secs(120),
        || async {
            let d = env.api().deployment(&id).await.map_err(|e| e.to_string())?;
            if d.state == DeploymentState::RolledBack {
                Ok(())
            } else {
                Err(format!("{:?} {}", d.state, d.phase.as_str()))
            }
        },
    )
    .await;
    b.wait_for(
        "document.getElementById('state') && document.getElementById('state').dataset.state === 'rolled_back'",
        Duration::from_secs(30),
    )
    .await;
    clean(&b, &base, &secrets).await;
    shot(&b, "deployment-rolled-back").await;
    let records = c.audit(0).await.unwrap();
    assert!(
        records
            .iter()
            .any(|r| r.action.contains("rollback") && r.actor == "token:web-deployer"),
        "the rollback is audited as the deployer's"
    );
}
