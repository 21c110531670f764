//! # sluice-proxy
//!
//! A small per-host proxy. It owns each service's public host port and forwards to that
//! service's live container, which publishes only on 127.0.0.1. The agent drives it over a
//! local Unix socket ([`control`]); the proxy persists its routes and keeps serving while
//! the agent is down, restarts from disk, and upgrades itself without dropping a connection.
//!
//! # How it works
//! - **Routes.** One route per service: a listen address, a mode (`http` or `tcp`), weighted
//!   targets on loopback, and a `drain_timeout`. A change is checked completely (bind, a
//!   1 s TCP connect to every target with weight > 0), written to `routes.json` (temp file,
//!   fsync, rename, fsync of the directory) and only then switched: one pointer swap, so a
//!   request sees either the old targets or the new ones.
//! - **http.** hyper-util's auto server (HTTP/1.1 and HTTP/2 cleartext) on the listener;
//!   each accepted connection is served whole by one data thread ([`workers`]). Every
//!   request picks a target when it arrives and goes out on an idle HTTP/1.1 connection
//!   from that target's pool (or a new one), which the request's own task drives until the
//!   answer's last byte, then returns to the pool ([`pool`]): no task per target
//!   connection, no hop between tasks or threads. `X-Forwarded-For/-Proto/-Host` are
//!   added, hop-by-hop headers stripped, upgrades (WebSocket) relayed byte for byte. A
//!   connect failure before the body was touched is retried once on the route's current
//!   target, and a pooled connection found closed before it took the request is replaced
//!   by another, which is what makes a switch lossless when a pooled connection raced a
//!   close.
//! - **tcp.** Each connection picks a target and stays on it; bytes are copied both ways.
//! - **Drain.** A target that loses its weight (switch, replace, DELETE) gets nothing new;
//!   its in-flight requests finish, however long their answer takes (bounded by the
//!   response header timeout); its idle pooled connections close; its TCP and upgraded
//!   connections (and response bodies still streaming) keep going until `drain_timeout`,
//!   then close. It is listed in `RouteView.draining` with live counts until nothing is
//!   left on it (`sluice_proxy_drains_in_progress`). Client connections are not bound to a
//!   target in `http` mode and stay open across a switch.
//! - **Handoff.** A second `sluice-proxy` started on the same `--state-dir` connects to
//!   `handoff.sock`, receives every listening socket, the control socket and the metrics
//!   listener by SCM_RIGHTS ([`handoff`], [`handover`]), starts accepting, and confirms;
//!   the old one stops accepting (the backlog is shared, nothing is refused), and drains:
//!   HTTP/1.1 keep-alive connections answer their next request with `Connection: close`
//!   (an idle one is closed after 1 s, checked every 100 ms once the connection has seen
//!   the drain on its 250 ms tick; closing an idle connection is the one race HTTP/1.1
//!   keep-alive cannot avoid, so it is kept to clients that are idle anyway), HTTP/2 gets
//!   GOAWAY (within the 250 ms tick), TCP and upgraded connections get `drain_timeout`.
//!   Then it exits 0.
//!   `sluice-proxy --upgrade <same flags>` starts the successor and returns once it serves
//!   (the unit's `ExecReload=`). SIGTERM alone: stop accepting, drain the same way, exit 0.
//! - **Restart.** `routes.json` (format version 1) is read on start and every route's
//!   listener bound (or taken from systemd): the agent can be killed and the proxy serves
//!   on; a restarted proxy serves the same routes.
//! - **systemd.** `Type=notify`; listeners go into the fd store (`FDSTORE=1`,
//!   `FDNAME=route-<service>`) when bound and come back from `LISTEN_FDS` on start, so a
//!   `systemctl restart` queues connections in the backlog instead of refusing them.
//!   After a handoff the successor sends `MAINPID=` (the unit has `NotifyAccess=all`).

//! # Knobs (flags)
//! `--control-socket` (`/run/sluice-proxy/control.sock`), `--control-uid` (repeatable),
//! `--state-dir` (`/var/lib/sluice-proxy`), `--metrics-listen`, `--max-header-bytes` (64 KiB,
//! 431), `--max-body-bytes` (64 MiB, 413), `--header-read-timeout` (30s),
//! `--connect-timeout` (5s, 502 `target_unreachable`), `--response-header-timeout` (60s,
//! 504 `target_timeout`), `--idle-timeout` (60s), `--data-threads` (0: one per core),
//! `--no-takeover`, `--upgrade`, `--log-json`. Per route: `mode`, `drain_timeout` (30s), target weights (0..=100).
//!
//! # Control API
//! `GET /v1/status`, `GET /v1/routes`, `GET|PUT|DELETE /v1/routes/{service}`,
//! `PUT /v1/routes/{service}/targets`, `GET /metrics`; errors are problem+json with the
//! codes of [`control::problem::CODES`]. Only root, the proxy's uid and `--control-uid`s may
//! connect (peer credentials), and the socket is 0660.
//!
//! # Layout
//! - [`pick`], [`plan`], [`drain`]: the pure decisions (weighted choice, what a change does
//!   to the targets, drain verdicts), unit-tested.
//! - [`table`]: the route table and its changes; [`sweep`]: the drain loop's pass and the
//!   process's retirement; [`persist`]: `routes.json`.
//! - [`route`], [`target`]: what the data path shares with the control path.
//! - [`listener`], [`http`], [`conn`], [`forward`], [`headers`], [`pool`], [`tcp`],
//!   [`upgrade`], [`body`], [`reqbody`]: the data path, served on the data threads of
//!   [`workers`] (one single-threaded runtime per core); [`clock`]: its coarse clock.
//! - [`control`]: the control API (server, client, problem codes).
//! - [`handoff`] (the protocol, and the successor's side), [`handover`] (the
//!   predecessor's side), [`systemd`], [`app`], [`config`]: process life.
//! - [`metrics`]: the Prometheus registry.

pub mod app;
pub mod body;
pub mod clock;
pub mod config;
pub mod conn;
pub mod control;
pub mod drain;
pub mod forward;
pub mod handoff;
pub mod handover;
pub mod headers;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod persist;
pub mod pick;
pub mod plan;
pub mod pool;
pub mod reqbody;
pub mod route;
pub mod runtime;
pub mod sweep;
pub mod systemd;
pub mod table;
pub mod target;
pub mod tcp;
pub mod upgrade;
pub mod workers;
