//! Passkeys (WebAuthn) as the relying party: this server's name and origin, the options a
//! browser gets for a ceremony, and the checks of what it sends back (webauthn-rs). The
//! rules of who may add or use one are in the flow and `service::passkey`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sesam_store::PasskeyRecord;
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, WebauthnError,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

/// Why a ceremony's answer was not taken. Each has its own message; none changes anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasskeyError {
    /// Not the JSON a browser sends (or far too large).
    Malformed,
    /// Signed for another web address than this server's.
    WrongOrigin,
    /// Made for another relying party (site name) than this server's.
    WrongRpId,
    /// Not the answer to this ceremony's challenge (an old or someone else's answer).
    WrongChallenge,
    /// The authenticator did not verify the user (PIN or biometrics).
    NotVerified,
    /// No passkey of this user has that credential.
    UnknownCredential,
    /// The sign counter went backwards: perhaps a copied authenticator.
    CounterRegression,
    /// Anything else the checks refused (bad signature, unsupported key…).
    Refused,
}

impl PasskeyError {
    fn from_webauthn(e: &WebauthnError) -> PasskeyError {
        match e {
            WebauthnError::InvalidRPOrigin => PasskeyError::WrongOrigin,
            WebauthnError::InvalidRPIDHash => PasskeyError::WrongRpId,
            WebauthnError::MismatchedChallenge | WebauthnError::InvalidClientDataType => {
                PasskeyError::WrongChallenge
            }
            WebauthnError::UserNotVerified | WebauthnError::UserNotPresent => {
                PasskeyError::NotVerified
            }
            WebauthnError::CredentialNotFound => PasskeyError::UnknownCredential,
            WebauthnError::CredentialPossibleCompromise => PasskeyError::CounterRegression,
            WebauthnError::ParseCBORFailure(_)
            | WebauthnError::ParseJSONFailure(_)
            | WebauthnError::ParseNOMFailure
            | WebauthnError::ParseInsufficientBytesAvailable => PasskeyError::Malformed,
            _ => PasskeyError::Refused,
        }
    }

    /// The translation key of the message.
    pub fn text_key(self) -> &'static str {
        match self {
            PasskeyError::Malformed => "passkey.error.malformed",
            PasskeyError::WrongOrigin => "passkey.error.origin",
            PasskeyError::WrongRpId => "passkey.error.rp_id",
            PasskeyError::WrongChallenge => "passkey.error.challenge",
            PasskeyError::NotVerified => "passkey.error.not_verified",
            PasskeyError::UnknownCredential => "passkey.error.unknown",
            PasskeyError::CounterRegression => "passkey.error.counter",
            PasskeyError::Refused => "passkey.error.refused",
        }
    }

    /// For the audit record.
    pub fn as_str(self) -> &'static str {
        match self {
            PasskeyError::Malformed => "malformed",
            PasskeyError::WrongOrigin => "wrong origin",
            PasskeyError::WrongRpId => "wrong relying party id",
            PasskeyError::WrongChallenge => "wrong challenge",
            PasskeyError::NotVerified => "user not verified",
            PasskeyError::UnknownCredential => "unknown credential",
            PasskeyError::CounterRegression => "sign counter did not rise",
            PasskeyError::Refused => "refused",
        }
    }
}

/// Larger answers are refused unread: a real one is a few kilobytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A ceremony the browser is asked to perform: the options it gets (JSON for
/// `navigator.credentials`) and the state the server keeps until the answer comes.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Ceremony {
    pub options_json: String,
    pub state_json: String,
}

impl Ceremony {
    /// As one string, for the login flow (which keeps it server-side, opaque).
    pub fn to_stored(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_stored(stored: &str) -> Option<Ceremony> {
        serde_json::from_str(stored).ok()
    }
}

/// A new passkey, checked, ready to store.
pub struct Registered {
    pub credential_id: String,
    pub passkey_json: String,
    pub sign_count: i64,
    pub transports: String,
}

/// An accepted assertion: which stored passkey, and its record with the new counter.
pub struct Used {
    pub record_id: String,
    pub passkey_json: String,
    pub sign_count: i64,
}

pub struct RelyingParty {
    webauthn: Webauthn,
}

impl RelyingParty {
    /// The relying party of `public_url`: its host is the RP id, the URL's origin the one
    /// origin accepted. `Err` when the host is no domain name (an IP address cannot be a
    /// WebAuthn RP id; browsers refuse it).
    pub fn new(public_url: &str, name: &str) -> Result<RelyingParty, String> {
        let url = Url::parse(public_url).map_err(|e| format!("public_url: {e}"))?;
        let Some(host) = url.domain().map(str::to_owned) else {
            return Err(format!(
                "passkeys need a domain name in public_url, not {}",
                url.host_str().unwrap_or("")
            ));
        };
        let webauthn = WebauthnBuilder::new(&host, &url)
            .and_then(|b| b.rp_name(name).build())
            .map_err(|e| format!("passkeys for {public_url}: {e}"))?;
        Ok(RelyingParty { webauthn })
    }

    /// Options to create a passkey for the user (`user_handle` names the user to the
    /// authenticator), excluding the credentials the user has already.
    pub fn start_registration(
        &self,
        user_id: &str,
        username: &str,
        display_name: &str,
        existing: &[PasskeyRecord],
    ) -> Result<Ceremony, PasskeyError> {
        let exclude = existing
            .iter()
            .filter_map(|r| parse_passkey(&r.passkey))
            .map(|p| p.cred_id().clone())
            .collect::<Vec<_>>();
        let (options, state) = self
            .webauthn
            .start_passkey_registration(
                user_handle(user_id),
                username,
                display_name,
                Some(exclude).filter(|e| !e.is_empty()),
            )
            .map_err(|e| PasskeyError::from_webauthn(&e))?;
        ceremony(&options, &state)
    }

