//! Tests of the real client code against local mock servers on random ports.
//! The mocks record every request, so the tests check what Apple/Google would have received.

mod apns;
mod fcm;
mod pusher;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::transport::{Clock, Tuning};
use crate::Notification;

/// One request as the mock saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) version: Version,
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("header is ASCII"))
            .unwrap_or_else(|| panic!("header {name} missing in {self:?}"))
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("body is JSON")
    }
}

/// What the mock answers next.
#[derive(Clone)]
pub(crate) enum Reply {
    Status(u16, String),
    /// Answers only after this long, to make the client time out.
    Hang(Duration),
}

/// A mock server: answers scripted replies in order (then 200 with `{}`), records every request,
/// and answers `POST /token` (the OAuth endpoint) with a fresh access token.
#[derive(Clone, Default)]
pub(crate) struct Mock {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    tokens_issued: Arc<Mutex<u32>>,
}

impl Mock {
    /// Starts the mock on 127.0.0.1 and returns it with its `http://` base URL. axum's server
    /// accepts both HTTP/1.1 and HTTP/2 prior knowledge (h2c) on the same port.
    pub(crate) async fn start() -> (Mock, String) {
        let mock = Mock::default();
        let app = Router::new().fallback(record).with_state(mock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("mock server");
        });
        (mock, format!("http://{addr}"))
    }

    pub(crate) fn reply(&self, reply: Reply) {
        self.replies.lock().expect("lock").push_back(reply);
    }

    pub(crate) fn status(&self, status: u16, body: &str) {
        self.reply(Reply::Status(status, body.to_owned()));
    }

    /// Requests seen, the OAuth token requests left out.
    pub(crate) fn pushes(&self) -> Vec<Seen> {
        self.all_requests()
            .into_iter()
            .filter(|seen| seen.path != "/token")
            .collect()
    }

    pub(crate) fn token_requests(&self) -> Vec<Seen> {
        self.all_requests()
            .into_iter()
            .filter(|seen| seen.path == "/token")
            .collect()
    }

    fn all_requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn record(State(mock): State<Mock>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .expect("request body");
    let path = parts.uri.path().to_owned();
    mock.seen.lock().expect("lock").push(Seen {
        version: parts.version,
        method: parts.method,
        path: path.clone(),
        headers: parts.headers,
        body,
    });

    if path == "/token" {
        let n = {
            let mut issued = mock.tokens_issued.lock().expect("lock");
            *issued += 1;
            *issued
        };
        let token = serde_json::json!({
            "access_token": format!("ya29.access-{n}"),
            "expires_in": 3599,
            "token_type": "Bearer",
        });
        return (StatusCode::OK, axum::Json(token)).into_response();
    }

    let reply = mock.replies.lock().expect("lock").pop_front();
    match reply {
        None => (StatusCode::OK, "{}").into_response(),
        Some(Reply::Status(status, body)) => {
            let status = StatusCode::from_u16(status).expect("status");
            (status, [("content-type", "application/json")], body).into_response()
        }
        Some(Reply::Hang(pause)) => {
            tokio::time::sleep(pause).await;
            (StatusCode::OK, "{}").into_response()
        }
    }
}

/// Short timings so the retry and timeout tests take well under a second or two.
pub(crate) fn quick_tuning() -> Tuning {
    Tuning {
        request_timeout: Duration::from_millis(700),
        connect_timeout: Duration::from_millis(700),
        retry_backoff: Duration::from_millis(20),
        ..Tuning::default()
    }
}

/// A clock the test moves by hand; returns it with the handle that sets it.
pub(crate) fn manual_clock(start: u64) -> (Clock, Arc<Mutex<u64>>) {
    let now = Arc::new(Mutex::new(start));
    let reader = now.clone();
    (Arc::new(move || *reader.lock().expect("lock")), now)
}

pub(crate) fn notification() -> Notification {
    Notification {
        challenge_id: "ch-0f3a9c".to_owned(),
        title: "Sign-in request".to_owned(),
        body: "Open Sesam to see the request.".to_owned(),
    }
}

/// Splits a compact JWS into its decoded header, decoded claims, signing input and signature.
pub(crate) fn split_jws(jws: &str) -> (serde_json::Value, serde_json::Value, String, Vec<u8>) {
    use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose};
    use base64::{alphabet, Engine as _};
    // gcp_auth pads its base64url parts, APNs tokens must not; accept both, check APNs apart.
    let base64url = GeneralPurpose::new(
        &alphabet::URL_SAFE,
        general_purpose::NO_PAD.with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let parts: Vec<&str> = jws.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWS has three parts: {jws}");
    let decode = |part: &str| base64url.decode(part).expect("base64url");
    let header = serde_json::from_slice(&decode(parts[0])).expect("header JSON");
    let claims = serde_json::from_slice(&decode(parts[1])).expect("claims JSON");
    (
        header,
        claims,
        format!("{}.{}", parts[0], parts[1]),
        decode(parts[2]),
    )
}
