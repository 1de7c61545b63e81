//! The four logins, driven over HTTP as a browser, the phone app and the service would, and
//! the loop that runs C virtual users through one of them for a while.
//!
//! Each virtual user logs in its own users (every C-th), so two logins never race for one
//! user's challenge (a new challenge cancels the user's older one).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use base64::Engine;
use samael::crypto::{CertificateDer, CryptoProvider, XmlSec};
use serde::Serialize;
use serde_json::Value;
use sesam_app::Answer;

use crate::browser::{wait_for_status, Browser};
use crate::seed::{AppUser, OidcClient, ServiceProvider, PASSWORD, REDIRECT_URI};
use crate::stats::{Recorder, Summary};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// A login that takes longer than this counts as an error.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Passwordless SAML login: AuthnRequest to verified Response.
    Saml,
    /// Passwordless OIDC code + PKCE login with the token exchange.
    Oidc,
    /// Refresh-token grants.
    Refresh,
    /// Username and password to the account page.
    Password,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Saml => "saml",
            Scenario::Oidc => "oidc",
            Scenario::Refresh => "refresh",
            Scenario::Password => "password",
        }
    }
}

/// What every virtual user shares.
pub struct Target {
    pub base: String,
    pub http: reqwest::Client,
    pub app_users: Vec<AppUser>,
    pub password_users: Vec<String>,
    pub oidc: OidcClient,
    /// Verifies ID tokens (the public half of Sesam's RS256 key).
    pub oidc_key: sesam_oidc::SigningKey,
    pub sp: ServiceProvider,
    /// Sesam's SAML signing certificate, from its metadata.
    pub idp_cert: Vec<u8>,
    pub concurrency: usize,
}

/// One virtual user: which of the users are its own, how far it got, its refresh token.
struct VirtualUser {
    index: usize,
    iteration: usize,
    refresh_token: Option<String>,
    setup_error: Option<String>,
}

impl VirtualUser {
    /// The next of this virtual user's users among `count`.
    fn next_user(&mut self, count: usize, concurrency: usize) -> usize {
        let own = (count - self.index).div_ceil(concurrency);
        let i = self.index + concurrency * (self.iteration % own);
        self.iteration += 1;
        i
    }
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub scenario: Scenario,
    pub logins: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// Per step, in login order; the last is the whole login.
    pub steps: Vec<(String, Summary)>,
}

