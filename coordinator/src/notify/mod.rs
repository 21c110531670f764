//! Notifications, sent by the leader from the audit trail.
//!
//! The source of truth is the replicated audit chain: every announced event is an audit
//! record (`deployment.success`, `agent.down`, ...). Each sink keeps a replicated cursor, the
//! last record it delivered (`Command::NotifyDelivered`), so a new leader resumes where the
//! old one provably got to: a leader change may repeat the one message in flight, it never
//! loses one. Each sink runs on its own task and reads at most [`QUEUE_BOUND`] records
//! ahead, so a slow or dead endpoint costs a bounded queue and its own retries; the
//! sequencer never waits for it. Transient failures (connection errors, 5xx, 429) are
//! retried with exponential backoff capped at `max_backoff`, honouring `retry_after`; a
//! message the endpoint refuses for good (another 4xx) is counted, logged and skipped.
//!
//! The leader also watches locks: one held longer than `lock_held_too_long` is flagged
//! through Raft once per grant, which writes the `lock.held_too_long` record announced here.

use sluice_common::backoff::Backoff;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sluice_common::audit::AuditRecord;
use sluice_common::time::Timestamp;
use tokio_util::sync::CancellationToken;

pub mod message;
pub mod sink;

use crate::config::NotifyConfig;
use crate::counters::Counters;
use crate::node::Node;
use crate::state::deployments::Deployment;
use crate::state::Command;
use message::Event;
use sink::{SendError, Telegram, Webhook};

/// At most this many records are read ahead per sink.
pub const QUEUE_BOUND: usize = 64;
/// The audit trail's actor for the notifier's own writes.
const ACTOR: &str = "system:notifier";
/// A sink seen for the first time announces records no older than this, not the whole
/// history of the cluster.
const NEW_SINK_HORIZON: Duration = Duration::from_secs(3600);
/// How often the leader looks for overdue locks and for work when nothing is applied.
const TICK: Duration = Duration::from_secs(1);

/// A delivery channel.
#[derive(Debug)]
pub enum Sink {
    /// Telegram.
    Telegram(Telegram),
    /// A webhook.
    Webhook(Webhook),
}

impl Sink {
    fn name(&self) -> &'static str {
        match self {
            Sink::Telegram(_) => "telegram",
            Sink::Webhook(_) => "webhook",
        }
    }

    async fn send(
        &self,
        client: &reqwest::Client,
        e: Event,
        r: &AuditRecord,
        d: Option<&Deployment>,
    ) -> Result<(), SendError> {
        match self {
            Sink::Telegram(t) => t.send(client, &message::telegram_text(e, r, d)).await,
            Sink::Webhook(w) => {
                w.send(client, e, &r.hash, &message::webhook_body(e, r, d))
                    .await
            }
        }
    }
}

/// Why the notifier could not be set up (a configuration error: exit 64).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A secret file (bot token, webhook key) is missing, unreadable or too open.
    #[error("{path}: {reason}")]
    SecretFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why (never its content).
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("notification client: {0}")]
    Client(String),
}

/// The notifier: its sinks and settings.
#[derive(Debug)]
pub struct Notifier {
    sinks: Vec<Arc<Sink>>,
    client: reqwest::Client,
    lock_limit: Duration,
    max_backoff: Duration,
}

impl Notifier {
    /// Builds the sinks, reading their secret files.
    pub fn from_config(c: &NotifyConfig) -> Result<Self, NotifyError> {
        let secret = |path: &std::path::Path| {
            crate::config::read_secret_file(path).map_err(|reason| NotifyError::SecretFile {
                path: path.to_owned(),
                reason,
            })
        };
        let mut sinks = Vec::new();
        if let Some(t) = &c.telegram {
            sinks.push(Arc::new(Sink::Telegram(Telegram {
                base_url: t.base_url.clone(),
                bot_token: secret(&t.bot_token_file)?,
                chat_id: t.chat_id.clone(),
            })));
        }
        if let Some(w) = &c.webhook {
            sinks.push(Arc::new(Sink::Webhook(Webhook {
                url: w.url.clone(),
                secret: secret(&w.secret_file)?.into_bytes(),
            })));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| NotifyError::Client(e.to_string()))?;
        Ok(Self {
            sinks,
            client,
            lock_limit: c.lock_held_too_long.get(),
            max_backoff: c.max_backoff.get(),
        })
    }

    /// Runs until `shutdown`: one task per sink plus the lock watcher.
    pub async fn run(self, node: Arc<Node>, counters: Arc<Counters>, shutdown: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        for sink in &self.sinks {
            let run = SinkRun {
                node: node.clone(),
                sink: sink.clone(),
                counters: counters.clone(),
                client: self.client.clone(),
                max_backoff: self.max_backoff,
                shutdown: shutdown.clone(),
            };
            tasks.spawn(run.run());
        }
        watch_locks(&node, self.lock_limit, &shutdown).await;
        while tasks.join_next().await.is_some() {}
    }
}

/// Waits for something to be applied, a tick, or shutdown (then false).
async fn idle(node: &Node, shutdown: &CancellationToken) -> bool {
    let mut applied = node.applied_watch();
    tokio::select! {
        _ = applied.changed() => true,
        _ = tokio::time::sleep(TICK) => true,
        _ = shutdown.cancelled() => false,
    }
}