    pub fn finish_registration(
        &self,
        answer: &str,
        state_json: &str,
    ) -> Result<Registered, PasskeyError> {
        let answer: RegisterPublicKeyCredential = parse_answer(answer)?;
        let state: PasskeyRegistration =
            serde_json::from_str(state_json).map_err(|_| PasskeyError::WrongChallenge)?;
        let transports = answer
            .response
            .transports
            .iter()
            .flatten()
            .filter_map(|t| serde_json::to_value(t).ok())
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect::<Vec<_>>()
            .join(",");
        let passkey = self
            .webauthn
            .finish_passkey_registration(&answer, &state)
            .map_err(|e| PasskeyError::from_webauthn(&e))?;
        Ok(Registered {
            credential_id: URL_SAFE_NO_PAD.encode(passkey.cred_id()),
            passkey_json: serde_json::to_string(&passkey).map_err(|_| PasskeyError::Refused)?,
            // A new credential's counter as the authenticator reported it is inside the
            // record; the first assertion compares against it.
            sign_count: 0,
            transports,
        })
    }

    /// Options to prove one of `passkeys`. `None` when none of them can be read.
    pub fn start_authentication(
        &self,
        passkeys: &[PasskeyRecord],
    ) -> Result<Option<Ceremony>, PasskeyError> {
        let keys: Vec<Passkey> = passkeys
            .iter()
            .filter_map(|r| parse_passkey(&r.passkey))
            .collect();
        if keys.is_empty() {
            return Ok(None);
        }
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&keys)
            .map_err(|e| PasskeyError::from_webauthn(&e))?;
        ceremony(&options, &state).map(Some)
    }

    /// Checks the browser's assertion against the ceremony and the user's stored passkeys.
    pub fn finish_authentication(
        &self,
        answer: &str,
        state_json: &str,
        passkeys: &[PasskeyRecord],
    ) -> Result<Used, PasskeyError> {
        let answer: PublicKeyCredential = parse_answer(answer)?;
        let state: PasskeyAuthentication =
            serde_json::from_str(state_json).map_err(|_| PasskeyError::WrongChallenge)?;
        let result = self
            .webauthn
            .finish_passkey_authentication(&answer, &state)
            .map_err(|e| PasskeyError::from_webauthn(&e))?;
        if !result.user_verified() {
            return Err(PasskeyError::NotVerified);
        }
        let (record, mut passkey) = passkeys
            .iter()
            .find_map(|r| {
                parse_passkey(&r.passkey)
                    .filter(|p| p.cred_id() == result.cred_id())
                    .map(|p| (r, p))
            })
            .ok_or(PasskeyError::UnknownCredential)?;
        passkey.update_credential(&result);
        Ok(Used {
            record_id: record.id.clone(),
            passkey_json: serde_json::to_string(&passkey).map_err(|_| PasskeyError::Refused)?,
            sign_count: i64::from(result.counter()),
        })
    }
}

fn parse_answer<T: serde::de::DeserializeOwned>(answer: &str) -> Result<T, PasskeyError> {
    if answer.len() > MAX_ANSWER_BYTES {
        return Err(PasskeyError::Malformed);
    }
    serde_json::from_str(answer).map_err(|_| PasskeyError::Malformed)
}

fn parse_passkey(json: &str) -> Option<Passkey> {
    serde_json::from_str(json).ok()
}

fn ceremony<O: serde::Serialize, S: serde::Serialize>(
    options: &O,
    state: &S,
) -> Result<Ceremony, PasskeyError> {
    Ok(Ceremony {
        options_json: serde_json::to_string(options).map_err(|_| PasskeyError::Refused)?,
        state_json: serde_json::to_string(state).map_err(|_| PasskeyError::Refused)?,
    })
}

/// The user handle the authenticator keeps: the user id where it is a UUID (every id Sesam
/// makes), else a UUID derived from it, so it is stable and names no one by their username.
fn user_handle(user_id: &str) -> Uuid {
    Uuid::parse_str(user_id).unwrap_or_else(|_| {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(user_id.as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relying_party_needs_a_domain_name() {
        assert!(RelyingParty::new("http://localhost:8080", "Sesam").is_ok());
        assert!(RelyingParty::new("https://login.example.dk", "Sesam").is_ok());
        let ip = RelyingParty::new("http://127.0.0.1:8080", "Sesam").err();
        assert!(ip.is_some_and(|e| e.contains("domain name")));
    }

    #[test]
    fn user_handles_are_stable_and_uuid_ids_kept() {
        let id = "5b0c3c4e-6a43-4f7d-9c55-3f8f5c1f0e21";
        assert_eq!(user_handle(id).to_string(), id);
        assert_eq!(user_handle("robot-7"), user_handle("robot-7"));
        assert_ne!(user_handle("robot-7"), user_handle("robot-8"));
    }

    #[test]
    fn answers_that_are_no_credential_are_malformed() {
        let rp = RelyingParty::new("http://localhost:8080", "Sesam").unwrap();
        let c = rp.start_registration("u1", "anna", "Anna", &[]).unwrap();
        for bad in ["", "{}", "null", "[1,2]", "{\"id\":5}", &"x".repeat(70_000)] {
            assert_eq!(
                rp.finish_registration(bad, &c.state_json).err(),
                Some(PasskeyError::Malformed),
                "{bad:.20}"
            );
        }
        assert!(c.options_json.contains("\"challenge\""));
    }
}
