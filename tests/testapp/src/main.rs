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
    let _ = s.write_all(respond(&String::from_utf8_lossy(&got), version, healthy).as_bytes());
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
    for conn in listener.incoming().flatten() {
        let v = version.clone();
        std::thread::spawn(move || handle(conn, &v, healthy));
    }
}

#[cfg(test)]
mod tests {
    use super::respond;

    #[test]
    fn answers_health_and_version() {
        let r = respond("GET /version HTTP/1.1\r\n\r\n", "v7", true);
        assert!(r.starts_with("HTTP/1.0 200 OK"));
        assert!(r.ends_with("\r\n\r\nv7\n"));
        assert!(respond("GET /health HTTP/1.1", "v7", true).starts_with("HTTP/1.0 200"));
        assert!(respond("GET /health HTTP/1.1", "v7", false).starts_with("HTTP/1.0 500"));
        assert!(respond("GET /nope HTTP/1.1", "v7", true).starts_with("HTTP/1.0 404"));
    }
}
