//! Test databases, a real server on a random port, and a cookie-keeping browser.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_TYPE, LOCATION, SET_COOKIE};
use reqwest::{redirect, Client, StatusCode};
use sesam_core::{Clock, ManualClock, UnixTime, User, Username};
use sesam_server::{Config, RunningServer};
use sesam_store::{NewUser, Store};

/// Runs `async fn $name(db: TestDb)` once per backend.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(crate::harness::TestDb::sqlite()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                match crate::harness::TestDb::postgres().await {
                    Some(db) => super::$name(db).await,
                    None if std::env::var("CI").is_ok_and(|v| v == "true") => {
                        panic!("CI=true but SESAM_TEST_DATABASE_URL is not set: the PostgreSQL case must run")
                    }
                    None => eprintln!("SKIPPED LOUDLY: SESAM_TEST_DATABASE_URL is not set, so the PostgreSQL case of this test did not run"),
                }
            }
        }
    )*};
}
pub(crate) use on_both_databases;

/// A database of its own for one test: a SQLite file in a temporary directory, or a fresh
/// PostgreSQL database created through SESAM_TEST_DATABASE_URL and dropped afterwards.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/sesam.db", dir.path().display());
        TestDb {
            url,
            _dir: Some(dir),
            postgres: None,
        }
    }

    pub async fn postgres() -> Option<TestDb> {
        let admin_url = std::env::var("SESAM_TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())?;
        let name = format!("sesam_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
            .await
            .expect("SESAM_TEST_DATABASE_URL must reach PostgreSQL");
        sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create test database");
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&admin_url);
        Some(TestDb {
            url: format!("{base}/{name}"),
            _dir: None,
            postgres: Some((admin_url, name)),
        })
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    pub async fn store(&self) -> Store {
        let store = Store::connect(&self.url).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.postgres.take() {
            // Drop runs outside any runtime we may block; use a thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
                        .await
                        .ok()?;
                    sqlx::Executor::execute(
                        &mut conn,
                        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                    )
                    .await
                    .ok()
                })
            })
            .join();
        }
    }
}

pub fn test_config(db_url: &str) -> Config {
    test_config_with(db_url, &[])
}

