//! The population a run logs in with: users with enrolled apps (whose keys the benchmark
//! holds), users with only a password, an OIDC client and a SAML service provider.
//! Users, activation codes, settings and clients go into the database before Sesam starts;
//! the apps enrol through the app API once it listens, as a phone would.

use anyhow::{bail, Context};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use sesam_app::{AppClient, EnrolOptions};
use sesam_core::{Clock, SystemClock, UserId, Username};
use sesam_server::oidc::ClientRegistration;
use sesam_server::saml::{sp_registration, SpOptions};
use sesam_store::{NewUser, Store};

pub const PASSWORD: &str = "correct horse battery staple";
pub const REDIRECT_URI: &str = "https://rp.bench.test/callback";
const SP_HOST: &str = "sp.bench.test";

/// A user whose app still has to enrol with `code`.
pub struct Unenrolled {
    pub username: String,
    code: String,
}

pub struct Seeded {
    /// Passwordless users, for the SAML and OIDC logins.
    pub app_users: Vec<Unenrolled>,
    /// One pending challenge each in the memory test.
    pub waiting_users: Vec<Unenrolled>,
    /// Users without a device, for password logins.
    pub password_users: Vec<String>,
    pub oidc: OidcClient,
    pub sp: ServiceProvider,
}

pub struct OidcClient {
    pub client_id: String,
    pub secret: String,
}

pub struct ServiceProvider {
    pub entity_id: String,
    pub acs: String,
}

/// A user with an enrolled app.
pub struct AppUser {
    pub username: String,
    pub app: AppClient,
}

/// Seeds `users` users of each kind and `waiting` more for the memory test. Names carry
/// `tag`, so a run against a database used before does not collide with it.
pub async fn seed(
    store: &Store,
    tag: &str,
    users: usize,
    waiting: usize,
) -> anyhow::Result<Seeded> {
    let now = SystemClock.now();
    for (key, value) in [
        ("passwordless", "on"),
        // One source address (this machine) starts every challenge of the run.
        ("challenge_limit_per_user", "1000"),
        ("challenge_limit_per_ip", "100000"),
        ("challenge_limit_window_seconds", "60"),
    ] {
        store.set_setting(key, value, now).await?;
    }
    // One hash for all: seeding stays fast, and every login still verifies a full argon2id hash.
    let hash = sesam_server::password::hash_now(PASSWORD)?;
    let app_users = with_codes(store, &hash, &format!("bench-{tag}-app"), users).await?;
    let waiting_users = with_codes(store, &hash, &format!("bench-{tag}-wait"), waiting).await?;
    let mut password_users = Vec::with_capacity(users);
    for i in 0..users {
        let name = format!("bench-{tag}-pw-{i}");
        create_user(store, &name, &hash).await?;
        password_users.push(name);
    }

    let (client, secret) = sesam_server::oidc::register_client(
        store,
        &ClientRegistration {
            name: format!("Benchmark RP {tag}"),
            redirect_uris: vec![REDIRECT_URI.into()],
            ..ClientRegistration::default()
        },
        now,
    )
    .await?
    .map_err(|problems| anyhow::anyhow!("OIDC client refused: {}", problems.join(" ")))?;
    let oidc = OidcClient {
        client_id: client.client_id,
        secret: secret.context("a confidential client has a secret")?,
    };

    let sp = ServiceProvider {
        entity_id: format!("https://{SP_HOST}/{tag}"),
        acs: format!("https://{SP_HOST}/{tag}/acs"),
    };
    let (record, _) = sp_registration(sp_metadata(&sp)?.as_bytes(), None, &SpOptions::default())?;
    store.upsert_saml_sp(&record, now).await?;

    Ok(Seeded {
        app_users,
        waiting_users,
        password_users,
        oidc,
        sp,
    })
}

async fn create_user(store: &Store, name: &str, hash: &str) -> anyhow::Result<UserId> {
    let user = store
        .create_user(
            NewUser {
                username: Username::parse(name)?,
                display_name: format!("Bench {name}"),
                email: Some(format!("{name}@bench.test")),
                password_hash: Some(hash.to_owned()),
                is_admin: false,
                password_only: false,
                must_change_password: false,
            },
            SystemClock.now(),
        )
        .await?;
    Ok(user.id)
}

async fn with_codes(
    store: &Store,
    hash: &str,
    prefix: &str,
    count: usize,
) -> anyhow::Result<Vec<Unenrolled>> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let username = format!("{prefix}-{i}");
        let id = create_user(store, &username, hash).await?;
        let code = sesam_server::activation::issue(store, &id, SystemClock.now()).await?;
        out.push(Unenrolled { username, code });
    }
    Ok(out)
}

/// Enrols an app for each user through Sesam's app API, `concurrency` at a time.
pub async fn enrol(
    base_url: &str,
    users: Vec<Unenrolled>,
    http: &reqwest::Client,
    concurrency: usize,
) -> anyhow::Result<Vec<AppUser>> {
    stream::iter(users)
        .map(|u| async move {
            let (app, device) = AppClient::enroll(base_url, &u.code, EnrolOptions::default())
                .await
                .with_context(|| format!("enrolling {}", u.username))?;
            if !device.passwordless.eligible {
                bail!(
                    "{}'s app is not eligible: {:?}",
                    u.username,
                    device.passwordless.reasons
                );
            }
            Ok(AppUser {
                username: u.username,
                app: app.with_http(http.clone()),
            })
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await
}

/// Minimal SP metadata: one HTTP-POST ACS and a signing certificate.
fn sp_metadata(sp: &ServiceProvider) -> anyhow::Result<String> {
    let cert = sesam_saml::IdpKey::generate(SP_HOST, 30)?
        .certificate()
        .to_base64();
    Ok(format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{eid}">"#,
            r#"<md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">"#,
            r#"<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
            "<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>",
            r#"<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{acs}" index="0" isDefault="true"/>"#,
            "</md:SPSSODescriptor></md:EntityDescriptor>"
        ),
        eid = sp.entity_id,
        cert = cert,
        acs = sp.acs,
    ))
}
