//! The `sesam` binary: configuration checks and user administration from the shell.

use std::io::Write;
use std::process::{Command, Output, Stdio};

pub(crate) fn sesam(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sesam"));
    cmd.args(args)
        .env_remove("SESAM_CONFIG")
        .env_remove("SESAM_DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run sesam");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn config_check_accepts_the_documented_example() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sesam.example.toml");
    let out = sesam(&["--config", example, "config", "check"], &[], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("configuration is valid"));
}

/// Issue "For the people who run it", item 2: copying the example and changing only
/// `listen` used to keep `public_url` on port 8080.
#[test]
fn the_example_config_with_only_listen_changed_moves_public_url_too() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/sesam.example.toml"
    ))
    .unwrap();
    assert!(example.contains("listen = \"127.0.0.1:8080\""));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sesam.toml");
    std::fs::write(
        &file,
        example.replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:9443\""),
    )
    .unwrap();
    let out = sesam(
        &["--config", file.to_str().unwrap(), "config", "check"],
        &[],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("public_url                = http://localhost:9443"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn config_check_rejects_a_bad_file_with_a_precise_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "listen = \"127.0.0.1:8080\"\nlissten = \"x\"\n",
            "unknown field `lissten`",
        ),
        (
            "listen = \"localhost\"\n",
            "listen: \"localhost\" is not an address",
        ),
        (
            "database_url = \"mysql://db/sesam\"\n",
            "database_url: must start with sqlite: or postgres://",
        ),
        (
            "log_format = \"xml\"\n",
            "log_format: \"xml\" is not one of human, json",
        ),
        ("listen = \n", "line 1"),
    ];
    for (i, (content, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, content).unwrap();
        let out = sesam(
            &["--config", path.to_str().unwrap(), "config", "check"],
            &[],
            None,
        );
        assert_eq!(out.status.code(), Some(2), "case {i}");
        let err = text(&out.stderr);
        assert!(
            err.contains(expected),
            "case {i}: expected {expected:?} in {err:?}"
        );
    }
    let missing = sesam(
        &["--config", "/no/such/sesam.toml", "config", "check"],
        &[],
        None,
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("/no/such/sesam.toml"));
    let env_bad = sesam(
        &["config", "check"],
        &[("SESAM_PASSWORD_HASH_CONCURRENCY", "many")],
        None,
    );
    assert!(text(&env_bad.stderr).contains("SESAM_PASSWORD_HASH_CONCURRENCY"));
}