/// The test configuration plus `SESAM_*` variables.
pub fn test_config_with(db_url: &str, extra: &[(&str, &str)]) -> Config {
    let mut env: Vec<(String, String)> = [
        ("SESAM_LISTEN", "127.0.0.1:0"),
        ("SESAM_DATABASE_URL", db_url),
        ("SESAM_PASSWORD_HASH_CONCURRENCY", "2"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::load(None, env).expect("test config is valid")
}

/// A running Sesam plus the clock it reads.
pub struct TestServer {
    pub server: RunningServer,
    pub clock: ManualClock,
}

impl TestServer {
    pub async fn start(db: &TestDb) -> TestServer {
        Self::start_with_clock(db, ManualClock::starting_now()).await
    }

    pub async fn start_with_clock(db: &TestDb, clock: ManualClock) -> TestServer {
        Self::start_with(clock, test_config(&db.url)).await
    }

    pub async fn start_with(clock: ManualClock, config: Config) -> TestServer {
        let server = sesam_server::start(config, Arc::new(clock.clone()))
            .await
            .expect("server starts");
        TestServer { server, clock }
    }

    pub fn store(&self) -> &Store {
        &self.server.store
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.server.addr, path)
    }

    pub fn browser(&self) -> Browser {
        Browser::new(self.url(""))
    }

    pub async fn add_user(&self, name: &str, display: &str, password: &str) -> User {
        add_user(self.store(), name, display, password, self.clock.now()).await
    }

    /// A password-only user (service account style) whose password is a one-time one.
    pub async fn add_one_time_password_user(&self, name: &str, password: &str) -> User {
        self.store()
            .create_user(
                NewUser {
                    username: Username::parse(name).unwrap(),
                    display_name: name.into(),
                    email: None,
                    password_hash: Some(sesam_server::password::hash_now(password).unwrap()),
                    is_admin: false,
                    password_only: true,
                    must_change_password: true,
                },
                self.now(),
            )
            .await
            .expect("create user")
    }

    pub async fn audit_events(&self, subject: &str) -> Vec<String> {
        self.store()
            .list_audit(Some(subject), 1000)
            .await
            .expect("audit")
            .into_iter()
            .map(|e| e.event)
            .collect()
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// Enrols a `sesam-app` client for `user` with a fresh activation code.
    pub async fn enrol(
        &self,
        user: &User,
        opts: sesam_app::EnrolOptions,
    ) -> (sesam_app::AppClient, sesam_app::DeviceView) {
        let code = sesam_server::activation::issue(self.store(), &user.id, self.now())
            .await
            .unwrap();
        sesam_app::AppClient::enroll(&self.url(""), &code, opts)
            .await
            .expect("enrolment succeeds")
    }

    pub async fn stop(self) {
        self.server.stop().await.expect("server stops");
    }
}

/// For the tests that run real `sesam` processes: passwordless on, the user anna, and an
/// activation code for her first app. Returns the store they were written through.
pub async fn anna_ready_to_enrol(db: &TestDb) -> (Store, String) {
    let store = db.store().await;
    let now = Clock::now(&sesam_core::SystemClock);
    store.set_setting("passwordless", "on", now).await.unwrap();
    let anna = add_user(
        &store,
        "anna",
        "Anna Andersen",
        "correct horse battery",
        now,
    )
    .await;
    let code = sesam_server::activation::issue(&store, &anna.id, now)
        .await
        .unwrap();
    (store, code)
}

/// A PostgreSQL test database, which must exist under CI; `None` (said loudly) locally
/// without SESAM_TEST_DATABASE_URL.
pub async fn required_postgres(what: &str) -> Option<TestDb> {
    match TestDb::postgres().await {
        Some(db) => Some(db),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but SESAM_TEST_DATABASE_URL is not set: {what} must run")
        }
        None => {
            eprintln!("SKIPPED LOUDLY: SESAM_TEST_DATABASE_URL is not set, so {what} did not run");
            None
        }
    }
}

/// A real `sesam` process, so it can be killed without any chance to clean up.
pub struct Process {
    child: std::process::Child,
    pub base: String,
}

impl Process {
    pub async fn start(db_url: &str, port: u16) -> Process {
        Self::start_with(db_url, port, &[]).await
    }

    /// With extra `SESAM_*` variables.
    pub async fn start_with(db_url: &str, port: u16, extra: &[(&str, &str)]) -> Process {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_sesam"))
            .arg("serve")
            .envs(extra.iter().copied())
            .env_remove("SESAM_CONFIG")
            .env("SESAM_LISTEN", format!("127.0.0.1:{port}"))
            .env("SESAM_DATABASE_URL", db_url)
            .env("SESAM_LOG_LEVEL", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start sesam");
        let process = Process {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..200 {
            if let Ok(r) = reqwest::get(format!("{}/readyz", process.base)).await {
                if r.status() == StatusCode::OK {
                    return process;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("sesam did not become ready on port {port}");
    }

    /// SIGKILL: no graceful shutdown, nothing flushed.
    pub fn kill(self) {}
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn add_user(
    store: &Store,
    name: &str,
    display: &str,
    password: &str,
    now: UnixTime,
) -> User {
    store
        .create_user(
            NewUser {
                username: Username::parse(name).unwrap(),
                display_name: display.into(),
                email: None,
                password_hash: Some(sesam_server::password::hash_now(password).unwrap()),
                is_admin: false,
                password_only: false,
                must_change_password: false,
            },
            now,
        )
        .await
        .expect("create user")
}

/// A browser: keeps cookies, does not follow redirects (tests look at them).
pub struct Browser {
    pub client: Client,
    base: String,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> Option<&str> {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok())
    }

    /// The hidden CSRF field of the page's form.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self
            .body
            .find(marker)
            .unwrap_or_else(|| panic!("no csrf field in:\n{}", self.body))
            + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_owned()
    }

    /// The activation code the devices page shows after "Add an app" (`ABCDE-FGHJK`).
    pub fn activation_code(&self) -> String {
        let marker = "id=\"activation-code\">";
        let start = self
            .body
            .find(marker)
            .unwrap_or_else(|| panic!("no activation code in:\n{}", self.body))
            + marker.len();
        self.body[start..start + 11].to_owned()
    }

    /// The value a `Set-Cookie` header gives `name` (empty when it deletes it).
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| {
                v.strip_prefix(&format!("{name}="))
                    .map(|rest| rest.split(';').next().unwrap_or("").to_owned())
            })
    }

    pub fn set_cookie_header(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }
}

impl Browser {
    pub fn new(base: String) -> Browser {
        Self::with_headers(base, HeaderMap::new())
    }

    pub fn with_headers(base: String, headers: HeaderMap) -> Browser {
        let client = Client::builder()
            .cookie_store(true)
            .redirect(redirect::Policy::none())
            .default_headers(headers)
            .build()
            .unwrap();
        Browser { client, base }
    }

    /// The same cookies, pointed at another server (a restarted one).
    pub fn retarget(&mut self, base: String) {
        self.base = base;
    }

    pub async fn get(&self, path: &str) -> Page {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        Self::page(r).await
    }

    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = serde_urlencoded_pairs(fields);
        self.post_raw(path, "application/x-www-form-urlencoded", body.into_bytes())
            .await
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Page {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .expect("POST");
        Self::page(r).await
    }

    async fn page(r: reqwest::Response) -> Page {
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.text().await.unwrap_or_default();
        Page {
            status,
            headers,
            body,
        }
    }

    /// Username then password; returns the answer to the password.
    /// "Add an app" on the devices page, which must succeed; the page shows the code.
    pub async fn issue_activation(&self) -> Page {
        let devices = self.get("/account/devices").await;
        assert_eq!(devices.status, StatusCode::OK, "{}", devices.body);
        let issued = self
            .post_form("/account/devices/activation", &[("csrf", &devices.csrf())])
            .await;
        assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
        issued
    }

    pub async fn log_in(&self, username: &str, password: &str) -> Page {
        let form = self.get("/login").await;
        let first = self
            .post_form("/login", &[("csrf", &form.csrf()), ("username", username)])
            .await;
        assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
        assert_eq!(first.location(), Some("/login/password"));
        self.submit_password(password).await
    }

    /// The change-password form, sent; returns its answer.
    pub async fn change_password(&self, current: &str, new: &str) -> Page {
        let form = self.get("/account/password").await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        self.post_form(
            "/account/password",
            &[
                ("csrf", &form.csrf()),
                ("current", current),
                ("new", new),
                ("repeat", new),
            ],
        )
        .await
    }

    pub async fn submit_password(&self, password: &str) -> Page {
        let page = self.get("/login/password").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        self.post_form(
            "/login/password",
            &[("csrf", &page.csrf()), ("password", password)],
        )
        .await
    }
}

fn serde_urlencoded_pairs(fields: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&urlencode(k));
        out.push('=');
        out.push_str(&urlencode(v));
    }
    out
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
