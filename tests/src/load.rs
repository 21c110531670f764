//! A load generator for zero-downtime tests: it sends requests at a steady rate for as long
//! as it lives, half on keep-alive connections and half on a fresh connection each, and
//! records every failure and the first line of every answer, with times.
//!
//! ```no_run
//! # async fn f() {
//! use sluice_tests::load::{Load, LoadOptions};
//! let load = Load::start("http://127.0.0.1:20001/version", LoadOptions::default());
//! let switched = std::time::Instant::now();
//! let report = load.stop().await;
//! assert!(report.failures.is_empty(), "{:?}", report.failures);
//! assert!(report.seen_after(switched).all(|s| s.first_line == "v2"));
//! # }
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the load runs.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Requests per second, all workers together (half keep-alive, half fresh).
    pub rps: u32,
    /// Workers per kind (keep-alive and fresh); each paces at `rps / (2 × workers)`.
    pub workers: u32,
    /// A request that takes longer fails with a timeout.
    pub timeout: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            rps: 200,
            // Each worker sends one request at a time: 32 per kind keep 200/s up while
            // answers take up to 320 ms (a busy 2-core machine; 8 fell to ~146/s there).
            workers: 32,
            timeout: Duration::from_secs(10),
        }
    }
}

/// One failed request.
#[derive(Debug, Clone)]
pub struct Failure {
    /// When it was sent.
    pub sent: Instant,
    /// When it failed.
    pub at: Instant,
    /// Whether it went on a keep-alive connection.
    pub keep_alive: bool,
    /// What happened: `status 502: …`, or the error chain (refused, reset, timeout).
    pub error: String,
}

/// One answered request (status < 500).
#[derive(Debug, Clone)]
pub struct Seen {
    /// When it was sent.
    pub sent: Instant,
    /// When its body was complete.
    pub done: Instant,
    /// Its status.
    pub status: u16,
    /// The first line of its body (a testapp's version on `/version`).
    pub first_line: String,
    /// Whether it went on a keep-alive connection.
    pub keep_alive: bool,
}

/// What a run saw.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Requests answered with a status below 500.
    pub ok: u64,
    /// Every failure, in no particular order.
    pub failures: Vec<Failure>,
    /// Every answer, sorted by `sent`.
    pub seen: Vec<Seen>,
    /// How long the load ran.
    pub elapsed: Duration,
}

impl LoadReport {
    /// Answers to requests sent at or after `t`.
    pub fn seen_after(&self, t: Instant) -> impl Iterator<Item = &Seen> {
        self.seen.iter().filter(move |s| s.sent >= t)
    }

    /// Answers to requests sent in `[from, to)`.
    pub fn seen_between(&self, from: Instant, to: Instant) -> impl Iterator<Item = &Seen> {
        self.seen
            .iter()
            .filter(move |s| s.sent >= from && s.sent < to)
    }

    /// Requests (answered or failed) per second over the run.
    pub fn rate(&self) -> f64 {
        (self.ok as f64 + self.failures.len() as f64) / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Default)]
struct Record {
    failures: Vec<Failure>,
    seen: Vec<Seen>,
}

/// A running load; [`Load::stop`] ends it and returns what it saw.
#[derive(Debug)]
pub struct Load {
    stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    record: Arc<Mutex<RecordBox>>,
    started: Instant,
}

#[derive(Default)]
struct RecordBox(Record);

impl std::fmt::Debug for RecordBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} answers, {} failures",
            self.0.seen.len(),
            self.0.failures.len()
        )
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl Load {
    /// Starts sending to `url` on the current tokio runtime.
    pub fn start(url: impl Into<String>, opts: LoadOptions) -> Self {
        let url: String = url.into();
        let (stop, stopped) = watch::channel(false);
        let record = Arc::new(Mutex::new(RecordBox::default()));
        let workers_per_kind = opts.workers.max(1);
        let period =
            Duration::from_secs_f64(f64::from(2 * workers_per_kind) / f64::from(opts.rps.max(1)));
        let mut workers = Vec::new();
        for keep_alive in [true, false] {
            for i in 0..workers_per_kind {
                let mut b = reqwest::Client::builder()
                    .http1_only()
                    .timeout(opts.timeout)
                    .connect_timeout(opts.timeout);
                if !keep_alive {
                    b = b.pool_max_idle_per_host(0);
                }
                let client = b.build().expect("http client");
                let url = url.clone();
                let record = record.clone();
                let mut stopped = stopped.clone();
                // Spread the workers over one period so the rate is steady.
                let offset = period.mul_f64(f64::from(i) / f64::from(workers_per_kind))
                    + if keep_alive {
                        Duration::ZERO
                    } else {
                        period / (2 * workers_per_kind)
                    };
                workers.push(tokio::spawn(async move {
                    let mut tick =
                        tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            _ = stopped.changed() => return,
                            _ = tick.tick() => {}
                        }
                        let sent = Instant::now();
                        let outcome = match client.get(&url).send().await {
                            Ok(resp) => {
                                let status = resp.status().as_u16();
                                match resp.text().await {
                                    Ok(body) => Ok((status, body)),
                                    Err(e) => Err(chain(&e)),
                                }
                            }
                            Err(e) => Err(chain(&e)),
                        };
                        let at = Instant::now();
                        let mut r = record.lock().expect("load record");
                        match outcome {
                            Ok((status, body)) if status < 500 => r.0.seen.push(Seen {
                                sent,
                                done: at,
                                status,
                                first_line: body.lines().next().unwrap_or("").to_string(),
                                keep_alive,
                            }),
                            Ok((status, body)) => r.0.failures.push(Failure {
                                sent,
                                at,
                                keep_alive,
                                error: format!(
                                    "status {status}: {}",
                                    body.lines().next().unwrap_or("")
                                ),
                            }),
                            Err(error) => r.0.failures.push(Failure {
                                sent,
                                at,
                                keep_alive,
                                error,
                            }),
                        }
                    }
                }));
            }
        }
        Self {
            stop,
            workers,
            record,
            started: Instant::now(),
        }
    }

    /// Answers and failures so far (a copy).
    pub fn snapshot(&self) -> LoadReport {
        let r = self.record.lock().expect("load record");
        let mut seen = r.0.seen.clone();
        seen.sort_by_key(|s| s.sent);
        LoadReport {
            ok: seen.len() as u64,
            failures: r.0.failures.clone(),
            seen,
            elapsed: self.started.elapsed(),
        }
    }

    /// Stops sending, waits for the requests in flight, and returns everything seen.
    pub async fn stop(self) -> LoadReport {
        let elapsed = self.started.elapsed();
        let _ = self.stop.send(true);
        for w in self.workers {
            let _ = w.await;
        }
        let mut r = std::mem::take(&mut self.record.lock().expect("load record").0);
        r.seen.sort_by_key(|s| s.sent);
        LoadReport {
            ok: r.seen.len() as u64,
            failures: r.failures,
            seen: r.seen,
            elapsed,
        }
    }
}
