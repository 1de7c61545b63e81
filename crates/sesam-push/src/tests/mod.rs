//! Tests of the real client code against local mock servers on random ports.
//! The mocks record every request, so the tests check what Apple/Google would have received.

mod apns;
mod fcm;
mod pusher;
mod transport;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

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
    /// When the mock had read it, to measure the client's pauses between attempts.
    pub(crate) at: Instant,
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
    /// A status with extra response headers (`Retry-After`).
    WithHeaders(u16, Vec<(&'static str, String)>, String),
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
    /// TCP connections the TLS mock accepted (handshake or not), to see retries that never
    /// got as far as a request.
    connections: Arc<AtomicUsize>,
}

/// Which protocols the TLS mock offers in ALPN (and serves).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alpn {
    /// `h2` and `http/1.1`, as Google does.
    H2AndHttp1,
    /// Only `http/1.1`: a server (or proxy) that APNs' client must refuse.
    Http1Only,
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

    /// Starts the mock behind TLS with a certificate for 127.0.0.1 and localhost issued by
    /// [`test_ca`], and returns it with its `https://127.0.0.1:port` base URL.
    pub(crate) async fn start_tls(alpn: Alpn) -> (Mock, String) {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use hyper_util::server::conn::auto;
        use hyper_util::service::TowerToHyperService;
        use tokio_rustls::rustls;

        let ca = test_ca();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![ca.server_cert_der.clone().into()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(ca.server_key_der.clone().into()),
            )
            .expect("server certificate");
        tls.alpn_protocols = match alpn {
            Alpn::H2AndHttp1 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Alpn::Http1Only => vec![b"http/1.1".to_vec()],
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let mock = Mock::default();
        let app = Router::new().fallback(record).with_state(mock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let connections = mock.connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                connections.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                let service = TowerToHyperService::new(app.clone());
                tokio::spawn(async move {
                    // A refused handshake is what some tests are about; nothing to report here.
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut server = auto::Builder::new(TokioExecutor::new());
                    if alpn == Alpn::Http1Only {
                        server = server.http1_only();
                    }
                    let _ = server.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        (mock, format!("https://{addr}"))
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
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
        at: Instant::now(),
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
        Some(Reply::WithHeaders(status, headers, body)) => {
            let status = StatusCode::from_u16(status).expect("status");
            let mut response =
                (status, [("content-type", "application/json")], body).into_response();
            for (name, value) in headers {
                response
                    .headers_mut()
                    .insert(name, value.parse().expect("header value"));
            }
            response
        }
        Some(Reply::Hang(pause)) => {
            tokio::time::sleep(pause).await;
            (StatusCode::OK, "{}").into_response()
        }
    }
}

/// A CA made for this test run and a server certificate it issued for 127.0.0.1 and localhost.
pub(crate) struct TestCa {
    pub(crate) ca_pem: String,
    server_cert_der: Vec<u8>,
    server_key_der: Vec<u8>,
}

/// Made once per test binary: key generation is the slow part.
pub(crate) fn test_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(make_test_ca)
}

fn make_test_ca() -> TestCa {
    use openssl::asn1::{Asn1Integer, Asn1Time};
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::x509::extension::{
        AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage,
        SubjectAlternativeName, SubjectKeyIdentifier,
    };
    use openssl::x509::{X509Builder, X509NameBuilder, X509};

    let key = || -> PKey<Private> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
        PKey::from_ec_key(EcKey::generate(&group).expect("EC key")).expect("PKey")
    };
    let name = |cn: &str| {
        let mut name = X509NameBuilder::new().expect("name");
        name.append_entry_by_nid(Nid::COMMONNAME, cn).expect("CN");
        name.build()
    };
    let builder = |serial: u32, subject: &openssl::x509::X509NameRef| -> X509Builder {
        let mut b = X509::builder().expect("builder");
        b.set_version(2).expect("v3");
        let serial = Asn1Integer::from_bn(&BigNum::from_u32(serial).expect("bn")).expect("serial");
        b.set_serial_number(&serial).expect("serial");
        b.set_subject_name(subject).expect("subject");
        b.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
            .expect("not before");
        b.set_not_after(&Asn1Time::days_from_now(2).expect("time"))
            .expect("not after");
        b
    };

    let ca_key = key();
    let ca_name = name("Sesam push test CA");
    let mut ca = builder(1, &ca_name);
    ca.set_issuer_name(&ca_name).expect("issuer");
    ca.set_pubkey(&ca_key).expect("pubkey");
    ca.append_extension(BasicConstraints::new().critical().ca().build().expect("bc"))
        .expect("bc");
    ca.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()
            .expect("ku"),
    )
    .expect("ku");
    let ski = SubjectKeyIdentifier::new()
        .build(&ca.x509v3_context(None, None))
        .expect("ski");
    ca.append_extension(ski).expect("ski");
    ca.sign(&ca_key, MessageDigest::sha256()).expect("sign CA");
    let ca = ca.build();

    let server_key = key();
    let mut server = builder(2, &name("localhost"));
    server.set_issuer_name(ca.subject_name()).expect("issuer");
    server.set_pubkey(&server_key).expect("pubkey");
    server
        .append_extension(BasicConstraints::new().build().expect("bc"))
        .expect("bc");
    server
        .append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .build()
                .expect("ku"),
        )
        .expect("ku");
    server
        .append_extension(ExtendedKeyUsage::new().server_auth().build().expect("eku"))
        .expect("eku");
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .ip("127.0.0.1")
        .build(&server.x509v3_context(Some(&ca), None))
        .expect("san");
    server.append_extension(san).expect("san");
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&server.x509v3_context(Some(&ca), None))
        .expect("aki");
    server.append_extension(aki).expect("aki");
    server
        .sign(&ca_key, MessageDigest::sha256())
        .expect("sign server certificate");
    let server = server.build();

    TestCa {
        ca_pem: String::from_utf8(ca.to_pem().expect("CA PEM")).expect("PEM is ASCII"),
        server_cert_der: server.to_der().expect("DER"),
        server_key_der: server_key.private_key_to_pkcs8().expect("PKCS#8"),
    }
}

/// Short timings so the retry and timeout tests take well under a second or two.
pub(crate) fn quick_tuning() -> Tuning {
    Tuning {
        request_timeout: Duration::from_millis(700),
        connect_timeout: Duration::from_millis(700),
        retry_backoff: Duration::from_millis(20),
        max_retry_after: Duration::from_secs(2),
        ..Tuning::default()
    }
}

/// The pauses between the requests the mock saw, in order.
pub(crate) fn gaps(seen: &[Seen]) -> Vec<Duration> {
    seen.windows(2)
        .map(|w| w[1].at.duration_since(w[0].at))
        .collect()
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
