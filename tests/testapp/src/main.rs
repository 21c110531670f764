//! `sluice-testapp`: the workload Sluice's tests deploy. A std-only HTTP/1.0 server, built
//! with `-C target-feature=+crt-static` into a `FROM scratch` image (see
//! `tests/src/testapp_image.rs`).
//!
//! Behaviour, from the environment:
//! - `PORT` (default 8080): listens on `0.0.0.0:$PORT`.
//! - `TESTAPP_VERSION`: what `GET /version` answers.
//! - `TESTAPP_HEALTH=fail`: `GET /health` answers 500 (otherwise 200).
//! - `TESTAPP_START_DELAY_MS`: wait this long before listening (a slow start).
//! - `TESTAPP_EXIT_AFTER_MS`: exit with status 1 after this long (a crash).
//! - `TESTAPP_HEALTH_FAIL_AFTER_MS`: `GET /health` answers 500 from this long after the
//!   start on (a version that passes its first check and fails later).
//! - `TESTAPP_ERROR_PERCENT`: that many of every 100 `GET /version` requests answer 500
//!   (a version that passes its health check and fails some of its users).
//!
//! Besides `/health`, `/version` and `/`: `GET /sleep/MS` answers its version after MS
//! milliseconds (a long request), and `GET /echo` with an `Upgrade:` header switches
//! protocols (101) and then echoes every byte it receives until the peer closes (a
//! WebSocket-like upgraded connection). `GET /fail-health` makes `/health` answer 500
//! from then on (a version that turns unhealthy while it serves).
//!
//! `sluice-testapp --probe` does one `GET /health` against localhost and exits 0 on 200, 1
//! otherwise: the image's Docker `HEALTHCHECK` (there is no shell or curl in a scratch image).
//!
//! It exits at once on SIGTERM. It runs as PID 1 in its container, and the kernel ignores
//! signals PID 1 has no handler for, so without the handler `docker stop` would wait for its
//! grace period and then SIGKILL.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

fn env_ms(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()?
        .parse()
        .ok()
        .map(Duration::from_millis)
}

fn port() -> u16 {
    std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080)
}

mod sig {
    //! The SIGTERM handler: `_exit(0)` is async-signal-safe.
    const SIGTERM: i32 = 15;
    extern "C" {
        fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
        fn _exit(status: i32) -> !;
    }
    extern "C" fn on_term(_: i32) {
        // SAFETY: `_exit` is async-signal-safe and takes no pointers.
        unsafe { _exit(0) }
    }
    pub fn exit_on_sigterm() {
        // SAFETY: installs a handler that only calls an async-signal-safe function.
        unsafe {
            signal(SIGTERM, on_term);
        }
    }
}

fn probe() -> i32 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port())) else {
        return 1;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\n\r\n").is_err() {
        return 1;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    if buf.starts_with(b"HTTP/1.0 200") {
        0
    } else {
        1
    }
}

