//! What the APNs and FCM senders share: timeouts, the one-retry rule, and error texts.
//! Kept apart so both providers retry and time out in exactly the same way.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Delivery;

/// Unix seconds. A parameter rather than a call deep inside, so token renewal is testable.
pub(crate) type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub(crate) fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            // A clock before 1970 is broken anyway; 0 makes the next token renewal happen at once.
            .unwrap_or(0)
    })
}

/// Timing of the outgoing calls; tests shorten it so timeouts can be exercised quickly.
#[derive(Clone)]
pub(crate) struct Tuning {
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) retry_backoff: Duration,
    pub(crate) clock: Clock,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retry_backoff: Duration::from_millis(300),
            clock: system_clock(),
        }
    }
}

/// The result of one HTTP attempt.
pub(crate) enum Attempt {
    /// The answer will not change by asking again (success, 4xx, bad input).
    Final(Delivery),
    /// 5xx, timeout or connection trouble: worth exactly one more try.
    Transient(String),
}

/// Runs `attempt` and, if it failed transiently, once more after a short pause. One retry
/// rides out a dropped connection or a blip at Apple/Google without holding a login for long.
pub(crate) async fn at_most_twice<F, Fut>(backoff: Duration, mut attempt: F) -> Delivery
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt>,
{
    match attempt().await {
        Attempt::Final(delivery) => return delivery,
        Attempt::Transient(reason) => {
            tracing::debug!(%reason, "push attempt failed, retrying once");
        }
    }
    tokio::time::sleep(backoff).await;
    match attempt().await {
        Attempt::Final(delivery) => delivery,
        Attempt::Transient(reason) => Delivery::Failed(reason),
    }
}

/// Classifies a reqwest error. The URL is dropped because for APNs it holds the device token.
pub(crate) fn transport_failure(service: &str, err: reqwest::Error) -> Attempt {
    let transient = !err.is_builder();
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let reason = format!("{service} {kind}: {}", error_chain(&err.without_url()));
    if transient {
        Attempt::Transient(reason)
    } else {
        Attempt::Final(Delivery::Failed(reason))
    }
}

/// An error with its causes, since the top-level texts of reqwest and gcp_auth are often vague.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Bounds text taken from a provider's answer, so a large error page cannot flood the logs.
pub(crate) fn clip(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A device token shortened for logs: enough to correlate, not enough to push to.
pub(crate) fn redact(token: &str) -> String {
    let head: String = token.chars().take(8).collect();
    format!("{head}…")
}
