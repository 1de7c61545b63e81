//! Users from the organisation's directory (issue 18, parts 1 and 2): an OpenLDAP `slapd`
//! started here on a random loopback port with a test tree, Sesam checking passwords against
//! it, and the sync (by command and on a schedule) with roles from the directory's groups.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT_LANGUAGE, RETRY_AFTER};
use reqwest::StatusCode;
use sesam_core::{ManualClock, Username};

use crate::harness::{on_both_databases, test_config_with, Browser, Page, TestDb, TestServer};
use crate::passwordless::{code_on, start_login};

on_both_databases!(
    a_user_only_in_the_directory_logs_in_and_becomes_a_local_user,
    a_wrong_password_is_refused_counted_and_bound_once,
    an_empty_password_is_refused_before_any_bind,
    injection_in_the_username_cannot_widen_the_search,
    an_unreachable_directory_gives_a_try_again_page,
    a_wrong_service_password_gives_a_clear_page_and_a_logged_error,
    a_dead_first_server_fails_over_to_the_live_second,
    a_user_disabled_in_the_directory_cannot_log_in_with_the_app_either,
    a_sync_creates_renames_and_disables_and_changes_nothing_when_the_directory_is_down,
    starttls_and_ldaps_verify_the_directory_certificate,
    groups_grant_and_take_away_roles_at_the_sync_and_at_each_login,
    a_user_the_sync_disabled_is_enabled_again_but_one_an_admin_locked_stays_locked,
    the_scheduled_sync_runs_on_one_node_at_a_time_and_a_directory_outage_changes_nothing,
);

const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";
const SERVICE_DN: &str = "cn=sesam,ou=services,dc=sesam,dc=test";
const SERVICE_PASSWORD: &str = "service-secret-4711";
const DIRK_DN: &str = "uid=dirk,ou=people,dc=sesam,dc=test";
const DIRK_PASSWORD: &str = "dirk-directory-pw";
/// The test directory's filter: like AD's userAccountControl bit, `employeeType=disabled`
/// marks a disabled account.
/// The directory's administrator, who changes entries in the tests.
const ROOT_DN: &str = "cn=root,dc=sesam,dc=test";
const ROOT_PASSWORD: &str = "root-secret";
const FILTER: &str = "(&(objectClass=inetOrgPerson)(uid={username})(!(employeeType=disabled)))";

const TREE: &str = "\
dn: dc=sesam,dc=test
objectClass: dcObject
objectClass: organization
dc: sesam
o: Sesam test

dn: ou=people,dc=sesam,dc=test
objectClass: organizationalUnit
ou: people

dn: ou=services,dc=sesam,dc=test
objectClass: organizationalUnit
ou: services

dn: ou=groups,dc=sesam,dc=test
objectClass: organizationalUnit
ou: groups

dn: cn=sesam,ou=services,dc=sesam,dc=test
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: sesam
userPassword: service-secret-4711

dn: uid=dirk,ou=people,dc=sesam,dc=test
objectClass: inetOrgPerson
uid: dirk
cn: Dirk Directory
sn: Directory
displayName: Dirk Directory
mail: dirk@sesam.test
userPassword: dirk-directory-pw

dn: uid=dora,ou=people,dc=sesam,dc=test
objectClass: inetOrgPerson
uid: dora
cn: Dora Disabled
sn: Disabled
employeeType: disabled
userPassword: dora-directory-pw

dn: cn=sesam-admins,ou=groups,dc=sesam,dc=test
objectClass: groupOfNames
cn: sesam-admins
member: uid=dirk,ou=people,dc=sesam,dc=test

dn: cn=sesam-pilot,ou=groups,dc=sesam,dc=test
objectClass: groupOfNames
cn: sesam-pilot
member: uid=dora,ou=people,dc=sesam,dc=test
";

/// A slapd of the test's own: its config, database and log in a temporary directory, run as
/// the current user on a random loopback port, killed when dropped.
struct Slapd {
    dir: tempfile::TempDir,
    port: u16,
    /// With TLS: the ldaps:// port beside the StartTLS-capable ldap:// one.
    tls_port: Option<u16>,
    child: Option<Child>,
}

fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

impl Slapd {
    fn start() -> Option<Slapd> {
        Self::start_with(false)
    }

