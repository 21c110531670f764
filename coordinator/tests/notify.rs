//! Notifications and metrics after real deployments: three coordinators, one agent, the
//! real Docker daemon, and a local HTTP server standing in for Telegram's Bot API and for a
//! webhook receiver.
//!
//! Proves: a hanging chat does not hold up a deployment; a 429 with `retry_after` and a 500
//! are survived and every message still arrives once; webhook signatures verify; a
//! notification that could not be delivered when the leader died is delivered by the next
//! leader; the deployment counters and duration histogram move with a success and a
//! rollback.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use sluice_common::audit::AuditRecord;
use sluice_common::names::{LockKey, ServerName};
use sluice_tests::agent::{remove_containers, AgentProc};
use sluice_tests::cluster::{acquire_request, deployment_request, Cluster, NodeOpts};
use sluice_tests::eventually::eventually;
use sluice_tests::testapp_image::{ensure_test_images, image};
use tokio::sync::watch;

const BOT_TOKEN: &str = "4242:TEST-bot-token-never-logged";
const HOOK_KEY: &str = "webhook-hmac-key-for-tests";
const SERVICE: &str = "ntf-api";

/// What the stand-in answers a Telegram request with, once released (until then every
/// request hangs, and is answered 429 with `retry_after: 1` on release).
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// 500.
    Broken,
}

#[derive(Debug, Clone)]
struct TgHit {
    at: Instant,
    status: u16,
    path: String,
    body: Value,
}

#[derive(Debug, Clone)]
struct HookHit {
    status: u16,
    event: String,
    delivery: String,
    signature_ok: bool,
    body: Value,
}

#[derive(Default)]
struct Fake {
    script: Mutex<VecDeque<Answer>>,
    telegram: Mutex<Vec<TgHit>>,
    hooks: Mutex<Vec<HookHit>>,
    hook_down: std::sync::atomic::AtomicBool,
}

