//! `cargo bench -p sluice-coordinator --bench cluster`: a 3-node loopback cluster of real
//! coordinator processes. Prints lock acquire+release latency (one client), throughput
//! (many clients on distinct keys), and failover time (leader kill -9 → first
//! acknowledged write). Figures, not assertions: targets live in the issue notes.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_tests::cluster::{Cluster, NodeOpts};

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn pair(http: &reqwest::Client, base: &str, key: &str) -> (Duration, Duration) {
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

#[tokio::main]
async fn main() {
    let bin = Path::new(env!("CARGO_BIN_EXE_sluice-coordinator"));
    let mut c = Cluster::start(bin, 3, NodeOpts::default()).await;
    let leader = c.leader().await;
    let base = c.nodes[leader].url("");
    let http = c.http.clone();

    // Warm up connections and the JIT-free but cache-cold paths.
    for i in 0..50 {
        pair(&http, &base, &format!("warm/{i}")).await;
    }

    // Latency: one client, sequential acquire+release on the leader.
    let n = 1000;
    let mut acq = Vec::with_capacity(n);
    let mut both = Vec::with_capacity(n);
    let t = Instant::now();
    for i in 0..n {
        let (a, b) = pair(&http, &base, &format!("seq/{}", i % 10)).await;
        acq.push(a);
        both.push(b);
    }
    let seq_elapsed = t.elapsed();
    acq.sort();
    both.sort();

    // Throughput: 32 concurrent clients on distinct keys, through all three nodes.
    let clients = 32;
    let per = 100;
    let t = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|k| {
            let http = http.clone();
            let base = c.nodes[k % 3].url("");
            tokio::spawn(async move {
                for _ in 0..per {
                    pair(&http, &base, &format!("par/{k}")).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let par_elapsed = t.elapsed();
    let ops = (clients * per * 2) as f64;

    // Failover: kill -9 the leader, time until a write is acknowledged by a survivor.
    let mut failovers = Vec::new();
    for round in 0..5 {
        let leader = c.leader().await;
        let survivors = c.others(leader);
        c.nodes[leader].kill();
        let t = Instant::now();
        loop {
            let mut ok = false;
            for &s in &survivors {
                let r = http
                    .post(c.nodes[s].url(&format!("/v1/locks/failover/{round}")))
                    .json(&json!({"holder": "bench", "ttl": "30s"}))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                if matches!(r, Ok(ref r) if r.status() == 201) {
                    ok = true;
                    break;
                }
            }
            if ok {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        failovers.push(t.elapsed());
        c.nodes[leader].start();
        c.leader().await;
        // Let the restarted node catch up before the next round.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    failovers.sort();

    println!("sluice 3-node loopback cluster (heartbeat 100ms, election 300-450ms + lease 450ms)");
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| acquire p50 / p99 (1 client) | {:.2} ms / {:.2} ms |",
        ms(pct(&acq, 0.5)),
        ms(pct(&acq, 0.99))
    );
    println!(
        "| acquire+release p50 / p99 (1 client) | {:.2} ms / {:.2} ms |",
        ms(pct(&both, 0.5)),
        ms(pct(&both, 0.99))
    );
    println!(
        "| sequential lock ops/s (1 client) | {:.0} |",
        (n * 2) as f64 / seq_elapsed.as_secs_f64()
    );
    println!(
        "| concurrent lock ops/s ({clients} clients, 3 nodes) | {:.0} |",
        ops / par_elapsed.as_secs_f64()
    );
    println!(
        "| failover kill -9 leader → first acked write: median / max of {} | {:.0} ms / {:.0} ms |",
        failovers.len(),
        ms(pct(&failovers, 0.5)),
        ms(*failovers.last().unwrap())
    );
}
