//! SCIM 2.0 provisioning (RFC 7643/7644), as an HR system or Entra ID would drive it: a
//! conformance-style set (create, get, filter, pages, PUT, PATCH, DELETE, groups, discovery)
//! and the bad requests, each with its status and scimType, and the stored user unchanged.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{on_both_databases, TestDb, TestServer};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const PASSWORD: &str = "correct horse battery";

struct Scim {
    http: reqwest::Client,
    base: String,
    token: String,
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: Value,
}

impl Scim {
    async fn new(sesam: &TestServer, name: &str) -> Scim {
        let (_, token) =
            sesam_server::service::scim::add_client(sesam.store(), name, "test", sesam.now())
                .await
                .unwrap();
        Scim {
            http: reqwest::Client::new(),
            base: sesam.url("/scim/v2"),
            token,
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Answer {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(body);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let content_type = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        Answer {
            status,
            content_type,
            body,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }
    async fn json(&self, method: Method, path: &str, body: Value) -> Answer {
        self.send(method, path, Some(body.to_string().into_bytes()))
            .await
    }
}

fn anna() -> Value {
    json!({
        "schemas": [USER],
        "userName": "anna",
        "externalId": "hr-1001",
        "name": { "formatted": "Anna Andersen", "givenName": "Anna", "familyName": "Andersen" },
        "emails": [
            { "value": "anna.private@example.net", "type": "home" },
            { "value": "anna@example.org", "type": "work", "primary": true }
        ],
        "active": true,
        "password": PASSWORD,
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": { "department": "IT" }
    })
}

fn assert_error(a: &Answer, status: u16, scim_type: Option<&str>) {
    assert_eq!(a.status.as_u16(), status, "{}", a.body);
    assert!(
        a.content_type.starts_with("application/scim+json"),
        "{}",
        a.content_type
    );
    assert_eq!(a.body["schemas"], json!([ERROR]), "{}", a.body);
    assert_eq!(a.body["status"], json!(status.to_string()), "{}", a.body);
    match scim_type {
        Some(t) => assert_eq!(a.body["scimType"], json!(t), "{}", a.body),
        None => assert!(a.body.get("scimType").is_none(), "{}", a.body),
    }
    assert!(a.body["detail"].is_string(), "{}", a.body);
}

async fn users_core_flow(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let scim = Scim::new(&sesam, "hr").await;

    // Create (RFC 7644 §3.3): 201, Location, the resource as stored, the password never shown.
    let created = scim.json(Method::POST, "/Users", anna()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert!(created.content_type.starts_with("application/scim+json"));
    let u = &created.body;
    let id = u["id"].as_str().unwrap().to_owned();
    let stored = sesam
        .store()
        .find_user_by_username(&"anna".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.id.0, id, "the resource id is the Sesam user id");
    assert_eq!(stored.display_name, "Anna Andersen");
    assert_eq!(
        stored.email.as_deref(),
        Some("anna@example.org"),
        "the primary email"
    );
    assert_eq!(u["schemas"], json!([USER]));
    assert_eq!(u["userName"], "anna");
    assert_eq!(u["externalId"], "hr-1001");
    assert_eq!(u["active"], true);
    assert_eq!(u["emails"][0]["value"], "anna@example.org");
    assert!(u.get("password").is_none(), "{u}");
    assert_eq!(u["meta"]["resourceType"], "User");
    let location = u["meta"]["location"].as_str().unwrap();
    assert!(
        location.ends_with(&format!("/scim/v2/Users/{id}")),
        "{location}"
    );
    assert!(u["meta"]["created"].as_str().unwrap().ends_with('Z'));
    let events = sesam.audit_events("anna").await;
    assert!(
        events.contains(&"user.created.scim".to_owned()),
        "{events:?}"
    );
    let entry = sesam
        .store()
        .list_audit(Some("anna"), 10)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event == "user.created.scim")
        .unwrap();
    assert_eq!(
        entry.actor.as_deref(),
        Some("scim:hr"),
        "the client's name is the actor"
    );

    // The password it was given logs in.
    let browser = sesam.browser();
    let done = browser.log_in("anna", PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), Some("/account"));

    // Get by id, and an unknown id.
    let got = scim.get(&format!("/Users/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["userName"], "anna");
    assert_error(&scim.get("/Users/no-such-id").await, 404, None);

    // Filters by userName (case-insensitive, as Sesam's usernames are) and externalId.
    for filter in [
        "userName%20eq%20%22ANNA%22",
        "externalId%20eq%20%22hr-1001%22",
    ] {
        let found = scim.get(&format!("/Users?filter={filter}")).await;
        assert_eq!(found.status, StatusCode::OK, "{}", found.body);
        assert_eq!(
            found.body["schemas"],
            json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
        );
        assert_eq!(found.body["totalResults"], 1, "{filter}: {}", found.body);
        assert_eq!(found.body["Resources"][0]["id"], id.as_str());
    }
    let none = scim.get("/Users?filter=userName%20eq%20%22nobody%22").await;
    assert_eq!(none.body["totalResults"], 0);
    assert_eq!(none.body["Resources"], json!([]));

    // PUT replaces: a new name and email; the externalId left out is cleared.
    let put = scim
        .json(
            Method::PUT,
            &format!("/Users/{id}"),
            json!({
                "schemas": [USER],
                "id": id,
                "userName": "anna.a",
                "displayName": "Anna Aagaard",
                "emails": [{ "value": "anna.a@example.org" }],
            }),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(put.body["userName"], "anna.a");
    assert_eq!(put.body["displayName"], "Anna Aagaard");
    assert!(put.body.get("externalId").is_none(), "{}", put.body);
    assert_eq!(put.body["active"], true, "active left out stays as it was");
    let stored = sesam.store().get_user(&stored.id).await.unwrap();
    assert_eq!(stored.username.as_str(), "anna.a");
    assert_eq!(stored.email.as_deref(), Some("anna.a@example.org"));

    // PATCH active=false (as Entra ID sends it): the user can no longer log in.
    let off = scim
        .json(
            Method::PATCH,
            &format!("/Users/{id}"),
            json!({
                "schemas": [PATCH],
                "Operations": [{ "op": "Replace", "path": "active", "value": false }],
            }),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    assert_eq!(off.body["active"], false);
    let refused = sesam.browser().log_in("anna.a", PASSWORD).await;
    assert_ne!(refused.status, StatusCode::SEE_OTHER, "{}", refused.body);
    assert!(sesam
        .audit_events("anna.a")
        .await
        .contains(&"user.disabled.scim".to_owned()));

    // PATCH active=true, a display name, name.formatted and an email in one request.
    let on = scim
        .json(
            Method::PATCH,
            &format!("/Users/{id}"),
            json!({
                "schemas": [PATCH],
                "Operations": [
                    { "op": "replace", "value": { "active": true } },
                    { "op": "replace", "path": "name.formatted", "value": "Anna F." },
                    { "op": "add", "path": "emails", "value": [{ "value": "a@example.com", "primary": true }] },
                    { "op": "replace", "path": "userName", "value": "anna" },
                ],
            }),
        )
        .await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.body);
    assert_eq!(on.body["active"], true);
    // displayName (set by the PUT) wins over name.formatted; remove it and formatted shows.
    assert_eq!(on.body["displayName"], "Anna Aagaard");
    assert_eq!(on.body["emails"][0]["value"], "a@example.com");
    let removed = scim
        .json(
            Method::PATCH,
            &format!("/Users/{id}"),
            json!({
                "schemas": [PATCH],
                "Operations": [
                    { "op": "remove", "path": "displayName" },
                    { "op": "replace", "path": "name.formatted", "value": "Anna F." },
                    { "op": "remove", "path": "emails" },
                ],
            }),
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.body);
    assert_eq!(removed.body["displayName"], "Anna F.");
    assert!(removed.body.get("emails").is_none(), "{}", removed.body);
    let back = sesam.browser().log_in("anna", PASSWORD).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
    assert_eq!(back.location(), Some("/account"));
    let events = sesam.audit_events("anna").await;
    assert!(
        events.contains(&"user.enabled.scim".to_owned()),
        "{events:?}"
    );
    assert!(
        events.contains(&"user.updated.scim".to_owned()),
        "{events:?}"
    );

    // DELETE: 204, then 404 and out of listings; the user is disabled, not gone, and
    // cannot log in.
    let (_, device) = sesam
        .enrol(&stored, sesam_app::EnrolOptions::default())
        .await;
    let deleted = scim
        .send(Method::DELETE, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_error(&scim.get(&format!("/Users/{id}")).await, 404, None);
    assert_error(
        &scim
            .send(Method::DELETE, &format!("/Users/{id}"), None)
            .await,
        404,
        None,
    );
    let listed = scim.get("/Users").await;
    assert!(
        !listed.body.to_string().contains(&id),
        "a deleted user is not listed: {}",
        listed.body
    );
    assert_eq!(
        scim.get("/Users?filter=userName%20eq%20%22anna%22")
            .await
            .body["totalResults"],
        0
    );
    let kept = sesam.store().get_user(&stored.id).await.unwrap();
    assert_eq!(kept.status, sesam_core::UserStatus::Disabled);
    let devices = sesam.store().devices_of_user(&stored.id).await.unwrap();
    assert!(
        devices.iter().any(|d| d.device.id == device.device_id),
        "the user's devices are kept"
    );
    let gone = sesam.browser().log_in("anna", PASSWORD).await;
    assert_ne!(gone.status, StatusCode::SEE_OTHER);
    assert!(sesam
        .audit_events("anna")
        .await
        .contains(&"user.deleted.scim".to_owned()));
    sesam.stop().await;
}

async fn pages_follow_start_index_and_count(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let scim = Scim::new(&sesam, "hr").await;
    for i in 1..=5 {
        let a = scim
            .json(
                Method::POST,
                "/Users",
                json!({ "schemas": [USER], "userName": format!("user{i}") }),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        assert_eq!(a.body["displayName"], format!("user{i}"));
    }
    // The server starts with its first administrator, so count from the whole listing.
    let names = |a: &Answer| -> Vec<String> {
        a.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userName"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = names(&scim.get("/Users").await);
    let n = all.len();
    assert!(n >= 5, "{all:?}");
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "ordered by username");
    let page = scim.get("/Users?startIndex=2&count=2").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.body["totalResults"], n);
    assert_eq!(page.body["startIndex"], 2);
    assert_eq!(page.body["itemsPerPage"], 2);
    assert_eq!(names(&page), all[1..3]);
    let last = scim.get(&format!("/Users?startIndex={n}&count=10")).await;
    assert_eq!(last.body["itemsPerPage"], 1);
    assert_eq!(names(&last), all[n - 1..]);
    let past = scim.get(&format!("/Users?startIndex={}", n + 3)).await;
    assert_eq!(past.body["totalResults"], n);
    assert_eq!(past.body["Resources"], json!([]));
    // RFC 7644 §3.4.2.4: startIndex below 1 counts as 1, a negative count as 0.
    let low = scim.get("/Users?startIndex=0&count=-1").await;
    assert_eq!(low.status, StatusCode::OK);
    assert_eq!(low.body["startIndex"], 1);
    assert_eq!(low.body["totalResults"], n);
    assert_eq!(low.body["Resources"], json!([]));
    sesam.stop().await;
}

async fn groups_are_the_roles(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let scim = Scim::new(&sesam, "hr").await;
    let bo = sesam.add_user("bo", "Bo", PASSWORD).await;
    let list = scim.get("/Groups").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert_eq!(list.body["totalResults"], 3);
    let ids: Vec<&str> = list.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["admins", "pilot", "password-only"]);
    assert_eq!(list.body["Resources"][1]["members"], json!([]));

    let add = scim
        .json(
            Method::PATCH,
            "/Groups/pilot",
            json!({
                "schemas": [PATCH],
                "Operations": [{ "op": "add", "path": "members", "value": [{ "value": bo.id.0 }] }],
            }),
        )
        .await;
    assert_eq!(add.status, StatusCode::OK, "{}", add.body);
    assert_eq!(add.body["members"][0]["value"], bo.id.0.as_str());
    assert!(sesam.store().get_user(&bo.id).await.unwrap().in_pilot);
    let pilot = scim.get("/Groups/pilot").await;
    assert_eq!(pilot.body["members"][0]["display"], "bo");
    let filtered = scim
        .get("/Groups?filter=displayName%20eq%20%22pilot%22&excludedAttributes=members")
        .await;
    assert_eq!(filtered.body["totalResults"], 1);
    assert!(filtered.body["Resources"][0].get("members").is_none());
    let user = scim.get(&format!("/Users/{}", bo.id.0)).await;
    assert_eq!(user.body["groups"][0]["value"], "pilot");

    // A provisioning token cannot make an administrator, nor change, lock or delete one.
    let grant = scim
        .json(
            Method::PATCH,
            "/Groups/admins",
            json!({
                "schemas": [PATCH],
                "Operations": [{ "op": "add", "path": "members", "value": [{ "value": bo.id.0 }] }],
            }),
        )
        .await;
    assert_error(&grant, 403, None);
    assert!(!sesam.store().get_user(&bo.id).await.unwrap().is_admin);
    let boss = sesam
        .add_user("boss", "Boss Admin", "correct horse battery")
        .await;
    sesam
        .store()
        .set_role_flag(&boss.id, sesam_store::RoleFlag::Admin, true, sesam.now())
        .await
        .unwrap();
    let before = sesam.store().get_user(&boss.id).await.unwrap();
    let at = format!("/Users/{}", boss.id.0);
    let takeover = [
        scim.json(
            Method::PATCH,
            &at,
            json!({
                "schemas": [PATCH],
                "Operations": [{ "op": "replace", "path": "password", "value": "attacker-chosen-pw-1" }],
            }),
        )
        .await,
        scim.json(
            Method::PATCH,
            &at,
            json!({
                "schemas": [PATCH],
                "Operations": [{ "op": "replace", "path": "active", "value": false }],
            }),
        )
        .await,
        scim.json(
            Method::PUT,
            &at,
            json!({ "schemas": [USER], "userName": "boss", "active": false }),
        )
        .await,
        scim.send(Method::DELETE, &at, None).await,
    ];
    for answer in &takeover {
        assert_error(answer, 403, None);
    }
    let after = sesam.store().get_user(&boss.id).await.unwrap();
    assert_eq!(
        (after.is_admin, after.status, after.password_hash),
        (before.is_admin, before.status, before.password_hash),
        "the administrator is as before"
    );

    // An unknown member changes nothing, not even the known one sent with it.
    let bad = scim
        .json(
            Method::PATCH,
            "/Groups/password-only",
            json!({
                "schemas": [PATCH],
                "Operations": [{ "op": "add", "path": "members",
                                 "value": [{ "value": bo.id.0 }, { "value": "nobody" }] }],
            }),
        )
        .await;
    assert_error(&bad, 400, Some("invalidValue"));
    assert!(!sesam.store().get_user(&bo.id).await.unwrap().password_only);

    let remove = scim
        .json(
            Method::PATCH,
            "/Groups/pilot",
            json!({
                "schemas": [PATCH],
                "Operations": [{ "op": "remove", "path": format!("members[value eq \"{}\"]", bo.id.0) }],
            }),
        )
        .await;
    assert_eq!(remove.status, StatusCode::OK, "{}", remove.body);
    assert!(!sesam.store().get_user(&bo.id).await.unwrap().in_pilot);
    let events = sesam.audit_events("bo").await;
    assert_eq!(
        events.iter().filter(|e| *e == "user.role.scim").count(),
        2,
        "{events:?}"
    );
    assert_error(&scim.get("/Groups/everyone").await, 404, None);
    sesam.stop().await;
}

async fn discovery_endpoints_describe_the_server(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let scim = Scim::new(&sesam, "hr").await;
    let spc = scim.get("/ServiceProviderConfig").await;
    assert_eq!(spc.status, StatusCode::OK);
    assert!(spc.content_type.starts_with("application/scim+json"));
    assert_eq!(
        spc.body["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"])
    );
    assert_eq!(spc.body["patch"]["supported"], true);
    assert_eq!(spc.body["bulk"]["supported"], false);
    assert_eq!(spc.body["filter"]["supported"], true);
    assert_eq!(
        spc.body["authenticationSchemes"][0]["type"],
        "oauthbearertoken"
    );

    let schemas = scim.get("/Schemas").await;
    assert_eq!(schemas.body["totalResults"], 2);
    let user = &schemas.body["Resources"][0];
    assert_eq!(user["id"], USER);
    let username = user["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "userName")
        .unwrap();
    assert_eq!(username["required"], true);
    assert_eq!(username["uniqueness"], "server");
    let one = scim.get(&format!("/Schemas/{USER}")).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body["name"], "User");

    let types = scim.get("/ResourceTypes").await;
    assert_eq!(types.body["totalResults"], 2);
    assert_eq!(types.body["Resources"][0]["endpoint"], "/Users");
    assert_eq!(
        types.body["Resources"][1]["schema"],
        "urn:ietf:params:scim:schemas:core:2.0:Group"
    );
    assert_eq!(scim.get("/ResourceTypes/Group").await.body["name"], "Group");
    assert_error(&scim.get("/Nothing").await, 404, None);
    sesam.stop().await;
}

/// What is wrong, method, path (`ID`: the user's id), body, status, scimType.
type Case = (
    &'static str,
    Method,
    &'static str,
    Vec<u8>,
    u16,
    Option<&'static str>,
);

async fn bad_requests_get_scim_errors_and_change_nothing(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let scim = Scim::new(&sesam, "hr").await;
    let created = scim.json(Method::POST, "/Users", anna()).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let path = format!("/Users/{id}");
    let before = sesam
        .store()
        .scim_user(&sesam_core::UserId(id.clone()))
        .await
        .unwrap();
    let events_before = sesam.audit_events("anna").await.len();

    // No token, a wrong one, a revoked one: 401 with a SCIM body and WWW-Authenticate.
    let anonymous = reqwest::get(sesam.url("/scim/v2/Users")).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers().get("www-authenticate").is_some());
    let wrong = Scim {
        token: "not-the-token".into(),
        http: reqwest::Client::new(),
        base: scim.base.clone(),
    };
    assert_error(&wrong.get("/Users").await, 401, None);
    assert_error(
        &wrong
            .json(
                Method::PATCH,
                &path,
                json!({"schemas": [PATCH], "Operations": [
            { "op": "replace", "path": "active", "value": false }]}),
            )
            .await,
        401,
        None,
    );
    let other = Scim::new(&sesam, "entra").await;
    assert!(sesam_server::service::scim::remove_client(
        sesam.store(),
        "entra",
        "test",
        sesam.now()
    )
    .await
    .unwrap());
    assert_error(&other.get("/Users").await, 401, None);

    let cases: Vec<Case> = vec![
        ("bad JSON", Method::POST, "/Users", b"{\"schemas\": [".to_vec(), 400, Some("invalidSyntax")),
        ("not an object", Method::POST, "/Users", b"[1, 2]".to_vec(), 400, Some("invalidSyntax")),
        ("no schemas", Method::POST, "/Users", json!({"userName": "x"}).to_string().into_bytes(), 400, Some("invalidSyntax")),
        ("duplicate userName", Method::POST, "/Users",
            json!({"schemas": [USER], "userName": "Anna"}).to_string().into_bytes(), 409, Some("uniqueness")),
        ("duplicate externalId", Method::POST, "/Users",
            json!({"schemas": [USER], "userName": "other", "externalId": "hr-1001"}).to_string().into_bytes(), 409, Some("uniqueness")),
        ("no userName", Method::POST, "/Users", json!({"schemas": [USER]}).to_string().into_bytes(), 400, Some("invalidValue")),
        ("userName a number", Method::POST, "/Users", json!({"schemas": [USER], "userName": 7}).to_string().into_bytes(), 400, Some("invalidValue")),
        ("active a number", Method::POST, "/Users", json!({"schemas": [USER], "userName": "x", "active": 42}).to_string().into_bytes(), 400, Some("invalidValue")),
        ("emails not a list", Method::POST, "/Users", json!({"schemas": [USER], "userName": "x", "emails": "x@y"}).to_string().into_bytes(), 400, Some("invalidValue")),
        ("bad email", Method::POST, "/Users", json!({"schemas": [USER], "userName": "x", "emails": [{"value": "no at"}]}).to_string().into_bytes(), 400, Some("invalidValue")),
        ("short password", Method::POST, "/Users", json!({"schemas": [USER], "userName": "x", "password": "short"}).to_string().into_bytes(), 400, Some("invalidValue")),
        ("unknown attribute", Method::POST, "/Users", json!({"schemas": [USER], "userName": "x", "shoeSize": 44}).to_string().into_bytes(), 400, Some("invalidSyntax")),
        ("PUT renames onto a taken name", Method::PUT, "/Users/ID",
            json!({"schemas": [USER], "userName": "bo"}).to_string().into_bytes(), 409, Some("uniqueness")),
        ("PUT changes the id", Method::PUT, "/Users/ID",
            json!({"schemas": [USER], "id": "other", "userName": "anna"}).to_string().into_bytes(), 400, Some("mutability")),
        ("PATCH without PatchOp schema", Method::PATCH, "/Users/ID",
            json!({"Operations": [{"op": "replace", "path": "active", "value": false}]}).to_string().into_bytes(), 400, Some("invalidSyntax")),
        ("PATCH with a bad op", Method::PATCH, "/Users/ID",
            json!({"schemas": [PATCH], "Operations": [{"op": "merge", "path": "active", "value": false}]}).to_string().into_bytes(), 400, Some("invalidSyntax")),
        ("PATCH active a number, after a good op", Method::PATCH, "/Users/ID",
            json!({"schemas": [PATCH], "Operations": [
                {"op": "replace", "path": "displayName", "value": "Changed"},
                {"op": "replace", "path": "active", "value": 3}]}).to_string().into_bytes(), 400, Some("invalidValue")),
        ("PATCH the id", Method::PATCH, "/Users/ID",
            json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "id", "value": "x"}]}).to_string().into_bytes(), 400, Some("mutability")),
        ("PATCH removes userName", Method::PATCH, "/Users/ID",
            json!({"schemas": [PATCH], "Operations": [{"op": "remove", "path": "userName"}]}).to_string().into_bytes(), 400, Some("mutability")),
        ("PATCH an unknown path", Method::PATCH, "/Users/ID",
            json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "shoeSize", "value": 1}]}).to_string().into_bytes(), 400, Some("invalidPath")),
        ("PATCH renames onto a taken name", Method::PATCH, "/Users/ID",
            json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "userName", "value": "BO"}]}).to_string().into_bytes(), 409, Some("uniqueness")),
        ("PATCH with no operations", Method::PATCH, "/Users/ID",
            json!({"schemas": [PATCH], "Operations": []}).to_string().into_bytes(), 400, Some("invalidSyntax")),
        ("huge body", Method::POST, "/Users",
            json!({"schemas": [USER], "userName": "x", "title": "a".repeat(200_000)}).to_string().into_bytes(), 413, None),
        ("huge PATCH", Method::PATCH, "/Users/ID",
            json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "a".repeat(100_000)}]}).to_string().into_bytes(), 413, None),
    ];
    sesam.add_user("bo", "Bo", PASSWORD).await;
    for (what, method, target, body, status, scim_type) in cases {
        let target = target.replace("ID", &id);
        let a = scim.send(method, &target, Some(body)).await;
        assert_eq!(a.status.as_u16(), status, "{what}: {}", a.body);
        assert_error(&a, status, scim_type);
    }
    // A wrong media type, and filters Sesam does not answer.
    let form = scim
        .http
        .post(format!("{}/Users", scim.base))
        .bearer_auth(&scim.token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("userName=x")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    for filter in [
        "userName%20co%20%22an%22",
        "title%20eq%20%22x%22",
        "userName%20eq%20anna",
        "userName%20eq%20%22anna%22%20or%20userName%20eq%20%22bo%22",
    ] {
        assert_error(
            &scim.get(&format!("/Users?filter={filter}")).await,
            400,
            Some("invalidFilter"),
        );
    }
    assert_error(
        &scim.get("/Users?count=many").await,
        400,
        Some("invalidValue"),
    );

    let after = sesam
        .store()
        .scim_user(&sesam_core::UserId(id.clone()))
        .await
        .unwrap();
    assert_eq!(after, before, "no refusal changed the stored user");
    assert_eq!(sesam.audit_events("anna").await.len(), events_before);
    let x = sesam
        .store()
        .find_user_by_username(&"x".parse().unwrap())
        .await
        .unwrap();
    assert!(x.is_none(), "no refused create made a user");
    // application/json is accepted as well.
    let plain = scim
        .http
        .post(format!("{}/Users", scim.base))
        .bearer_auth(&scim.token)
        .json(&json!({"schemas": [USER], "userName": "carl"}))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::CREATED);
    sesam.stop().await;
}

