//! The logins, driven over HTTP as a browser, the phone app and the service would, and the
//! loop that runs C virtual users through one of them for a while.
//!
//! Each virtual user logs in its own users (every C-th), so two logins never race for one
//! user's challenge (a new challenge cancels the user's older one). The SSO scenarios log each
//! virtual user's browser in once, before the measured part, and then repeat only the answer a
//! logged-in browser gets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use base64::Engine;
use samael::crypto::{CertificateDer, CryptoProvider, XmlSec};
use serde::Serialize;
use serde_json::Value;
use sesam_app::Answer;

use crate::browser::{wait_for_status, Browser, Page};
use crate::seed::{AppUser, OidcClient, ServiceProvider, PASSWORD, REDIRECT_URI};
use crate::stats::{Recorder, Summary};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// A login that takes longer than this counts as an error.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Passwordless SAML login: AuthnRequest to verified Response.
    Saml,
    /// SAML SSO of a logged-in browser: AuthnRequest to verified Response, no login.
    SamlSso,
    /// Passwordless OIDC code + PKCE login with the token exchange.
    Oidc,
    /// OIDC of a logged-in browser: authorize to code (PKCE) to tokens, no login.
    OidcSso,
    /// Refresh-token grants.
    Refresh,
    /// Username and password to the account page.
    Password,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Saml => "saml",
            Scenario::SamlSso => "saml-sso",
            Scenario::Oidc => "oidc",
            Scenario::OidcSso => "oidc-sso",
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

impl Target {
    /// A browser without cookies, on the shared connection pool.
    pub fn browser(&self) -> Browser {
        Browser::new(self.http.clone(), &self.base)
    }
}

/// One virtual user: which of the users are its own, how far it got, its refresh token, its
/// logged-in browser.
pub struct VirtualUser {
    index: usize,
    iteration: usize,
    refresh_token: Option<String>,
    /// The browser the SSO scenarios keep logged in.
    browser: Option<Browser>,
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
    /// HTTP requests the benchmark sent per completed login: browser, app and back channel.
    pub http_requests_per_login: f64,
    pub seconds: f64,
    pub per_second: f64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// Per step, in login order; the last is the whole login.
    pub steps: Vec<(String, Summary)>,
}

/// `concurrency` virtual users ready for `scenario`. What it starts from is set up here, before
/// the measured part: for refresh a token chain of its own (one login), for the SSO scenarios
/// a browser logged in through that protocol. A failed set-up is reported as the virtual
/// user's one error.
pub async fn prepare(target: &Target, scenario: Scenario) -> Vec<VirtualUser> {
    let mut users = Vec::new();
    for index in 0..target.concurrency {
        let mut vu = VirtualUser {
            index,
            iteration: 0,
            refresh_token: None,
            browser: None,
            setup_error: None,
        };
        let user = &target.app_users[index];
        let mut b = target.browser();
        let mut unused = Recorder::default();
        let setup = match scenario {
            Scenario::Refresh => oidc_login(target, &mut b, user, &mut unused)
                .await
                .map(|token| vu.refresh_token = Some(token))
                .context("login for a refresh token"),
            Scenario::SamlSso => saml_login(target, &mut b, user, &mut unused)
                .await
                .map(|()| vu.browser = Some(b))
                .context("the SAML login the SSO rounds reuse"),
            Scenario::OidcSso => oidc_login(target, &mut b, user, &mut unused)
                .await
                .map(|_| vu.browser = Some(b))
                .context("the OIDC login the SSO rounds reuse"),
            Scenario::Saml | Scenario::Oidc | Scenario::Password => Ok(()),
        };
        if let Err(e) = setup {
            vu.setup_error = Some(format!("{e:#}"));
        }
        users.push(vu);
    }
    users
}