/// `/version` requests so far (for `TESTAPP_ERROR_PERCENT`).
static VERSION_REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether this `/version` request is one of the `TESTAPP_ERROR_PERCENT` that fail.
fn fails_on_purpose() -> bool {
    let percent: u64 = std::env::var("TESTAPP_ERROR_PERCENT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let n = VERSION_REQUESTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    n % 100 < percent
}

/// Set by `GET /fail-health`.
static FAILING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether `/health` answers 200 now.
fn healthy_now(healthy: bool, fail_after: Option<Duration>, started: std::time::Instant) -> bool {
    healthy
        && fail_after.is_none_or(|d| started.elapsed() < d)
        && !FAILING.load(std::sync::atomic::Ordering::SeqCst)
}

fn handle(mut s: TcpStream, version: &str, healthy: bool) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 2048];
    let mut got = Vec::new();
    // Read until the end of the request head (or the buffer's worth).
    while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < 8192 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&got).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    if path == "/fail-health" {
        FAILING.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    if path == "/version" && fails_on_purpose() {
        let body = "failing on purpose\n";
        let _ = s.write_all(
            format!(
                "HTTP/1.0 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        return;
    }
    if let Some(ms) = path.strip_prefix("/sleep/") {
        std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
    }
    if path == "/echo" && head.to_ascii_lowercase().contains("\r\nupgrade:") {
        let _ = s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n",
        );
        let _ = s.set_read_timeout(None);
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    }
    let _ = s.write_all(respond(&head, version, healthy).as_bytes());
}

/// The whole HTTP/1.0 response to a request head.
fn respond(head: &str, version: &str, healthy: bool) -> String {
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match path {
        "/health" if healthy => ("200 OK", "ok\n".to_string()),
        "/health" => (
            "500 Internal Server Error",
            "failing on purpose\n".to_string(),
        ),
        "/version" => ("200 OK", format!("{version}\n")),
        "/fail-health" => ("200 OK", "failing from now on\n".to_string()),
        p if p.starts_with("/sleep/") => ("200 OK", format!("{version}\n")),
        "/" => ("200 OK", format!("sluice-testapp {version}\n")),
        _ => ("404 Not Found", "not found\n".to_string()),
    };
    format!(
        "HTTP/1.0 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--probe") {
        std::process::exit(probe());
    }
    sig::exit_on_sigterm();
    let version = std::env::var("TESTAPP_VERSION").unwrap_or_else(|_| "dev".into());
    let healthy = std::env::var("TESTAPP_HEALTH").as_deref() != Ok("fail");
    let port = port();
    println!("testapp starting version={version} port={port}");
    if !healthy {
        eprintln!("health check failing on purpose (TESTAPP_HEALTH=fail)");
    }
    if let Some(d) = env_ms("TESTAPP_EXIT_AFTER_MS") {
        std::thread::spawn(move || {
            std::thread::sleep(d);
            eprintln!("testapp exiting on purpose after {} ms", d.as_millis());
            std::process::exit(1);
        });
    }
    if let Some(d) = env_ms("TESTAPP_START_DELAY_MS") {
        println!("testapp delaying start by {} ms", d.as_millis());
        std::thread::sleep(d);
    }
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("testapp cannot listen on port {port}: {e}");
            std::process::exit(2);
        }
    };
    println!("testapp listening on 0.0.0.0:{port}");
    let started = std::time::Instant::now();
    let fail_after = env_ms("TESTAPP_HEALTH_FAIL_AFTER_MS");
    for conn in listener.incoming().flatten() {
        let v = version.clone();
        let h = healthy_now(healthy, fail_after, started);
        std::thread::spawn(move || handle(conn, &v, h));
    }
}

#[cfg(test)]
mod tests {
    use super::respond;
    use std::time::Duration;

    #[test]
    fn answers_health_and_version() {
        let r = respond("GET /version HTTP/1.1\r\n\r\n", "v7", true);
        assert!(r.starts_with("HTTP/1.0 200 OK"));
        assert!(r.ends_with("\r\n\r\nv7\n"));
        assert!(respond("GET /health HTTP/1.1", "v7", true).starts_with("HTTP/1.0 200"));
        assert!(respond("GET /health HTTP/1.1", "v7", false).starts_with("HTTP/1.0 500"));
        assert!(respond("GET /nope HTTP/1.1", "v7", true).starts_with("HTTP/1.0 404"));
        assert!(respond("GET /sleep/10 HTTP/1.1", "v7", true).ends_with("v7\n"));
    }

    #[test]
    fn health_fails_from_its_deadline_on() {
        let t = std::time::Instant::now();
        assert!(super::healthy_now(true, None, t));
        assert!(super::healthy_now(true, Some(Duration::from_secs(60)), t));
        assert!(!super::healthy_now(true, Some(Duration::ZERO), t));
        assert!(!super::healthy_now(false, None, t));
    }
}
