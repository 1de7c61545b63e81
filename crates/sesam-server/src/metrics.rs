//! Prometheus metrics for the operator: logins by branch and outcome, challenge answer times,
//! pushes, HTTP requests, the database pool and open event streams, served at `/metrics`.
//!
//! One registry per server (not a process-wide one), so the test suite's many servers in one
//! process each count their own. Every label value comes from a fixed set in the code (route
//! templates, event names), never from what a client sent.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    pub branch: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChallengeLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PushLabels {
    pub provider: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: &'static str,
    pub status: u16,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// At most this many audit event names get a series of their own (the code has about 100).
const MAX_EVENT_NAMES: usize = 256;

pub struct Metrics {
    registry: Registry,
    logins: Family<LoginLabels, Counter>,
    audit_events: Family<EventLabels, Counter>,
    event_names: Mutex<HashSet<String>>,
    challenge_answers: HistogramFamily<ChallengeLabels>,
    pushes: Family<PushLabels, Counter>,
    http: HistogramFamily<HttpLabels>,
    pool_open: Gauge,
    pool_idle: Gauge,
    event_streams: Gauge,
}

fn challenge_buckets() -> Histogram {
    // Seconds from the push to the app's answer: a person reads a code and types it.
    Histogram::new([1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0, 120.0])
}

fn http_buckets() -> Histogram {
    // 0.5 ms .. about 4 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sesam");
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register(
            "logins",
            "Login steps by branch (password, passwordless, step_up, totp) and outcome",
            logins.clone(),
        );
        let audit_events = Family::<EventLabels, Counter>::default();
        registry.register(
            "audit_events",
            "Audit events written, by event name",
            audit_events.clone(),
        );
        let challenge_answers: HistogramFamily<ChallengeLabels> =
            Family::new_with_constructor(challenge_buckets);
        registry.register(
            "challenge_answer_seconds",
            "Time from a challenge's start to the app's answer, by result",
            challenge_answers.clone(),
        );
        let pushes = Family::<PushLabels, Counter>::default();
        registry.register(
            "push_deliveries",
            "Pushes handed to Apple or Google (or the outbox), by provider and result",
            pushes.clone(),
        );
        let http: HistogramFamily<HttpLabels> = Family::new_with_constructor(http_buckets);
        registry.register(
            "http_request_duration_seconds",
            "HTTP requests by route template, method and status, with their duration",
            http.clone(),
        );
        let pool_open = Gauge::default();
        registry.register(
            "db_pool_connections",
            "Database connections the pool holds open",
            pool_open.clone(),
        );
        let pool_idle = Gauge::default();
        registry.register(
            "db_pool_idle_connections",
            "Open database connections not in use",
            pool_idle.clone(),
        );
        let event_streams = Gauge::default();
        registry.register(
            "event_streams_open",
            "Waiting browsers' open event streams",
            event_streams.clone(),
        );
        Metrics {
            registry,
            logins,
            audit_events,
            event_names: Mutex::new(HashSet::new()),
            challenge_answers,
            pushes,
            http,
            pool_open,
            pool_idle,
            event_streams,
        }
    }

    /// An audit event was written: counted by name, and as a login step when it is one.
    pub fn audit_event(&self, event: &str) {
        let known = {
            let mut names = self
                .event_names
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            names.contains(event)
                || (names.len() < MAX_EVENT_NAMES && names.insert(event.to_owned()))
        };
        let event_label = if known { event } else { "other" };
        self.audit_events
            .get_or_create(&EventLabels {
                event: event_label.to_owned(),
            })
            .inc();
        if let Some(labels) = login_step(event) {
            self.logins.get_or_create(&labels).inc();
        }
    }

    /// The app answered a challenge `seconds` after it started.
    pub fn challenge_answered(&self, result: &'static str, seconds: f64) {
        self.challenge_answers
            .get_or_create(&ChallengeLabels { result })
            .observe(seconds.max(0.0));
    }

    pub fn push(&self, provider: &'static str, result: &'static str) {
        self.pushes
            .get_or_create(&PushLabels { provider, result })
            .inc();
    }

    pub fn event_stream_opened(&self) {
        self.event_streams.inc();
    }

    pub fn event_stream_closed(&self) {
        self.event_streams.dec();
    }

    /// The text a scraper reads (OpenMetrics), with the pool's use as of now.
    pub fn render(&self, pool: sesam_store::PoolUse) -> Result<String, std::fmt::Error> {
        self.pool_open.set(i64::from(pool.open));
        self.pool_idle
            .set(i64::try_from(pool.idle).unwrap_or(i64::MAX));
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, &self.registry)?;
        Ok(body)
    }
}

/// The login steps among the audit events: `login.<branch>.<outcome>`, and the refusals
/// before any factor (`login.refused.<why>`).
fn login_step(event: &str) -> Option<LoginLabels> {
    let mut parts = event.split('.');
    if parts.next() != Some("login") {
        return None;
    }
    let (first, second) = (parts.next()?, parts.next()?);
    let branch = match first {
        "password" => "password",
        "passwordless" => "passwordless",
        "step_up" => "step_up",
        "totp" => "totp",
        "refused" => "any",
        _ => return None,
    };
    let outcome = match (first, second) {
        ("refused", _) => "refused",
        (_, "succeeded") => "succeeded",
        (_, "failed") => "failed",
        (_, "refused") => "refused",
        _ => return None,
    };
    Some(LoginLabels { branch, outcome })
}

fn method_label(method: &axum::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "HEAD" => "HEAD",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Times every request that matched a route, labelled with the route's template.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .http
        .get_or_create(&HttpLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`: only where a token is configured, and only for a scraper that sends it.
pub async fn serve(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = &state.config.metrics_token else {
        return crate::web::error::AppError::NotFound.into_response();
    };
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        sent.as_bytes(),
        token.expose().as_bytes(),
    )) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"sesam-metrics\"")],
            "Send the configured metrics_token as a bearer token.\n",
        )
            .into_response();
    }
    match state.metrics.render(state.store.pool_use()) {
        Ok(body) => (
            [
                (
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_steps_are_read_from_the_audit_event_names() {
        let step = |e| login_step(e).map(|l| (l.branch, l.outcome));
        assert_eq!(step("login.password.failed"), Some(("password", "failed")));
        assert_eq!(
            step("login.passwordless.succeeded"),
            Some(("passwordless", "succeeded"))
        );
        assert_eq!(step("login.totp.refused.locked"), Some(("totp", "refused")));
        assert_eq!(step("login.refused.locked"), Some(("any", "refused")));
        assert_eq!(step("login.directory.mismatch"), None);
        assert_eq!(step("device.removed"), None);
        assert_eq!(step("login"), None);
    }

    #[test]
    fn event_names_beyond_the_cap_share_one_series() {
        let metrics = Metrics::new();
        for i in 0..MAX_EVENT_NAMES + 10 {
            metrics.audit_event(&format!("test.event{i}"));
        }
        let body = metrics
            .render(sesam_store::PoolUse { open: 1, idle: 1 })
            .unwrap();
        let series = body
            .lines()
            .filter(|l| l.starts_with("sesam_audit_events_total{"))
            .count();
        assert_eq!(series, MAX_EVENT_NAMES + 1, "the cap plus \"other\"");
        assert!(body.contains("sesam_audit_events_total{event=\"other\"} 10"));
    }
}