on_both_databases!(
    users_core_flow,
    pages_follow_start_index_and_count,
    groups_are_the_roles,
    discovery_endpoints_describe_the_server,
    bad_requests_get_scim_errors_and_change_nothing,
);

/// `sesam scim-client add` prints a token once that then works; `list` shows the client
/// without it; `remove` revokes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_clients_are_made_and_revoked_from_the_command_line() {
    let db = TestDb::sqlite();
    let sesam = TestServer::start(&db).await;
    let env = [("SESAM_DATABASE_URL", db.url.as_str())];
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let out = crate::cli::sesam(&["scim-client", "add", "--name", "HR system"], &env, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .expect("a token line")
        .trim()
        .to_owned();
    assert_eq!(token.len(), 43, "32 bytes in base64url: {token}");
    let again = crate::cli::sesam(&["scim-client", "add", "--name", "HR system"], &env, None);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("exists already"),
        "{}",
        text(&again.stderr)
    );

    let list = text(&crate::cli::sesam(&["scim-client", "list"], &env, None).stdout);
    assert!(list.contains("HR system"), "{list}");
    assert!(!list.contains(&token), "the token is never shown again");
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM scim_clients")
        .fetch_all(&sqlx::SqlitePool::connect(&db.url).await.unwrap())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], token, "only a hash is stored");

    let scim = Scim {
        http: reqwest::Client::new(),
        base: sesam.url("/scim/v2"),
        token,
    };
    assert_eq!(scim.get("/Users").await.status, StatusCode::OK);
    let removed = crate::cli::sesam(&["scim-client", "remove", "HR system"], &env, None);
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    assert_error(&scim.get("/Users").await, 401, None);
    let missing = crate::cli::sesam(&["scim-client", "remove", "HR system"], &env, None);
    assert!(!missing.status.success());
    let events = sesam.audit_events("HR system").await;
    assert!(
        events.contains(&"scim.client.added".to_owned()),
        "{events:?}"
    );
    assert!(
        events.contains(&"scim.client.removed".to_owned()),
        "{events:?}"
    );
    sesam.stop().await;
}

