//! The proxy's own life: handing its sockets to a successor under load, restarting from
//! disk after kill -9, and draining on SIGTERM.

mod support;

use std::time::Duration;

use sluice_common::proxy::ProxyMode;
use sluice_tests::eventually::eventually;
use sluice_tests::load::{Load, LoadOptions};
use support::*;

/// A second proxy started on the same state directory takes over every listener and the
/// control socket while the load runs: no request fails, the old process exits 0 once its
/// connections drained, and the new one serves every route (HTTP and TCP) and its control
/// socket answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handoff_to_a_successor_under_load_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let maddr = format!("127.0.0.1:{}", free_port());
    let mut old = Proxy::start(dir.path(), &["--metrics-listen", &maddr]).await;
    let v1 = Backend::http("v1").await;
    let e1 = Backend::tcp_echo("e1").await;
    let (port, tport) = (free_port(), free_port());
    let drain = Duration::from_secs(2);
    old.client
        .put_route(
            &svc("web"),
            &spec(port, ProxyMode::Http, vec![v1.target()], drain),
        )
        .await
        .unwrap();
    old.client
        .put_route(
            &svc("db"),
            &spec(tport, ProxyMode::Tcp, vec![e1.target()], drain),
        )
        .await
        .unwrap();
    let before = old.client.routes().await.unwrap();
    let taddr: std::net::SocketAddr = ([127, 0, 0, 1], tport).into();
    let mut tcp_open = tokio::net::TcpStream::connect(taddr).await.unwrap();
    assert_eq!(echo(&mut tcp_open, "x").await.as_deref(), Some("e1:x"));

    let load = Load::start(
        format!("http://127.0.0.1:{port}/version"),
        LoadOptions::default(),
    );
    eventually("load flowing", Duration::from_secs(10), || {
        let n = load.snapshot().ok;
        async move {
            if n > 100 {
                Ok(())
            } else {
                Err(format!("{n}"))
            }
        }
    })
    .await;
    // Returns once the control socket answers with the new pid.
    let new = Proxy::start(dir.path(), &["--metrics-listen", &maddr]).await;
    assert_ne!(new.pid(), old.pid());
    let status = old.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "old proxy exited with {status}");
    // The TCP connection open on the old process was given drain_timeout, then closed.
    let mut b = [0u8; 8];
    let r = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::io::AsyncReadExt::read(&mut tcp_open, &mut b),
    )
    .await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    let after_exit = load.snapshot().ok;
    eventually(
        "load served by the successor",
        Duration::from_secs(10),
        || {
            let n = load.snapshot().ok;
            async move {
                if n > after_exit + 100 {
                    Ok(())
                } else {
                    Err(format!("{n}"))
                }
            }
        },
    )
    .await;
    let report = load.stop().await;
    assert!(
        report.failures.is_empty(),
        "{} failures: {:?}",
        report.failures.len(),
        &report.failures[..report.failures.len().min(10)]
    );
    assert_eq!(new.client.routes().await.unwrap(), before);
    assert_eq!(new.client.status().await.unwrap().routes, 2);
    let mut t = tokio::net::TcpStream::connect(taddr).await.unwrap();
    assert_eq!(echo(&mut t, "y").await.as_deref(), Some("e1:y"));
    // And it is fully in charge: a switch goes through it.
    let v2 = Backend::http("v2").await;
    new.client
        .switch(&svc("web"), &[v2.target()])
        .await
        .unwrap();
    assert_eq!(
        get(&format!("http://127.0.0.1:{port}/version")).await.1,
        "v2\n"
    );
    eprintln!(
        "handoff under load: {} answers at {:.0}/s, 0 failures",
        report.ok,
        report.rate()
    );
}

/// kill -9, then a new process: the routes come back from routes.json (same specs and
/// generations) and are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_after_kill_restores_routes_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Proxy::start(dir.path(), &[]).await;
    let v1 = Backend::http("v1").await;
    let v2 = Backend::http("v2").await;
    let port = free_port();
    first
        .client
        .put_route(
            &svc("web"),
            &spec(
                port,
                ProxyMode::Http,
                vec![v1.target()],
                Duration::from_secs(30),
            ),
        )
        .await
        .unwrap();
    first
        .client
        .switch(&svc("web"), &[v2.target()])
        .await
        .unwrap();
    let before = first.client.routes().await.unwrap();
    first.kill9();
    let second = Proxy::start(dir.path(), &[]).await;
    let after = second.client.routes().await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!((&after[0].spec, after[0].generation), (&before[0].spec, 2));
    assert_eq!(
        get(&format!("http://127.0.0.1:{port}/version")).await,
        (200, "v2\n".into())
    );
}

/// SIGTERM alone: the proxy stops accepting, lets the request in flight finish, and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = Proxy::start(dir.path(), &[]).await;
    let v1 = Backend::http("v1").await;
    let port = free_port();
    proxy
        .client
        .put_route(
            &svc("web"),
            &spec(
                port,
                ProxyMode::Http,
                vec![v1.target()],
                Duration::from_secs(2),
            ),
        )
        .await
        .unwrap();
    let slow =
        tokio::spawn(async move { get(&format!("http://127.0.0.1:{port}/slow?ms=1500")).await });
    let f = v1.slow_in_flight.clone();
    eventually("slow request in flight", Duration::from_secs(5), || {
        let n = f.load(std::sync::atomic::Ordering::SeqCst);
        async move {
            if n == 1 {
                Ok(())
            } else {
                Err(format!("{n}"))
            }
        }
    })
    .await;
    proxy.term();
    assert_eq!(slow.await.unwrap(), (200, "v1\n".into()));
    let status = proxy.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
}

