//! Real `sluice-proxy` processes beside test agents: each agent gets its own proxy (its own
//! control socket and state directory), started before the agent and outliving its
//! restarts and `kill -9`s, as on a real host.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::Placement;
use crate::eventually::patience;

/// The `sluice-proxy` binary: `$SLUICE_PROXY_BIN`, else next to the running test's target
/// directory (`cargo test --workspace` builds it for the proxy's own tests).
pub fn proxy_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_PROXY_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("sluice-proxy"))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p sluice-proxy` (or `cargo test --workspace`), or set SLUICE_PROXY_BIN",
        bin.display()
    );
    bin
}

/// One proxy process.
#[derive(Debug)]
pub struct ProxyProc {
    dir: PathBuf,
    placement: Placement,
    child: Option<Child>,
    metrics: String,
}

impl ProxyProc {
    /// Starts a proxy keeping its socket, routes and log in `dir` (created), through
    /// `placement`; returns once its control socket accepts connections.
    pub fn start(dir: &Path, placement: &Placement) -> Self {
        std::fs::create_dir_all(dir).expect("proxy dir");
        let mut p = Self {
            dir: dir.to_path_buf(),
            placement: placement.clone(),
            child: None,
            // Kept across restarts: a successor takes the listener over.
            metrics: format!("{}:{}", placement.ip, crate::cluster::free_port()),
        };
        p.spawn();
        p
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// Where it serves its Prometheus metrics over TCP (`--metrics-listen`), for a real
    /// Prometheus to scrape.
    pub fn metrics_addr(&self) -> &str {
        &self.metrics
    }

    /// The route table on disk.
    pub fn routes_file(&self) -> PathBuf {
        self.dir.join("state").join("routes.json")
    }

    /// The proxy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// (Re)starts the process (a second one beside a running one takes over its sockets).
    pub fn spawn(&mut self) -> &mut Self {
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log"))
            .expect("proxy log");
        let child = self
            .placement
            .command(&proxy_bin())
            .arg("--control-socket")
            .arg(self.socket())
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .arg("--metrics-listen")
            .arg(&self.metrics)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn sluice-proxy");
        if let Some(mut old) = self.child.replace(child) {
            // A successor took over: the old one drains and exits by itself.
            std::thread::spawn(move || old.wait());
        }
        self.wait_answering();
        self
    }

    fn wait_answering(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20).mul_f64(patience());
        loop {
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("sluice-proxy exited at start ({status}):\n{}", self.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "sluice-proxy does not answer on {}:\n{}",
                self.socket().display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9`, waiting until the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ProxyProc {
    fn drop(&mut self) {
        self.kill();
    }
}