/// On the leader, flags each lock held longer than `limit`, once per grant.
async fn watch_locks(node: &Node, limit: Duration, shutdown: &CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.cancelled() => return,
        }
        if !node.is_leader() {
            continue;
        }
        let overdue: Vec<Command> = node.read(|a| {
            let st = &a.state;
            let now = st
                .clock
                .now()
                .max(Timestamp::from_system(SystemTime::now()));
            st.locks
                .live(now)
                .filter(|l| now.since(l.acquired_at) >= limit)
                .filter(|l| st.lock_overdue.get(&l.key) != Some(&l.token))
                .map(|l| Command::FlagLock {
                    key: l.key.clone(),
                    token: l.token,
                })
                .collect()
        });
        for cmd in overdue {
            if let Err(e) = node.propose(ACTOR, cmd).await {
                tracing::warn!(error = %e, "could not flag an overdue lock");
            }
        }
    }
}

/// One sink's delivery loop.
struct SinkRun {
    node: Arc<Node>,
    sink: Arc<Sink>,
    counters: Arc<Counters>,
    client: reqwest::Client,
    max_backoff: Duration,
    shutdown: CancellationToken,
}

/// A record to announce, with the deployment it names.
type Pending = (AuditRecord, Event, Option<Deployment>);

impl SinkRun {
    async fn run(self) {
        let name = self.sink.name();
        // The next record to look at, while this node leads; None: re-read the replicated
        // cursor (on becoming leader).
        let mut next: Option<u64> = None;
        loop {
            if self.shutdown.is_cancelled() {
                return;
            }
            if !self.node.is_leader() {
                next = None;
                if !idle(&self.node, &self.shutdown).await {
                    return;
                }
                continue;
            }
            let from = next.unwrap_or_else(|| self.start_cursor());
            let (batch, scanned, waiting) = self.read_batch(from);
            self.counters.queued(name, waiting);
            next = Some(scanned);
            if batch.is_empty() {
                if !idle(&self.node, &self.shutdown).await {
                    return;
                }
                continue;
            }
            for (record, event, deployment) in batch {
                if !self.deliver(event, &record, deployment.as_ref()).await {
                    // Deposed or shutting down: whoever leads next resumes from the
                    // replicated cursor, which does not yet include this record.
                    next = None;
                    break;
                }
                let delivered = Command::NotifyDelivered {
                    sink: name.into(),
                    seq: record.seq,
                };
                if let Err(e) = self.node.propose(ACTOR, delivered).await {
                    // The next leader repeats this one; nothing is lost.
                    tracing::warn!(sink = name, error = %e, "could not record a delivery");
                }
            }
        }
    }

    /// Where a new leader starts: after the replicated cursor, or, for a sink never seen
    /// before, at the first record of the last hour.
    fn start_cursor(&self) -> u64 {
        self.node.read(|a| {
            let st = &a.state;
            if let Some(c) = st.notify_cursor.get(self.sink.name()) {
                return *c;
            }
            let horizon = Timestamp::from_system(SystemTime::now() - NEW_SINK_HORIZON);
            st.audit
                .records()
                .iter()
                .take_while(|r| r.at < horizon)
                .last()
                .map_or(0, |r| r.seq)
        })
    }

    /// Up to [`QUEUE_BOUND`] records to announce after `from`, the last sequence number
    /// looked at, and how many announceable records wait in all.
    fn read_batch(&self, from: u64) -> (Vec<Pending>, u64, u64) {
        self.node.read(|a| {
            let st = &a.state;
            let mut batch = Vec::new();
            let mut scanned = from;
            let mut waiting = 0;
            for r in st.audit.after(from) {
                let Some(e) = Event::of(r) else {
                    if batch.len() < QUEUE_BOUND {
                        scanned = r.seq;
                    }
                    continue;
                };
                waiting += 1;
                if batch.len() < QUEUE_BOUND {
                    let d = r
                        .target
                        .strip_prefix("deployment/")
                        .and_then(|id| id.parse().ok())
                        .and_then(|id| {
                            st.deployments
                                .all
                                .get(&id)
                                .map(std::borrow::Cow::into_owned)
                        });
                    batch.push((r.clone(), e, d));
                    scanned = r.seq;
                }
            }
            (batch, scanned, waiting)
        })
    }

    /// Sends one message, retrying transient failures; false when leadership was lost or
    /// the node is shutting down before it was delivered.
    async fn deliver(&self, e: Event, r: &AuditRecord, d: Option<&Deployment>) -> bool {
        let name = self.sink.name();
        let policy = Backoff::new(Duration::from_millis(500), self.max_backoff);
        let mut retries = policy.retries(r.seq ^ u64::from(name.len() as u32).rotate_left(32));
        loop {
            match self.sink.send(&self.client, e, r, d).await {
                Ok(()) => {
                    self.counters.delivery(name, "sent");
                    tracing::info!(sink = name, seq = r.seq, event = e.as_str(), "notified");
                    return true;
                }
                Err(SendError::Permanent(why)) => {
                    self.counters.delivery(name, "failed");
                    tracing::error!(sink = name, seq = r.seq, %why, "notification refused; skipped");
                    return true;
                }
                Err(SendError::Retry { why, after }) => {
                    self.counters.delivery(name, "retried");
                    // The endpoint's own `retry_after` wins over our backoff.
                    let wait = after.unwrap_or_else(|| retries.next_delay());
                    tracing::warn!(sink = name, seq = r.seq, %why, ?wait, "notification failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.shutdown.cancelled() => return false,
                    }
                    if !self.node.is_leader() {
                        return false;
                    }
                }
            }
        }
    }
}
