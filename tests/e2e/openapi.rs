//! The app API does what docs/app-api.openapi.json says, in both directions:
//! - every answer the server gives has a status documented for its operation, and its body
//!   validates against the documented schema (and a documented status the test cannot reach
//!   fails the test, so the document lists nothing that does not happen);
//! - sample request bodies are accepted exactly when they are valid against the request
//!   schema, so the document is neither looser nor stricter than the server.
//!
//! The validator covers the part of OpenAPI 3.0 the document uses and refuses any keyword it
//! does not know, so a schema cannot quietly stop being checked.

use std::collections::BTreeSet;

use reqwest::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sesam_app::{sign_proof, AppClient, ProofClaims, SigningKey};

use crate::app_api::challenge_with_code;
use crate::harness::{test_config_with, TestDb, TestServer};
use sesam_core::ManualClock;

const PREFIX: &str = "/api/app/v1";

/// Keywords that only describe; they validate nothing.
const ANNOTATIONS: &[&str] = &["description", "example", "title", "default"];

struct Spec {
    doc: Value,
}

impl Spec {
    fn new(doc: Value) -> Spec {
        Spec { doc }
    }

    /// Follows `$ref` (`#/components/...`) until a schema or response without one.
    fn resolve<'a>(&'a self, mut node: &'a Value) -> &'a Value {
        for _ in 0..16 {
            let Some(reference) = node.get("$ref").and_then(Value::as_str) else {
                return node;
            };
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("only local references: {reference}"));
            node = self
                .doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling reference {reference}"));
        }
        panic!("reference loop at {node}");
    }

    /// Everything about `value` that `schema` does not allow, one line each.
    fn errors(&self, schema: &Value, value: &Value) -> Vec<String> {
        let mut out = Vec::new();
        self.check(schema, value, "$", &mut out);
        out
    }

    fn check(&self, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
        let schema = self.resolve(schema);
        let Some(rules) = schema.as_object() else {
            panic!("schema at {at} is not an object: {schema}");
        };
        let nullable = rules.get("nullable").and_then(Value::as_bool) == Some(true);
        if value.is_null() && nullable {
            return;
        }
        for (keyword, rule) in rules {
            let keyword = keyword.as_str();
            match keyword {
                "nullable" | "$ref" => {}
                k if ANNOTATIONS.contains(&k) => {}
                "type" => {
                    let want = rule.as_str().unwrap_or_default();
                    let fits = match want {
                        "object" => value.is_object(),
                        "array" => value.is_array(),
                        "string" => value.is_string(),
                        "boolean" => value.is_boolean(),
                        "integer" => value.is_i64() || value.is_u64(),
                        "number" => value.is_number(),
                        other => panic!("unknown type {other} at {at}"),
                    };
                    if !fits {
                        out.push(format!("{at}: {value} is not of type {want}"));
                        // The other keywords of this schema say nothing useful about it.
                        return;
                    }
                }
                "enum" => {
                    let choices = rule.as_array().expect("enum is a list");
                    if !choices.contains(value) {
                        out.push(format!("{at}: {value} is not one of {rule}"));
                    }
                }
                "required" => {
                    if let Some(object) = value.as_object() {
                        for name in rule.as_array().expect("required is a list") {
                            let name = name.as_str().expect("required names are strings");
                            if !object.contains_key(name) {
                                out.push(format!("{at}: `{name}` is missing"));
                            }
                        }
                    }
                }
                "properties" => {
                    if let Some(object) = value.as_object() {
                        for (name, sub) in rule.as_object().expect("properties is an object") {
                            if let Some(v) = object.get(name) {
                                self.check(sub, v, &format!("{at}.{name}"), out);
                            }
                        }
                    }
                }
                "additionalProperties" => {
                    if let Some(object) = value.as_object() {
                        let known = rules.get("properties").and_then(Value::as_object);
                        for (name, v) in object {
                            if known.is_some_and(|k| k.contains_key(name)) {
                                continue;
                            }
                            match rule {
                                Value::Bool(false) => {
                                    out.push(format!("{at}: `{name}` is not in the schema"))
                                }
                                Value::Bool(true) => {}
                                sub => self.check(sub, v, &format!("{at}.{name}"), out),
                            }
                        }
                    }
                }
                "items" => {
                    if let Some(items) = value.as_array() {
                        for (i, v) in items.iter().enumerate() {
                            self.check(rule, v, &format!("{at}[{i}]"), out);
                        }
                    }
                }
                "pattern" => {
                    if let Some(text) = value.as_str() {
                        let source = rule.as_str().expect("pattern is a string");
                        let pattern = regex::Regex::new(source)
                            .unwrap_or_else(|e| panic!("pattern at {at} does not compile: {e}"));
                        if !pattern.is_match(text) {
                            out.push(format!("{at}: {value} does not match {source}"));
                        }
                    }
                }
                "minLength" | "maxLength" => {
                    if let Some(text) = value.as_str() {
                        let bound = rule.as_u64().expect("a length is a number");
                        let length = text.chars().count() as u64;
                        let fits = if keyword == "minLength" {
                            length >= bound
                        } else {
                            length <= bound
                        };
                        if !fits {
                            out.push(format!("{at}: length {length} breaks {keyword} {bound}"));
                        }
                    }
                }
                "minimum" | "maximum" => {
                    if let Some(n) = value.as_f64() {
                        let bound = rule.as_f64().expect("a bound is a number");
                        let fits = if keyword == "minimum" {
                            n >= bound
                        } else {
                            n <= bound
                        };
                        if !fits {
                            out.push(format!("{at}: {n} breaks {keyword} {bound}"));
                        }
                    }
                }
                "allOf" => {
                    for sub in rule.as_array().expect("allOf is a list") {
                        self.check(sub, value, at, out);
                    }
                }
                "oneOf" => {
                    let fitting = rule
                        .as_array()
                        .expect("oneOf is a list")
                        .iter()
                        .filter(|sub| self.errors(sub, value).is_empty())
                        .count();
                    if fitting != 1 {
                        out.push(format!("{at}: fits {fitting} of the oneOf choices, not 1"));
                    }
                }
                "not" => {
                    if self.errors(rule, value).is_empty() {
                        out.push(format!("{at}: fits the schema under `not`"));
                    }
                }
                other => panic!("the validator does not know the keyword `{other}` (at {at})"),
            }
        }
    }

    fn operation(&self, method: &str, template: &str) -> &Value {
        let op = &self.doc["paths"][template][method.to_ascii_lowercase()];
        assert!(op.is_object(), "{method} {template} is not documented");
        op
    }

    /// The schema of the request body of an operation.
    fn request_schema(&self, method: &str, template: &str) -> &Value {
        let op = self.operation(method, template);
        &op["requestBody"]["content"]["application/json"]["schema"]
    }

    /// The body schema for an answer (`None`: no body), or why the answer is not documented.
    fn response_schema(
        &self,
        method: &str,
        template: &str,
        status: StatusCode,
    ) -> Result<Option<&Value>, String> {
        let op = self.operation(method, template);
        let Some(response) = op["responses"].get(status.as_str()) else {
            return Err(format!(
                "{method} {template} answered {status}, which the document does not list"
            ));
        };
        let response = self.resolve(response);
        Ok(response
            .get("content")
            .map(|content| &content["application/json"]["schema"]))
    }

    /// Every (method, path, status) the document lists.
    fn documented(&self) -> BTreeSet<(String, String, u16)> {
        let mut all = BTreeSet::new();
        for (path, ops) in self.doc["paths"].as_object().expect("paths") {
            for (method, op) in ops.as_object().expect("operations") {
                for status in op["responses"].as_object().expect("responses").keys() {
                    all.insert((
                        method.to_ascii_uppercase(),
                        path.clone(),
                        status.parse().expect("numeric status"),
                    ));
                }
            }
        }
        all
    }
}

