//! Memory with many logins waiting at once: each waiting user has a browser that started a
//! passwordless login and holds the wait page's event stream open, as the page's script does.

use std::time::{Duration, Instant};

use anyhow::ensure;
use futures_util::stream::{self, StreamExt};
use serde::Serialize;

use crate::browser::Browser;
use crate::server::SesamProcess;

#[derive(Debug, Serialize)]
pub struct Waiting {
    pub streams_open: usize,
    pub failed: usize,
    pub error_samples: Vec<String>,
    pub seconds_to_open: f64,
    /// Sesam's RSS just before the first stream opened.
    pub rss_before: u64,
    /// Sesam's RSS with all streams open (after a settling pause).
    pub rss_with_streams: u64,
    /// Cores Sesam keeps busy while the streams only wait (timer re-reads, keep-alives).
    pub sesam_cores_while_waiting: f64,
    /// Seconds until Sesam had closed the streams after the browsers went away, if it did
    /// within 20 s (a stream left open would keep waking up during the scenarios).
    pub seconds_to_close: Option<f64>,
}

/// Opens a pending challenge with an event stream for each of `usernames`, measures, and
/// closes them all.
pub async fn pending_with_streams(
    sesam: &SesamProcess,
    http: &reqwest::Client,
    usernames: &[String],
    concurrency: usize,
) -> Waiting {
    let rss_before = sesam.memory().map_or(0, |m| m.rss);
    let descriptors_before = sesam.open_descriptors();
    let started = Instant::now();
    let results: Vec<anyhow::Result<reqwest::Response>> = stream::iter(usernames)
        .map(|name| open(http.clone(), &sesam.base_url, name))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let seconds_to_open = started.elapsed().as_secs_f64();
    let mut streams = Vec::new();
    let mut error_samples = Vec::new();
    let mut failed = 0;
    for r in results {
        match r {
            Ok(s) => streams.push(s),
            Err(e) => {
                failed += 1;
                if error_samples.len() < 5 {
                    error_samples.push(format!("{e:#}"));
                }
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu_before = sesam.cpu_time();
    let measured = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sesam_cores_while_waiting =
        (sesam.cpu_time() - cpu_before).as_secs_f64() / measured.elapsed().as_secs_f64();
    let rss_with_streams = sesam.memory().map_or(0, |m| m.rss);
    let streams_open = streams.len();
    drop(streams);
    let closing = Instant::now();
    let mut seconds_to_close = None;
    while closing.elapsed() < Duration::from_secs(20) {
        if sesam.open_descriptors() <= descriptors_before + 16 {
            seconds_to_close = Some(closing.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Waiting {
        streams_open,
        failed,
        error_samples,
        seconds_to_open,
        rss_before,
        rss_with_streams,
        sesam_cores_while_waiting,
        seconds_to_close,
    }
}

/// Username step, then the event stream, which is returned still open after its first event.
async fn open(
    http: reqwest::Client,
    base: &str,
    username: &str,
) -> anyhow::Result<reqwest::Response> {
    let mut b = Browser::new(http, base);
    let form = b.get("/login").await?;
    let csrf = form.csrf()?.to_owned();
    let sent = b
        .post_form("/login", &[("csrf", &csrf), ("username", username)])
        .await?;
    ensure!(
        sent.redirect()? == "/login/wait",
        "{username}: not the wait page"
    );
    let mut events = b.send_get("/login/wait/events").await?;
    ensure!(
        events.status().is_success(),
        "event stream: {}",
        events.status()
    );
    let first = events.chunk().await?.unwrap_or_default();
    ensure!(
        String::from_utf8_lossy(&first).contains("pending"),
        "{username}: the stream did not report a pending challenge"
    );
    Ok(events)
}
