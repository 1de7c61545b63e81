//! The per-address flood guard on the endpoints an outsider can call in a loop: the OIDC
//! and SAML endpoints, the app API, SCIM and the login pages. It answers 429 with `Retry-After`,
//! in the format the caller reads (OAuth JSON, the app API's JSON, or a page).
//!
//! It is in memory, per node: it holds off floods, not careful guessing. Guessing is held by
//! the database-backed login limits and, at `/token`, by [`ClientAuthFailures`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Limits;
use crate::state::{AppState, ClientIp};
use crate::web::error::AppError;

pub struct FloodGuard {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    seen: AtomicU64,
}

impl FloodGuard {
    pub fn new(limits: &Limits) -> FloodGuard {
        let rate = NonZeroU32::new(limits.flood_requests_per_second.min(u32::MAX as u64) as u32)
            .unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.flood_burst.min(u32::MAX as u64) as u32)
            .unwrap_or(NonZeroU32::MIN);
        FloodGuard {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            clock: DefaultClock::default(),
            seen: AtomicU64::new(0),
        }
    }

    /// `Ok` when `ip` may send one more request, else the seconds to wait.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        // Now and then, forget the addresses that are back to a full allowance.
        if self.seen.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            wait.as_secs() + 1
        })
    }
}

/// Which answer format a path's callers read, or `None` for paths the guard leaves alone
/// (health, static files, the public keys and metadata, a waiting page's own polling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    OAuth,
    AppApi,
    Page,
    /// SCIM provisioning clients read SCIM's error format.
    Scim,
}

fn kind(path: &str) -> Option<Kind> {
    match path {
        "/token" | "/revoke" | "/userinfo" => Some(Kind::OAuth),
        p if p.starts_with("/api/app/") => Some(Kind::AppApi),
        p if p.starts_with("/scim/") => Some(Kind::Scim),
        "/authorize" | "/authorize/continue" | "/end_session" => Some(Kind::Page),
        "/saml/metadata" => None,
        p if p.starts_with("/saml/") => Some(Kind::Page),
        // The wait page's status and event stream are bound to a session with a challenge.
        p if p.starts_with("/login/wait") => None,
        p if p == "/login" || p.starts_with("/login/") => Some(Kind::Page),
        _ => None,
    }
}

pub async fn guard(
    State(state): State<AppState>,
    ip: ClientIp,
    request: Request,
    next: Next,
) -> Response {
    let (Some(kind), Some(ip)) = (kind(request.uri().path()), ip.0) else {
        return next.run(request).await;
    };
    match state.flood.check(ip) {
        Ok(()) => next.run(request).await,
        Err(seconds) => {
            tracing::warn!(%ip, path = request.uri().path(), "flood guard: too many requests");
            too_many(kind, seconds)
        }
    }
}

fn too_many(kind: Kind, seconds: u64) -> Response {
    let message = format!("Too many requests from this address. Retry after {seconds} s.");
    let mut response = match kind {
        Kind::OAuth => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::CACHE_CONTROL, "no-store")],
            Json(serde_json::json!({
                "error": "temporarily_unavailable",
                "error_description": message,
            })),
        )
            .into_response(),
        Kind::AppApi => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::CACHE_CONTROL, "no-store")],
            Json(serde_json::json!({ "error": "rate_limited", "message": message })),
        )
            .into_response(),
        Kind::Scim => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::CONTENT_TYPE, crate::web::scim::CONTENT_TYPE),
            ],
            serde_json::json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "status": "429",
                "detail": message,
            })
            .to_string(),
        )
            .into_response(),
        Kind::Page => return AppError::TooManyRequests(seconds).into_response(),
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// Failed client authentications at `/token` and `/revoke` per address, in a fixed window:
/// past the allowance, the address is refused before its secret is even checked. Each
/// attempt reserves a failure first and gives it back when it succeeds, so a parallel burst
/// gets no more guesses than a sequential one.
#[derive(Default)]
pub struct ClientAuthFailures(Mutex<HashMap<IpAddr, (Instant, u32)>>);

/// Failures allowed per address and window.
const AUTH_FAILURES: u32 = 20;
const AUTH_WINDOW: Duration = Duration::from_secs(60);

impl ClientAuthFailures {
    /// Counts one attempt of `ip` as a failure in advance; `Err(seconds to wait)` when the
    /// address has used its failures for this window.
    pub fn reserve(&self, ip: Option<IpAddr>) -> Result<(), u64> {
        let Some(ip) = ip else { return Ok(()) };
        let now = Instant::now();
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > 100_000 {
            map.retain(|_, (start, _)| now.duration_since(*start) < AUTH_WINDOW);
        }
        let entry = map.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= AUTH_WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= AUTH_FAILURES {
            return Err((AUTH_WINDOW - now.duration_since(entry.0)).as_secs() + 1);
        }
        entry.1 += 1;
        Ok(())
    }

    /// The attempt succeeded: it was no failure after all.
    pub fn release(&self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entry) = map.get_mut(&ip) {
            entry.1 = entry.1.saturating_sub(1);
        }
    }
}

/// The OAuth answer for an address over its client-authentication failures.
pub fn auth_failures_exceeded(seconds: u64) -> Response {
    too_many(Kind::OAuth, seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_get_the_format_their_callers_read() {
        assert_eq!(kind("/token"), Some(Kind::OAuth));
        assert_eq!(kind("/api/app/v1/challenges"), Some(Kind::AppApi));
        assert_eq!(kind("/saml/sso"), Some(Kind::Page));
        assert_eq!(kind("/scim/v2/Users"), Some(Kind::Scim));
        assert_eq!(kind("/login/password"), Some(Kind::Page));
        assert_eq!(kind("/login"), Some(Kind::Page));
        assert_eq!(kind("/loginx"), None);
        assert_eq!(kind("/login/wait/events"), None);
        assert_eq!(kind("/saml/metadata"), None);
        assert_eq!(kind("/healthz"), None);
        assert_eq!(kind("/static/sesam.css"), None);
    }

    #[test]
    fn the_guard_allows_the_burst_then_refuses_with_a_wait() {
        let limits = Limits {
            flood_requests_per_second: 1,
            flood_burst: 3,
            ..crate::config::Config::load(None, Vec::new())
                .unwrap()
                .limits
        };
        let guard = FloodGuard::new(&limits);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(guard.check(a), Ok(()));
        }
        let wait = guard.check(a).unwrap_err();
        assert!((1..=2).contains(&wait), "{wait}");
        assert_eq!(
            guard.check(b),
            Ok(()),
            "another address has its own allowance"
        );
    }

    #[test]
    fn client_auth_failures_block_after_the_allowance_and_successes_give_back() {
        let f = ClientAuthFailures::default();
        let ip = Some("192.0.2.9".parse().unwrap());
        for _ in 0..5 {
            f.reserve(ip).unwrap();
            f.release(ip);
        }
        for _ in 0..AUTH_FAILURES {
            assert_eq!(f.reserve(ip), Ok(()));
        }
        assert!(f.reserve(ip).is_err());
        assert_eq!(f.reserve(Some("192.0.2.10".parse().unwrap())), Ok(()));
    }
}
