//! The SAML answer to a login that is ready: the signed (and, per SP, encrypted) Response,
//! the SP recorded as a participant of the login for single logout, the audit event.

use sesam_core::{AssuranceLevel, Login, UnixTime, User};
use sesam_saml::{NameIdFormat, ResponseParams, StatusError};
use sesam_store::{AuditEvent, SamlParticipant, SamlSp};
use time::OffsetDateTime;

use crate::service::{Origin, ServiceError};
use crate::state::AppState;

/// Which request of which SP is answered.
pub struct SsoAnswer<'a> {
    pub sp: &'a SamlSp,
    /// The checked ACS URL: the Response's Destination and Recipient.
    pub acs_url: &'a str,
    pub request_id: &'a str,
    /// The NameID format the request was accepted with (never unspecified).
    pub name_id_format: NameIdFormat,
}

/// The answer to the SP: a Response, or the SAML error it gets instead.
pub enum SsoResponse {
    Issued(String),
    Refused(StatusError, &'static str),
}

fn odt(t: UnixTime) -> Result<OffsetDateTime, ServiceError> {
    OffsetDateTime::from_unix_timestamp(t.0).map_err(|e| ServiceError::Internal(e.to_string()))
}

/// Builds the Response for `user`'s `login` at `answer.sp` and returns its XML, or the error
/// status when the user has no NameID of the format asked for.
pub async fn issue_response(
    state: &AppState,
    answer: &SsoAnswer<'_>,
    user: &User,
    login: &Login,
    origin: &Origin,
) -> Result<SsoResponse, ServiceError> {
    let sp = answer.sp;
    let metadata = state
        .saml
        .sp_metadata(sp)
        .map_err(|e| ServiceError::Internal(format!("stored metadata of {}: {e}", sp.entity_id)))?;
    let loa = login.level().unwrap_or(AssuranceLevel::Low);
    let settings = state.store.settings().await?;
    let attributes = crate::saml::released_attributes(sp, user, &settings);
    let name_id = match answer.name_id_format {
        NameIdFormat::Persistent | NameIdFormat::Unspecified => {
            state.saml.name_id(&user.id.0, &sp.entity_id)
        }
        // Fresh for every assertion; kept only with this login's record, for its logout.
        NameIdFormat::Transient => sesam_saml::new_id()
            .map_err(|e| ServiceError::Internal(format!("transient NameID: {e}")))?,
        NameIdFormat::EmailAddress => match user.email.as_deref().map(str::trim) {
            Some(email) if !email.is_empty() => email.to_owned(),
            _ => {
                return Ok(SsoResponse::Refused(
                    StatusError::InvalidNameIdPolicy,
                    "this user has no email address to use as NameID",
                ))
            }
        },
    };
    let name_id_format = match answer.name_id_format {
        NameIdFormat::Unspecified => NameIdFormat::Persistent,
        f => f,
    };
    let sid = if login.sid.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        login.sid.clone()
    };
    let now = state.now();
    let params = ResponseParams {
        idp_entity_id: &state.saml.entity_id,
        sp_entity_id: &sp.entity_id,
        acs_url: answer.acs_url,
        in_response_to: Some(answer.request_id),
        name_id: &name_id,
        name_id_format,
        session_index: &sid,
        authn_instant: odt(UnixTime(login.auth_time))?,
        now: odt(now)?,
        loa,
        attributes: &attributes,
        signing: crate::saml::response_signing(sp),
    };
    let xml = if sp.encrypt_assertions {
        let cert = metadata.encryption_certificate.as_ref().ok_or_else(|| {
            ServiceError::Internal(format!("{} has no encryption certificate", sp.entity_id))
        })?;
        sesam_saml::build_encrypted_response(
            &params,
            &state.saml.key,
            cert,
            crate::saml::encryption_for(sp, &metadata),
        )
    } else {
        sesam_saml::build_response(&params, &state.saml.key)
    }
    .map_err(|e| ServiceError::Internal(format!("SAML response: {e}")))?;

    state
        .store
        .add_saml_participant(
            &SamlParticipant {
                sid,
                sp: sp.entity_id.clone(),
                name_id,
                name_id_format: name_id_format.uri().to_owned(),
                user_id: user.id.0.clone(),
            },
            now,
            now.plus_seconds(-settings.session_absolute_seconds),
        )
        .await?;
    state
        .store
        .append_audit(
            &AuditEvent::new("saml.response")
                .actor(user.username.as_str())
                .subject(user.username.as_str())
                .client_ip(origin.ip.clone())
                .detail(format!(
                    "{} {} {}",
                    sp.entity_id,
                    loa.name(),
                    name_id_format.name()
                )),
            now,
        )
        .await?;
    Ok(SsoResponse::Issued(xml))
}
