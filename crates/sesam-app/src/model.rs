//! The JSON the app API exchanges, as the phone sees it (docs/app-api.openapi.json).
//! Requests serialise to exactly the documented shapes; responses are read leniently.

use serde::ser::SerializeMap as _;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// What the app reports about itself at enrolment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolOptions {
    /// The name the user sees for this device, e.g. "Anna's iPhone".
    pub display_name: String,
    /// `ios`, `android`, `desktop` or `other`.
    pub platform: String,
    /// The app's version, e.g. `3.0.0`.
    pub app_version: String,
    /// Length of the PIN that guards the app (0: none).
    pub pin_length: u32,
    /// Push provider (`apns` or `fcm`) and token, if the app can be woken.
    pub push: Option<(String, String)>,
}

impl Default for EnrolOptions {
    fn default() -> Self {
        EnrolOptions {
            display_name: "sesam-app".into(),
            platform: "ios".into(),
            app_version: "3.0.0".into(),
            pin_length: 6,
            push: None,
        }
    }
}

/// A push registration as the API writes it: `{"provider":..,"token":..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRegistration {
    pub provider: String,
    pub token: String,
}

impl PushRegistration {
    fn from_pair((provider, token): &(String, String)) -> PushRegistration {
        PushRegistration {
            provider: provider.clone(),
            token: token.clone(),
        }
    }
}

/// The body of `POST /enrolments`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnrolmentRequest {
    pub activation_code: String,
    /// The device's P-256 public key as a JWK (the same one as in the proof header).
    pub public_key: Value,
    pub platform: String,
    pub app_version: String,
    pub pin_length: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<PushRegistration>,
    pub display_name: String,
}

impl EnrolmentRequest {
    pub fn new(activation_code: &str, public_key: Value, opts: &EnrolOptions) -> EnrolmentRequest {
        EnrolmentRequest {
            activation_code: activation_code.to_owned(),
            public_key,
            platform: opts.platform.clone(),
            app_version: opts.app_version.clone(),
            pin_length: opts.pin_length,
            push: opts.push.as_ref().map(PushRegistration::from_pair),
            display_name: opts.display_name.clone(),
        }
    }
}

/// The body of `PATCH /devices/self`: only the fields that are `Some` are sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceUpdate {
    /// `Some(None)` sends `"push": null`, which removes the push token.
    pub push: Option<Option<(String, String)>>,
    pub app_version: Option<String>,
    pub pin_length: Option<u32>,
    pub display_name: Option<String>,
}

impl DeviceUpdate {
    /// True when nothing would be sent.
    pub fn is_empty(&self) -> bool {
        self.push.is_none()
            && self.app_version.is_none()
            && self.pin_length.is_none()
            && self.display_name.is_none()
    }
}

impl Serialize for DeviceUpdate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Option<Option<_>> with skip_serializing_if gives absent / null / object.
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            push: Option<Option<PushRegistration>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            app_version: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pin_length: Option<u32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            display_name: Option<&'a str>,
        }
        Wire {
            push: self
                .push
                .as_ref()
                .map(|p| p.as_ref().map(PushRegistration::from_pair)),
            app_version: self.app_version.as_deref(),
            pin_length: self.pin_length,
            display_name: self.display_name.as_deref(),
        }
        .serialize(serializer)
    }
}

/// Whether the device may be used for passwordless login, and why not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eligibility {
    pub eligible: bool,
    #[serde(default)]
    pub reasons: Vec<String>,
}

/// A device as Sesam describes it (enrolment, `GET`/`PATCH /devices/self`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceView {
    pub device_id: String,
    pub username: String,
    pub display_name: String,
    pub platform: String,
    pub app_version: String,
    pub pin_length: u32,
    #[serde(default)]
    pub push_provider: Option<String>,
    pub passwordless: Eligibility,
}

/// A pending challenge with its context; never the code itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeView {
    pub id: String,
    /// `code` (a passwordless login) or `approve` (the step-up after a password); both are
    /// approved only with the code the browser shows.
    pub kind: String,
    pub service: String,
    pub created_at: i64,
    pub expires_at: i64,
    #[serde(default)]
    pub browser: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub client_ip: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
}

/// The body of `GET /challenges`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ChallengeList {
    pub challenges: Vec<ChallengeView>,
}

/// The app's answer to a challenge. There is no plain approval: Sesam refuses one, so only
/// the code the browser shows approves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The two-digit code the browser shows: `{"code":"42"}`.
    Code(String),
    /// `{"decision":"confirm_scan"}`: a yes after this device scanned the login's QR code
    /// ([`AppClient::scan`](crate::AppClient::scan)); refused without that scan.
    ConfirmScan,
    /// `{"decision":"deny"}`
    Deny,
    /// `{"decision":"report_fraud"}`: locks passwordless for the user.
    ReportFraud,
}

