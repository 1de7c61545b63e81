//! Several nodes on one PostgreSQL, and what happens when one of them, or the link between
//! them, fails: a node killed while a browser waits on it, and a lost notification. The
//! browser keeps its cookies and switches the base URL, as behind a load balancer with no
//! sticky sessions.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sesam_app::{Answer, AppClient, EnrolOptions};
use sesam_core::ChallengeState;

use crate::harness::{
    free_port, required_postgres, test_config_with, Browser, Process, TestServer,
};
use crate::passwordless::{code_on, start_login, wait_for_event};

fn phone() -> EnrolOptions {
    EnrolOptions {
        display_name: "Anna's iPhone".into(),
        ..EnrolOptions::default()
    }
}

/// Node A is killed (SIGKILL) while the browser waits on it; the app answers through node
/// B, and the browser's event stream on B completes the login. Prints the time from the
/// death of A to the completed login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_waiting_on_a_killed_node_completes_on_the_other() {
    let Some(db) = required_postgres("failover between two sesam processes").await else {
        return;
    };
    let (store, code) = crate::harness::anna_ready_to_enrol(&db).await;

    let reread = [("SESAM_CHALLENGE_REREAD_SECONDS", "2")];
    let a = Process::start_with(&db.url, free_port(), &reread).await;
    let b = Process::start_with(&db.url, free_port(), &reread).await;
    let (app_on_a, _) = AppClient::enroll(&a.base, &code, phone()).await.unwrap();
    let mut profile = app_on_a.profile().clone();
    profile.server = b.base.clone();
    let app = AppClient::from_profile(profile);

    let mut browser = Browser::new(a.base.clone());
    assert_eq!(start_login(&browser, "anna").await, "/login/wait");
    let shown = code_on(&browser.get("/login/wait").await);
    let b_base = b.base.clone();
    a.kill();
    let died = Instant::now();

    // The load balancer sends the browser's next request to B; its cookies still work there.
    browser.retarget(b_base.clone());
    let events = browser
        .client
        .get(format!("{b_base}/login/wait/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK, "B continues A's wait");
    let pending = app.pending().await.unwrap();
    assert_eq!(pending.len(), 1, "B sees the challenge A made");
    let answer = async {
        app.answer(&pending[0].id, &Answer::Code(shown))
            .await
            .unwrap()
            .status
    };
    let (seen, status) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(20), wait_for_event(events, "approved")),
        answer
    );
    assert_eq!(status, "approved");
    assert_eq!(seen, Ok(true), "B's event stream reported the answer");
    assert_eq!(
        browser.get("/login/complete").await.location(),
        Some("/account")
    );
    let account = browser.get("/account").await;
    assert!(
        account.body.contains("data-level=\"substantial\""),
        "logged in with the app on B"
    );
    eprintln!(
        "node A killed → login completed on node B: {:?}",
        died.elapsed()
    );
    b.kill();
    store.close().await;
}

/// Backends of the test database that listen for notifications: the nodes' listeners.
async fn cut_listeners(db_url: &str) -> u64 {
    let name = db_url.rsplit('/').next().unwrap().to_owned();
    let admin = std::env::var("SESAM_TEST_DATABASE_URL").unwrap();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    let cut: Vec<(i32,)> = sqlx::query_as(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN%' \
         AND pg_terminate_backend(pid)",
    )
    .bind(&name)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    cut.len() as u64
}

