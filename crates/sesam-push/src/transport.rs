//! What the APNs and FCM senders share: timeouts, the one-retry rule, and error texts.
//! Kept apart so both providers retry and time out in exactly the same way.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Delivery, Provider, PushError};

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
        Attempt::Transient(reason) => Delivery::Unavailable {
            reason,
            retry_after: None,
        },
    }
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
