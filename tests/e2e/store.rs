//! The repository API against both backends.

use sesam_core::{ManualClock, PasswordlessMode, Username};
use sesam_store::{AuditEvent, StoreError};

use crate::harness::{add_user, on_both_databases, TestDb};

on_both_databases!(
    migrations_run_twice_are_a_no_op,
    usernames_are_unique_whatever_the_case,
    the_audit_log_is_append_only,
    settings_are_checked_before_they_are_stored,
    concurrent_failures_are_all_counted,
    cached_settings_and_clients_follow_every_change,
    replay_caches_forget_expired_rows_once_a_minute,
);

fn now() -> sesam_core::UnixTime {
    sesam_core::Clock::now(&ManualClock::starting_now())
}

async fn migrations_run_twice_are_a_no_op(db: TestDb) {
    let store = sesam_store::Store::connect(&db.url).await.unwrap();
    assert!(
        store.migrate().await.unwrap() >= 1,
        "the first run applies the migrations"
    );
    let anna = add_user(&store, "anna", "Anna", "correct horse battery", now()).await;
    assert_eq!(
        store.migrate().await.unwrap(),
        0,
        "the second run applies nothing"
    );
    assert_eq!(
        store.get_user(&anna.id).await.unwrap(),
        anna,
        "and loses nothing"
    );
    assert_eq!(
        store.backend() == sesam_store::Backend::Postgres,
        db.is_postgres()
    );
}

async fn usernames_are_unique_whatever_the_case(db: TestDb) {
    let store = db.store().await;
    add_user(&store, "Anna", "Anna", "correct horse battery", now()).await;
    let again = store
        .create_user(
            sesam_store::NewUser {
                username: Username::parse("ANNA").unwrap(),
                display_name: "Impostor".into(),
                email: None,
                password_hash: None,
                is_admin: false,
                password_only: false,
                must_change_password: false,
            },
            now(),
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let found = store
        .find_user_by_username(&Username::parse("aNnA").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.display_name, "Anna");
    assert_eq!(
        found.username.as_str(),
        "Anna",
        "the spelling the user chose is kept"
    );
}

async fn the_audit_log_is_append_only(db: TestDb) {
    let store = db.store().await;
    store
        .append_audit(
            &AuditEvent::new("test.event")
                .actor("cli")
                .subject("anna")
                .detail("first"),
            now(),
        )
        .await
        .unwrap();
    let url = db.url.clone();
    let tampered = if db.is_postgres() {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query("UPDATE audit_log SET detail = 'changed'")
            .execute(&pool)
            .await
            .map(|_| ())
    } else {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("DELETE FROM audit_log")
            .execute(&pool)
            .await
            .map(|_| ())
    };
    assert!(
        tampered.is_err(),
        "the database refuses to change the audit log"
    );
    let entries = store.list_audit(Some("anna"), 10).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].detail, "first");
    assert!(store
        .list_audit(Some("someone else"), 10)
        .await
        .unwrap()
        .is_empty());
}

async fn settings_are_checked_before_they_are_stored(db: TestDb) {
    let store = db.store().await;
    assert_eq!(
        store.load_settings().await.unwrap().passwordless,
        PasswordlessMode::Off
    );
    assert_eq!(
        store
            .set_setting("passwordless", "pilot", now())
            .await
            .unwrap(),
        "off"
    );
    assert!(store
        .set_setting("passwordless", "sometimes", now())
        .await
        .is_err());
    assert!(store.set_setting("no_such_key", "1", now()).await.is_err());
    assert!(store
        .set_setting("lockout_max_failures", "-3", now())
        .await
        .is_err());
    let settings = store.load_settings().await.unwrap();
    assert_eq!(
        settings.passwordless,
        PasswordlessMode::Pilot,
        "a refused value leaves the stored one"
    );
    assert_eq!(settings.lockout_max_failures, 5);
}

async fn concurrent_failures_are_all_counted(db: TestDb) {
    let store = db.store().await;
    let settings = sesam_core::Settings {
        lockout_max_failures: 20,
        ..Default::default()
    };
    let t = now();
    // 50 attempts at once: each is reserved before its password is checked, so exactly
    // the limit may go on to the hash and the rest find the name locked.
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let store = store.clone();
        let settings = settings.clone();
        tasks.push(tokio::spawn(async move {
            store
                .reserve_password_attempt("anna", t, &settings)
                .await
                .unwrap()
        }));
    }
    let mut allowed = Vec::new();
    let mut locked = 0;
    for task in tasks {
        match task.await.unwrap() {
            sesam_store::Attempt::Allowed { count } => allowed.push(count),
            sesam_store::Attempt::Locked(until) => {
                assert_eq!(until, t.plus_seconds(settings.lockout_duration_seconds));
                locked += 1;
            }
        }
    }
    allowed.sort_unstable();
    assert_eq!(
        allowed,
        (1..=20).collect::<Vec<i64>>(),
        "one count each, 1 to 20"
    );
    assert_eq!(locked, 30);
    assert!(store
        .throttle_state("anna", t)
        .await
        .unwrap()
        .locked_until
        .is_some());
    // Another name is untouched, and the last allowed attempt failing locks too.
    let fresh = sesam_core::Settings {
        lockout_max_failures: 2,
        ..Default::default()
    };
    for expected in [1, 2] {
        assert_eq!(
            store
                .reserve_password_attempt("bo", t, &fresh)
                .await
                .unwrap(),
            sesam_store::Attempt::Allowed { count: expected }
        );
    }
    assert_eq!(
        store
            .login_attempt_failed("bo", 1, t, &fresh)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .login_attempt_failed("bo", 2, t, &fresh)
            .await
            .unwrap(),
        Some(t.plus_seconds(fresh.lockout_duration_seconds)),
        "the last allowed failure locks"
    );
    // After the lock the full number of tries is back.
    let later = t.plus_seconds(fresh.lockout_duration_seconds + 1);
    assert_eq!(
        store
            .reserve_password_attempt("bo", later, &fresh)
            .await
            .unwrap(),
        sesam_store::Attempt::Allowed { count: 1 }
    );
}