impl Fake {
    fn delivered_texts(&self) -> Vec<String> {
        self.telegram
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.status == 200)
            .map(|h| h.body["text"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Delivery ids (audit record hashes) the webhook accepted.
    fn hook_delivered(&self) -> Vec<String> {
        self.hooks
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.status == 200)
            .map(|h| h.delivery.clone())
            .collect()
    }
}

async fn serve_fake(fake: Arc<Fake>, release: watch::Receiver<bool>) -> String {
    let handler = move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let fake = fake.clone();
        let mut release = release.clone();
        async move {
            let path = uri.path().to_string();
            let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if path == "/hook" {
                let header = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                let mut mac = Hmac::<Sha256>::new_from_slice(HOOK_KEY.as_bytes()).unwrap();
                mac.update(&body);
                let expected: String = mac
                    .finalize()
                    .into_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let down = fake.hook_down.load(std::sync::atomic::Ordering::SeqCst);
                let status = if down { 500 } else { 200 };
                fake.hooks.lock().unwrap().push(HookHit {
                    status,
                    event: header("x-sluice-event"),
                    delivery: header("x-sluice-delivery"),
                    signature_ok: header("x-sluice-signature-256") == format!("sha256={expected}"),
                    body: json,
                });
                return (StatusCode::from_u16(status).unwrap(), "").into_response();
            }
            let hung = !*release.borrow();
            let (status, reply) = if hung {
                // A request the client gives up on is dropped here, unrecorded.
                while !*release.borrow() {
                    if release.changed().await.is_err() {
                        break;
                    }
                }
                (
                    429,
                    json!({"ok": false, "error_code": 429,
                           "description": "Too Many Requests: retry after 1",
                           "parameters": {"retry_after": 1}}),
                )
            } else {
                match fake.script.lock().unwrap().pop_front() {
                    None => (200, json!({"ok": true, "result": {"message_id": 1}})),
                    Some(Answer::Broken) => (500, json!({"ok": false, "error_code": 500})),
                }
            };
            fake.telegram.lock().unwrap().push(TgHit {
                at: Instant::now(),
                status,
                path,
                body: json,
            });
            (StatusCode::from_u16(status).unwrap(), axum::Json(reply)).into_response()
        }
    };
    let app = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn secret_file(dir: &Path, name: &str, content: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p.to_str().unwrap().to_string()
}

async fn deploy(c: &Cluster, tag: &str) -> String {
    let body = json!({
        "service": SERVICE, "image": image(tag), "servers": ["ntf-1"],
        "container_port": 8080,
        "health": {"kind": "http", "path": "/health", "interval": "200ms", "retries": 5, "timeout": "1s"},
    });
    let leader = c.leader().await;
    let created = c
        .api(leader)
        .create_deployment(&deployment_request(&body), None)
        .await
        .unwrap();
    assert!(!created.replayed);
    created.deployment.id.to_string()
}

/// Waits for deployment `id` to end, and checks it ended `want`.
async fn reaches(c: &Cluster, id: &str, want: &str) {
    let d = c.final_deployment(id, Duration::from_secs(90)).await;
    assert_eq!(d.state.as_str(), want, "{d:?}");
}

/// The audit trail, from the first running node.
async fn audit(c: &Cluster) -> Vec<AuditRecord> {
    let node = (0..c.nodes.len())
        .find(|&i| c.nodes[i].is_running())
        .unwrap();
    c.audit(node).await.unwrap()
}

/// Waits until the webhook has accepted every delivery in `wanted` (record hashes).
async fn hook_hears(fake: &Fake, what: &str, wanted: &[String]) {
    eventually(what, Duration::from_secs(30), || async {
        let got = fake.hook_delivered();
        wanted
            .iter()
            .all(|h| got.contains(h))
            .then_some(())
            .ok_or(format!("{got:?}"))
    })
    .await
}

/// The hash of the record announcing `action` for deployment `id`.
fn record_hash(recs: &[AuditRecord], id: &str, action: &str) -> String {
    recs.iter()
        .find(|r| r.target == format!("deployment/{id}") && r.action == action)
        .unwrap_or_else(|| panic!("no {action} for {id}"))
        .hash
        .clone()
}

/// A sample's value from a Prometheus text scrape, by its exact series text.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn notifications_survive_a_hanging_chat_429_500_and_a_leader_change() {
    ensure_test_images().expect("test images");
    remove_containers(SERVICE);
    let fake = Arc::new(Fake::default());
    let (release, release_rx) = watch::channel(false);
    let base = serve_fake(fake.clone(), release_rx).await;
    let dir = tempfile::tempdir().unwrap();
    let bot = secret_file(dir.path(), "bot.token", BOT_TOKEN);
    let key = secret_file(dir.path(), "hook.key", HOOK_KEY);
    let opts = NodeOpts {
        extra_toml: format!(
            "\n[notify]\nlock_held_too_long = \"2s\"\nmax_backoff = \"1s\"\n\
             [notify.telegram]\nbot_token_file = {bot:?}\nchat_id = \"-1001\"\nbase_url = {base:?}\n\
             [notify.webhook]\nurl = \"{base}/hook\"\nsecret_file = {key:?}\n"
        ),
        ..NodeOpts::default()
    };
    let mut c = Cluster::start(Path::new(env!("CARGO_BIN_EXE_sluice-coordinator")), 3, opts).await;
    let addrs: Vec<String> = c.nodes.iter().map(|n| n.addr.clone()).collect();
    let base_port = 30000 + (std::process::id() % 50) as u16 * 20;
    let agent = AgentProc::start(
        "ntf-1",
        &addrs,
        &format!("{base_port}-{}", base_port + 19),
        "",
    );
    eventually("ntf-1 registered", Duration::from_secs(20), || async {
        let name = &ServerName::parse("ntf-1").unwrap();
        let v = c
            .on_any("server ntf-1", |api| async move { api.server(name).await })
            .await?;
        v.up.then_some(()).ok_or(format!("{v:?}"))
    })
    .await;