/// The admin portal's services page makes a client (its token shown once) and revokes it.
async fn scim_clients_are_managed_in_the_portal(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let (browser, _app) = crate::admin::admin_browser(&sesam).await;
    let page = browser.get("/admin/services").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"scim-none\""), "{}", page.body);
    let csrf = page.csrf();

    let forged = browser
        .post_form("/admin/services/scim", &[("name", "Entra ID")])
        .await;
    assert!(forged.status.is_client_error(), "{}", forged.status);
    assert!(sesam.store().list_scim_clients().await.unwrap().is_empty());

    let made = browser
        .post_form(
            "/admin/services/scim",
            &[("csrf", &csrf), ("name", "Entra ID")],
        )
        .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    let start = made
        .body
        .find("id=\"scim-token\">")
        .expect("the token is shown")
        + 16;
    let token = made.body[start..start + 43].to_owned();
    let scim = Scim {
        http: reqwest::Client::new(),
        base: sesam.url("/scim/v2"),
        token: token.clone(),
    };
    assert_eq!(scim.get("/Users").await.status, StatusCode::OK);
    let again = browser.get("/admin/services").await;
    assert!(again.body.contains("Entra ID"));
    assert!(!again.body.contains(&token), "the token is shown only once");

    let twice = browser
        .post_form(
            "/admin/services/scim",
            &[("csrf", &csrf), ("name", "Entra ID")],
        )
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    assert!(twice.body.contains("id=\"scim-problem\""));
    let blank = browser
        .post_form("/admin/services/scim", &[("csrf", &csrf), ("name", "  ")])
        .await;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST);
    assert_eq!(sesam.store().list_scim_clients().await.unwrap().len(), 1);

    let removed = browser
        .post_form(
            "/admin/services/scim/remove",
            &[("csrf", &csrf), ("name", "Entra ID")],
        )
        .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.body);
    assert_error(&scim.get("/Users").await, 401, None);
    let entries = sesam
        .store()
        .list_audit(Some("Entra ID"), 10)
        .await
        .unwrap();
    assert!(entries
        .iter()
        .any(|e| e.event == "scim.client.added" && e.actor.as_deref() == Some("boss")));
    assert!(entries.iter().any(|e| e.event == "scim.client.removed"));
    sesam.stop().await;
}

on_both_databases!(scim_clients_are_managed_in_the_portal);
