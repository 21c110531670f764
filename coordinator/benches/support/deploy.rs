//! One service on one server through Sluice (deploy followed over SSE), and waiting for
//! a container to serve: what the `deploy` and `peers` benches share.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_tests::cluster::Cluster;

/// Polls `http://127.0.0.1:{port}{path}` every 50 ms until it answers 2xx (with a body of
/// `body`, if given).
pub async fn serving(port: u16, path: &str, body: Option<&str>) {
    let http = reqwest::Client::new();
    loop {
        let r = http
            .get(format!("http://127.0.0.1:{port}{path}"))
            .timeout(Duration::from_millis(500))
            .send()
            .await;
        if let Ok(r) = r {
            if r.status().is_success() {
                match body {
                    None => return,
                    Some(want) => {
                        if r.text().await.is_ok_and(|t| t.trim() == want) {
                            return;
                        }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `server` has registered with node 0 of `c`.
pub async fn wait_registered(c: &Cluster, server: &str) {
    loop {
        let r = c
            .http
            .get(c.nodes[0].url(&format!("/v1/servers/{server}")))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deploys `image` as `service` on `server` through node 0 of `c` with strategy `recreate`
/// and no watch period (`min_healthy` 0s), as these benches measured before `blue_green`
/// became the API's default; see [`sluice_deploy_with`].
pub async fn sluice_deploy(
    c: &Cluster,
    service: &str,
    server: &str,
    image: &str,
) -> (String, Duration) {
    let extra = json!({"strategy": "recreate", "min_healthy": "0s"});
    sluice_deploy_with(c, service, server, image, &extra).await
}

/// Deploys `image` as `service` on `server` through node 0 of `c` (HTTP health check on
/// `/health` every 50 ms), with the fields of `extra` (an object: `strategy`,
/// `min_healthy`, ...) added to the request, following the deployment over SSE until
/// `success`. Returns the deployment id and the time from the API call to `success`.
pub async fn sluice_deploy_with(
    c: &Cluster,
    service: &str,
    server: &str,
    image: &str,
    extra: &Value,
) -> (String, Duration) {
    let t = Instant::now();
    let mut body = json!({
        "service": service, "image": image, "servers": [server], "container_port": 8080,
        "health": {"kind": "http", "path": "/health", "interval": "50ms", "retries": 20}
    });
    for (k, v) in extra.as_object().expect("extra fields: an object") {
        body[k] = v.clone();
    }
    let r = c
        .http
        .post(c.nodes[0].url("/v1/deployments"))
        .json(&body)
        .send()
        .await
        .expect("deploy");
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut events = c
        .http
        .get(c.nodes[0].url(&format!("/v1/deployments/{id}/events")))
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    while let Ok(Some(chunk)) = events.chunk().await {
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if seen.contains("\"state\":\"success\"") {
            return (id, t.elapsed());
        }
        assert!(
            !seen.contains("\"state\":\"failed\""),
            "deployment failed: {seen}"
        );
    }
    panic!("stream ended without success: {seen}");
}
