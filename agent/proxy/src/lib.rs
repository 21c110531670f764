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
//!   every request picks a target when it arrives and goes out on that target's pooled
//!   HTTP/1.1 client. `X-Forwarded-For/-Proto/-Host` are added, hop-by-hop headers
//!   stripped, upgrades (WebSocket) relayed byte for byte. A connect failure before the
//!   body was touched is retried once on the route's current target, which is what makes a
//!   switch lossless when a pooled connection raced a close.
//! - **tcp.** Each connection picks a target and stays on it; bytes are copied both ways.
//! - **Drain.** A target that loses its weight gets nothing new; its in-flight requests
//!   finish; its idle pooled connections close; its TCP and upgraded connections (and
//!   response bodies still streaming) keep going until `drain_timeout`, then close. It is
//!   listed in `RouteView.draining` with live counts until nothing is left on it.
//! - **Handoff.** A second `sluice-proxy` started on the same `--state-dir` connects to
//!   `handoff.sock`, receives every listening socket and the control socket by SCM_RIGHTS
//!   ([`handoff`]), starts accepting, and confirms; the old one stops accepting (the
//!   backlog is shared, nothing is refused), drains, and exits 0.
//! - **systemd.** `Type=notify`; listeners go into the fd store (`FDSTORE=1`,
//!   `FDNAME=route-<service>`) when bound and come back from `LISTEN_FDS` on start, so a
//!   `systemctl restart` queues connections in the backlog instead of refusing them.
//!
//! # Knobs (flags)
//! `--control-socket` (`/run/sluice-proxy/control.sock`), `--control-uid` (repeatable),
//! `--state-dir` (`/var/lib/sluice-proxy`), `--metrics-listen`, `--max-header-bytes` (64 KiB,
//! 431), `--max-body-bytes` (64 MiB, 413), `--header-read-timeout` (30s),
//! `--connect-timeout` (5s, 502 `target_unreachable`), `--response-header-timeout` (60s,
//! 504), `--idle-timeout` (60s), `--no-takeover`, `--log-json`.
//!
//! # Layout
//! - [`pick`], [`plan`], [`drain`]: the pure decisions (weighted choice, what a change does
//!   to the targets, drain verdicts), unit-tested.
//! - [`table`]: the route table and its changes; [`persist`]: `routes.json`.
//! - [`route`], [`target`]: what the data path shares with the control path.
//! - [`listener`], [`http`], [`tcp`], [`upgrade`], [`body`]: the data path.
//! - [`control`]: the control API (server, client, problem codes).
//! - [`handoff`] (the protocol, and the successor's side), [`handover`] (the
//!   predecessor's side), [`systemd`], [`app`], [`config`]: process life.
//! - [`metrics`]: the Prometheus registry.

pub mod app;
pub mod body;
pub mod config;
pub mod control;
pub mod drain;
pub mod handoff;
pub mod handover;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod persist;
pub mod pick;
pub mod plan;
pub mod route;
pub mod runtime;
pub mod systemd;
pub mod table;
pub mod target;
pub mod tcp;
pub mod upgrade;
