//! The proxy's metrics: they count what the load sent, and `promtool check metrics` is clean.

mod support;

use std::time::Duration;

use sluice_common::proxy::ProxyMode;
use sluice_tests::eventually::eventually;
use sluice_tests::load::{Load, LoadOptions};
use support::*;

/// Sums the samples of `name` whose labels contain every `key="value"` in `labels`.
fn sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name && labels.iter().all(|want| rest.contains(want)))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_the_load_and_pass_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let mport = free_port();
    let maddr = format!("127.0.0.1:{mport}");
    let proxy = Proxy::start(dir.path(), &["--metrics-listen", &maddr]).await;
    let v1 = Backend::http("v1").await;
    let v2 = Backend::http("v2").await;
    let port = free_port();
    let web = svc("web");
    proxy
        .client
        .put_route(
            &web,
            &spec(
                port,
                ProxyMode::Http,
                vec![v1.target()],
                Duration::from_secs(5),
            ),
        )
        .await
        .unwrap();
    let load = Load::start(
        format!("http://127.0.0.1:{port}/version"),
        LoadOptions::default(),
    );
    eventually("load on v1", Duration::from_secs(10), || {
        let n = load.snapshot().ok;
        async move {
            if n > 200 {
                Ok(())
            } else {
                Err(format!("{n}"))
            }
        }
    })
    .await;
    proxy.client.switch(&web, &[v2.target()]).await.unwrap();
    let at = std::time::Instant::now();
    eventually("load on v2", Duration::from_secs(10), || {
        let n = load.snapshot().seen_after(at).count();
        async move {
            if n > 200 {
                Ok(())
            } else {
                Err(format!("{n}"))
            }
        }
    })
    .await;
    let report = load.stop().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let from_v1 = report.seen.iter().filter(|s| s.first_line == "v1").count() as f64;
    let from_v2 = report.seen.iter().filter(|s| s.first_line == "v2").count() as f64;

    let (status, text) = raw_control(&proxy.socket, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    let ok2 = |t: &str| {
        sum(
            &text,
            "sluice_proxy_requests_total",
            &[
                "service=\"web\"",
                &format!("target=\"{t}\""),
                "class=\"2xx\"",
            ],
        )
    };
    assert_eq!((ok2("v1"), ok2("v2")), (from_v1, from_v2), "{text}");
    assert_eq!(
        sum(&text, "sluice_proxy_requests_total", &["class=\"error\""]),
        0.0
    );
    assert_eq!(
        sum(
            &text,
            "sluice_proxy_request_duration_seconds_count",
            &["service=\"web\""]
        ),
        report.ok as f64
    );
    // Each answer is "vN\n": 3 bytes to the client; GETs carry no body.
    assert_eq!(
        sum(&text, "sluice_proxy_bytes_total", &["direction=\"tx\""]),
        3.0 * report.ok as f64
    );
    assert_eq!(
        sum(&text, "sluice_proxy_bytes_total", &["direction=\"rx\""]),
        0.0
    );
    assert_eq!(
        sum(&text, "sluice_proxy_route_generation", &["service=\"web\""]),
        2.0
    );
    assert_eq!(sum(&text, "sluice_proxy_up", &[]), 1.0);
    assert!(
        text.contains("sluice_proxy_drains_in_progress{service=\"web\"}"),
        "{text}"
    );
    assert!(text.contains("sluice_proxy_request_duration_seconds_bucket{service=\"web\",target=\"v1\",le=\"0.0005\"}"), "{text}");

    // The same on the TCP metrics address, for Prometheus.
    let (status, body) = get(&format!("http://{maddr}/metrics")).await;
    assert_eq!(status, 200);
    assert!(body.contains("sluice_proxy_up 1"));

    // promtool is clean.
    let Some(promtool) = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("promtool"))
            .find(|p| p.exists())
    }) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is required in CI (Debian package prometheus)"
        );
        eprintln!("skipped promtool: not installed");
        return;
    };
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, &text).unwrap();
    let out = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
