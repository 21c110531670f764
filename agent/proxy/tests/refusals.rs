//! Every refusal of the control API, with its code, and that nothing changed after it.

mod support;

use std::time::Duration;

use sluice_common::proxy::{ProxyMode, RouteView};
use sluice_proxy::control::{Client, ControlError};
use support::*;

fn code(e: ControlError) -> (u16, String, String) {
    match e {
        ControlError::Refused {
            status,
            code,
            detail,
        } => (status, code, detail),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn unchanged(client: &Client, before: &[RouteView]) {
    assert_eq!(
        client.routes().await.unwrap(),
        before,
        "a refused change changed something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_have_stable_codes_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path(), &[]).await;
    let c = &proxy.client;
    let v1 = Backend::http("v1").await;
    let port = free_port();
    let web = svc("web");
    let good = spec(
        port,
        ProxyMode::Http,
        vec![v1.target()],
        Duration::from_secs(5),
    );
    c.put_route(&web, &good).await.unwrap();
    // The same spec again is no change.
    assert_eq!(c.put_route(&web, &good).await.unwrap().generation, 1);
    let before = c.routes().await.unwrap();
    let state = std::fs::read(Proxy::state_dir(dir.path()).join("routes.json")).unwrap();

    // Port busy: a new route on a port someone else holds.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let e = c
        .put_route(
            &svc("api"),
            &spec(
                busy_port,
                ProxyMode::Http,
                vec![v1.target()],
                Duration::from_secs(5),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(code(e).0, 409);
    let e = c
        .put_route(
            &svc("api"),
            &spec(
                busy_port,
                ProxyMode::Http,
                vec![v1.target()],
                Duration::from_secs(5),
            ),
        )
        .await
        .unwrap_err();
    let (status, cd, detail) = code(e);
    assert_eq!((status, cd.as_str()), (409, "port_busy"), "{detail}");
    assert!(c.route(&svc("api")).await.unwrap().is_none());
    unchanged(c, &before).await;

    // A dead target, in a replace and in a switch: named in the detail.
    let dead = target("dead", ([127, 0, 0, 1], free_port()).into());
    let mut bad = good.clone();
    bad.targets = vec![dead.clone()];
    let (status, cd, detail) = code(c.put_route(&web, &bad).await.unwrap_err());
    assert_eq!((status, cd.as_str()), (422, "target_unreachable"));
    assert!(detail.contains("dead"), "{detail}");
    let (status, cd, _) = code(
        c.switch(&web, std::slice::from_ref(&dead))
            .await
            .unwrap_err(),
    );
    assert_eq!((status, cd.as_str()), (422, "target_unreachable"));
    // A dead target with weight 0 is not checked (it gets no traffic).
    unchanged(c, &before).await;

    // Non-loopback target.
    let far = target("far", "192.0.2.1:80".parse().unwrap());
    let (status, cd, _) = code(
        c.switch(&web, std::slice::from_ref(&far))
            .await
            .unwrap_err(),
    );
    assert_eq!((status, cd.as_str()), (422, "target_not_loopback"));
    let mut bad = good.clone();
    bad.targets = vec![far];
    assert_eq!(
        code(c.put_route(&web, &bad).await.unwrap_err()).1,
        "target_not_loopback"
    );
    unchanged(c, &before).await;

    // Unknown service.
    let nope = svc("nope");
    let (status, cd, _) = code(c.switch(&nope, &[v1.target()]).await.unwrap_err());
    assert_eq!((status, cd.as_str()), (404, "unknown_service"));
    assert!(c.route(&nope).await.unwrap().is_none());
    assert!(!c.remove_route(&nope).await.unwrap());
    let (status, body) = raw_control(&proxy.socket, "GET", "/v1/routes/nope", "").await;
    assert_eq!(status, 404);
    assert!(body.contains("\"code\":\"unknown_service\""), "{body}");
    assert!(
        body.contains("urn:sluice:problem:unknown_service"),
        "{body}"
    );

    // Invalid bodies: not JSON, unknown field, no target, all weights 0, weight > 100.
    for body in [
        "{not json",
        r#"{"listen":"127.0.0.1:1","targets":[],"surprise":1}"#,
        &format!(r#"{{"listen":"127.0.0.1:{port}","targets":[]}}"#),
        &format!(
            r#"{{"listen":"127.0.0.1:{port}","targets":[{{"name":"a","addr":"{}","weight":0}}]}}"#,
            v1.addr
        ),
        &format!(
            r#"{{"listen":"127.0.0.1:{port}","targets":[{{"name":"a","addr":"{}","weight":101}}]}}"#,
            v1.addr
        ),
        &format!(
            r#"{{"listen":"127.0.0.1:{port}","targets":[{{"name":"a b","addr":"{}"}}]}}"#,
            v1.addr
        ),
    ] {
        let (status, text) = raw_control(&proxy.socket, "PUT", "/v1/routes/web", body).await;
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains("\"code\":\"invalid_body\""), "{body}: {text}");
    }
    let (status, text) = raw_control(
        &proxy.socket,
        "PUT",
        "/v1/routes/web/targets",
        "{\"targets\":5}",
    )
    .await;
    assert_eq!(
        (status, text.contains("invalid_body")),
        (400, true),
        "{text}"
    );
    let (status, _) = raw_control(&proxy.socket, "POST", "/v1/routes/web", "{}").await;
    assert_eq!(status, 405);
    let (status, _) = raw_control(&proxy.socket, "GET", "/v2/whatever", "").await;
    assert_eq!(status, 404);
    unchanged(c, &before).await;
    assert_eq!(
        std::fs::read(Proxy::state_dir(dir.path()).join("routes.json")).unwrap(),
        state,
        "routes.json changed"
    );
    // Still serving v1 after all that.
    assert_eq!(
        get(&format!("http://127.0.0.1:{port}/version")).await,
        (200, "v1\n".into())
    );

    // DELETE: 204, the port closes, 404 after.
    assert!(c.remove_route(&web).await.unwrap());
    assert!(!c.remove_route(&web).await.unwrap());
    assert!(c.routes().await.unwrap().is_empty());
    sluice_tests::eventually::eventually(
        "the port closed",
        Duration::from_secs(5),
        || async move {
            match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                Err(_) => Ok(()),
                Ok(_) => Err("still accepting".to_string()),
            }
        },
    )
    .await;
}

fn as_nobody_curl(socket: &std::path::Path) -> Option<std::process::Output> {
    if which("setpriv").is_none() || which("curl").is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "setpriv and curl are needed in CI"
        );
        return None;
    }
    Some(
        std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "curl",
                "-sS",
                "--max-time",
                "5",
                "--unix-socket",
            ])
            .arg(socket)
            .arg("http://proxy/v1/status")
            .output()
            .unwrap(),
    )
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|p| p.exists())
    })
}

/// The socket is 0660; and a uid that is not root, the proxy's, or a `--control-uid` is
/// closed without an answer even when the file mode would let it connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_socket_refuses_unlisted_uids() {
    use std::os::unix::fs::PermissionsExt;
    if !rustix::process::getuid().is_root() {
        eprintln!("skipped: needs root to run a client as nobody");
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let proxy = Proxy::start(dir.path(), &[]).await;
    let mode = std::fs::metadata(&proxy.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);
    let Some(out) = as_nobody_curl(&proxy.socket) else {
        return;
    };
    assert!(
        !out.status.success(),
        "nobody got through a 0660 root socket"
    );
    // Open the file mode: the peer-credential check still closes the connection.
    std::fs::set_permissions(&proxy.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody_curl(&proxy.socket).unwrap();
    assert!(
        !out.status.success(),
        "nobody was answered: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("pid"));
    assert!(proxy.log().contains("may not use it"), "{}", proxy.log());
    drop(proxy);

    // Listed with --control-uid: answered.
    let dir2 = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir2.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let proxy = Proxy::start(dir2.path(), &["--control-uid", "65534"]).await;
    std::fs::set_permissions(&proxy.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody_curl(&proxy.socket).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"pid\""));
}