/// Runs the prepared virtual users through `scenario` for `duration`.
pub async fn run(
    target: Arc<Target>,
    scenario: Scenario,
    users: Vec<VirtualUser>,
    duration: Duration,
) -> Outcome {
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
                    rec.begin_login();
                    let once = login_once(&target, scenario, &mut vu, &mut rec);
                    match tokio::time::timeout(LOGIN_TIMEOUT, once).await {
                        Ok(Ok(())) => {
                            rec.step("whole login", began.elapsed());
                            rec.complete_login();
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
        http_requests_per_login: all.requests as f64 / all.completed.max(1) as f64,
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
    let user = match scenario {
        Scenario::Saml | Scenario::Oidc => vu.next_user(target.app_users.len(), target.concurrency),
        Scenario::Password => vu.next_user(target.password_users.len(), target.concurrency),
        Scenario::SamlSso | Scenario::OidcSso | Scenario::Refresh => 0,
    };
    let mut fresh = target.browser();
    let b = match scenario {
        Scenario::SamlSso | Scenario::OidcSso => {
            vu.browser.as_mut().context("no logged-in browser")?
        }
        _ => &mut fresh,
    };
    // What an earlier, failed round of this browser sent is not this login's.
    b.take_sent();
    let outcome = match scenario {
        Scenario::Saml => saml_login(target, b, &target.app_users[user], rec).await,
        Scenario::SamlSso => saml_sso(target, b, rec).await,
        Scenario::Oidc => oidc_login(target, b, &target.app_users[user], rec)
            .await
            .map(drop),
        Scenario::OidcSso => oidc_sso(target, b, rec).await,
        Scenario::Refresh => refresh(target, &mut vu.refresh_token, rec).await,
        Scenario::Password => password_login(b, &target.password_users[user], rec).await,
    };
    rec.sent(b.take_sent());
    outcome
}

/// One refresh grant on the chain in `token`, which it moves on to the new token.
async fn refresh(
    target: &Target,
    token: &mut Option<String>,
    rec: &mut Recorder,
) -> anyhow::Result<()> {
    let old = token.take().context("no refresh token to start from")?;
    rec.sent(1);
    let tokens = timed(
        rec,
        "token (refresh)",
        token_request(
            target,
            &[("grant_type", "refresh_token"), ("refresh_token", &old)],
        ),
    )
    .await?;
    *token = Some(field(&tokens, "refresh_token")?.to_owned());
    Ok(())
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

    rec.sent(1);
    let pending = timed(rec, "app: pending", async { Ok(user.app.pending().await?) }).await?;
    let challenge = pending
        .iter()
        .find(|c| c.kind == "code")
        .context("the app sees no challenge")?;
    rec.sent(1);
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

async fn saml_login(
    target: &Target,
    b: &mut Browser,
    user: &AppUser,
    rec: &mut Recorder,
) -> anyhow::Result<()> {
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
    let next = passwordless(b, user, rec).await?;
    ensure!(next == "/saml/sso/continue", "after login: {next}");
    let page = timed(rec, "SAML Response", b.get(&next)).await?;
    sp_accepts(target, &page, &request_id, rec)
}

/// A logged-in browser brings an AuthnRequest and gets the Response at once.
async fn saml_sso(target: &Target, b: &mut Browser, rec: &mut Recorder) -> anyhow::Result<()> {
    let request_id = format!("_{}", uuid::Uuid::new_v4().simple());
    let page = timed(
        rec,
        "AuthnRequest → Response",
        b.get(&authn_request_path(target, &request_id)?),
    )
    .await?;
    sp_accepts(target, &page, &request_id, rec)
}

/// The SP reads the Response off the auto-posting page and verifies it.
fn sp_accepts(
    target: &Target,
    page: &Page,
    request_id: &str,
    rec: &mut Recorder,
) -> anyhow::Result<()> {
    let response = page.attr_after("name=\"SAMLResponse\" value=\"")?;
    let began = Instant::now();
    verify_saml_response(target, response, request_id)?;
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

/// What the RP keeps between its authorization request and the code coming back.
struct AuthorizeRequest {
    path: String,
    verifier: String,
    nonce: String,
    state: String,
}

impl AuthorizeRequest {
    /// `/authorize?…` with a fresh PKCE verifier (S256), nonce and state.
    fn new(target: &Target) -> anyhow::Result<AuthorizeRequest> {
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
        Ok(AuthorizeRequest {
            path: format!("/authorize?{query}"),
            verifier,
            nonce,
            state,
        })
    }

    /// The code from the redirect back to the client, its state checked.
    fn code_from(&self, location: &str) -> anyhow::Result<String> {
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
        ensure!(
            param("state") == Some(self.state.as_str()),
            "state mismatch"
        );
        Ok(param("code").context("no code")?.to_owned())
    }

    /// The RP's token request for `code` and its check of the ID token; returns the refresh
    /// token.
    async fn redeem(
        &self,
        target: &Target,
        code: &str,
        rec: &mut Recorder,
    ) -> anyhow::Result<String> {
        rec.sent(1);
        let tokens = timed(
            rec,
            "token (code)",
            token_request(
                target,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", REDIRECT_URI),
                    ("code_verifier", &self.verifier),
                ],
            ),
        )
        .await?;
        let began = Instant::now();
        let claims = sesam_oidc::verify_jwt(field(&tokens, "id_token")?, &[&target.oidc_key])
            .context("the ID token's signature does not verify")?;
        ensure!(claims["nonce"] == self.nonce.as_str(), "nonce mismatch");
        ensure!(
            claims["aud"] == target.oidc.client_id.as_str(),
            "audience mismatch"
        );
        rec.step("RP: verify ID token", began.elapsed());
        Ok(field(&tokens, "refresh_token")?.to_owned())
    }
}

/// The code flow with PKCE through a passwordless login; returns the refresh token.
async fn oidc_login(
    target: &Target,
    b: &mut Browser,
    user: &AppUser,
    rec: &mut Recorder,
) -> anyhow::Result<String> {
    let request = AuthorizeRequest::new(target)?;
    let first = timed(rec, "authorize", b.get(&request.path)).await?;
    ensure!(
        first.redirect()? == "/login",
        "authorize: {:?}",
        first.location()
    );
    let next = passwordless(b, user, rec).await?;
    ensure!(next == "/authorize/continue", "after login: {next}");
    let back = timed(rec, "authorize/continue", b.get(&next)).await?;
    let code = request.code_from(back.redirect()?)?;
    request.redeem(target, &code, rec).await
}

/// A logged-in browser is sent back with a code at once; the RP redeems it.
async fn oidc_sso(target: &Target, b: &mut Browser, rec: &mut Recorder) -> anyhow::Result<()> {
    let request = AuthorizeRequest::new(target)?;
    let back = timed(rec, "authorize → code", b.get(&request.path)).await?;
    let code = request.code_from(back.redirect()?)?;
    request.redeem(target, &code, rec).await.map(drop)
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

async fn password_login(b: &mut Browser, username: &str, rec: &mut Recorder) -> anyhow::Result<()> {
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
                browser: None,
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