/// The login paths read settings and registrations from memory. A change through the same
/// store is seen at once; one made by another process or node is seen when PostgreSQL
/// announces it, and in any case once the cached value is older than its maximum age.
async fn cached_settings_and_clients_follow_every_change(db: TestDb) {
    let node = db.store().await;
    let other = db.store().await;
    let listener = node.config_listener().await.unwrap();
    assert_eq!(
        listener.is_some(),
        db.is_postgres(),
        "LISTEN only on PostgreSQL"
    );

    assert_eq!(
        node.settings().await.unwrap().passwordless,
        PasswordlessMode::Off
    );
    node.set_setting("passwordless", "on", now()).await.unwrap();
    assert_eq!(
        node.settings().await.unwrap().passwordless,
        PasswordlessMode::On,
        "a change through this store is seen at once"
    );

    let client = node
        .create_oidc_client(
            &sesam_store::NewOidcClient {
                name: "RP".into(),
                secret_hash: None,
                redirect_uris: vec!["https://rp.example.dk/cb".into()],
                post_logout_redirect_uris: vec![],
                id_token_alg: "RS256".into(),
                subject_type: "public".into(),
            },
            now(),
        )
        .await
        .unwrap();
    assert!(
        node.oidc_client_cached(&client.client_id)
            .await
            .unwrap()
            .unwrap()
            .enabled
    );
    assert_eq!(
        node.oidc_client_cached("no-such-client").await.unwrap(),
        None
    );

    // Both are in this node's cache now (creating the client forgot the settings).
    assert_eq!(
        node.settings().await.unwrap().passwordless,
        PasswordlessMode::On
    );
    // Another process (the CLI, another node) changes both.
    other
        .set_setting("passwordless", "pilot", now())
        .await
        .unwrap();
    other
        .set_oidc_client_enabled(&client.client_id, false, now())
        .await
        .unwrap();
    if let Some(mut listener) = listener {
        tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv())
            .await
            .expect("PostgreSQL announces the change")
            .unwrap();
        node.forget_cached_config();
    } else {
        assert_eq!(
            node.settings().await.unwrap().passwordless,
            PasswordlessMode::On,
            "SQLite: within the maximum age the cached value is used (no notification)"
        );
        tokio::time::sleep(
            sesam_store::CONFIG_CACHE_MAX_AGE + std::time::Duration::from_millis(100),
        )
        .await;
    }
    assert_eq!(
        node.settings().await.unwrap().passwordless,
        PasswordlessMode::Pilot
    );
    assert!(
        !node
            .oidc_client_cached(&client.client_id)
            .await
            .unwrap()
            .unwrap()
            .enabled
    );

    assert!(node.remove_oidc_client(&client.client_id).await.unwrap());
    assert_eq!(
        node.oidc_client_cached(&client.client_id).await.unwrap(),
        None,
        "a removed client is gone at once"
    );
}

/// Expired replay-cache rows are deleted once a minute on the side of an insert, not on every
/// insert; a live one still refuses its replay.
async fn replay_caches_forget_expired_rows_once_a_minute(db: TestDb) {
    let store = db.store().await;
    let t = now().0;
    let at = sesam_core::UnixTime;
    assert!(store
        .remember_proof("k", "a", at(t + 30), at(t))
        .await
        .unwrap());
    assert!(
        !store
            .remember_proof("k", "a", at(t + 30), at(t + 1))
            .await
            .unwrap(),
        "a replay is refused"
    );
    assert!(store
        .remember_proof("k", "b", at(t + 120), at(t + 31))
        .await
        .unwrap());
    assert_eq!(
        store.count_rows("proof_replay").await.unwrap(),
        2,
        "a has expired, but the purge is not due within a minute of the last"
    );
    assert!(store
        .remember_proof("k", "c", at(t + 200), at(t + 61))
        .await
        .unwrap());
    assert_eq!(
        store.count_rows("proof_replay").await.unwrap(),
        2,
        "a minute on, the expired row is gone and the live ones stay"
    );
    assert!(
        !store
            .remember_proof("k", "b", at(t + 120), at(t + 62))
            .await
            .unwrap(),
        "a live id still refuses its replay"
    );

    assert!(store
        .remember_saml_request_id("sp", "r1", at(t + 10), at(t))
        .await
        .unwrap());
    assert!(!store
        .remember_saml_request_id("sp", "r1", at(t + 10), at(t + 5))
        .await
        .unwrap());
    assert!(store
        .remember_saml_request_id("sp", "r2", at(t + 200), at(t + 70))
        .await
        .unwrap());
    assert_eq!(store.count_rows("saml_request_ids").await.unwrap(), 1);
    assert!(store.count_rows("users; DROP TABLE users").await.is_err());
}