    /// `None`, after a loud message, when slapd is not installed here; on CI that fails.
    /// With `tls`, a test CA signs a certificate for 127.0.0.1 and slapd offers StartTLS
    /// and ldaps://.
    fn start_with(tls: bool) -> Option<Slapd> {
        if !Path::new(SLAPD).exists() || !Path::new(SLAPADD).exists() {
            assert!(
                !on_ci(),
                "CI=true but {SLAPD} is missing: .ci/run installs slapd, the directory tests must run"
            );
            eprintln!(
                "SKIPPED LOUDLY: {SLAPD} is not installed (apt-get install slapd ldap-utils), \
                 so this directory test did not run"
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().display().to_string();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        // `allow bind_anon_dn`: like Active Directory and many other servers, a bind with a
        // DN and an empty password "succeeds" (anonymously). Sesam must never rely on that.
        let tls_conf = if tls {
            make_certificates(dir.path());
            format!(
                "TLSCACertificateFile {d}/ca.pem\n\
                 TLSCertificateFile {d}/server.pem\n\
                 TLSCertificateKeyFile {d}/server.key\n"
            )
        } else {
            String::new()
        };
        let conf = format!(
            "{tls_conf}\
             include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             allow bind_anon_dn\n\
             pidfile {d}/slapd.pid\n\
             database mdb\n\
             maxsize 10485760\n\
             suffix \"dc=sesam,dc=test\"\n\
             rootdn \"cn=root,dc=sesam,dc=test\"\n\
             rootpw {ROOT_PASSWORD}\n\
             directory {d}/db\n\
             access to attrs=userPassword by anonymous auth by * none\n\
             access to * by users read by * none\n"
        );
        std::fs::write(dir.path().join("slapd.conf"), conf).unwrap();
        std::fs::write(dir.path().join("tree.ldif"), TREE).unwrap();
        let added = Command::new(SLAPADD)
            .args([
                "-f",
                &format!("{d}/slapd.conf"),
                "-l",
                &format!("{d}/tree.ldif"),
            ])
            .output()
            .expect("run slapadd");
        assert!(
            added.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&added.stderr)
        );
        let mut slapd = Slapd {
            dir,
            port: 0,
            tls_port: tls.then_some(0),
            child: None,
        };
        slapd.run();
        Some(slapd)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("slapd.log")
    }

    /// Starts the daemon in the foreground (`-d stats`: every connection and bind is
    /// logged), on a free port, and waits until it accepts connections.
    fn run(&mut self) {
        for _ in 0..5 {
            let port = free_port();
            let tls_port = self.tls_port.map(|_| free_port());
            let mut listen = format!("ldap://127.0.0.1:{port}/");
            if let Some(tls_port) = tls_port {
                listen.push_str(&format!(" ldaps://127.0.0.1:{tls_port}/"));
            }
            let log = File::create(self.log_path()).unwrap();
            let d = self.dir.path().display().to_string();
            let mut child = Command::new(SLAPD)
                .args(["-f", &format!("{d}/slapd.conf"), "-h", &listen, "-d", "256"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start slapd");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    self.port = port;
                    self.tls_port = tls_port;
                    self.child = Some(child);
                    return;
                }
                if child.try_wait().ok().flatten().is_some() {
                    break; // the port was taken meanwhile: another one
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("slapd did not start:\n{}", self.log());
    }

    fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port.expect("a TLS slapd"))
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        // slapd writes its log line just after it answers.
        std::thread::sleep(Duration::from_millis(200));
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Binds slapd saw as `dn`.
    fn binds_as(&self, dn: &str) -> usize {
        self.log()
            .matches(&format!("BIND dn=\"{dn}\" method=128"))
            .count()
    }

    /// Applies an LDIF change as the directory's administrator.
    fn modify(&self, ldif: &str) {
        use std::io::Write;
        let mut child = Command::new("ldapmodify")
            .args(["-x", "-H", &self.url(), "-D", ROOT_DN, "-w", ROOT_PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ldapmodify (ldap-utils) runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "ldapmodify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn connections(&self) -> usize {
        self.log().matches(" ACCEPT from ").count()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A test CA and a server certificate it signs for 127.0.0.1, with the openssl tool.
fn make_certificates(dir: &Path) {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Sesam test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl tool runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A loopback address nothing listens on: connecting is refused at once.
fn closed_url() -> String {
    format!("ldap://127.0.0.1:{}", free_port())
}

fn directory_env(urls: &str, service_password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SESAM_LDAP_URLS", urls.to_owned()),
        // The test slapd has no certificate; plain is allowed here explicitly.
        ("SESAM_LDAP_STARTTLS", "false".into()),
        ("SESAM_LDAP_ALLOW_PLAIN", "true".into()),
        ("SESAM_LDAP_BIND_DN", SERVICE_DN.into()),
        ("SESAM_LDAP_BIND_PASSWORD", service_password.to_owned()),
        ("SESAM_LDAP_BASE_DN", "dc=sesam,dc=test".into()),
        ("SESAM_LDAP_USER_FILTER", FILTER.into()),
        ("SESAM_LDAP_TIMEOUT_SECONDS", "2".into()),
    ]
}

async fn sesam_with_directory(db: &TestDb, urls: &str) -> TestServer {
    let env = directory_env(urls, SERVICE_PASSWORD);
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestServer::start_with(
        ManualClock::starting_now(),
        test_config_with(&db.url, &pairs),
    )
    .await
}

async fn local_user(sesam: &TestServer, name: &str) -> Option<sesam_core::User> {
    sesam
        .store()
        .find_user_by_username(&Username::parse(name).unwrap())
        .await
        .unwrap()
}

async fn a_user_only_in_the_directory_logs_in_and_becomes_a_local_user(db: TestDb) {
    let Some(slapd) = Slapd::start() else { return };
    let sesam = sesam_with_directory(&db, &slapd.url()).await;
    assert!(local_user(&sesam, "dirk").await.is_none());

    let done = sesam.browser().log_in("dirk", DIRK_PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), Some("/account"));
    let dirk = local_user(&sesam, "dirk").await.expect("created at login");
    assert_eq!(dirk.display_name, "Dirk Directory");
    assert_eq!(dirk.email.as_deref(), Some("dirk@sesam.test"));
    assert_eq!(dirk.password_hash, None, "the directory keeps the password");
    let id = dirk.directory_id.clone().expect("the entry's stable id");
    assert_eq!(id.len(), 36, "an entryUUID: {id}");
    assert!(sesam
        .audit_events("dirk")
        .await
        .contains(&"user.created.directory".to_owned()));

    // The next login finds the same user, and the directory user can enrol the app.
    let again = sesam.browser();
    let done = again.log_in("DIRK", DIRK_PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let same = local_user(&sesam, "dirk").await.unwrap();
    assert_eq!(
        (same.id.clone(), same.directory_id.clone()),
        (dirk.id.clone(), Some(id))
    );
    let (_app, device) = sesam.enrol(&same, sesam_app::EnrolOptions::default()).await;
    assert_eq!(device.username, "dirk");

    // The disabled entry is not found by the filter: the right password does not help.
    let refused = sesam.browser().log_in("dora", "dora-directory-pw").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert!(local_user(&sesam, "dora").await.is_none());

    // A local user keeps Sesam's own password beside the directory.
    sesam
        .add_user("lone", "Lone Lokal", "correct horse battery")
        .await;
    let done = sesam
        .browser()
        .log_in("lone", "correct horse battery")
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    sesam.stop().await;
}

async fn a_wrong_password_is_refused_counted_and_bound_once(db: TestDb) {
    let Some(slapd) = Slapd::start() else { return };
    // The same live server twice: a refused bind must not be tried again on the next URL.
    let sesam = sesam_with_directory(&db, &format!("{},{}", slapd.url(), slapd.url())).await;
    let first = sesam.browser().log_in("dirk", "not-the-password").await;
    assert_eq!(first.status, StatusCode::UNAUTHORIZED, "{}", first.body);
    assert_eq!(
        slapd.binds_as(DIRK_DN),
        1,
        "one attempt, one bind as the user"
    );
    assert!(local_user(&sesam, "dirk").await.is_none());

    // Sesam's own lockout counts directory users too (5 failures by default).
    for _ in 0..3 {
        let page = sesam.browser().log_in("dirk", "not-the-password").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
    }
    let fifth = sesam.browser().log_in("dirk", "still-not-it").await;
    assert_eq!(
        fifth.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        fifth.body
    );
    assert_eq!(slapd.binds_as(DIRK_DN), 5);
    // Locked: even the right password is not sent to the directory.
    let locked = sesam.browser().log_in("dirk", DIRK_PASSWORD).await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.body
    );
    assert_eq!(slapd.binds_as(DIRK_DN), 5);
    sesam.stop().await;
}

async fn an_empty_password_is_refused_before_any_bind(db: TestDb) {
    let Some(slapd) = Slapd::start() else { return };
    // The attack: a bind with the user's DN and an empty password is unauthenticated, and
    // this directory (like many) answers it with success.
    let attack = Command::new("ldapwhoami")
        .args(["-x", "-H", &slapd.url(), "-D", DIRK_DN, "-w", ""])
        .output();
    match attack {
        Ok(out) => assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("anonymous"),
            "the empty-password bind is accepted here: {out:?}"
        ),
        Err(e) => assert!(
            !on_ci(),
            "CI=true but ldapwhoami (ldap-utils) is missing: {e}"
        ),
    }
    let sesam = sesam_with_directory(&db, &slapd.url()).await;
    let before = slapd.connections();
    let attack_binds = slapd.binds_as(DIRK_DN);

    let browser = sesam.browser();
    let refused = browser.log_in("dirk", "").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert_eq!(slapd.binds_as(DIRK_DN), attack_binds, "no bind as the user");
    assert_eq!(
        slapd.connections(),
        before,
        "the directory was not even asked"
    );
    assert!(local_user(&sesam, "dirk").await.is_none());
    assert!(browser.get("/account").await.status.is_redirection());
    sesam.stop().await;
}

async fn injection_in_the_username_cannot_widen_the_search(db: TestDb) {
    let Some(slapd) = Slapd::start() else { return };
    let sesam = sesam_with_directory(&db, &slapd.url()).await;
    // Unescaped, each of these would find dirk's entry (and his password would log in as
    // the typed name); escaped, they are names no entry has.
    for name in [
        "dir*",
        "*",
        "d*k",
        "dirk)(uid=*",
        "*)(uid=dirk",
        "dirk)(|(uid=*",
    ] {
        let page = sesam.browser().log_in(name, DIRK_PASSWORD).await;
        assert_eq!(
            page.status,
            StatusCode::UNAUTHORIZED,
            "{name}: {}",
            page.body
        );
    }
    assert_eq!(slapd.binds_as(DIRK_DN), 0, "dirk's entry was never found");
    assert!(sesam
        .store()
        .list_users(100, 0)
        .await
        .unwrap()
        .iter()
        .all(|u| u.directory_id.is_none()));
    let log = slapd.log();
    assert!(
        log.contains("(uid=dir\\2A)") || log.contains("(uid=dir\\2a)"),
        "escaped in the search:\n{log}"
    );

    // NUL (and other control characters) are refused at the username already.
    let browser = sesam.browser();
    let form = browser.get("/login").await;
    let page = browser
        .post_form("/login", &[("csrf", &form.csrf()), ("username", "dirk\0")])
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    sesam.stop().await;
}

async fn an_unreachable_directory_gives_a_try_again_page(db: TestDb) {
    // Nothing listens: a clear 503 in the user's language, never a 500.
    let sesam = sesam_with_directory(&db, &closed_url()).await;
    let mut english = HeaderMap::new();
    english.insert(ACCEPT_LANGUAGE, HeaderValue::from_static("en"));
    let browser = Browser::with_headers(sesam.url(""), english);
    let page = browser.log_in("dirk", DIRK_PASSWORD).await;
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.body
    );
    assert!(page.headers.contains_key(RETRY_AFTER));
    assert!(
        page.body.contains("cannot be checked right now"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("href=\"/login/password\""),
        "a way to try again"
    );
    let danish = sesam.browser().log_in("dirk", DIRK_PASSWORD).await;
    assert_eq!(danish.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        danish.body.contains("kan ikke kontrolleres lige nu"),
        "{}",
        danish.body
    );
    assert!(sesam
        .audit_events("dirk")
        .await
        .contains(&"login.directory.unavailable".to_owned()));
    // Local users are not held up by the directory.
    sesam
        .add_user("lone", "Lone Lokal", "correct horse battery")
        .await;
    let done = sesam
        .browser()
        .log_in("lone", "correct horse battery")
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    sesam.stop().await;

    // A directory that answered once and then stops.
    let Some(mut slapd) = Slapd::start() else {
        return;
    };
    let sesam = sesam_with_directory(&db, &slapd.url()).await;
    let done = sesam.browser().log_in("dirk", DIRK_PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    slapd.stop();
    let page = sesam.browser().log_in("dirk", DIRK_PASSWORD).await;
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.body
    );
    sesam.stop().await;
}

async fn a_wrong_service_password_gives_a_clear_page_and_a_logged_error(db: TestDb) {
    let Some(slapd) = Slapd::start() else { return };
    // The real binary, so that its log can be read.
    let wrong = "wrong-service-pw-1234";
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("sesam.log");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sesam"));
    command
        .arg("serve")
        .env_remove("SESAM_CONFIG")
        .env("SESAM_LISTEN", format!("127.0.0.1:{port}"))
        .env("SESAM_DATABASE_URL", &db.url)
        .env("SESAM_PASSWORD_HASH_CONCURRENCY", "1")
        .env("SESAM_LOG_LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(File::create(&log_path).unwrap())
        .kill_on_drop(true);
    for (key, value) in directory_env(&slapd.url(), wrong) {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("start sesam serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "sesam serve listens");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let browser = Browser::new(format!("http://127.0.0.1:{port}"));
    let page = browser.log_in("dirk", DIRK_PASSWORD).await;
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.body
    );
    assert_eq!(
        slapd.binds_as(DIRK_DN),
        0,
        "no user bind without the service account"
    );
    assert_eq!(
        slapd.binds_as(SERVICE_DN),
        1,
        "no second try with the same wrong password"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = child.kill().await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("ERROR") && log.contains("refused the service account"),
        "the operator reads why:\n{log}"
    );
    assert!(log.contains(SERVICE_DN), "{log}");
    assert!(
        !log.contains(wrong),
        "the service password is never logged:\n{log}"
    );
    assert!(!log.contains(DIRK_PASSWORD), "nor the user's:\n{log}");
}

async fn a_dead_first_server_fails_over_to_the_live_second(db: TestDb) {
    let Some(slapd) = Slapd::start() else { return };
    // First a refused port, then a server that accepts but never answers (the timeout), then
    // the live one.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("ldap://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let urls = format!("{},{silent_url},{}", closed_url(), slapd.url());
    let sesam = sesam_with_directory(&db, &urls).await;
    let started = Instant::now();
    let done = sesam.browser().log_in("dirk", DIRK_PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the silent server costs its timeout, no more: {:?}",
        started.elapsed()
    );
    assert!(local_user(&sesam, "dirk").await.is_some());
    assert_eq!(slapd.binds_as(DIRK_DN), 1);
    drop(silent);
    sesam.stop().await;
}

/// Logs `name` in with the app: username, the code on the wait page typed into the app.
async fn passwordless_login(browser: &Browser, app: &sesam_app::AppClient, name: &str) -> Page {
    assert_eq!(start_login(browser, name).await, "/login/wait");
    let code = code_on(&browser.get("/login/wait").await);
    let pending = app.pending().await.unwrap();
    assert_eq!(pending.len(), 1);
    let answered = app
        .answer(&pending[0].id, &sesam_app::Answer::Code(code))
        .await
        .unwrap();
    assert_eq!(answered.status, "approved");
    browser.get("/login/complete").await
}

async fn a_user_disabled_in_the_directory_cannot_log_in_with_the_app_either(db: TestDb) {
    let Some(slapd) = Slapd::start() else { return };
    let sesam = sesam_with_directory(&db, &slapd.url()).await;
    sesam
        .store()
        .set_setting("passwordless", "on", sesam.now())
        .await
        .unwrap();
    let done = sesam.browser().log_in("dirk", DIRK_PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let dirk = local_user(&sesam, "dirk").await.unwrap();
    let (app, _) = sesam.enrol(&dirk, sesam_app::EnrolOptions::default()).await;
    let done = passwordless_login(&sesam.browser(), &app, "dirk").await;
    assert_eq!(done.location(), Some("/account"), "listed: the app logs in");

    slapd.modify(&format!(
        "dn: {DIRK_DN}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n"
    ));
    // No sync has run: the local user is still active, yet the next login is refused.
    assert!(local_user(&sesam, "dirk").await.unwrap().is_active());
    let browser = sesam.browser();
    let refused = passwordless_login(&browser, &app, "dirk").await;
    assert_eq!(refused.location(), Some("/login"), "{}", refused.body);
    assert!(browser.get("/account").await.status.is_redirection());
    assert!(sesam
        .audit_events("dirk")
        .await
        .contains(&"login.refused.directory".to_owned()));
    // "Log in with password instead": the directory's filter no longer finds the entry.
    let browser = sesam.browser();
    assert_eq!(start_login(&browser, "dirk").await, "/login/wait");
    let page = browser.submit_password(DIRK_PASSWORD).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
    sesam.stop().await;
}

/// `sesam directory sync` with the directory settings, against the test's database.
fn sync(db: &TestDb, slapd_url: &str) -> (bool, String) {
    sync_with(db, slapd_url, &[])
}

/// `sesam directory sync` with more settings (role groups).
fn sync_with(db: &TestDb, slapd_url: &str, extra: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sesam"));
    command
        .args(["directory", "sync"])
        .env_remove("SESAM_CONFIG")
        .env("SESAM_DATABASE_URL", &db.url);
    for (key, value) in directory_env(slapd_url, SERVICE_PASSWORD) {
        command.env(key, value);
    }
    for (key, value) in extra {
        command.env(key, value);
    }
    let out = command.output().expect("run sesam directory sync");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn a_sync_creates_renames_and_disables_and_changes_nothing_when_the_directory_is_down(
    db: TestDb,
) {
    let Some(mut slapd) = Slapd::start() else {
        return;
    };
    let sesam = sesam_with_directory(&db, &slapd.url()).await;
    let (ok, out) = sync(&db, &slapd.url());
    assert!(ok, "{out}");
    assert!(out.contains("created: dirk"), "{out}");
    assert!(
        !out.contains("dora"),
        "the disabled entry is not taken: {out}"
    );
    let dirk = local_user(&sesam, "dirk")
        .await
        .expect("created by the sync");
    let (_app, _) = sesam.enrol(&dirk, sesam_app::EnrolOptions::default()).await;

    // A rename (the entry keeps its entryUUID), a new name, a new user.
    slapd.modify(&format!(
        "dn: {DIRK_DN}\nchangetype: modrdn\nnewrdn: uid=derek\ndeleteoldrdn: 1\n\n\
         dn: uid=derek,ou=people,dc=sesam,dc=test\nchangetype: modify\n\
         replace: displayName\ndisplayName: Derek Directory\n\n\
         dn: uid=eve,ou=people,dc=sesam,dc=test\nchangetype: add\nobjectClass: inetOrgPerson\n\
         uid: eve\ncn: Eve New\nsn: New\nuserPassword: eve-directory-pw\n"
    ));
    let (ok, out) = sync(&db, &slapd.url());
    assert!(ok, "{out}");
    assert!(
        out.contains("updated: dirk -> derek (Derek Directory)"),
        "{out}"
    );
    assert!(out.contains("created: eve"), "{out}");
    let derek = local_user(&sesam, "derek").await.expect("renamed");
    assert_eq!(derek.id, dirk.id, "the same user, with the same devices");
    assert!(local_user(&sesam, "dirk").await.is_none());
    let done = sesam.browser().log_in("eve", "eve-directory-pw").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);

    // Disabled in the directory: disabled locally, devices kept.
    slapd.modify(
        "dn: uid=derek,ou=people,dc=sesam,dc=test\nchangetype: modify\n\
         add: employeeType\nemployeeType: disabled\n",
    );
    let (ok, out) = sync(&db, &slapd.url());
    assert!(ok, "{out}");
    assert!(out.contains("disabled: derek"), "{out}");
    let derek = local_user(&sesam, "derek").await.unwrap();
    assert!(!derek.is_active());
    assert_eq!(
        sesam
            .store()
            .devices_of_user(&derek.id)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(sesam
        .audit_events("derek")
        .await
        .contains(&"user.disabled.directory".to_owned()));

    // The directory down: the sync fails and changes nothing.
    slapd.stop();
    let (ok, out) = sync(&db, &slapd.url());
    assert!(!ok, "{out}");
    assert!(out.contains("nothing changed"), "{out}");
    assert!(local_user(&sesam, "eve").await.unwrap().is_active());
    sesam.stop().await;
}

async fn starttls_and_ldaps_verify_the_directory_certificate(db: TestDb) {
    let Some(slapd) = Slapd::start_with(true) else {
        return;
    };
    let ca = slapd.ca_file().display().to_string();
    let start = |urls: String, ca: Option<String>| {
        let mut env: Vec<(&str, String)> = directory_env(&urls, SERVICE_PASSWORD)
            .into_iter()
            .filter(|(k, _)| !matches!(*k, "SESAM_LDAP_STARTTLS" | "SESAM_LDAP_ALLOW_PLAIN"))
            .collect();
        if let Some(ca) = ca {
            env.push(("SESAM_LDAP_CA_FILE", ca));
        }
        let pairs: Vec<(String, String)> =
            env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let db_url = db.url.clone();
        async move {
            let pairs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            TestServer::start_with(
                ManualClock::starting_now(),
                test_config_with(&db_url, &pairs),
            )
            .await
        }
    };
    // ldap:// upgrades with StartTLS (the default), ldaps:// is TLS from the start; both
    // trust the directory's certificate through ldap_ca_file.
    for urls in [slapd.url(), slapd.ldaps_url()] {
        let sesam = start(urls.clone(), Some(ca.clone())).await;
        let done = sesam.browser().log_in("dirk", DIRK_PASSWORD).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{urls}: {}", done.body);
        sesam.stop().await;
    }
    // Without the CA the certificate is not trusted: no password goes out, 503.
    let binds = slapd.binds_as(DIRK_DN);
    let sesam = start(slapd.ldaps_url(), None).await;
    let page = sesam.browser().log_in("dirk", DIRK_PASSWORD).await;
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.body
    );
    assert_eq!(slapd.binds_as(DIRK_DN), binds);
    sesam.stop().await;
}

const ADMINS_DN: &str = "cn=sesam-admins,ou=groups,dc=sesam,dc=test";
const PILOT_DN: &str = "cn=sesam-pilot,ou=groups,dc=sesam,dc=test";
/// The admin and pilot groups mapped, written as an operator might (case, spaces); the
/// password-only role has no group and stays Sesam's to set.
const GROUPS: &[(&str, &str)] = &[
    (
        "SESAM_LDAP_ADMIN_GROUP",
        "CN=sesam-admins, OU=groups, DC=sesam, DC=test",
    ),
    ("SESAM_LDAP_PILOT_GROUP", PILOT_DN),
];

/// LDIF that takes `member` out of `group` (a placeholder of its own keeps the
/// groupOfNames, which needs a member, valid).
fn leave(group: &str, member: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "dn: {group}\nchangetype: modify\nadd: member\nmember: cn=placeholder-{n},dc=sesam,dc=test\n\
         -\ndelete: member\nmember: {member}\n"
    )
}

fn join(group: &str, member: &str) -> String {
    format!("dn: {group}\nchangetype: modify\nadd: member\nmember: {member}\n")
}

async fn sesam_with_groups(db: &TestDb, urls: &str, more: &[(&str, &str)]) -> TestServer {
    let mut env = directory_env(urls, SERVICE_PASSWORD);
    env.extend(GROUPS.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env.extend(more.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestServer::start_with(
        ManualClock::starting_now(),
        test_config_with(&db.url, &pairs),
    )
    .await
}

async fn groups_grant_and_take_away_roles_at_the_sync_and_at_each_login(db: TestDb) {
    let Some(slapd) = Slapd::start() else { return };
    let sesam = sesam_with_groups(&db, &slapd.url(), &[]).await;
    // Without group keys the sync sets no role.
    let (ok, out) = sync(&db, &slapd.url());
    assert!(ok, "{out}");
    assert!(!out.contains("role:"), "{out}");
    let dirk = local_user(&sesam, "dirk").await.unwrap();
    assert!(!dirk.is_admin);
    // Roles without a group are Sesam's: the sync leaves them as an admin set them.
    sesam
        .store()
        .set_password_only(&dirk.id, true, sesam.now())
        .await
        .unwrap();
    sesam
        .store()
        .set_in_pilot(&dirk.id, true, sesam.now())
        .await
        .unwrap();

    // dirk is in sesam-admins: admin granted; not in sesam-pilot: pilot taken away.
    let (ok, out) = sync_with(&db, &slapd.url(), GROUPS);
    assert!(ok, "{out}");
    assert!(out.contains("role: dirk: admin granted"), "{out}");
    assert!(out.contains("role: dirk: pilot removed"), "{out}");
    let dirk = local_user(&sesam, "dirk").await.unwrap();
    assert!(
        dirk.is_admin && !dirk.in_pilot && dirk.password_only,
        "{dirk:?}"
    );
    assert!(sesam
        .audit_events("dirk")
        .await
        .contains(&"user.role.directory".to_owned()));
    // Nothing new: nothing changes, nothing is reported.
    let (ok, out) = sync_with(&db, &slapd.url(), GROUPS);
    assert!(ok && !out.contains("role:"), "{out}");

    // Out of the admin group, into the pilot group: the next sync follows.
    slapd.modify(&leave(ADMINS_DN, DIRK_DN));
    slapd.modify(&join(PILOT_DN, DIRK_DN));
    let (ok, out) = sync_with(&db, &slapd.url(), GROUPS);
    assert!(ok, "{out}");
    assert!(out.contains("role: dirk: admin removed"), "{out}");
    assert!(out.contains("role: dirk: pilot granted"), "{out}");
    let dirk = local_user(&sesam, "dirk").await.unwrap();
    assert!(!dirk.is_admin && dirk.in_pilot, "{dirk:?}");

    // A password login takes the groups as they are now, before any sync.
    slapd.modify(&join(ADMINS_DN, DIRK_DN));
    let done = sesam.browser().log_in("dirk", DIRK_PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert!(local_user(&sesam, "dirk").await.unwrap().is_admin);

    // So does a login with the app: an admin taken out of the group is no admin after it.
    sesam
        .store()
        .set_setting("passwordless", "on", sesam.now())
        .await
        .unwrap();
    sesam
        .store()
        .set_password_only(&dirk.id, false, sesam.now())
        .await
        .unwrap();
    let (app, _) = sesam.enrol(&dirk, sesam_app::EnrolOptions::default()).await;
    slapd.modify(&leave(ADMINS_DN, DIRK_DN));
    let done = passwordless_login(&sesam.browser(), &app, "dirk").await;
    assert_eq!(done.location(), Some("/account"), "{}", done.body);
    assert!(!local_user(&sesam, "dirk").await.unwrap().is_admin);

    // A group the directory does not have: the sync fails and changes nothing (rather than
    // take the role from everyone).
    slapd.modify(&join(ADMINS_DN, DIRK_DN));
    let missing = [
        ("SESAM_LDAP_ADMIN_GROUP", ADMINS_DN),
        (
            "SESAM_LDAP_PILOT_GROUP",
            "cn=no-such-group,ou=groups,dc=sesam,dc=test",
        ),
    ];
    let (ok, out) = sync_with(&db, &slapd.url(), &missing);
    assert!(!ok, "{out}");
    assert!(
        out.contains("nothing changed") && out.contains("does not exist"),
        "{out}"
    );
    let dirk = local_user(&sesam, "dirk").await.unwrap();
    assert!(!dirk.is_admin && dirk.in_pilot, "{dirk:?}");
    sesam.stop().await;
}

async fn a_user_the_sync_disabled_is_enabled_again_but_one_an_admin_locked_stays_locked(
    db: TestDb,
) {
    let Some(slapd) = Slapd::start() else { return };
    let sesam = sesam_with_directory(&db, &slapd.url()).await;
    // finn stays listed throughout: a directory that lists nobody is never believed.
    slapd.modify(
        "dn: uid=eve,ou=people,dc=sesam,dc=test\nchangetype: add\nobjectClass: inetOrgPerson\n\
         uid: eve\ncn: Eve New\nsn: New\nuserPassword: eve-directory-pw\n\n\
         dn: uid=finn,ou=people,dc=sesam,dc=test\nchangetype: add\nobjectClass: inetOrgPerson\n\
         uid: finn\ncn: Finn Fast\nsn: Fast\n",
    );
    let (ok, out) = sync(&db, &slapd.url());
    assert!(
        ok && out.contains("created: dirk") && out.contains("created: eve"),
        "{out}"
    );
    // An administrator locks eve in Sesam (the portal and `sesam user lock` do this).
    let eve = local_user(&sesam, "eve").await.unwrap();
    sesam
        .store()
        .set_user_status(&eve.id, sesam_core::UserStatus::Locked, sesam.now())
        .await
        .unwrap();

    let disable = |uid: &str| {
        format!(
            "dn: uid={uid},ou=people,dc=sesam,dc=test\nchangetype: modify\n\
             add: employeeType\nemployeeType: disabled\n"
        )
    };
    let enable = |uid: &str| {
        format!(
            "dn: uid={uid},ou=people,dc=sesam,dc=test\nchangetype: modify\n\
             delete: employeeType\n"
        )
    };
    slapd.modify(&disable("dirk"));
    slapd.modify(&disable("eve"));
    let (ok, out) = sync(&db, &slapd.url());
    assert!(ok && out.contains("disabled: dirk"), "{out}");
    assert!(
        !out.contains("eve"),
        "a locked user stays locked, not disabled: {out}"
    );

    // Listed again: dirk, whom the sync disabled, is on again; eve stays locked.
    slapd.modify(&enable("dirk"));
    slapd.modify(&enable("eve"));
    let (ok, out) = sync(&db, &slapd.url());
    assert!(ok, "{out}");
    assert!(out.contains("enabled: dirk"), "{out}");
    assert!(!out.contains("enabled: eve"), "{out}");
    assert!(local_user(&sesam, "dirk").await.unwrap().is_active());
    assert_eq!(
        local_user(&sesam, "eve").await.unwrap().status,
        sesam_core::UserStatus::Locked
    );
    assert!(sesam
        .audit_events("dirk")
        .await
        .contains(&"user.enabled.directory".to_owned()));
    let refused = sesam.browser().log_in("eve", "eve-directory-pw").await;
    assert_ne!(refused.status, StatusCode::SEE_OTHER, "{}", refused.body);

    // Disabled by the sync, then locked by an administrator: a person's decision, which
    // the directory listing the user again does not undo.
    slapd.modify(&disable("dirk"));
    let (ok, out) = sync(&db, &slapd.url());
    assert!(ok && out.contains("disabled: dirk"), "{out}");
    let dirk = local_user(&sesam, "dirk").await.unwrap();
    sesam
        .store()
        .set_user_status(&dirk.id, sesam_core::UserStatus::Locked, sesam.now())
        .await
        .unwrap();
    slapd.modify(&enable("dirk"));
    let (ok, out) = sync(&db, &slapd.url());
    assert!(ok && !out.contains("enabled:"), "{out}");
    assert!(!local_user(&sesam, "dirk").await.unwrap().is_active());

    // Unlocked by the administrator, disabled by the next sync, listed again: a password
    // login turns dirk on again at once, without waiting for a sync.
    sesam
        .store()
        .set_user_status(&dirk.id, sesam_core::UserStatus::Active, sesam.now())
        .await
        .unwrap();
    slapd.modify(&disable("dirk"));
    let (ok, out) = sync(&db, &slapd.url());
    assert!(ok && out.contains("disabled: dirk"), "{out}");
    let refused = sesam.browser().log_in("dirk", DIRK_PASSWORD).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    slapd.modify(&enable("dirk"));
    let done = sesam.browser().log_in("dirk", DIRK_PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert!(local_user(&sesam, "dirk").await.unwrap().is_active());
    sesam.stop().await;
}

/// Waits (up to 20 s) until `check` holds for the local user `name`.
async fn eventually(sesam: &TestServer, name: &str, check: impl Fn(&sesam_core::User) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if local_user(sesam, name).await.as_ref().is_some_and(&check) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the scheduled sync did not come: {:?}",
            local_user(sesam, name).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn the_scheduled_sync_runs_on_one_node_at_a_time_and_a_directory_outage_changes_nothing(
    db: TestDb,
) {
    let Some(mut slapd) = Slapd::start() else {
        return;
    };
    let sesam = sesam_with_groups(
        &db,
        &slapd.url(),
        &[("SESAM_LDAP_SYNC_INTERVAL_SECONDS", "1")],
    )
    .await;
    // No command, no login: the server's own sync creates dirk, an admin by his group.
    eventually(&sesam, "dirk", |u| u.is_admin && u.is_active()).await;

    if sesam.store().backend() == sesam_store::Backend::Postgres {
        // Another node holds the lock: this one skips its rounds.
        let lock = loop {
            if let Some(lock) = sesam.store().try_directory_sync_lock().await.unwrap() {
                break lock;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        slapd.modify(&leave(ADMINS_DN, DIRK_DN));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            local_user(&sesam, "dirk").await.unwrap().is_admin,
            "no round while another node syncs"
        );
        drop(lock);
    } else {
        slapd.modify(&leave(ADMINS_DN, DIRK_DN));
    }
    eventually(&sesam, "dirk", |u| !u.is_admin).await;

    // The directory down: the rounds fail and change nothing.
    slapd.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let dirk = local_user(&sesam, "dirk").await.unwrap();
    assert!(dirk.is_active() && dirk.directory_id.is_some(), "{dirk:?}");
    assert!(sesam
        .audit_events("dirk")
        .await
        .iter()
        .all(|e| e != "user.disabled.directory"));
    sesam.stop().await;
}

/// A typo in the directory's role groups or schedule stops the start with the key named,
/// not a panic and not a group nobody is in (which would take the role from everyone).
#[test]
fn bad_group_dns_and_sync_intervals_stop_the_start_with_a_clear_message() {
    let cases: [(&str, &str, &str); 5] = [
        (
            "SESAM_LDAP_ADMIN_GROUP",
            "Sesam admins",
            "ldap_admin_group:",
        ),
        (
            "SESAM_LDAP_PILOT_GROUP",
            "cn=pilot,,dc=sesam",
            "ldap_pilot_group:",
        ),
        (
            "SESAM_LDAP_PASSWORD_ONLY_GROUP",
            "cn=robots,dc=\"x\"",
            "ldap_password_only_group:",
        ),
        (
            "SESAM_LDAP_SYNC_INTERVAL_SECONDS",
            "soon",
            "SESAM_LDAP_SYNC_INTERVAL_SECONDS",
        ),
        (
            "SESAM_LDAP_SYNC_INTERVAL_SECONDS",
            "-60",
            "ldap_sync_interval_seconds:",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/sesam.db", dir.path().display());
    for (key, value, expected) in cases {
        for args in [&["config", "check"][..], &["serve"][..]] {
            let log = dir.path().join("stderr.log");
            let mut command = Command::new(env!("CARGO_BIN_EXE_sesam"));
            command
                .args(args)
                .env_remove("SESAM_CONFIG")
                .env("SESAM_LISTEN", "127.0.0.1:0")
                .env("SESAM_DATABASE_URL", &db)
                .env(key, value)
                .stdout(Stdio::null())
                .stderr(File::create(&log).unwrap());
            for (k, v) in directory_env("ldap://127.0.0.1:1", SERVICE_PASSWORD) {
                command.env(k, v);
            }
            let mut child = command.spawn().expect("run sesam");
            // A bad value must end the start at once; a server that runs is the bug.
            let deadline = Instant::now() + Duration::from_secs(30);
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break status;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{args:?} {key}={value}: sesam started anyway");
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            let err = std::fs::read_to_string(&log).unwrap();
            assert!(!status.success(), "{args:?} {key}={value}: {err}");
            assert!(err.contains(expected), "{args:?} {key}={value}: {err}");
            assert!(!err.contains("panicked"), "{err}");
        }
    }
}