/// The real workload (`sluice-testapp`, HTTP/1.0, closes after each answer) works through
/// the proxy, including a switch between two of them under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn testapp_through_the_proxy() {
    // Built by the harness (static, in its own target directory): a fresh checkout's
    // `cargo test --workspace` leaves no `target/debug/sluice-testapp` to find.
    let bin = sluice_tests::testapp_image::testapp_binary().expect("sluice-testapp builds");
    let spawn = |version: &str, port: u16| {
        std::process::Command::new(&bin)
            .env("PORT", port.to_string())
            .env("TESTAPP_VERSION", version)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let (p1, p2) = (free_port(), free_port());
    let mut a = spawn("v1", p1);
    let mut b = spawn("v2", p2);
    for p in [p1, p2] {
        eventually("testapp up", Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", p))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path(), &[]).await;
    let port = free_port();
    let t1 = target("app-v1", ([127, 0, 0, 1], p1).into());
    let t2 = target("app-v2", ([127, 0, 0, 1], p2).into());
    proxy
        .client
        .put_route(
            &svc("app"),
            &spec(port, ProxyMode::Http, vec![t1], Duration::from_secs(5)),
        )
        .await
        .unwrap();
    let load = Load::start(
        format!("http://127.0.0.1:{port}/version"),
        LoadOptions::default(),
    );
    eventually("load flowing", Duration::from_secs(10), || {
        let n = load.snapshot().ok;
        async move {
            if n > 100 {
                Ok(())
            } else {
                Err(format!("{n}"))
            }
        }
    })
    .await;
    proxy.client.switch(&svc("app"), &[t2]).await.unwrap();
    let at = std::time::Instant::now();
    eventually("answers after the switch", Duration::from_secs(10), || {
        let n = load.snapshot().seen_after(at).count();
        async move {
            if n > 100 {
                Ok(())
            } else {
                Err(format!("{n}"))
            }
        }
    })
    .await;
    let report = load.stop().await;
    let _ = (a.kill(), b.kill(), a.wait(), b.wait());
    assert!(
        report.failures.is_empty(),
        "{:?}",
        &report.failures[..report.failures.len().min(10)]
    );
    assert!(report.seen_after(at).all(|s| s.first_line == "v2"));
}

/// `sluice-proxy --upgrade` (the unit's `ExecReload=`) with the running proxy's flags:
/// returns 0 once its successor serves; the old process exits 0; the routes are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_flag_spawns_a_successor_and_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut old = Proxy::start(dir.path(), &[]).await;
    let v1 = Backend::http("v1").await;
    let port = free_port();
    old.client
        .put_route(
            &svc("web"),
            &spec(
                port,
                ProxyMode::Http,
                vec![v1.target()],
                Duration::from_secs(1),
            ),
        )
        .await
        .unwrap();
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
                .arg("--upgrade")
                .arg("--state-dir")
                .arg(Proxy::state_dir(&dir))
                .arg("--control-socket")
                .arg(dir.join("control.sock"))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(out.success(), "--upgrade exited with {out}");
    let new_pid = old.client.status().await.unwrap().pid;
    assert_ne!(new_pid, old.pid());
    assert!(old.wait_exit(Duration::from_secs(10)).await.success());
    assert_eq!(
        get(&format!("http://127.0.0.1:{port}/version")).await,
        (200, "v1\n".into())
    );
    // The successor is not our child: stop it by pid.
    let pid = rustix::process::Pid::from_raw(new_pid as i32).unwrap();
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
}

/// Listeners passed by systemd (`LISTEN_FDS`/`LISTEN_FDNAMES`, here through
/// `systemd-socket-activate`, which execs the proxy with the socket already listening) are
/// used for the routes of routes.json: a connection made before the proxy even started is
/// answered from the backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listeners_from_systemd_are_taken_over() {
    let Some(activate) = [
        "/usr/bin/systemd-socket-activate",
        "/bin/systemd-socket-activate",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists()) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-socket-activate is needed in CI"
        );
        eprintln!("skipped: no systemd-socket-activate");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let v1 = Backend::http("v1").await;
    let port = free_port();
    {
        let mut first = Proxy::start(dir.path(), &[]).await;
        first
            .client
            .put_route(
                &svc("web"),
                &spec(
                    port,
                    ProxyMode::Http,
                    vec![v1.target()],
                    Duration::from_secs(1),
                ),
            )
            .await
            .unwrap();
        first.kill9();
    }
    let listen = format!("--listen=127.0.0.1:{port}");
    let wrapper = [
        activate,
        listen.as_str(),
        "--fdname=route-web",
        "-E",
        "RUST_LOG",
    ];
    // Connect while the wrapper's socket is there but before the proxy answers.
    let early = tokio::spawn(async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                s.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await
                    .unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).await.unwrap();
                return out;
            }
            assert!(std::time::Instant::now() < deadline, "never listening");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let proxy = Proxy::start_under(dir.path(), &wrapper, &[]).await;
    let answer = early.await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("v1\n"),
        "{answer}"
    );
    assert!(!proxy.log().contains("cannot listen"), "{}", proxy.log());
    assert_eq!(
        get(&format!("http://127.0.0.1:{port}/version")).await,
        (200, "v1\n".into())
    );
}