/// Runs `concurrency` virtual users through `scenario` for `duration`.
pub async fn run(target: Arc<Target>, scenario: Scenario, duration: Duration) -> Outcome {
    let mut users = Vec::new();
    for index in 0..target.concurrency {
        let mut vu = VirtualUser {
            index,
            iteration: 0,
            refresh_token: None,
            setup_error: None,
        };
        if scenario == Scenario::Refresh {
            // Each virtual user refreshes its own token chain, from one login first.
            let mut unused = Recorder::default();
            match oidc_login(&target, &target.app_users[index], &mut unused).await {
                Ok(token) => vu.refresh_token = Some(token),
                Err(e) => vu.setup_error = Some(format!("login for a refresh token: {e:#}")),
            }
        }
        users.push(vu);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = users
        .into_iter()
        .map(|mut vu| {
            let target = target.clone();
            tokio::spawn(async move {
                let mut rec = Recorder::default();
                if let Some(e) = vu.setup_error.take() {
                    rec.error(e);
                    return rec;
                }
                while Instant::now() < deadline {
                    let began = Instant::now();
                    let once = login_once(&target, scenario, &mut vu, &mut rec);
                    match tokio::time::timeout(LOGIN_TIMEOUT, once).await {
                        Ok(Ok(())) => {
                            rec.step("whole login", began.elapsed());
                            rec.completed += 1;
                        }
                        Ok(Err(e)) => rec.error(format!("{e:#}")),
                        Err(_) => rec.error(format!("no answer within {LOGIN_TIMEOUT:?}")),
                    }
                    if scenario == Scenario::Refresh && vu.refresh_token.is_none() {
                        break; // the chain is broken: nothing left to refresh
                    }
                }
                rec
            })
        })
        .collect();
    let mut all = Recorder::default();
    for task in tasks {
        match task.await {
            Ok(rec) => all.merge(rec),
            Err(e) => all.error(format!("virtual user failed: {e}")),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Outcome {
        scenario,
        logins: all.completed,
        seconds,
        per_second: all.completed as f64 / seconds,
        errors: all.errors,
        error_samples: all.error_samples.clone(),
        steps: all.summaries(),
    }
}

async fn login_once(
    target: &Target,
    scenario: Scenario,
    vu: &mut VirtualUser,
    rec: &mut Recorder,
) -> anyhow::Result<()> {
    match scenario {
        Scenario::Saml => {
            let i = vu.next_user(target.app_users.len(), target.concurrency);
            saml_login(target, &target.app_users[i], rec).await
        }
        Scenario::Oidc => {
            let i = vu.next_user(target.app_users.len(), target.concurrency);
            oidc_login(target, &target.app_users[i], rec)
                .await
                .map(drop)
        }
        Scenario::Refresh => {
            let token = vu
                .refresh_token
                .take()
                .context("no refresh token to start from")?;
            let tokens = timed(
                rec,
                "token (refresh)",
                token_request(
                    target,
                    &[("grant_type", "refresh_token"), ("refresh_token", &token)],
                ),
            )
            .await?;
            vu.refresh_token = Some(field(&tokens, "refresh_token")?.to_owned());
            Ok(())
        }
        Scenario::Password => {
            let i = vu.next_user(target.password_users.len(), target.concurrency);
            password_login(target, &target.password_users[i], rec).await
        }
    }
}

/// Awaits `work`; a success records how long it took as `step`.
async fn timed<T>(
    rec: &mut Recorder,
    step: &'static str,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let began = Instant::now();
    let out = work.await.with_context(|| step.to_owned())?;
    rec.step(step, began.elapsed());
    Ok(out)
}

/// From the login page to `/login/complete`, with the app answering the code; returns where
/// `/login/complete` sends the browser.
async fn passwordless(
    b: &mut Browser,
    user: &AppUser,
    rec: &mut Recorder,
) -> anyhow::Result<String> {
    let form = timed(rec, "login page", b.get("/login")).await?;
    let csrf = form.csrf()?.to_owned();
    let sent = timed(
        rec,
        "username",
        b.post_form("/login", &[("csrf", &csrf), ("username", &user.username)]),
    )
    .await?;
    ensure!(
        sent.redirect()? == "/login/wait",
        "not the wait page: {:?}",
        sent.location()
    );
    let wait = timed(rec, "wait page", b.get("/login/wait")).await?;
    let code = wait.code()?;
    let events = timed(rec, "event stream opens", b.send_get("/login/wait/events")).await?;
    ensure!(
        events.status().is_success(),
        "event stream: {}",
        events.status()
    );

    let pending = timed(rec, "app: pending", async { Ok(user.app.pending().await?) }).await?;
    let challenge = pending
        .iter()
        .find(|c| c.kind == "code")
        .context("the app sees no challenge")?;
    let answered = timed(rec, "app: answer", async {
        Ok(user.app.answer(&challenge.id, &Answer::Code(code)).await?)
    })
    .await?;
    ensure!(
        answered.status == "approved",
        "the app's answer: {}",
        answered.status
    );
    let seen = timed(
        rec,
        "browser: approved event",
        wait_for_status(events, "approved"),
    )
    .await?;
    ensure!(seen, "the event stream ended without the approval");
    let done = timed(rec, "complete", b.get("/login/complete")).await?;
    Ok(done.redirect()?.to_owned())
}

// ---------------------------------------------------------------- SAML

async fn saml_login(target: &Target, user: &AppUser, rec: &mut Recorder) -> anyhow::Result<()> {
    let mut b = Browser::new(target.http.clone(), &target.base);
    let request_id = format!("_{}", uuid::Uuid::new_v4().simple());
    let first = timed(
        rec,
        "AuthnRequest",
        b.get(&authn_request_path(target, &request_id)?),
    )
    .await?;
    ensure!(
        first.redirect()? == "/login",
        "AuthnRequest: {:?}",
        first.location()
    );
    let next = passwordless(&mut b, user, rec).await?;
    ensure!(next == "/saml/sso/continue", "after login: {next}");
    let page = timed(rec, "SAML Response", b.get(&next)).await?;
    let response = page
        .attr_after("name=\"SAMLResponse\" value=\"")?
        .to_owned();
    let began = Instant::now();
    verify_saml_response(target, &response, &request_id)?;
    rec.step("SP: verify Response", began.elapsed());
    Ok(())
}

/// `/saml/sso?SAMLRequest=…`: an unsigned AuthnRequest over the Redirect binding.
fn authn_request_path(target: &Target, id: &str) -> anyhow::Result<String> {
    use std::io::Write;
    let instant =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?;
    let xml = format!(
        concat!(
            r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#,
            r#" ID="{id}" Version="2.0" IssueInstant="{instant}" Destination="{base}/saml/sso" AssertionConsumerServiceURL="{acs}">"#,
            "<saml:Issuer>{issuer}</saml:Issuer>",
            r#"<samlp:NameIDPolicy Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent" AllowCreate="true"/>"#,
            "</samlp:AuthnRequest>"
        ),
        id = id,
        instant = instant,
        base = target.base,
        acs = target.sp.acs,
        issuer = target.sp.entity_id,
    );
    let mut deflater =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    deflater.write_all(xml.as_bytes())?;
    let query = serde_urlencoded::to_string([("SAMLRequest", B64.encode(deflater.finish()?))])?;
    Ok(format!("/saml/sso?{query}"))
}

/// What a strict SP checks: it answers our request, succeeded, and the assertion's signature
/// verifies with Sesam's certificate.
fn verify_saml_response(target: &Target, encoded: &str, request_id: &str) -> anyhow::Result<()> {
    let xml = String::from_utf8(B64.decode(encoded)?)?;
    let response: samael::schema::Response =
        xml.parse().context("samael cannot read the Response")?;
    ensure!(
        response.in_response_to.as_deref() == Some(request_id),
        "InResponseTo {:?}",
        response.in_response_to
    );
    let status = response
        .status
        .as_ref()
        .and_then(|s| s.status_code.value.as_deref());
    ensure!(
        status == Some("urn:oasis:names:tc:SAML:2.0:status:Success"),
        "status {status:?}"
    );
    let start = xml.find("<saml:Assertion ").context("no assertion")?;
    let end =
        xml.find("</saml:Assertion>").context("no assertion end")? + "</saml:Assertion>".len();
    XmlSec::verify_signed_xml(
        &xml[start..end],
        &CertificateDer::from(target.idp_cert.clone()),
        Some("ID"),
    )
    .map_err(|e| anyhow::anyhow!("assertion signature: {e:?}"))?;
    Ok(())
}

// ---------------------------------------------------------------- OIDC

/// The code flow with PKCE through a passwordless login; returns the refresh token.
async fn oidc_login(target: &Target, user: &AppUser, rec: &mut Recorder) -> anyhow::Result<String> {
    let mut b = Browser::new(target.http.clone(), &target.base);
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let state = uuid::Uuid::new_v4().simple().to_string();
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", target.oidc.client_id.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("scope", "openid profile email"),
        ("state", &state),
        ("nonce", &nonce),
        (
            "code_challenge",
            &sesam_oidc::pkce_challenge_s256(&verifier),
        ),
        ("code_challenge_method", "S256"),
    ])?;
    let first = timed(rec, "authorize", b.get(&format!("/authorize?{query}"))).await?;
    ensure!(
        first.redirect()? == "/login",
        "authorize: {:?}",
        first.location()
    );
    let next = passwordless(&mut b, user, rec).await?;
    ensure!(next == "/authorize/continue", "after login: {next}");
    let back = timed(rec, "authorize/continue", b.get(&next)).await?;
    let location = back.redirect()?;
    let query = location
        .strip_prefix(REDIRECT_URI)
        .and_then(|rest| rest.strip_prefix('?'))
        .with_context(|| format!("not back at the client: {location}"))?;
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query)?;
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    ensure!(param("state") == Some(state.as_str()), "state mismatch");
    let code = param("code").context("no code")?.to_owned();

    let tokens = timed(
        rec,
        "token (code)",
        token_request(
            target,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", &verifier),
            ],
        ),
    )
    .await?;
    let began = Instant::now();
    let claims = sesam_oidc::verify_jwt(field(&tokens, "id_token")?, &[&target.oidc_key])
        .context("the ID token's signature does not verify")?;
    ensure!(claims["nonce"] == nonce.as_str(), "nonce mismatch");
    ensure!(
        claims["aud"] == target.oidc.client_id.as_str(),
        "audience mismatch"
    );
    rec.step("RP: verify ID token", began.elapsed());
    Ok(field(&tokens, "refresh_token")?.to_owned())
}