/// Sends requests and checks every answer against the document; remembers what it saw.
struct Checker {
    spec: Spec,
    http: reqwest::Client,
    base: String,
    seen: BTreeSet<(String, String, u16)>,
}

impl Checker {
    /// Checks one answer and returns its status and JSON body (`Null` when it has none).
    async fn answer(
        &mut self,
        method: &Method,
        template: &str,
        r: reqwest::Response,
    ) -> (StatusCode, Value) {
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.expect("the body arrives");
        let what = format!("{method} {template} → {status}");
        assert_eq!(
            headers.get(CACHE_CONTROL).and_then(|v| v.to_str().ok()),
            Some("no-store"),
            "{what}: app API answers are not cached"
        );
        let schema = self
            .spec
            .response_schema(method.as_str(), template, status)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
        self.seen
            .insert((method.to_string(), template.to_owned(), status.as_u16()));
        let Some(schema) = schema else {
            assert!(
                bytes.is_empty(),
                "{what} has a body the document does not describe"
            );
            return (status, Value::Null);
        };
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "{what} is sent as {content_type:?}"
        );
        let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{what}: not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        let errors = self.spec.errors(schema, &body);
        assert!(errors.is_empty(), "{what}: {body}\n{}", errors.join("\n"));
        (status, body)
    }

    /// A request signed by `app` (or with `auth` as given) to `template` filled in as `path`.
    async fn send(
        &mut self,
        method: Method,
        template: &str,
        path: &str,
        auth: Auth<'_>,
        body: Option<(&str, Vec<u8>)>,
    ) -> (StatusCode, Value) {
        let full = format!("{PREFIX}{path}");
        let mut request = self
            .http
            .request(method.clone(), format!("{}{full}", self.base));
        let bytes = body.as_ref().map(|(_, b)| b.clone()).unwrap_or_default();
        request = match auth {
            Auth::None => request,
            Auth::Raw(value) => request.header(AUTHORIZATION, value),
            Auth::Device(app) => {
                request.header(AUTHORIZATION, app.proof(method.as_str(), &full, &bytes))
            }
            Auth::Enrolment(key) => {
                let header = sesam_app::enrolment_header(key.verifying_key());
                let claims = ProofClaims::now(method.as_str(), &full, &bytes);
                request.header(
                    AUTHORIZATION,
                    sesam_app::authorization(&sign_proof(key, &header, &claims)),
                )
            }
        };
        if let Some((content_type, bytes)) = body {
            request = request.header(CONTENT_TYPE, content_type).body(bytes);
        }
        let r = request.send().await.expect("the server answers");
        self.answer(&method, template, r).await
    }

    async fn json(
        &mut self,
        method: Method,
        template: &str,
        path: &str,
        auth: Auth<'_>,
        body: &Value,
    ) -> (StatusCode, Value) {
        let bytes = serde_json::to_vec(body).expect("JSON");
        self.send(
            method,
            template,
            path,
            auth,
            Some(("application/json", bytes)),
        )
        .await
    }

    /// Asserts the server takes `body` exactly when the request schema does.
    fn agrees(
        &self,
        method: &str,
        template: &str,
        body: &Value,
        status: StatusCode,
        ok: StatusCode,
    ) {
        let errors = self
            .spec
            .errors(self.spec.request_schema(method, template), body);
        let valid = errors.is_empty();
        assert!(
            valid == (status == ok),
            "{method} {template} answered {status} to {body}, which the schema finds {}",
            if valid {
                "valid".to_owned()
            } else {
                format!("invalid: {}", errors.join("; "))
            }
        );
        if !valid {
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{method} {template}: {body}"
            );
        }
    }
}

