//! The strict form extractor (`StrictForm`) every HTML form post goes through: content type,
//! size cap, per-field UTF-8 and length checks, then serde_urlencoded.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{header, HeaderValue, Request};
use libfuzzer_sys::fuzz_target;
use sesam_server::web::form::{StrictForm, MAX_BODY_BYTES, MAX_FIELD_CHARS};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

/// A typical form: required, optional and unknown fields.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct LoginForm {
    username: String,
    csrf: String,
    remember: Option<String>,
}

fn request(content_type: &[u8], body: &[u8]) -> Request<Body> {
    let mut request = Request::post("/login");
    if let Ok(value) = HeaderValue::from_bytes(content_type) {
        request = request.header(header::CONTENT_TYPE, value);
    }
    request
        .body(Body::from(body.to_vec()))
        .expect("a POST with a valid header")
}

fuzz_target!(|data: &[u8]| {
    // Input: the Content-Type header on the first line, then the body.
    let (content_type, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let (login, pairs) = runtime().block_on(async {
        (
            StrictForm::<LoginForm>::from_request(request(content_type, body), &()).await,
            StrictForm::<Vec<(String, String)>>::from_request(request(content_type, body), &())
                .await,
        )
    });
    if let Ok(StrictForm(pairs)) = pairs {
        assert!(body.len() <= MAX_BODY_BYTES);
        for (name, value) in &pairs {
            assert!(name.chars().count() <= MAX_FIELD_CHARS);
            assert!(value.chars().count() <= MAX_FIELD_CHARS);
        }
    } else {
        assert!(
            login.is_err(),
            "a form the generic reader refuses was accepted"
        );
    }
});
