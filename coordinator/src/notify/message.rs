//! What is announced, and how it reads: pure functions of an audit record (and the
//! deployment it names, when there is one).

use serde::Serialize;
use serde_json::{json, Value};
use sluice_common::audit::AuditRecord;

use crate::state::deployments::Deployment;

/// The events a chat or a webhook hears about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A deployment took its service lock and started.
    Started,
    /// Every target runs the new version healthy.
    Succeeded,
    /// A deployment failed (a rollback follows if servers were touched).
    Failed,
    /// The previous version runs again.
    RolledBack,
    /// The rollback could not restore the previous version: a human must act.
    RollbackFailed,
    /// An agent stopped sending heartbeats.
    AgentDown,
    /// A lock has been held longer than the configured limit.
    LockHeldTooLong,
    /// A canary reached a step (its weight set on every server).
    CanaryStep,
    /// A canary was promoted by hand.
    CanaryPromoted,
    /// A canary was paused (by hand, or its analysis was inconclusive).
    CanaryPaused,
}

impl Event {
    /// The event an audit record announces, if any. Refused commands announce nothing.
    pub fn of(r: &AuditRecord) -> Option<Event> {
        if r.outcome != "ok" {
            return None;
        }
        Some(match r.action.as_str() {
            "deployment.validating" => Event::Started,
            "deployment.success" => Event::Succeeded,
            "deployment.failed" => Event::Failed,
            "deployment.rolled_back" => Event::RolledBack,
            "deployment.rollback_failed" => Event::RollbackFailed,
            "agent.down" => Event::AgentDown,
            "lock.held_too_long" => Event::LockHeldTooLong,
            "deployment.canary_step" => Event::CanaryStep,
            "deployment.canary_promoted" => Event::CanaryPromoted,
            "deployment.canary_paused" => Event::CanaryPaused,
            _ => return None,
        })
    }

    /// The name used in webhook headers and bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Started => "started",
            Event::Succeeded => "succeeded",
            Event::Failed => "failed",
            Event::RolledBack => "rolled_back",
            Event::RollbackFailed => "rollback_failed",
            Event::AgentDown => "agent_down",
            Event::LockHeldTooLong => "lock_held_too_long",
            Event::CanaryStep => "canary_step",
            Event::CanaryPromoted => "canary_promoted",
            Event::CanaryPaused => "canary_paused",
        }
    }
}

/// Escapes text for Telegram's HTML parse mode: `&`, `<` and `>` are the only entities it
/// requires (and the only ones it accepts besides `&quot;`).
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn detail<'a>(r: &'a AuditRecord, key: &str) -> Option<&'a str> {
    r.details.get(key).and_then(Value::as_str)
}

/// The Telegram message (HTML parse mode), every interpolated value escaped.
pub fn telegram_text(e: Event, r: &AuditRecord, d: Option<&Deployment>) -> String {
    let esc = html_escape;
    let service = esc(r.service.as_deref().unwrap_or("?"));
    let what = d.map(|d| {
        let targets: Vec<&str> = d.targets.iter().map(|s| s.as_str()).collect();
        format!(
            "{} → {}",
            esc(&d.request.image.to_string()),
            esc(&targets.join(", "))
        )
    });
    let mut lines = vec![match e {
        Event::Started => format!("🚀 <b>Deploying {service}</b>"),
        Event::Succeeded => format!("✅ <b>{service} deployed</b>"),
        Event::Failed => format!("❌ <b>{service} deployment failed</b>"),
        Event::RolledBack => format!("↩️ <b>{service} rolled back</b>"),
        Event::RollbackFailed => {
            format!("🆘 <b>{service}: rollback failed, action needed</b>")
        }
        Event::AgentDown => format!(
            "⚠️ <b>Agent down: {}</b>",
            esc(r.target.trim_start_matches("server/"))
        ),
        Event::LockHeldTooLong => format!(
            "⏳ <b>Lock {} held too long</b>",
            esc(r.target.trim_start_matches("lock/"))
        ),
        Event::CanaryStep => {
            let n = |k: &str| r.details.get(k).and_then(Value::as_u64).unwrap_or(0);
            if n("step") > n("steps") {
                format!("🐤 <b>{service} canary: switching all traffic</b>")
            } else {
                format!(
                    "🐤 <b>{service} canary: step {}/{} at {}%</b>",
                    n("step"),
                    n("steps"),
                    n("weight")
                )
            }
        }
        Event::CanaryPromoted => format!("⏩ <b>{service} canary promoted</b>"),
        Event::CanaryPaused => format!("⏸️ <b>{service} canary paused</b>"),
    }];
    if let Some(w) = what {
        lines.push(w);
    }
    for key in ["failure", "reason"] {
        if let Some(v) = detail(r, key).filter(|v| !v.is_empty()) {
            if e != Event::Succeeded && e != Event::Started {
                lines.push(format!("{key}: {}", esc(v)));
                break;
            }
        }
    }
    if e == Event::LockHeldTooLong {
        if let Some(h) = detail(r, "holder") {
            lines.push(format!("holder: {}", esc(h)));
        }
    }
    if let Some(d) = d {
        lines.push(format!(
            "by {} · <code>{}</code>",
            esc(&d.actor),
            esc(&d.id.to_string())
        ));
    }
    lines.join("\n")
}

