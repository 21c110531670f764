//! `cargo bench -p sluice-proxy --bench proxy`
//!
//! Small responses on keep-alive, side by side in one run: `wrk` straight to a backend on
//! loopback, through a release `sluice-proxy` (one `http` route set over its control socket)
//! and through HAProxy set up the same way (http mode, keep-alive to the backend, one
//! server, `X-Forwarded-*` added, no logging). Prints requests/s, p50/p99 latency and the p99
//! each proxy adds over direct, twice: saturating (`-t2 -c32`: throughput) and on one
//! connection (`-t1 -c1`: the latency a proxy adds when nothing queues; on two shared
//! cores the saturated p99 is mostly the scheduler), and both proxies' resident memory.
//! Asserts nothing.
//!
//! The backend is a tiny hyper HTTP/1.1 server inside this process (its own runtime, two
//! worker threads) answering `200 ok\n` with keep-alive, not the `tests/testapp` workload:
//! testapp speaks HTTP/1.0 and closes after every response, so keep-alive straight to it is
//! impossible and the "direct" column would measure connection set-up instead.
//!
//! Installs `wrk` and `haproxy` from Debian with `apt-get install -y` if they are missing.
//! Knobs (environment): `PROXY_BENCH_ROUNDS` (default 3: every round runs the three paths
//! in turn, the table shows each column's median round), `PROXY_BENCH_DURATION` (wrk's
//! `-d`, default `10s`), `PROXY_BENCH_CONNECTIONS` (`-c` of the saturating run, default 32),
//! `PROXY_BENCH_THREADS` (its `-t`, default 2), `SLUICE_PROXY_BIN` (the `sluice-proxy`
//! binary to measure, default the one this `cargo bench` built).

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sluice_common::names::ServiceName;
use sluice_common::proxy::RouteSpec;
use sluice_proxy::control::Client;
use sluice_tests::cluster::Placement;
use sluice_tests::proxy::ProxyProc;

const SERVICE: &str = "bench-proxy";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).to_string();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.trim().to_string()
        })
        .unwrap_or_else(|e| format!("{cmd}: {e}"))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Installs the Debian packages whose command is missing.
fn ensure_tools() {
    let missing: Vec<&str> = [("wrk", "wrk"), ("haproxy", "haproxy")]
        .into_iter()
        .filter(|(cmd, _)| Command::new(cmd).arg("-v").output().is_err())
        .map(|(_, pkg)| pkg)
        .collect();
    if missing.is_empty() {
        return;
    }
    eprintln!("installing {} from Debian", missing.join(" "));
    let ok = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
    assert!(ok, "could not install {}", missing.join(" "));
    // The package's own haproxy service (if any init started it) has no frontend: no port.
}

