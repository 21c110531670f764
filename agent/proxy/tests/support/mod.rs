//! Shared pieces of the proxy's integration tests: the real `sluice-proxy` process, test
//! backends (hyper servers and TCP echo servers inside the test), raw control requests.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sluice_common::names::ServiceName;
use sluice_common::proxy::{ProxyMode, RouteSpec, Target};
use sluice_common::time::DurationSpec;
use sluice_proxy::control::Client;
use sluice_tests::eventually::eventually;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running `sluice-proxy`, killed on drop.
#[derive(Debug)]
pub struct Proxy {
    pub child: Child,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub client: Client,
}

impl Proxy {
    pub fn state_dir(dir: &Path) -> PathBuf {
        dir.join("state")
    }

    /// Starts a proxy on `dir` (state in `dir/state`, socket `dir/control.sock`) and waits
    /// until its control socket answers with its pid.
    pub async fn start(dir: &Path, extra: &[&str]) -> Self {
        Self::start_under(dir, &[], extra).await
    }

    /// Like [`Proxy::start`], run through `wrapper` (e.g. `systemd-socket-activate …`).
    pub async fn start_under(dir: &Path, wrapper: &[&str], extra: &[&str]) -> Self {
        let socket = dir.join("control.sock");
        let bin = env!("CARGO_BIN_EXE_sluice-proxy");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let child = cmd
            .arg("--state-dir")
            .arg(Self::state_dir(dir))
            .arg("--control-socket")
            .arg(&socket)
            .args(extra)
            .env("RUST_LOG", "sluice_proxy=trace,info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("proxy.log"))
                    .unwrap(),
            ))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("proxy.log"))
                    .unwrap(),
            ))
            .process_group(0)
            .spawn()
            .expect("spawn sluice-proxy");
        let client = Client::new(&socket);
        let pid = child.id();
        let c = client.clone();
        eventually(
            "the proxy's control socket",
            Duration::from_secs(10),
            || {
                let c = c.clone();
                async move {
                    match c.status().await {
                        Ok(s) if s.pid == pid => Ok(()),
                        Ok(s) => Err(format!("answered by pid {}", s.pid)),
                        Err(e) => Err(e.to_string()),
                    }
                }
            },
        )
        .await;
        Self {
            child,
            dir: dir.to_path_buf(),
            socket,
            client,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and wait for the exit.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (the process drains and exits).
    pub fn term(&self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }

    /// Waits for the process to exit; its status.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let child = &mut self.child;
        let deadline =
            std::time::Instant::now() + within.mul_f64(sluice_tests::eventually::patience());
        loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the proxy did not exit within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("proxy.log")).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port below the ephemeral range (so no outgoing connection of a parallel test can
/// hold it between this check and the proxy's bind), different on every call.
pub fn free_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = 20_000 + (u64::from(std::process::id()) * 613) % 10_000;
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = (base + n * 7) % 12_000 + 20_000;
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
}

pub fn svc(s: &str) -> ServiceName {
    ServiceName::parse(s).unwrap()
}

pub fn target(name: &str, addr: SocketAddr) -> Target {
    Target {
        name: name.into(),
        addr,
        weight: 100,
    }
}

pub fn spec(listen_port: u16, mode: ProxyMode, targets: Vec<Target>, drain: Duration) -> RouteSpec {
    RouteSpec {
        listen: ([127, 0, 0, 1], listen_port).into(),
        mode,
        targets,
        drain_timeout: DurationSpec(drain),
    }
}

/// An HTTP backend: `/version` answers its name, `/slow?ms=N` after N ms, `/ws` upgrades
/// (101) and echoes. Stops on drop.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    pub name: String,
    pub served: Arc<AtomicU64>,
    pub slow_in_flight: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
    stop: tokio_util::sync::CancellationToken,
}

impl Drop for Backend {
    fn drop(&mut self) {
        // Like a stopped container: the listener and every connection close.
        self.stop.cancel();
        self.task.abort();
    }
}

type Body = sluice_proxy::body::RespBody;

async fn backend_handle(
    name: String,
    served: Arc<AtomicU64>,
    slow: Arc<AtomicU64>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    served.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if path == "/ws" {
        let up = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(u) = up.await {
                let mut io = TokioIo::new(u);
                let mut buf = [0u8; 4096];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if io.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .body(Body::empty())
            .unwrap());
    }
    if path == "/slow" {
        let ms: u64 = query
            .strip_prefix("ms=")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        slow.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        slow.fetch_sub(1, Ordering::SeqCst);
    }
    if path == "/headers" {
        let mut out = String::new();
        for (k, v) in req.headers() {
            out.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
        }
        return Ok(Response::new(Body::full(Bytes::from(format!(
            "{name}\n{out}"
        )))));
    }
    Ok(Response::new(Body::full(Bytes::from(format!("{name}\n")))))
}

impl Backend {
    pub async fn http(name: &str) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let served = Arc::new(AtomicU64::new(0));
        let slow = Arc::new(AtomicU64::new(0));
        let (n, s, sl) = (name.to_string(), served.clone(), slow.clone());
        let stop = tokio_util::sync::CancellationToken::new();
        let st = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = l.accept().await else {
                    continue;
                };
                let (n, s, sl, st) = (n.clone(), s.clone(), sl.clone(), st.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        backend_handle(n.clone(), s.clone(), sl.clone(), req)
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades();
                    tokio::select! {
                        _ = conn => {}
                        _ = st.cancelled() => {}
                    }
                });
            }
        });
        Self {
            addr,
            name: name.into(),
            served,
            slow_in_flight: slow,
            task,
            stop,
        }
    }

    /// A TCP server that answers each read with `<name>:<bytes>`.
    pub async fn tcp_echo(name: &str) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let served = Arc::new(AtomicU64::new(0));
        let (n, s) = (name.to_string(), served.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = l.accept().await else {
                    continue;
                };
                s.fetch_add(1, Ordering::SeqCst);
                let n = n.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => {
                                let mut out = format!("{n}:").into_bytes();
                                out.extend_from_slice(&buf[..k]);
                                if stream.write_all(&out).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            name: name.into(),
            served,
            slow_in_flight: Arc::new(AtomicU64::new(0)),
            task,
            stop: tokio_util::sync::CancellationToken::new(),
        }
    }

    pub fn target(&self) -> Target {
        target(&self.name, self.addr)
    }
}

/// One raw HTTP/1.1 request on the control socket; `(status, body)`.
pub async fn raw_control(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect control");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Opens an upgraded (`/ws`) connection through `addr`; the stream after the 101.
pub async fn open_upgrade(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut b).await.unwrap(),
            1,
            "closed during the upgrade"
        );
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// Writes `msg` and reads one answer (`None`: the connection is closed or reset).
pub async fn echo(s: &mut TcpStream, msg: &str) -> Option<String> {
    s.write_all(msg.as_bytes()).await.ok()?;
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => None,
        Ok(Ok(n)) => Some(String::from_utf8_lossy(&buf[..n]).to_string()),
        Err(_) => panic!("no echo within 5s"),
    }
}

/// GET through the proxy on a fresh connection; `(status, body)`.
pub async fn get(url: &str) -> (u16, String) {
    let c = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let r = c.get(url).send().await.expect("request");
    (r.status().as_u16(), r.text().await.unwrap())
}
