//! Group commit through real coordinators: 32 clients race for 10 lock keys through all
//! three nodes of a real cluster. Many commands share an entry, yet each key has one holder
//! at any moment, its tokens strictly increase, and a real agent's fence refuses every
//! granted token below the highest it has seen.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::json;
use sluice_common::locks::FencingToken;
use sluice_common::names::LockKey;
use sluice_common::time::DurationSpec;
use sluice_tests::agent_support::Agent;
use sluice_tests::cluster::{acquire_request, Cluster, NodeOpts};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sluice-coordinator"))
}

const CLIENTS: usize = 32;
const KEYS: usize = 10;
const ROUNDS: usize = 12;

/// One grant as a client saw it: from the acknowledged acquire to the release being sent
/// (the next holder's grant can only be acknowledged after that).
#[derive(Debug, Clone, Copy)]
struct Held {
    token: u64,
    from: Instant,
    to: Instant,
}

fn metric(text: &str, name: &str) -> f64 {
    sluice_tests::cluster::metric(text, name)
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_clients_share_entries_yet_each_key_has_one_holder_and_growing_tokens() {
    let c = Arc::new(Cluster::start(bin(), 3, NodeOpts::default()).await);
    let leader = c.leader().await;
    let held: Arc<Mutex<BTreeMap<String, Vec<Held>>>> = Arc::default();

    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let (c, held) = (c.clone(), held.clone());
        tasks.push(tokio::spawn(async move {
            let node = client % 3;
            for round in 0..ROUNDS {
                let key = format!("service/race-{}", (client * 7 + round) % KEYS);
                let mut req = acquire_request(&format!("client-{client}"), "30s");
                req.wait = Some(DurationSpec::parse("20s").unwrap());
                let k = LockKey::parse(&key).unwrap();
                let lease = c
                    .api(node)
                    .acquire_lock(&k, &req)
                    .await
                    .unwrap_or_else(|e| panic!("client {client} acquiring {key}: {e:?}"));
                let from = Instant::now();
                // Hold it across a linearizable read (coalesced with the others' reads):
                // it must name this client, with this grant's token.
                let seen = c
                    .api(node)
                    .lock(&k)
                    .await
                    .unwrap_or_else(|e| panic!("client {client} reading {key}: {e:?}"));
                assert_eq!(
                    (seen.holder.as_str(), seen.token),
                    (format!("client-{client}").as_str(), lease.token),
                    "{key} is held by another while client {client} holds it"
                );
                let to = Instant::now();
                c.api(node)
                    .release_lock(&k, lease.token)
                    .await
                    .unwrap_or_else(|e| panic!("client {client} releasing {key}: {e:?}"));
                held.lock().unwrap().entry(key).or_default().push(Held {
                    token: lease.token.0,
                    from,
                    to,
                });
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    let held = held.lock().unwrap().clone();
    assert_eq!(
        held.values().map(Vec::len).sum::<usize>(),
        CLIENTS * ROUNDS,
        "every acquire was granted"
    );
    for (key, grants) in &held {
        let mut grants = grants.clone();
        grants.sort_by_key(|g| g.from);
        for w in grants.windows(2) {
            assert!(
                w[0].to < w[1].from,
                "{key}: two holders at once: {:?} and {:?}",
                w[0],
                w[1]
            );
            assert!(
                w[0].token < w[1].token,
                "{key}: tokens must strictly increase in grant order: {} then {}",
                w[0].token,
                w[1].token
            );
        }
    }

    // Commands did share entries: the leader committed fewer entries than commands.
    let text = c.metrics(leader).await;
    let batches = metric(&text, "sluice_raft_batches_total");
    let commands = metric(&text, "sluice_raft_batched_commands_total");
    assert!(
        commands >= (2 * CLIENTS * ROUNDS) as f64,
        "{commands} commands for {} acquires and releases",
        CLIENTS * ROUNDS
    );
    assert!(
        batches < commands,
        "no entry carried more than one command: {batches} entries, {commands} commands"
    );
    // Every read (the followers forward theirs) went through the leader's read loop, and
    // reads queued together shared one leadership confirmation.
    let rounds = metric(&text, "sluice_raft_read_index_rounds_total");
    assert!(
        rounds < (CLIENTS * ROUNDS) as f64,
        "{rounds} read-index rounds for {} reads: none was shared",
        CLIENTS * ROUNDS
    );
    eprintln!("{commands} commands in {batches} entries, {rounds} read rounds on the leader");

    // A real agent's fence: after each key's highest grant, every lower one is refused.
    let agent = Agent::start("batching-fence", "").await;
    for (key, grants) in &held {
        let service = key.strip_prefix("service/").unwrap();
        let mut tokens: Vec<u64> = grants.iter().map(|g| g.token).collect();
        tokens.sort_unstable();
        let highest = *tokens.last().unwrap();
        let remove = |token: u64| {
            let agent = &agent;
            let url = agent.url(&format!("/agent/v1/services/{service}"));
            async move {
                let r = agent
                    .http
                    .delete(url)
                    .json(&json!({"fence": {"key": key, "token": FencingToken(token)}}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                (
                    status,
                    r.json::<serde_json::Value>().await.unwrap_or_default(),
                )
            }
        };
        let (s, body) = remove(highest).await;
        assert!(
            s < 300,
            "{key}: highest token {highest} refused: {s} {body}"
        );
        for t in tokens.iter().rev().skip(1) {
            let (s, body) = remove(*t).await;
            assert_eq!(
                (s, body["code"].as_str()),
                (409, Some("stale_fencing_token")),
                "{key}: token {t} below {highest} was not refused: {body}"
            );
        }
    }
}