async fn token_request(target: &Target, fields: &[(&str, &str)]) -> anyhow::Result<Value> {
    let response = target
        .http
        .post(format!("{}/token", target.base))
        .basic_auth(&target.oidc.client_id, Some(&target.oidc.secret))
        .form(fields)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("/token {status}: {body}");
    }
    Ok(body)
}

fn field<'a>(json: &'a Value, name: &str) -> anyhow::Result<&'a str> {
    json[name]
        .as_str()
        .with_context(|| format!("no {name} in {json}"))
}

// ---------------------------------------------------------------- password

async fn password_login(target: &Target, username: &str, rec: &mut Recorder) -> anyhow::Result<()> {
    let mut b = Browser::new(target.http.clone(), &target.base);
    let form = timed(rec, "login page", b.get("/login")).await?;
    let csrf = form.csrf()?.to_owned();
    let sent = timed(
        rec,
        "username",
        b.post_form("/login", &[("csrf", &csrf), ("username", username)]),
    )
    .await?;
    ensure!(
        sent.redirect()? == "/login/password",
        "not the password form: {:?}",
        sent.location()
    );
    let page = timed(rec, "password page", b.get("/login/password")).await?;
    let csrf = page.csrf()?.to_owned();
    let done = timed(
        rec,
        "password",
        b.post_form(
            "/login/password",
            &[("csrf", &csrf), ("password", PASSWORD)],
        ),
    )
    .await?;
    ensure!(
        done.redirect()? == "/account",
        "after the password: {:?}",
        done.location()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_users_never_share_a_user() {
        let (count, concurrency) = (10, 4);
        let mut seen = vec![None; count];
        for index in 0..concurrency {
            let mut vu = VirtualUser {
                index,
                iteration: 0,
                refresh_token: None,
                setup_error: None,
            };
            for _ in 0..7 {
                let i = vu.next_user(count, concurrency);
                assert!(i < count);
                assert!(
                    seen[i].is_none_or(|owner| owner == index),
                    "user {i} shared"
                );
                seen[i] = Some(index);
            }
        }
        assert!(seen.iter().all(Option::is_some), "every user is used");
    }
}
