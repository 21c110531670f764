//! A real Prometheus (Debian's `prometheus` package) scraping given targets every second,
//! for the canary analysis's PromQL checks: its own storage in a temp dir, a free port, its
//! own process group; killed on drop. Missing `prometheus` is a failure, never a skip.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::eventually::patience;

/// One Prometheus process.
#[derive(Debug)]
pub struct PrometheusProc {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// The binary: `$SLUICE_PROMETHEUS_BIN`, else `prometheus` on the `PATH`.
fn bin() -> PathBuf {
    std::env::var_os("SLUICE_PROMETHEUS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("prometheus"))
}

impl PrometheusProc {
    /// Starts one scraping `targets` (`host:port`, path `/metrics`) every second; returns
    /// once it is ready.
    pub async fn start(targets: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("prometheus dir");
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: sluice-proxy\n    static_configs:\n      - targets: [{}]\n",
            list.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("config");
        let port = crate::cluster::free_port();
        let mut p = Self {
            url: format!("http://127.0.0.1:{port}"),
            dir,
            child: None,
        };
        p.spawn(port);
        p.wait_ready().await;
        p
    }

    fn spawn(&mut self, port: u16) {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(self.dir.path().join("log")).expect("log");
        let child = Command::new(bin())
            .arg(format!(
                "--config.file={}",
                self.dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): install Debian's prometheus package (.ci/run does)",
                    bin().display()
                )
            });
        self.child = Some(child);
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30).mul_f64(patience());
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/-/ready", self.url)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("prometheus exited at start ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus is not ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Runs an instant query; the first sample's value, if any.
    pub async fn query(&self, q: &str) -> Option<f64> {
        let r: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", q)])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        r["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Kills it (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrometheusProc {
    fn drop(&mut self) {
        self.kill();
    }
}
