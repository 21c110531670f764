//! Polling with a deadline: the only way tests here wait for something.

use std::future::Future;
use std::time::{Duration, Instant};

/// How much longer than nominal a test may wait, from `SLUICE_TEST_PATIENCE` (a factor,
/// default 1). A loaded CI machine sets it higher instead of tests sleeping longer.
pub fn patience() -> f64 {
    std::env::var("SLUICE_TEST_PATIENCE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|f: &f64| *f > 0.0)
        .unwrap_or(1.0)
}

/// Polls `probe` every 50 ms until it returns `Some`, or fails after `deadline × patience`
/// with the last observation in the message.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = deadline.mul_f64(patience());
    let start = Instant::now();
    loop {
        let last = match probe().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_when_ready_and_panics_at_deadline() {
        let mut n = 0;
        let v = eventually("counter", Duration::from_secs(5), || {
            n += 1;
            let r = if n >= 3 { Ok(n) } else { Err(format!("n={n}")) };
            async move { r }
        })
        .await;
        assert_eq!(v, 3);
        let r = tokio::spawn(async {
            eventually::<(), _, _>("never", Duration::from_millis(100), || async {
                Err("still no".to_string())
            })
            .await
        })
        .await;
        let msg = *r.unwrap_err().into_panic().downcast::<String>().unwrap();
        assert!(msg.contains("waiting for never; last: still no"), "{msg}");
    }
}
