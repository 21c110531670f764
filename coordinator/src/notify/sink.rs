//! The two delivery channels: Telegram's Bot API and a signed JSON webhook. Each `send` is
//! one HTTP attempt; the caller retries.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::message::Event;

/// Why one attempt did not deliver.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth another try, after `after` if the endpoint said so (Telegram's `retry_after`).
    #[error("{why}")]
    Retry {
        /// What went wrong.
        why: String,
        /// How long the endpoint asked us to wait.
        after: Option<Duration>,
    },
    /// The endpoint refused this message for good (e.g. 400 bad request): retrying the
    /// same message cannot help.
    #[error("{0}")]
    Permanent(String),
}

/// Telegram's Bot API `sendMessage`.
pub struct Telegram {
    /// `https://api.telegram.org` or a stand-in.
    pub base_url: String,
    /// The bot token (secret: never logged, and kept out of error messages).
    pub bot_token: String,
    /// The chat to post to.
    pub chat_id: String,
}

impl std::fmt::Debug for Telegram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telegram")
            .field("base_url", &self.base_url)
            .field("chat_id", &self.chat_id)
            .finish_non_exhaustive()
    }
}

/// A generic JSON webhook signed like GitHub's: `X-Sluice-Signature-256: sha256=<hex HMAC>`
/// over the exact body bytes.
pub struct Webhook {
    /// Where to POST.
    pub url: String,
    /// The HMAC key (secret).
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// `sha256=<hex>` of HMAC-SHA256(`secret`, `body`).
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn transport(e: reqwest::Error) -> SendError {
    // Never the URL: Telegram's carries the bot token.
    SendError::Retry {
        why: e.without_url().to_string(),
        after: None,
    }
}

fn by_status(status: reqwest::StatusCode, body: &str, after: Option<Duration>) -> SendError {
    let why = format!(
        "HTTP {status}: {}",
        body.chars().take(200).collect::<String>()
    );
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        SendError::Retry { why, after }
    } else {
        SendError::Permanent(why)
    }
}

impl Telegram {
    /// Posts `text` (HTML parse mode).
    pub async fn send(&self, client: &reqwest::Client, text: &str) -> Result<(), SendError> {
        let url = format!(
            "{}/bot{}/sendMessage",
            self.base_url.trim_end_matches('/'),
            self.bot_token
        );
        let body = serde_json::json!({
            "chat_id": self.chat_id,
            "text": text,
            "parse_mode": "HTML",
            "disable_web_page_preview": true,
        });
        let resp = client
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        let text = resp.text().await.map_err(transport)?;
        if status.is_success() {
            return Ok(());
        }
        // `{"ok":false,"error_code":429,"parameters":{"retry_after":3}}`
        let after = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.pointer("/parameters/retry_after").and_then(Value::as_u64))
            .map(Duration::from_secs);
        Err(by_status(status, &text, after))
    }
}

impl Webhook {
    /// Posts `body` with its signature, the event name and a delivery id that stays the
    /// same when a delivery is repeated (so receivers can drop duplicates).
    pub async fn send(
        &self,
        client: &reqwest::Client,
        event: Event,
        delivery: &str,
        body: &Value,
    ) -> Result<(), SendError> {
        let bytes = serde_json::to_vec(body).expect("JSON values encode");
        let resp = client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("x-sluice-event", event.as_str())
            .header("x-sluice-delivery", delivery)
            .header("x-sluice-signature-256", signature(&self.secret, &bytes))
            .body(bytes)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.unwrap_or_default();
        Err(by_status(status, &text, after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_rfc_4231_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