    // A lock nobody releases is announced once it has been held for 2 s.
    let leader = c.leader().await;
    c.api(leader)
        .acquire_lock(
            &LockKey::parse("db/migrate").unwrap(),
            &acquire_request("forgotten-job", "5m"),
        )
        .await
        .unwrap();

    // Telegram hangs on its first request. The deployment does not wait for it.
    let v1 = deploy(&c, "v1").await;
    reaches(&c, &v1, "success").await;
    assert!(
        fake.delivered_texts().is_empty(),
        "Telegram was hanging, yet something was delivered"
    );
    let recs = audit(&c).await;
    let wanted = [
        record_hash(&recs, &v1, "deployment.validating"),
        record_hash(&recs, &v1, "deployment.success"),
    ];
    hook_hears(&fake, "the webhook to hear about v1", &wanted).await;
    let lock_hash = eventually(
        "the overdue lock record",
        Duration::from_secs(20),
        || async {
            audit(&c)
                .await
                .into_iter()
                .find(|r| r.action == "lock.held_too_long")
                .map(|r| r.hash)
                .ok_or_else(|| "not yet".to_string())
        },
    )
    .await;

    // Release the hung request (it gets a 429 asking for 1 s), then a 500, then all is well.
    fake.script.lock().unwrap().push_back(Answer::Broken);
    release.send(true).unwrap();
    let texts = eventually(
        "Telegram to get v1's messages",
        Duration::from_secs(30),
        || async {
            // On a loaded machine v1's deploy may itself hold its service lock past the
            // 2 s limit, and that is announced too (rightly): not one of the three here.
            let t: Vec<String> = fake
                .delivered_texts()
                .into_iter()
                .filter(|t| !t.contains("Lock service/ntf-api held too long"))
                .collect();
            (t.len() >= 3).then_some(t.clone()).ok_or(format!("{t:?}"))
        },
    )
    .await;
    let hits = fake.telegram.lock().unwrap().clone();
    let statuses: Vec<u16> = hits.iter().map(|h| h.status).collect();
    assert_eq!(&statuses[..3], &[429, 500, 200], "{hits:#?}");
    assert!(
        hits[1].at.duration_since(hits[0].at) >= Duration::from_millis(950),
        "retried {:?} after a 429 that asked for 1 s",
        hits[1].at.duration_since(hits[0].at)
    );
    for h in &hits {
        assert_eq!(h.path, format!("/bot{BOT_TOKEN}/sendMessage"));
        assert_eq!(h.body["chat_id"], "-1001");
        assert_eq!(h.body["parse_mode"], "HTML");
    }
    // In audit order: started, the overdue lock, succeeded (or the lock first); each once.
    let started = texts.iter().position(|t| t.contains("Deploying ntf-api"));
    let done = texts.iter().position(|t| t.contains("ntf-api deployed"));
    let lock = texts
        .iter()
        .position(|t| t.contains("Lock db/migrate held too long"));
    assert!(
        started.is_some() && done.is_some() && lock.is_some(),
        "{texts:#?}"
    );
    assert!(started < done, "{texts:#?}");
    assert!(texts[started.unwrap()].contains(&image("v1")), "{texts:#?}");
    assert!(
        texts[lock.unwrap()].contains("holder: forgotten-job"),
        "{texts:#?}"
    );
    assert_eq!(texts.len(), 3, "a message was sent twice: {texts:#?}");