/// The webhook body: the event, the record that caused it, and the deployment's essentials.
pub fn webhook_body(e: Event, r: &AuditRecord, d: Option<&Deployment>) -> Value {
    json!({
        "event": e.as_str(),
        "record": r,
        "deployment": d.map(|d| json!({
            "id": d.id,
            "service": d.request.service,
            "image": d.request.image,
            "targets": d.targets,
            "state": d.state(),
            "actor": d.actor,
            "failure": d.failure,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_common::audit::{AuditChain, Entry};
    use sluice_common::time::Timestamp;

    fn record(action: &str, outcome: &str, details: Value) -> AuditRecord {
        let mut c = AuditChain::default();
        c.append(
            7,
            Timestamp(0),
            "system:sequencer",
            Entry::ok(action, "deployment/x")
                .service("api<&>")
                .outcome(outcome)
                .details(details),
        )
        .clone()
    }

    #[test]
    fn only_successful_terminal_and_alarm_records_are_events() {
        assert_eq!(
            Event::of(&record("deployment.success", "ok", Value::Null)),
            Some(Event::Succeeded)
        );
        assert_eq!(
            Event::of(&record("deployment.success", "refused: x", Value::Null)),
            None
        );
        assert_eq!(
            Event::of(&record("deployment.in_progress", "ok", Value::Null)),
            None
        );
        assert_eq!(Event::of(&record("lock.acquire", "ok", Value::Null)), None);
    }

    #[test]
    fn telegram_text_escapes_every_value() {
        let r = record(
            "deployment.failed",
            "ok",
            json!({"failure": "health check <GET /> failed & more"}),
        );
        let t = telegram_text(Event::Failed, &r, None);
        assert!(
            t.contains("<b>api&lt;&amp;&gt; deployment failed</b>"),
            "{t}"
        );
        assert!(
            t.contains("failure: health check &lt;GET /&gt; failed &amp; more"),
            "{t}"
        );
        assert!(!t.contains("<GET"), "{t}");
    }

    #[test]
    fn canary_steps_promotes_and_pauses_are_announced() {
        let step = record(
            "deployment.canary_step",
            "ok",
            json!({"step": 1, "steps": 2, "weight": 10}),
        );
        assert_eq!(Event::of(&step), Some(Event::CanaryStep));
        let t = telegram_text(Event::CanaryStep, &step, None);
        assert!(t.contains("canary: step 1/2 at 10%"), "{t}");
        let last = record(
            "deployment.canary_step",
            "ok",
            json!({"step": 3, "steps": 2, "weight": 100}),
        );
        let t = telegram_text(Event::CanaryStep, &last, None);
        assert!(t.contains("switching all traffic"), "{t}");
        let paused = record(
            "deployment.canary_paused",
            "ok",
            json!({"reason": "analysis inconclusive at step 1"}),
        );
        assert_eq!(Event::of(&paused), Some(Event::CanaryPaused));
        let t = telegram_text(Event::CanaryPaused, &paused, None);
        assert!(t.contains("reason: analysis inconclusive at step 1"), "{t}");
        assert_eq!(
            Event::of(&record("deployment.canary_promoted", "ok", Value::Null)),
            Some(Event::CanaryPromoted)
        );
    }
}