enum Auth<'a> {
    None,
    Raw(&'a str),
    Device(&'a AppClient),
    Enrolment(&'a SigningKey),
}

fn enrolment(code: &str, key: &SigningKey) -> Value {
    json!({
        "activation_code": code,
        "public_key": sesam_app::public_jwk(key.verifying_key()),
        "platform": "ios",
        "app_version": "3.0.0",
        "pin_length": 6,
        "display_name": "Anna's iPhone",
    })
}

/// `base` with `field` set to `value`, or removed when `value` is `None`.
fn with(base: &Value, field: &str, value: Option<Value>) -> Value {
    let mut body = base.clone();
    let object = body.as_object_mut().expect("an object");
    match value {
        Some(v) => object.insert(field.to_owned(), v),
        None => object.remove(field),
    };
    body
}

/// Values for the fields both the enrolment and the device update have, each valid or not
/// by the server's own rules; the test finds out which the schema says.
fn shared_samples() -> Vec<(&'static str, Option<Value>)> {
    let long_token = "a".repeat(4096);
    vec![
        ("app_version", Some(json!("3"))),
        ("app_version", Some(json!("3.1.0-beta.2+ios"))),
        ("app_version", Some(json!("2.9.9"))),
        ("app_version", Some(json!(""))),
        ("app_version", Some(json!("v3.0.0"))),
        ("app_version", Some(json!("3.0.0.1"))),
        ("app_version", Some(json!("3".repeat(33)))),
        ("app_version", Some(json!(3))),
        ("pin_length", Some(json!(0))),
        ("pin_length", Some(json!(64))),
        ("pin_length", Some(json!(65))),
        ("pin_length", Some(json!(-1))),
        ("pin_length", Some(json!("6"))),
        ("display_name", Some(json!("Æ".repeat(100)))),
        ("display_name", Some(json!("  Annas telefon  "))),
        ("display_name", Some(json!("Æ".repeat(101)))),
        ("display_name", Some(json!("   "))),
        ("display_name", Some(json!("Anna\u{202e}enohp"))),
        ("display_name", Some(json!("Anna\u{200b}"))),
        ("display_name", Some(json!("\u{202e}"))),
        ("display_name", Some(json!("Anna\nPhone"))),
        ("display_name", Some(json!(null))),
        ("push", Some(json!(null))),
        ("push", Some(json!({"provider": "apns", "token": "a1b2c3"}))),
        (
            "push",
            Some(json!({"provider": "fcm", "token": long_token})),
        ),
        (
            "push",
            Some(json!({"provider": "fcm", "token": format!("{long_token}a")})),
        ),
        ("push", Some(json!({"provider": "wns", "token": "a1b2"}))),
        ("push", Some(json!({"provider": "apns", "token": ""}))),
        ("push", Some(json!({"provider": "apns", "token": "  "}))),
        ("push", Some(json!({"provider": "apns", "token": "a\tb"}))),
        ("push", Some(json!({"provider": "apns", "token": "\u{1}"}))),
        (
            "push",
            Some(json!({"provider": "apns", "token": "ab\u{85}"})),
        ),
        ("push", Some(json!({"provider": "apns"}))),
        (
            "push",
            Some(json!({"provider": "apns", "token": "ab", "extra": 1})),
        ),
        ("push", Some(json!("apns:ab"))),
        ("surprise", Some(json!(true))),
    ]
}

#[tokio::test]
async fn every_app_api_answer_matches_the_openapi_document() {
    let db = TestDb::sqlite();
    let sesam = TestServer::start(&db).await;
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let doc: Value = reqwest::get(sesam.url("/api/app/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut api = Checker {
        spec: Spec::new(doc),
        http: reqwest::Client::new(),
        base: sesam.url(""),
        seen: BTreeSet::new(),
    };
    let issue = || async {
        sesam_server::activation::issue(sesam.store(), &anna.id, sesam.now())
            .await
            .unwrap()
    };
    let (get, post, patch, delete) = (Method::GET, Method::POST, Method::PATCH, Method::DELETE);

    // The document describes itself.
    let (status, served) = api
        .send(
            get.clone(),
            "/openapi.json",
            "/openapi.json",
            Auth::None,
            None,
        )
        .await;
    assert_eq!((status, &served), (StatusCode::OK, &api.spec.doc));

    // Enrolment: the refusals first, none of which spends the code.
    let code = issue().await;
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let good = enrolment(&code, &key);
    let (status, _) = api
        .json(
            post.clone(),
            "/enrolments",
            "/enrolments",
            Auth::None,
            &good,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = api
        .send(
            post.clone(),
            "/enrolments",
            "/enrolments",
            Auth::Enrolment(&key),
            Some(("text/plain", serde_json::to_vec(&good).unwrap())),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("unsupported_media_type")
        )
    );
    let (status, _) = api
        .send(
            post.clone(),
            "/enrolments",
            "/enrolments",
            Auth::Raw("DeviceProof a.b.c"),
            Some(("application/json", vec![b' '; 65 * 1024])),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = api
        .send(
            post.clone(),
            "/enrolments",
            "/enrolments",
            Auth::Enrolment(&key),
            Some(("application/json", b"{\"activation_code\":".to_vec())),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Each sample body: accepted exactly when the schema accepts it. An accepted one enrols
    // a device, so every sample gets its own key and code.
    let mut samples: Vec<(&str, Option<Value>)> = shared_samples();
    samples.extend([
        ("activation_code", Some(json!(""))),
        ("activation_code", Some(json!("A".repeat(65)))),
        ("activation_code", None),
        ("platform", Some(json!("android"))),
        ("platform", Some(json!("windows"))),
        ("platform", Some(json!("IOS"))),
        ("push", None),
        ("display_name", None),
        ("pin_length", None),
        ("public_key", Some(json!({"kty": "EC", "crv": "P-256"}))),
        ("public_key", Some(json!("not a key"))),
    ]);
    for (field, value) in samples {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let base = enrolment(&issue().await, &key);
        let body = with(&base, field, value);
        let (status, _) = api
            .json(
                post.clone(),
                "/enrolments",
                "/enrolments",
                Auth::Enrolment(&key),
                &body,
            )
            .await;
        api.agrees("POST", "/enrolments", &body, status, StatusCode::CREATED);
    }

    // The real enrolment, then the same key again: 409, and the new code is not spent.
    let (status, device) = api
        .json(
            post.clone(),
            "/enrolments",
            "/enrolments",
            Auth::Enrolment(&key),
            &good,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{device}");
    let again = issue().await;
    let (status, body) = api
        .json(
            post.clone(),
            "/enrolments",
            "/enrolments",
            Auth::Enrolment(&key),
            &enrolment(&again, &key),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("key_in_use"))
    );
    let app = AppClient::from_profile(sesam_app::Profile::new(
        &sesam.url(""),
        device["device_id"].as_str().unwrap(),
        "anna",
        key.clone(),
    ));

    // The device itself.
    let (status, shown) = api
        .send(
            get.clone(),
            "/devices/self",
            "/devices/self",
            Auth::Device(&app),
            None,
        )
        .await;
    assert_eq!((status, &shown), (StatusCode::OK, &device));
    for (method, template) in [
        (&get, "/devices/self"),
        (&patch, "/devices/self"),
        (&delete, "/devices/self"),
        (&get, "/challenges"),
    ] {
        let (status, body) = api
            .send(
                method.clone(),
                template,
                template,
                Auth::Raw("DeviceProof x.y.z"),
                None,
            )
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_proof")),
            "{method} {template}"
        );
    }
    let (status, _) = api
        .send(
            patch.clone(),
            "/devices/self",
            "/devices/self",
            Auth::Device(&app),
            Some((
                "application/x-www-form-urlencoded",
                b"pin_length=6".to_vec(),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = api
        .send(
            patch.clone(),
            "/devices/self",
            "/devices/self",
            Auth::Raw("DeviceProof a.b.c"),
            Some(("application/json", vec![b' '; 65 * 1024])),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let mut updates: Vec<(&str, Option<Value>)> = shared_samples();
    updates.push(("app_version", Some(json!("3.0.0"))));
    for (field, value) in updates {
        let body = with(&json!({}), field, value);
        let (status, _) = api
            .json(
                patch.clone(),
                "/devices/self",
                "/devices/self",
                Auth::Device(&app),
                &body,
            )
            .await;
        api.agrees("PATCH", "/devices/self", &body, status, StatusCode::OK);
    }
    let (status, _) = api
        .json(
            patch.clone(),
            "/devices/self",
            "/devices/self",
            Auth::Device(&app),
            &json!({}),
        )
        .await;
    api.agrees("PATCH", "/devices/self", &json!({}), status, StatusCode::OK);
    let stored = sesam
        .store()
        .get_device(app.profile().device_id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.device.app_version.to_string(),
        "3.0.0",
        "the last accepted update holds"
    );

    // A challenge with all its context, listed and answered.
    let challenge =
        challenge_with_code(&sesam, &anna, &[app.profile().device_id.as_str()], "47").await;
    let (status, list) = api
        .send(
            get.clone(),
            "/challenges",
            "/challenges",
            Auth::Device(&app),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["challenges"][0]["id"], challenge.id.as_str(), "{list}");
    let template = "/challenges/{id}/answer";
    let path = format!("/challenges/{}/answer", challenge.id);
    let (status, _) = api
        .json(
            post.clone(),
            template,
            &path,
            Auth::None,
            &json!({"code": "47"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .send(
            post.clone(),
            template,
            &path,
            Auth::Device(&app),
            Some(("text/plain", b"47".to_vec())),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = api
        .send(
            post.clone(),
            template,
            &path,
            Auth::Raw("DeviceProof a.b.c"),
            Some(("application/json", vec![b' '; 65 * 1024])),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Refused answers, each leaving the challenge pending; the schema refuses them as well.
    for body in [
        json!({}),
        json!({"code": "47", "decision": "deny"}),
        json!({"decision": "approve"}),
        json!({"decision": "maybe"}),
        json!({"code": 47}),
        json!({"code": "470000000"}),
        json!({"code": "47", "why": "because"}),
        json!(["47"]),
    ] {
        let (status, _) = api
            .json(post.clone(), template, &path, Auth::Device(&app), &body)
            .await;
        api.agrees("POST", template, &body, status, StatusCode::OK);
    }
    let (status, result) = api
        .json(
            post.clone(),
            template,
            &path,
            Auth::Device(&app),
            &json!({"code": "47"}),
        )
        .await;
    assert_eq!(
        (status, result["status"].as_str()),
        (StatusCode::OK, Some("approved"))
    );
    let (status, body) = api
        .json(
            post.clone(),
            template,
            &path,
            Auth::Device(&app),
            &json!({"decision": "deny"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("challenge_not_pending"))
    );

    // A scanned QR code: refusals first (none uses the code up), then the scan, the
    // confirmation, and the replay.
    let challenge =
        challenge_with_code(&sesam, &anna, &[app.profile().device_id.as_str()], "52").await;
    let payload = sesam_server::service::scan::qr_payload(&sesam.server.state, &challenge)
        .await
        .unwrap();
    let scans = "/scans";
    let (status, _) = api
        .json(
            post.clone(),
            scans,
            scans,
            Auth::None,
            &json!({"payload": payload}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .send(
            post.clone(),
            scans,
            scans,
            Auth::Device(&app),
            Some(("text/plain", payload.clone().into_bytes())),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = api
        .send(
            post.clone(),
            scans,
            scans,
            Auth::Raw("DeviceProof a.b.c"),
            Some(("application/json", vec![b' '; 65 * 1024])),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    for body in [
        json!({}),
        json!({"payload": 42}),
        json!({"payload": null}),
        json!({"payload": "hello"}),
        json!({"payload": format!("{payload}\n")}),
        json!({"payload": payload.replace("v1", "v2")}),
        json!({"payload": payload, "code": "52"}),
        json!([payload]),
    ] {
        let (status, _) = api
            .json(post.clone(), scans, scans, Auth::Device(&app), &body)
            .await;
        api.agrees("POST", scans, &body, status, StatusCode::OK);
    }
    let unknown = format!(
        "sesam-login:v1:{}:{}",
        uuid::Uuid::new_v4(),
        payload.rsplit(':').next().unwrap()
    );
    let (status, body) = api
        .json(
            post.clone(),
            scans,
            scans,
            Auth::Device(&app),
            &json!({"payload": unknown}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("challenge_not_for_device"))
    );
    let body = json!({"payload": payload});
    let (status, scanned) = api
        .json(post.clone(), scans, scans, Auth::Device(&app), &body)
        .await;
    api.agrees("POST", scans, &body, status, StatusCode::OK);
    assert_eq!(
        scanned["challenge"]["id"],
        challenge.id.as_str(),
        "{scanned}"
    );
    let (status, body) = api
        .json(
            post.clone(),
            scans,
            scans,
            Auth::Device(&app),
            &json!({"payload": payload}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("payload_used"))
    );
    let path = format!("/challenges/{}/answer", challenge.id);
    let (status, result) = api
        .json(
            post.clone(),
            template,
            &path,
            Auth::Device(&app),
            &json!({"decision": "confirm_scan"}),
        )
        .await;
    assert_eq!(
        (status, result["status"].as_str()),
        (StatusCode::OK, Some("approved"))
    );
    // A confirmation without a scan is refused and changes nothing.
    let unscanned =
        challenge_with_code(&sesam, &anna, &[app.profile().device_id.as_str()], "53").await;
    let (status, body) = api
        .json(
            post.clone(),
            template,
            &format!("/challenges/{}/answer", unscanned.id),
            Auth::Device(&app),
            &json!({"decision": "confirm_scan"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("scan_required"))
    );

    // Guessed activation codes end in 429.
    let mut blocked = false;
    for guess in 0..12 {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let body = enrolment(&format!("AAAAA-{guess:05}"), &key);
        let (status, _) = api
            .json(
                post.clone(),
                "/enrolments",
                "/enrolments",
                Auth::Enrolment(&key),
                &body,
            )
            .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            blocked = true;
            break;
        }
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    assert!(blocked, "guessing activation codes is limited");

    // The device removes itself; its key then opens nothing.
    let (status, _) = api
        .send(
            delete.clone(),
            "/devices/self",
            "/devices/self",
            Auth::Device(&app),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api
        .send(
            get.clone(),
            "/devices/self",
            "/devices/self",
            Auth::Device(&app),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    sesam.stop().await;

    // The flood guard answers every operation in the document's format.
    let flood_db = TestDb::sqlite();
    let flooded = TestServer::start_with(
        ManualClock::starting_now(),
        test_config_with(
            &flood_db.url,
            &[
                ("SESAM_FLOOD_REQUESTS_PER_SECOND", "1"),
                ("SESAM_FLOOD_BURST", "1"),
            ],
        ),
    )
    .await;
    api.base = flooded.url("");
    for (method, template) in [
        (&get, "/openapi.json"),
        (&post, "/enrolments"),
        (&get, "/devices/self"),
        (&patch, "/devices/self"),
        (&delete, "/devices/self"),
        (&get, "/challenges"),
        (&post, template),
        (&post, "/scans"),
    ] {
        let path = template.replace("{id}", "c1");
        let mut limited = false;
        // The allowance refills once a second; on a slow machine one may slip through.
        for _ in 0..5 {
            let (status, body) = api
                .send(method.clone(), template, &path, Auth::None, None)
                .await;
            if status == StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(body["error"], "rate_limited", "{body}");
                limited = true;
                break;
            }
        }
        assert!(limited, "{method} {template} is flood-limited");
    }
    flooded.stop().await;

    // Nothing is documented that the server never answers. 503 needs the database gone,
    // which SQLite cannot be; failover.rs stops a PostgreSQL under the app API for it.
    let missing: Vec<_> = api
        .spec
        .documented()
        .difference(&api.seen)
        .filter(|(_, _, status)| *status != 503)
        .cloned()
        .collect();
    assert!(missing.is_empty(), "documented but never seen: {missing:?}");
}