    // A broken v2 rolls back; both sinks hear failed and rolled back.
    let v2 = deploy(&c, "broken").await;
    reaches(&c, &v2, "rolled_back").await;
    let recs = audit(&c).await;
    let failed = record_hash(&recs, &v2, "deployment.failed");
    let rolled = record_hash(&recs, &v2, "deployment.rolled_back");
    eventually(
        "both sinks to hear about v2",
        Duration::from_secs(30),
        || async {
            let hooks = fake.hook_delivered();
            let texts = fake.delivered_texts();
            let ok = hooks.contains(&failed)
                && hooks.contains(&rolled)
                && texts
                    .iter()
                    .any(|t| t.contains("ntf-api deployment failed"))
                && texts.iter().any(|t| t.contains("ntf-api rolled back"));
            ok.then_some(()).ok_or(format!("{hooks:?} {texts:#?}"))
        },
    )
    .await;
    for h in fake.hooks.lock().unwrap().iter() {
        assert!(h.signature_ok, "bad signature on {h:?}");
        assert_eq!(h.body["record"]["hash"], h.delivery.as_str());
        assert_eq!(h.body["event"], h.event.as_str());
    }
    assert!(fake.hook_delivered().contains(&lock_hash));

    // Metrics on the leader after one success and one rollback.
    let leader = c.leader().await;
    let scrape = c.api(leader).metrics().await.unwrap();
    for status in ["success", "rolled_back"] {
        assert_eq!(
            sample(
                &scrape,
                &format!("sluice_deployments_total{{service=\"{SERVICE}\",status=\"{status}\"}}")
            ),
            Some(1.0),
            "{status}\n{scrape}"
        );
        assert_eq!(
            sample(
                &scrape,
                &format!(
                    "sluice_deployment_duration_seconds_count{{service=\"{SERVICE}\",status=\"{status}\"}}"
                )
            ),
            Some(1.0),
            "{scrape}"
        );
    }
    assert!(sample(&scrape, "sluice_audit_records").unwrap() > 10.0);
    assert!(scrape.contains("sluice_deployment_duration_seconds_bucket{service=\"ntf-api\",status=\"success\",le=\"1800\"} 1"), "{scrape}");
    let agent_scrape = sluice_tests::agent_support::coordinator_client()
        .get(format!("https://{}/metrics", agent.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        agent_scrape.contains(&format!("sluice_agent_containers{{service=\"{SERVICE}\"")),
        "{agent_scrape}"
    );

    // The webhook is down while v3 deploys; the leader dies with its messages undelivered;
    // the next leader delivers them.
    fake.hook_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let v3 = deploy(&c, "v2").await;
    reaches(&c, &v3, "success").await;
    let recs = audit(&c).await;
    let wanted = [
        record_hash(&recs, &v3, "deployment.validating"),
        record_hash(&recs, &v3, "deployment.success"),
    ];
    eventually(
        "a refused webhook attempt for v3",
        Duration::from_secs(20),
        || async {
            let hooks = fake.hooks.lock().unwrap().clone();
            hooks
                .iter()
                .any(|h| h.status == 500 && wanted.contains(&h.delivery))
                .then_some(())
                .ok_or_else(|| "none yet".to_string())
        },
    )
    .await;
    let old = c.leader().await;
    c.nodes[old].kill();
    let new = c.leader().await;
    assert_ne!(new, old);
    fake.hook_down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    hook_hears(&fake, "the new leader to deliver v3's events", &wanted).await;
    // Nothing announced was ever lost: every announceable record reached the webhook.
    let recs = audit(&c).await;
    let got = fake.hook_delivered();
    for r in recs.iter().filter(|r| {
        r.outcome == "ok"
            && matches!(
                r.action.as_str(),
                "deployment.validating"
                    | "deployment.success"
                    | "deployment.failed"
                    | "deployment.rolled_back"
                    | "lock.held_too_long"
            )
    }) {
        assert!(got.contains(&r.hash), "never delivered: {r:?}");
    }
    // The bot token never reached a log.
    assert!(!c.logs().contains(BOT_TOKEN), "bot token in a log");
    assert!(!c.logs().contains(HOOK_KEY), "webhook key in a log");
    drop(agent);
    remove_containers(SERVICE);
}
