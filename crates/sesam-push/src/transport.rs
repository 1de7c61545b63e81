//! What the APNs and FCM senders share: timeouts, the retry rules, and error texts.
//! Kept apart so both providers retry and time out in exactly the same way.
//!
//! The retry rules, for one push (the login waits on no push, but a push that arrives late is
//! worth little, so every bound is short):
//! - At most [`MAX_ATTEMPTS`] requests in all, each bounded by `request_timeout`.
//! - A 5xx answer, a timeout or a connection failure is retried after `retry_backoff`, then after
//!   twice that (300 ms, 600 ms by default): a blip at Apple/Google or a dropped connection is
//!   ridden out, an outage ends the push within about 3 × `request_timeout` + 0.9 s.
//! - A 429 with `Retry-After` (seconds or an HTTP-date) is retried once, after exactly that
//!   wait, if it is at most `max_retry_after`; a longer wait is not slept at all: the push fails
//!   at once, saying when the provider would take it. A 429 without `Retry-After` is treated
//!   like a 5xx.
//! - Anything else (success, other 4xx, a refused TLS certificate) is final.
//! - When the attempts are used up, or the provider asks for a longer wait, the push ends as
//!   [`Delivery::Unavailable`]: the server's retry queue tries it again later.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::{Delivery, Provider, PushError};

/// Requests per push at most, the first one included.
pub(crate) const MAX_ATTEMPTS: u32 = 3;

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
    /// The pause before the second attempt; the one before the third is twice as long.
    pub(crate) retry_backoff: Duration,
    /// The longest `Retry-After` that is waited for; a longer one fails the push at once.
    pub(crate) max_retry_after: Duration,
    pub(crate) clock: Clock,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retry_backoff: Duration::from_millis(300),
            max_retry_after: Duration::from_secs(5),
            clock: system_clock(),
        }
    }
}

/// The result of one HTTP attempt.
pub(crate) enum Attempt {
    /// The answer will not change by asking again (success, 4xx, bad input).
    Final(Delivery),
    /// 5xx, timeout or connection trouble: worth another try after a backoff.
    Transient(String),
    /// 429: the provider asks to slow down, perhaps saying for how long (`Retry-After`).
    RateLimited {
        retry_after: Option<Duration>,
        reason: String,
    },
}

impl Attempt {
    /// The attempt for a 429 answer, with the wait its `Retry-After` header asks for.
    pub(crate) fn rate_limited(headers: &HeaderMap, clock: &Clock, reason: String) -> Attempt {
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| retry_after(value, clock()));
        Attempt::RateLimited {
            retry_after,
            reason,
        }
    }
}

/// The wait a `Retry-After` value asks for: delay-seconds, or an HTTP-date compared with `now`
/// (unix seconds; a date in the past means "now"). `None` when it is neither.
pub(crate) fn retry_after(value: &str, now: u64) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is still "very long", not "unreadable".
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Runs `attempt` under the retry rules of the module doc and returns what became of the push.
pub(crate) async fn with_retries<F, Fut>(
    provider: Provider,
    tuning: &Tuning,
    mut attempt: F,
) -> Delivery
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt>,
{
    let mut backoff = tuning.retry_backoff;
    let mut waited_as_asked = false;
    let mut made = 1;
    loop {
        let last = made >= MAX_ATTEMPTS;
        let pause = match attempt().await {
            Attempt::Final(delivery) => return delivery,
            Attempt::RateLimited {
                retry_after: Some(wait),
                reason,
            } => {
                if last || waited_as_asked || wait > tuning.max_retry_after {
                    // Not slept here; the caller may try again when the provider said.
                    return Delivery::Unavailable {
                        reason: format!(
                            "rate limited by {provider}, retry after {} s ({reason})",
                            whole_seconds(wait)
                        ),
                        retry_after: Some(whole_seconds(wait)),
                    };
                }
                waited_as_asked = true;
                tracing::debug!(%reason, wait_ms = wait.as_millis(), "push rate limited, waiting as asked");
                wait
            }
            Attempt::Transient(reason)
            | Attempt::RateLimited {
                retry_after: None,
                reason,
            } => {
                if last {
                    return Delivery::Unavailable {
                        reason,
                        retry_after: None,
                    };
                }
                tracing::debug!(%reason, attempt = made, "push attempt failed, retrying");
                let pause = backoff;
                backoff = backoff.saturating_mul(2);
                pause
            }
        };
        tokio::time::sleep(pause).await;
        made += 1;
    }
}

/// A wait in whole seconds for a log line, rounded up so "0 s" never hides a real wait.
fn whole_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// A client builder with the shared timeouts that trusts, besides the bundled roots, the
/// certificates in `ca_pem` (a private CA in front of, or standing in for, the provider).
/// Verification itself is never switched off.
pub(crate) fn client_builder(
    provider: Provider,
    tuning: &Tuning,
    ca_pem: Option<&str>,
) -> Result<reqwest::ClientBuilder, PushError> {
    let mut builder = reqwest::Client::builder()
        .timeout(tuning.request_timeout)
        .connect_timeout(tuning.connect_timeout);
    if let Some(pem) = ca_pem {
        let bad = |reason: String| PushError::CaCertificate { provider, reason };
        let certificates = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|err| bad(error_chain(&err)))?;
        if certificates.is_empty() {
            return Err(bad("no PEM CERTIFICATE block in it".to_owned()));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    Ok(builder)
}

/// The TLS error behind a reqwest error, if the handshake is what failed. It sits inside
/// (possibly nested) `io::Error`s, whose `source()` skips the wrapped error, hence `get_ref`.
fn tls_error(err: &reqwest::Error) -> Option<&rustls::Error> {
    fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(tls) = find(inner) {
                return Some(tls);
            }
        }
        err.source().and_then(find)
    }
    find(err)
}

/// Classifies a reqwest error; `service` starts the reason ("fcm access token"). The URL is
/// dropped because for APNs it holds the device token.
pub(crate) fn transport_failure(provider: Provider, service: &str, err: reqwest::Error) -> Attempt {
    // A refused certificate or protocol is configuration (CA file, URL, a proxy in the way),
    // not a blip: asking again would fail the same way and only hold up the login.
    if let Some(tls) = tls_error(&err) {
        let what = match tls {
            rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::UnsupportedNameType => {
                format!("TLS certificate not trusted (check {provider}_ca_file and {provider}_base_url)")
            }
            _ => "TLS handshake failed".to_owned(),
        };
        return Attempt::Final(Delivery::Failed(format!("{service} {what}: {tls}")));
    }
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