#[test]
fn users_are_managed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/cli.db", dir.path().display());
    let env = [("SESAM_DATABASE_URL", url.as_str())];

    let migrate = sesam(&["migrate"], &env, None);
    assert!(migrate.status.success(), "{}", text(&migrate.stderr));
    assert!(text(&sesam(&["migrate"], &env, None).stdout).contains("0 migration(s) applied"));

    let add = sesam(
        &[
            "user",
            "add",
            "bob",
            "--display-name",
            "Bob Berg",
            "--password-only",
        ],
        &env,
        None,
    );
    assert!(add.status.success(), "{}", text(&add.stderr));
    assert!(text(&add.stdout).contains("one-time password: "));
    let dup = sesam(
        &["user", "add", "BOB", "--password-stdin"],
        &env,
        Some("a long enough password\n"),
    );
    assert!(!dup.status.success());
    assert!(
        text(&dup.stderr).contains("already exists"),
        "{}",
        text(&dup.stderr)
    );
    let short = sesam(
        &["user", "set-password", "bob", "--password-stdin"],
        &env,
        Some("short\n"),
    );
    assert!(!short.status.success());
    assert!(text(&short.stderr).contains("at least 12"));

    let set = sesam(
        &["user", "set-password", "bob", "--password-stdin"],
        &env,
        Some("a long enough password\n"),
    );
    assert!(set.status.success(), "{}", text(&set.stderr));
    assert!(
        !text(&set.stdout).contains("a long enough password"),
        "a typed password is never echoed"
    );

    assert!(sesam(&["user", "lock", "bob"], &env, None).status.success());
    let list = text(&sesam(&["user", "list"], &env, None).stdout);
    let bob_line = list
        .lines()
        .find(|l| l.starts_with("bob "))
        .expect("bob listed");
    assert!(
        bob_line.contains("locked") && bob_line.contains("password-only"),
        "{bob_line}"
    );
    assert!(sesam(&["user", "unlock", "bob"], &env, None)
        .status
        .success());
    let list = text(&sesam(&["user", "list"], &env, None).stdout);
    assert!(
        list.lines()
            .any(|l| l.starts_with("bob ") && l.contains("active")),
        "{list}"
    );

    let unknown = sesam(&["user", "lock", "nobody"], &env, None);
    assert!(!unknown.status.success());
    assert!(text(&unknown.stderr).contains("no user named nobody"));

    let set_mode = sesam(&["settings", "set", "passwordless", "pilot"], &env, None);
    assert!(set_mode.status.success(), "{}", text(&set_mode.stderr));
    let bad_mode = sesam(&["settings", "set", "passwordless", "always"], &env, None);
    assert!(!bad_mode.status.success());
    assert!(text(&bad_mode.stderr).contains("not one of off, pilot, on"));
    assert!(text(&sesam(&["settings", "list"], &env, None).stdout).contains("passwordless = pilot"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_code_from_the_command_line_enrols_an_app() {
    let db = crate::harness::TestDb::sqlite();
    let server = crate::harness::TestServer::start(&db).await;
    server
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let env = [("SESAM_DATABASE_URL", db.url.as_str())];

    let out = sesam(&["device", "activation-code", "--user", "anna"], &env, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let code = stdout
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a code")
        .to_owned();
    let (_, device) =
        sesam_app::AppClient::enroll(&server.url(""), &code, sesam_app::EnrolOptions::default())
            .await
            .expect("the code enrols");
    let list = text(&sesam(&["device", "list", "--user", "anna"], &env, None).stdout);
    assert!(
        list.contains(&device.device_id) && list.contains("passwordless: yes"),
        "{list}"
    );
    let nobody = sesam(
        &["device", "activation-code", "--user", "nobody"],
        &env,
        None,
    );
    assert!(!nobody.status.success());
    assert!(text(&nobody.stderr).contains("no user named nobody"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_clients_are_registered_rotated_and_removed_from_the_command_line() {
    let db = crate::harness::TestDb::sqlite();
    let store = db.store().await;
    let env = [("SESAM_DATABASE_URL", db.url.as_str())];
    let value_after = |out: &str, label: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {label} in {out}"))
    };

    // Bad redirect URIs: refused with the reason, nothing stored.
    for bad in [
        "http://example.dk/cb",
        "https://rp.example.dk/cb#frag",
        "not a url",
    ] {
        let out = sesam(
            &["oidc-client", "add", "--name", "RP", "--redirect-uri", bad],
            &env,
            None,
        );
        assert!(!out.status.success(), "{bad}");
        assert!(
            text(&out.stderr).contains("not a usable redirect URI"),
            "{}",
            text(&out.stderr)
        );
    }
    assert!(store.list_oidc_clients().await.unwrap().is_empty());

    let out = sesam(
        &[
            "oidc-client",
            "add",
            "--name",
            "Borgerservice",
            "--redirect-uri",
            "https://rp.example.dk/cb",
            "--post-logout-redirect-uri",
            "https://rp.example.dk/bye",
        ],
        &env,
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let client_id = value_after(&stdout, "client_id:");
    let secret = value_after(&stdout, "client_secret:");
    let stored = store.get_oidc_client(&client_id).await.unwrap().unwrap();
    assert_eq!(stored.redirect_uris, ["https://rp.example.dk/cb"]);
    let hash = stored.secret_hash.clone().unwrap();
    assert!(!hash.contains(&secret), "only a hash is stored");
    assert!(sesam_oidc::verify_client_secret(&secret, &hash));

    let list = text(&sesam(&["oidc-client", "list"], &env, None).stdout);
    assert!(
        list.contains(&client_id) && list.contains("confidential"),
        "{list}"
    );

    let out = sesam(&["oidc-client", "rotate-secret", &client_id], &env, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let new_secret = value_after(&text(&out.stdout), "client_secret:");
    let hash = store
        .get_oidc_client(&client_id)
        .await
        .unwrap()
        .unwrap()
        .secret_hash
        .unwrap();
    assert!(
        !sesam_oidc::verify_client_secret(&secret, &hash),
        "the old secret stops working"
    );
    assert!(sesam_oidc::verify_client_secret(&new_secret, &hash));

    let public = sesam(
        &[
            "oidc-client",
            "add",
            "--name",
            "App",
            "--public",
            "--redirect-uri",
            "http://127.0.0.1:7000/cb",
        ],
        &env,
        None,
    );
    assert!(text(&public.stdout).contains("public client: no secret"));
    let public_id = value_after(&text(&public.stdout), "client_id:");
    let out = sesam(&["oidc-client", "rotate-secret", &public_id], &env, None);
    assert!(
        !out.status.success(),
        "a public client has no secret to rotate"
    );

    assert!(sesam(&["oidc-client", "remove", &client_id], &env, None)
        .status
        .success());
    assert!(store.get_oidc_client(&client_id).await.unwrap().is_none());
    let again = sesam(&["oidc-client", "remove", &client_id], &env, None);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("no OIDC client"));
    let events: Vec<String> = store
        .list_audit(Some(&client_id), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert!(
        events.contains(&"oidc.client.added".to_string()),
        "{events:?}"
    );
    assert!(events.contains(&"oidc.client.removed".to_string()));
}

/// Issue "For the people who run it", item 2: `sesam settings set passwordless pilot` run in
/// another directory made a new empty database there and printed "pilot (was off)".
#[test]
fn admin_commands_never_create_a_new_empty_database() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("elsewhere/sesam.db");
    let url = format!("sqlite://{}", missing.display());
    let env = [("SESAM_DATABASE_URL", url.as_str())];
    for args in [
        &["settings", "set", "passwordless", "pilot"][..],
        &["settings", "list"][..],
        &["user", "list"][..],
        &["device", "activation-code", "--user", "admin"][..],
        &["sp", "list"][..],
        &["oidc-client", "list"][..],
    ] {
        let out = sesam(args, &env, None);
        assert!(!out.status.success(), "{args:?} must refuse");
        let err = text(&out.stderr);
        assert!(err.contains("no Sesam database at"), "{args:?}: {err}");
        assert!(
            err.contains("elsewhere"),
            "names the path it looked at: {err}"
        );
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
    }
    // `sesam migrate` makes one on purpose; then the commands work on it.
    assert!(sesam(&["migrate"], &env, None).status.success());
    assert!(missing.exists());
    let out = sesam(&["settings", "set", "passwordless", "pilot"], &env, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
}