/// A node's listener connection is cut and the answer's notification never arrives: the
/// waiting browser still hears of the answer, from the re-read timer, within about its
/// interval. A node whose re-read is a minute does not, which shows the timer is what
/// carried the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_notification_only_delays_the_answer_by_the_reread_interval() {
    let Some(db) = required_postgres("lost notifications between nodes").await else {
        return;
    };
    let store = db.store().await;
    let now = sesam_core::Clock::now(&sesam_core::SystemClock);
    store.set_setting("passwordless", "on", now).await.unwrap();
    store.close().await;
    let clock = sesam_core::ManualClock::starting_now();
    let quick = TestServer::start_with(
        clock.clone(),
        test_config_with(&db.url, &[("SESAM_CHALLENGE_REREAD_SECONDS", "2")]),
    )
    .await;
    let slow = TestServer::start_with(
        clock.clone(),
        test_config_with(&db.url, &[("SESAM_CHALLENGE_REREAD_SECONDS", "60")]),
    )
    .await;
    let mut waits = Vec::new();
    for (name, node) in [("anna", &quick), ("bo", &slow)] {
        let user = node.add_user(name, name, "correct horse battery").await;
        let (app, _) = node.enrol(&user, phone()).await;
        let browser = node.browser();
        assert_eq!(start_login(&browser, name).await, "/login/wait");
        let events = browser
            .client
            .get(node.url("/login/wait/events"))
            .send()
            .await
            .unwrap();
        assert_eq!(events.status(), StatusCode::OK);
        let challenge = app.pending().await.unwrap().remove(0);
        waits.push((browser, events, challenge, app));
    }
    // Both listeners go; the answers are stored, as a node would, with no notification.
    let cut = cut_listeners(&db.url).await;
    assert!(cut >= 2, "each node had a listener ({cut} cut)");
    let answered = Instant::now();
    for (_, _, challenge, app) in &waits {
        let taken = quick
            .store()
            .finish_challenge(
                &challenge.id,
                ChallengeState::Approved,
                false,
                Some(&app.profile().device_id),
                quick.now(),
            )
            .await
            .unwrap();
        assert!(taken);
    }
    let (slow_wait, quick_wait) = (waits.pop().unwrap(), waits.pop().unwrap());
    let quick_heard = async {
        let seen = tokio::time::timeout(
            Duration::from_secs(15),
            wait_for_event(quick_wait.1, "approved"),
        )
        .await;
        (seen, answered.elapsed())
    };
    let ((quick_seen, quick_after), slow_seen) = tokio::join!(
        quick_heard,
        tokio::time::timeout(
            Duration::from_secs(8),
            wait_for_event(slow_wait.1, "approved")
        ),
    );
    assert_eq!(quick_seen, Ok(true), "the 2 s re-read found the answer");
    eprintln!(
        "answer without a notification reached the stream after {quick_after:?} (re-read every 2 s)"
    );
    assert!(
        slow_seen.is_err(),
        "with a 60 s re-read and no notification the stream heard nothing"
    );
    // The slow node's browser still gets there: its status poll reads the database.
    let status = slow_wait.0.get("/login/wait/status").await;
    assert!(status.body.contains("\"approved\""), "{}", status.body);
    assert_eq!(
        slow_wait.0.get("/login/complete").await.location(),
        Some("/account")
    );
    assert_eq!(
        quick_wait.0.get("/login/complete").await.location(),
        Some("/account")
    );
    quick.stop().await;
    slow.stop().await;
}

/// A PostgreSQL server of the test's own, so it can be stopped and started without touching
/// the one the other tests use. PostgreSQL refuses to run as root; as root, it runs as the
/// `postgres` user.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    port: u16,
}