impl Answer {
    /// The `decision` value, or `None` for a code.
    pub fn decision(&self) -> Option<&'static str> {
        match self {
            Answer::Code(_) => None,
            Answer::ConfirmScan => Some("confirm_scan"),
            Answer::Deny => Some("deny"),
            Answer::ReportFraud => Some("report_fraud"),
        }
    }
}

impl Serialize for Answer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match (self, self.decision()) {
            (Answer::Code(code), _) => map.serialize_entry("code", code)?,
            (_, Some(decision)) => map.serialize_entry("decision", decision)?,
            (_, None) => {}
        }
        map.end()
    }
}

/// The body of `POST /scans`: the QR code's text exactly as scanned.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ScanRequest<'a> {
    pub payload: &'a str,
}

/// What a scan gives: the request, to show before the user confirms it, and how to approve
/// it (`confirm_scan`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanResult {
    pub challenge: ChallengeView,
    pub approve_with: String,
}

/// The challenge's state after an answer: `approved`, `rejected` or `wrong_code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerResult {
    pub status: String,
}

/// Sesam's error body: `{"error":..,"message":..}`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ErrorBody {
    pub error: String,
    #[serde(default)]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn to_json<T: Serialize>(value: &T) -> String {
        serde_json::to_string(value).unwrap()
    }

    #[test]
    fn answers_serialise_to_the_documented_json() {
        assert_eq!(to_json(&Answer::Code("42".into())), r#"{"code":"42"}"#);
        assert_eq!(to_json(&Answer::Deny), r#"{"decision":"deny"}"#);
        assert_eq!(
            to_json(&Answer::ReportFraud),
            r#"{"decision":"report_fraud"}"#
        );
    }

    #[test]
    fn device_update_sends_only_what_is_set() {
        assert_eq!(to_json(&DeviceUpdate::default()), "{}");
        assert!(DeviceUpdate::default().is_empty());
        let remove_push = DeviceUpdate {
            push: Some(None),
            ..Default::default()
        };
        assert_eq!(to_json(&remove_push), r#"{"push":null}"#);
        let all = DeviceUpdate {
            push: Some(Some(("fcm".into(), "tok".into()))),
            app_version: Some("3.1.0".into()),
            pin_length: Some(4),
            display_name: Some("Anna".into()),
        };
        assert_eq!(
            serde_json::to_value(&all).unwrap(),
            json!({
                "push": {"provider": "fcm", "token": "tok"},
                "app_version": "3.1.0",
                "pin_length": 4,
                "display_name": "Anna"
            })
        );
        let version_only = DeviceUpdate {
            app_version: Some("3.2.0".into()),
            ..Default::default()
        };
        assert_eq!(to_json(&version_only), r#"{"app_version":"3.2.0"}"#);
    }

    #[test]
    fn enrolment_request_has_the_documented_fields() {
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": "x", "y": "y"});
        let opts = EnrolOptions::default();
        assert_eq!(opts.display_name, "sesam-app");
        assert_eq!(opts.platform, "ios");
        assert_eq!(opts.app_version, "3.0.0");
        assert_eq!(opts.pin_length, 6);
        let without_push =
            serde_json::to_value(EnrolmentRequest::new("ABCD", jwk.clone(), &opts)).unwrap();
        assert_eq!(
            without_push,
            json!({
                "activation_code": "ABCD",
                "public_key": jwk,
                "platform": "ios",
                "app_version": "3.0.0",
                "pin_length": 6,
                "display_name": "sesam-app"
            })
        );
        let with_push = EnrolOptions {
            push: Some(("apns".into(), "t0k".into())),
            ..opts
        };
        let body = serde_json::to_value(EnrolmentRequest::new("ABCD", jwk, &with_push)).unwrap();
        assert_eq!(body["push"], json!({"provider": "apns", "token": "t0k"}));
    }

    #[test]
    fn device_and_challenges_read_the_documented_json() {
        let device: DeviceView = serde_json::from_value(json!({
            "device_id": "d1", "username": "anna", "display_name": "Phone",
            "platform": "android", "app_version": "3.0.0", "pin_length": 6,
            "push_provider": null,
            "passwordless": {"eligible": false, "reasons": ["no_push"]}
        }))
        .unwrap();
        assert_eq!(device.push_provider, None);
        assert!(!device.passwordless.eligible);
        assert_eq!(device.passwordless.reasons, vec!["no_push"]);
        let list: ChallengeList = serde_json::from_value(json!({"challenges": [
            {"id": "c1", "kind": "code", "service": "Intranet", "created_at": 1, "expires_at": 121,
             "browser": "Firefox", "os": null, "client_ip": "192.0.2.1"},
        ]}))
        .unwrap();
        let c = &list.challenges[0];
        assert_eq!(c.kind, "code");
        assert_eq!(c.browser.as_deref(), Some("Firefox"));
        assert_eq!(c.os, None);
        assert_eq!(c.location, None);
    }
}