/// A free port below the kernel's ephemeral range (32768+), where a parallel test's
/// outgoing connection cannot be holding it.
fn free_port() -> u16 {
    let base = 21000 + (std::process::id() % 500) as u16 * 8;
    (0..4000u16)
        .map(|i| 21000 + (base - 21000 + i) % 8000)
        .find(|p| StdListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port")
}

fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} does not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (VmRSS, VmHWM) in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The backend: HTTP/1.1 keep-alive, `200 ok\n` to everything, on its own two-thread
/// runtime so that it does not share workers with the bench's control calls.
fn start_backend() -> SocketAddr {
    let listener = StdListener::bind("127.0.0.1:0").expect("backend bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("backend addr");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("backend runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("backend listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "text/plain")
                                .body("ok\n".to_string())
                                .expect("response"),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    addr
}

fn haproxy_config(listen: u16, backend: SocketAddr) -> String {
    // Same shape as the sluice-proxy route: one frontend, one server, keep-alive on both
    // sides (HAProxy's default `http-reuse safe` pools server connections), the same
    // X-Forwarded-* headers, no `log` line anywhere, two threads like tokio's two workers.
    format!(
        "global
    nbthread 2
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    option forwardfor
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend bench
    bind 127.0.0.1:{listen}
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    default_backend app
backend app
    server app1 {backend}
"
    )
}

struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_haproxy(dir: &Path, listen: u16, backend: SocketAddr) -> Haproxy {
    use std::os::unix::process::CommandExt;
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config(listen, backend)).expect("haproxy.cfg");
    let check = sh("haproxy", &["-c", "-f", cfg.to_str().expect("utf-8 path")]);
    assert!(
        check.contains("Configuration file is valid"),
        "haproxy -c: {check}"
    );
    let child = Command::new("haproxy")
        .arg("-db") // foreground, one process
        .arg("-f")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn haproxy");
    wait_port(listen, "haproxy");
    Haproxy(child)
}

/// One wrk run's figures.
#[derive(Debug, Clone, Copy)]
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// `250.00us`, `1.23ms`, `2.00s`, `1.00m` → milliseconds.
fn wrk_ms(s: &str) -> f64 {
    let (num, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (s, f64::NAN)
    };
    num.parse::<f64>().map_or(f64::NAN, |v| v * mult)
}

fn parse_wrk(out: &str) -> Run {
    let mut run = Run {
        rps: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        errors: 0,
    };
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => run.rps = v.parse().unwrap_or(f64::NAN),
            ["50%", v] => run.p50_ms = wrk_ms(v),
            ["99%", v] => run.p99_ms = wrk_ms(v),
            ["Non-2xx", "or", "3xx", "responses:", n] => run.errors += n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                // connect 0, read 0, write 0, timeout 0
                run.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    run
}

fn wrk(threads: &str, conns: &str, duration: &str, port: u16) -> (Run, String) {
    let url = format!("http://127.0.0.1:{port}/");
    let out = sh(
        "wrk",
        &[
            "-t",
            threads,
            "-c",
            conns,
            "-d",
            duration,
            "--latency",
            &url,
        ],
    );
    (parse_wrk(&out), out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Every round runs every path once, in turn; returns each path's median figures.
fn measure(
    paths: &[(&str, u16)],
    threads: &str,
    conns: &str,
    duration: &str,
    rounds: usize,
) -> Vec<Run> {
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); paths.len()];
    for round in 0..rounds {
        for (i, (name, port)) in paths.iter().enumerate() {
            let (r, out) = wrk(threads, conns, duration, *port);
            eprintln!(
                "-t{threads} -c{conns} round {round} {name}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, errors {}",
                r.rps, r.p50_ms, r.p99_ms, r.errors
            );
            if r.rps.is_nan() {
                eprintln!("{out}");
            }
            runs[i].push(r);
        }
    }
    runs.iter()
        .map(|rs| Run {
            rps: median(rs.iter().map(|r| r.rps).collect()),
            p50_ms: median(rs.iter().map(|r| r.p50_ms).collect()),
            p99_ms: median(rs.iter().map(|r| r.p99_ms).collect()),
            errors: rs.iter().map(|r| r.errors).sum(),
        })
        .collect()
}

fn table(title: &str, paths: &[(&str, u16)], med: &[Run]) {
    println!("{title}");
    println!("| path | requests/s | p50 | p99 | p99 added over direct | non-2xx + socket errors |");
    println!("|---|---|---|---|---|---|");
    for (i, (name, _)) in paths.iter().enumerate() {
        let m = med[i];
        let added = if i == 0 {
            "—".to_string()
        } else {
            format!("{:+.3} ms", m.p99_ms - med[0].p99_ms)
        };
        println!(
            "| {name} | {:.0} | {:.3} ms | {:.3} ms | {added} | {} |",
            m.rps, m.p50_ms, m.p99_ms, m.errors
        );
    }
}

fn main() {
    // The harness's ProxyProc runs this very binary, which `cargo bench` just built in
    // release, unless SLUICE_PROXY_BIN names another (an earlier build, to compare).
    if std::env::var_os("SLUICE_PROXY_BIN").is_none() {
        std::env::set_var("SLUICE_PROXY_BIN", env!("CARGO_BIN_EXE_sluice-proxy"));
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run());
}

async fn run() {
    ensure_tools();
    let threads = env_or("PROXY_BENCH_THREADS", "2");
    let conns = env_or("PROXY_BENCH_CONNECTIONS", "32");
    let duration = env_or("PROXY_BENCH_DURATION", "10s");
    let rounds: usize = env_or("PROXY_BENCH_ROUNDS", "3").parse().expect("rounds");
    println!(
        "machine: {} cores, {}; {}; {}; load average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        sh("uname", &["-sr"]),
        sh("wrk", &["-v"]).lines().next().unwrap_or("wrk ?"),
        sh("haproxy", &["-v"]).lines().next().unwrap_or("haproxy ?"),
        loadavg()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let backend = start_backend();
    wait_port(backend.port(), "backend");

    // sluice-proxy with one http route to the backend, set through its control socket.
    let proxy = ProxyProc::start(&dir.path().join("proxy"), &Placement::default());
    let proxy_pid = proxy.pid().expect("proxy pid");
    let proxy_port = free_port();
    let spec: RouteSpec = serde_json::from_value(serde_json::json!({
        "listen": format!("127.0.0.1:{proxy_port}"),
        "mode": "http",
        "targets": [{"name": "t1", "addr": backend.to_string(), "weight": 100}],
    }))
    .expect("route spec");
    Client::new(proxy.socket())
        .put_route(&ServiceName::parse(SERVICE).expect("name"), &spec)
        .await
        .expect("put route");
    wait_port(proxy_port, "sluice-proxy");
    // Two backends behind two targets weighted 50/50 (a canary at 50 %): what picking by
    // weight, and a pool per target, cost against one target. (A route names an address
    // once, so the second target is a second backend of the same kind.)
    let backend2 = start_backend();
    wait_port(backend2.port(), "second backend");
    let weighted_port = free_port();
    let weighted: RouteSpec = serde_json::from_value(serde_json::json!({
        "listen": format!("127.0.0.1:{weighted_port}"),
        "mode": "http",
        "targets": [
            {"name": "t1", "addr": backend.to_string(), "weight": 50},
            {"name": "t2", "addr": backend2.to_string(), "weight": 50},
        ],
    }))
    .expect("route spec");
    Client::new(proxy.socket())
        .put_route(
            &ServiceName::parse(&format!("{SERVICE}-weighted")).expect("name"),
            &weighted,
        )
        .await
        .expect("put route");
    wait_port(weighted_port, "sluice-proxy (weighted)");

    let ha_port = free_port();
    let haproxy = start_haproxy(dir.path(), ha_port, backend);
    let ha_pid = haproxy.0.id();

    // Let start-up allocations settle before reading idle memory (a measurement, not a sync).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (proxy_idle, _) = rss_kib(proxy_pid);
    let (ha_idle, _) = rss_kib(ha_pid);

    let paths = [
        ("direct to the backend", backend.port()),
        ("through sluice-proxy", proxy_port),
        ("through HAProxy", ha_port),
        ("through sluice-proxy, two targets 50/50", weighted_port),
    ];
    // Warm-up: pools filled, code paged in.
    for (_, port) in paths {
        wrk(&threads, &conns, "2s", port);
    }
    let loaded = measure(&paths, &threads, &conns, &duration, rounds);
    let (proxy_after, proxy_peak) = rss_kib(proxy_pid);
    let (ha_after, ha_peak) = rss_kib(ha_pid);
    // One connection, one request at a time: the latency a proxy adds when nothing queues
    // (under saturation p99 is mostly the scheduler on a shared two-core machine).
    let single = measure(&paths, "1", "1", &duration, rounds);

    println!();
    println!(
        "GET / → 200 `ok\\n` (3-byte body) on keep-alive; each column the median of {rounds} rounds \
         (every round runs the four paths in turn); load average at end {}",
        loadavg()
    );
    table(
        &format!("wrk -t{threads} -c{conns} -d{duration} --latency (saturating)"),
        &paths,
        &loaded,
    );
    println!(
        "| sluice-proxy / HAProxy throughput | {:.2} | | | | |",
        loaded[1].rps / loaded[2].rps
    );
    println!(
        "| sluice-proxy two weighted targets / one target | {:.2} | | | | |",
        loaded[3].rps / loaded[1].rps
    );
    println!();
    table(
        &format!("wrk -t1 -c1 -d{duration} --latency (one connection, nothing queues)"),
        &paths,
        &single,
    );
    println!();
    println!("memory (VmRSS from /proc/PID/status; peak = VmHWM)");
    println!("| process | idle, one route | after the load | peak |");
    println!("|---|---|---|---|");
    println!(
        "| sluice-proxy | {} | {} | {} |",
        mib(proxy_idle),
        mib(proxy_after),
        mib(proxy_peak)
    );
    println!(
        "| HAProxy (one process, nbthread 2) | {} | {} | {} |",
        mib(ha_idle),
        mib(ha_after),
        mib(ha_peak)
    );
    drop(haproxy);
    drop(proxy);
}
