//! `cargo bench -p sluice-coordinator --bench cluster`: a 3-node loopback cluster of real
//! coordinator processes. Prints lock acquire+release latency (one client), throughput
//! (many clients on distinct keys), and failover time (leader kill -9 → first
//! acknowledged write). Figures, not assertions: targets live in the issue notes.
//! `--bench peers` runs the same measurements side by side with etcd.
//! `CLUSTER_PAIRS=N` sets the pairs per client of the 32-client run (100 by default; more
//! makes a run long enough to profile with `perf record`).

use std::path::Path;

use sluice_tests::cluster::{Cluster, NodeOpts};

#[path = "support/locks.rs"]
mod locks;
#[path = "support/stats.rs"]
mod stats;

use stats::{ms, pct};

#[tokio::main]
async fn main() {
    let bin = Path::new(env!("CARGO_BIN_EXE_sluice-coordinator"));
    let mut c = Cluster::start(bin, 3, NodeOpts::default()).await;
    let leader = c.leader().await;
    let base = c.nodes[leader].url("");
    let http = c.http.clone();

    // Warm up connections and the cache-cold paths.
    for i in 0..50 {
        locks::pair(&http, &base, &format!("warm/{i}")).await;
    }

    // Latency: one client, sequential acquire+release on the leader.
    let seq = {
        let (http, base) = (http.clone(), base.clone());
        locks::run(1, 1000, move |_, i| {
            let (http, base) = (http.clone(), base.clone());
            async move { locks::pair(&http, &base, &format!("seq/{}", i % 10)).await }
        })
        .await
    };

    // Throughput: 32 concurrent clients on distinct keys, through all three nodes.
    let clients = 32;
    let bases: Vec<String> = c.nodes.iter().map(|n| n.url("")).collect();
    let par = {
        let http = http.clone();
        let pairs = std::env::var("CLUSTER_PAIRS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100);
        locks::run(clients, pairs, move |k, _| {
            let (http, base) = (http.clone(), bases[k % bases.len()].clone());
            async move { locks::pair(&http, &base, &format!("par/{k}")).await }
        })
        .await
    };

    // Failover: kill -9 the leader, time until a write is acknowledged by a survivor.
    let failovers = locks::sluice_failover(&mut c, 5).await;

    println!("sluice 3-node loopback cluster (heartbeat 50ms, election 150-300ms, lease 300ms)");
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| acquire p50 / p99 (1 client) | {:.2} ms / {:.2} ms |",
        ms(pct(&seq.acquire, 0.5)),
        ms(pct(&seq.acquire, 0.99))
    );
    println!(
        "| acquire+release p50 / p99 (1 client) | {:.2} ms / {:.2} ms |",
        ms(pct(&seq.pair, 0.5)),
        ms(pct(&seq.pair, 0.99))
    );
    println!(
        "| sequential lock ops/s (1 client) | {:.0} |",
        seq.ops_per_sec()
    );
    println!(
        "| concurrent lock ops/s ({clients} clients, 3 nodes) | {:.0} |",
        par.ops_per_sec()
    );
    println!(
        "| failover kill -9 leader → first acked write: median / max of {} | {:.0} ms / {:.0} ms |",
        failovers.len(),
        ms(pct(&failovers, 0.5)),
        ms(*failovers.last().unwrap())
    );
}
