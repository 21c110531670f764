//! Lock acquire+release against a Sluice cluster, and the load and failover drivers the
//! `cluster` and `peers` benches share (the peers bench drives etcd with the same ones).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_tests::cluster::Cluster;

/// One Sluice acquire + release of `key` through `base`: (acquired after, released after).
pub async fn pair(http: &reqwest::Client, base: &str, key: &str) -> (Duration, Duration) {
    let t0 = Instant::now();
    let r = http
        .post(format!("{base}/v1/locks/{key}"))
        .json(&json!({"holder": "bench", "ttl": "30s"}))
        .send()
        .await
        .expect("acquire");
    assert_eq!(r.status(), 201, "acquire failed");
    let token = r.json::<Value>().await.unwrap()["token"].as_u64().unwrap();
    let acquired = t0.elapsed();
    let r = http
        .delete(format!("{base}/v1/locks/{key}?token={token}"))
        .send()
        .await
        .expect("release");
    assert_eq!(r.status(), 200, "release failed");
    (acquired, t0.elapsed())
}

/// What a load run measured: per-pair acquire and acquire+release latencies (sorted), and
/// the wall time of the whole run.
#[derive(Debug)]
pub struct Run {
    pub acquire: Vec<Duration>,
    pub pair: Vec<Duration>,
    pub elapsed: Duration,
}

impl Run {
    /// Lock operations (an acquire and a release each count one) per second.
    pub fn ops_per_sec(&self) -> f64 {
        (self.pair.len() * 2) as f64 / self.elapsed.as_secs_f64()
    }
}

/// `clients` concurrent clients, each doing `per` sequential pairs: `op(client, i)` runs
/// pair `i` of `client` and returns (acquired after, released after). One client is the
/// sequential latency run.
pub async fn run<F, Fut>(clients: usize, per: usize, op: F) -> Run
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = (Duration, Duration)> + Send,
{
    let t = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|k| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(per);
                for i in 0..per {
                    out.push(op(k, i).await);
                }
                out
            })
        })
        .collect();
    let mut acquire = Vec::with_capacity(clients * per);
    let mut pair = Vec::with_capacity(clients * per);
    for t in tasks {
        for (a, b) in t.await.expect("load task") {
            acquire.push(a);
            pair.push(b);
        }
    }
    let elapsed = t.elapsed();
    acquire.sort();
    pair.sort();
    Run {
        acquire,
        pair,
        elapsed,
    }
}

/// Starts an attempt of `write` every 25 ms (each may take up to its own timeout) until
/// one is acknowledged; returns how long that took. Overlapping attempts, so that one stuck
/// on the dead leader (a request forwarded to it hangs until a timeout) does not hide the
/// moment the cluster can acknowledge writes again.
pub async fn time_to_first_ack<F, Fut>(write: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    let t = Instant::now();
    let mut attempts = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                attempts.spawn(write());
            }
            Some(done) = attempts.join_next() => {
                if done.unwrap_or(false) {
                    attempts.abort_all();
                    return t.elapsed();
                }
            }
        }
    }
}

/// `rounds` times: kill -9 the Sluice leader, time until a survivor acknowledges a lock
/// acquire, restart the killed node and let it catch up. Returns the times, sorted.
pub async fn sluice_failover(c: &mut Cluster, rounds: usize) -> Vec<Duration> {
    let http = c.http.clone();
    let mut failovers = Vec::new();
    for round in 0..rounds {
        let leader = c.leader().await;
        let survivors: Arc<Vec<String>> = Arc::new(
            c.others(leader)
                .iter()
                .map(|&s| c.nodes[s].url(""))
                .collect(),
        );
        c.nodes[leader].kill();
        let d = time_to_first_ack(|| {
            let (http, survivors) = (http.clone(), survivors.clone());
            async move {
                for base in survivors.iter() {
                    let r = http
                        .post(format!("{base}/v1/locks/failover/{round}"))
                        .json(&json!({"holder": "bench", "ttl": "30s"}))
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    if matches!(r, Ok(ref r) if r.status() == 201) {
                        return true;
                    }
                }
                false
            }
        })
        .await;
        failovers.push(d);
        c.nodes[leader].start().await;
        c.leader().await;
        // Let the restarted node catch up before the next round.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    failovers.sort();
    failovers
}