impl PrivatePostgres {
    /// `None` (locally, said loudly) when the PostgreSQL server programs are not installed.
    fn start() -> Option<PrivatePostgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .max_by_key(|b| {
                let version = b
                    .parent()
                    .and_then(|v| v.file_name())
                    .and_then(|v| v.to_str());
                version.and_then(|v| v.parse::<u32>().ok()).unwrap_or(0)
            })?;
        let dir = tempfile::tempdir().unwrap();
        let pg = PrivatePostgres {
            dir,
            bin,
            port: free_port(),
        };
        if is_root() {
            run(
                "chown",
                &["-R", "postgres:", &pg.dir.path().display().to_string()],
            );
        }
        pg.as_owner(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        pg.start_again();
        Some(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn as_owner(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program).display().to_string();
        if is_root() {
            let mut all = vec!["-u", "postgres", "--", program.as_str()];
            all.extend_from_slice(args);
            run("runuser", &all);
        } else {
            run(&program, args);
        }
    }

    fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.as_owner(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    /// A fast shutdown: every connection is cut, as at a restart for an upgrade.
    fn stop(&self) {
        self.as_owner("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let program = self.bin.join("pg_ctl").display().to_string();
        let data = self.data();
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let _ = if is_root() {
            std::process::Command::new("runuser")
                .args(["-u", "postgres", "--", program.as_str()])
                .args(args)
                .output()
        } else {
            std::process::Command::new(program).args(args).output()
        };
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn run(program: &str, args: &[&str]) {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// PostgreSQL restarts while 20 browsers wait for the app. While it is away `/readyz` says
/// not ready and the waiting pages get 503, never another 5xx; after the restart every app
/// answers and every login completes, and nothing stored is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_logins_wait_through_a_database_restart() {
    let Some(pg) = PrivatePostgres::start() else {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "CI=true but the PostgreSQL server programs (initdb, pg_ctl) are not installed"
        );
        eprintln!("SKIPPED LOUDLY: no PostgreSQL server programs, so the database restart test did not run");
        return;
    };
    let clock = sesam_core::ManualClock::starting_now();
    let sesam = TestServer::start_with(
        clock.clone(),
        test_config_with(&pg.url(), &[("SESAM_CHALLENGE_REREAD_SECONDS", "1")]),
    )
    .await;
    sesam
        .store()
        .set_setting("passwordless", "on", sesam.now())
        .await
        .unwrap();
    let mut waiting = Vec::new();
    for n in 0..20 {
        let name = format!("user{n:02}");
        let user = sesam.add_user(&name, &name, "correct horse battery").await;
        let (app, _) = sesam.enrol(&user, phone()).await;
        let browser = sesam.browser();
        assert_eq!(start_login(&browser, &name).await, "/login/wait");
        let code = code_on(&browser.get("/login/wait").await);
        waiting.push((browser, app, code));
    }
    let before = stored_counts(sesam.store()).await;

    pg.stop();
    let readyz = reqwest::get(sesam.url("/readyz")).await.unwrap().status();
    assert_eq!(
        readyz,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready without the database"
    );
    assert_eq!(
        reqwest::get(sesam.url("/healthz")).await.unwrap().status(),
        StatusCode::OK
    );
    // All 20 poll at once, as their pages would.
    let down = Instant::now();
    let pages = futures_util::future::join_all(
        waiting
            .iter()
            .map(|(browser, _, _)| browser.get("/login/wait/status")),
    )
    .await;
    eprintln!(
        "20 polls while PostgreSQL was down took {:?}",
        down.elapsed()
    );
    let mut statuses = Vec::new();
    for page in pages {
        assert!(
            page.status == StatusCode::OK || page.status == StatusCode::SERVICE_UNAVAILABLE,
            "a waiting browser got {} while the database was away: {}",
            page.status,
            page.body
        );
        statuses.push(page.status);
    }
    eprintln!("waiting pages while PostgreSQL was down: {statuses:?}");
    let app_down = waiting[0].1.pending().await.unwrap_err();
    assert_eq!(
        (app_down.status(), app_down.error_code()),
        (Some(503), Some("unavailable")),
        "the app is told to retry"
    );
    let page = waiting[0].0.get("/login/wait").await;
    assert!(
        page.status.is_server_error() && page.status == StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.status
    );

    pg.start_again();
    // The app signs with the real time; the server's clock stood still while PostgreSQL was away.
    let behind = sesam_core::Clock::now(&sesam_core::SystemClock).0 - sesam.now().0;
    clock.advance(behind.max(0));
    let back = Instant::now();
    let mut ready = false;
    for _ in 0..100 {
        if reqwest::get(sesam.url("/readyz")).await.unwrap().status() == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "ready again after the restart");
    eprintln!(
        "ready {:?} after PostgreSQL was started again",
        back.elapsed()
    );

    for (browser, app, code) in &waiting {
        let pending = app.pending().await.unwrap();
        assert_eq!(pending.len(), 1, "the challenge outlived the restart");
        assert_eq!(
            app.answer(&pending[0].id, &Answer::Code(code.clone()))
                .await
                .unwrap()
                .status,
            "approved"
        );
        let status = browser.get("/login/wait/status").await;
        assert_eq!(status.status, StatusCode::OK, "{}", status.body);
        assert!(status.body.contains("\"approved\""), "{}", status.body);
        assert_eq!(
            browser.get("/login/complete").await.location(),
            Some("/account")
        );
    }
    assert_eq!(
        stored_counts(sesam.store()).await,
        before,
        "nothing stored was lost"
    );
    sesam.stop().await;
}

/// Users, devices and challenges in the database.
async fn stored_counts(store: &sesam_store::Store) -> (usize, usize) {
    let users = store.list_users(1000, 0).await.unwrap();
    let mut devices = 0;
    for user in &users {
        devices += store.devices_of_user(&user.id).await.unwrap().len();
    }
    (users.len(), devices)
}
