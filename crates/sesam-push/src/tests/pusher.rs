//! The provider-independent parts of `Pusher`: outbox mode, unconfigured providers, names.
//! Also checks that Debug output keeps tokens and keys out of logs.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use super::notification;
use crate::{
    ApnsConfig, Delivery, FcmConfig, Notification, Outbox, Provider, PushError, PushToken, Pusher,
};

#[derive(Default)]
struct Recorder {
    pushes: Mutex<Vec<(PushToken, Notification)>>,
    fail_with: Option<String>,
}

impl Outbox for Recorder {
    fn record<'a>(
        &'a self,
        to: &'a PushToken,
        n: &'a Notification,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            if let Some(reason) = &self.fail_with {
                return Err(reason.clone());
            }
            self.pushes
                .lock()
                .expect("lock")
                .push((to.clone(), n.clone()));
            Ok(())
        })
    }
}

fn to(provider: Provider) -> PushToken {
    PushToken {
        provider,
        token: "0123456789abcdef0123456789abcdef".to_owned(),
    }
}

#[tokio::test]
async fn outbox_records_the_push_and_reports_delivered() {
    let recorder = Arc::new(Recorder::default());
    let pusher = Pusher::outbox(recorder.clone());

    assert_eq!(
        pusher.send(&to(Provider::Fcm), &notification()).await,
        Delivery::Delivered
    );

    let pushes = recorder.pushes.lock().expect("lock");
    assert_eq!(*pushes, vec![(to(Provider::Fcm), notification())]);
}

#[tokio::test]
async fn outbox_error_is_a_failed_delivery() {
    let recorder = Arc::new(Recorder {
        fail_with: Some("database is locked".to_owned()),
        ..Recorder::default()
    });
    let pusher = Pusher::outbox(recorder);

    assert_eq!(
        pusher.send(&to(Provider::Apns), &notification()).await,
        Delivery::Failed("outbox: database is locked".to_owned())
    );
}

#[tokio::test]
async fn unconfigured_provider_fails_cleanly() {
    let pusher = Pusher::live(None, None).expect("nothing to check");

    assert_eq!(
        pusher.send(&to(Provider::Apns), &notification()).await,
        Delivery::Failed("apns is not configured".to_owned())
    );
    assert_eq!(
        pusher.send(&to(Provider::Fcm), &notification()).await,
        Delivery::Failed("fcm is not configured".to_owned())
    );
}

#[test]
fn provider_names_round_trip() {
    for provider in [Provider::Apns, Provider::Fcm] {
        assert_eq!(provider.as_str().parse::<Provider>().ok(), Some(provider));
    }
    assert!(matches!(
        "gcm".parse::<Provider>(),
        Err(PushError::UnknownProvider(name)) if name == "gcm"
    ));
    assert_eq!(
        serde_json::to_string(&Provider::Apns).expect("JSON"),
        r#""apns""#
    );
}

#[test]
fn debug_output_keeps_tokens_and_keys_out_of_logs() {
    let token = to(Provider::Apns);
    let shown = format!("{token:?}");
    assert!(!shown.contains(&token.token), "{shown}");
    assert!(shown.contains("01234567"), "{shown}");

    let apns = ApnsConfig {
        base_url: ApnsConfig::PRODUCTION_URL.to_owned(),
        key_pem: "-----BEGIN PRIVATE KEY-----SECRET".to_owned(),
        key_id: "KEY1234567".to_owned(),
        team_id: "TEAM987654".to_owned(),
        topic: "dk.example.sesam".to_owned(),
        ca_file_pem: None,
    };
    assert!(!format!("{apns:?}").contains("SECRET"));
    let fcm = FcmConfig {
        base_url: FcmConfig::PRODUCTION_URL.to_owned(),
        project_id: "sesam-test".to_owned(),
        service_account_json: r#"{"private_key":"SECRET"}"#.to_owned(),
        ca_file_pem: None,
    };
    assert!(!format!("{fcm:?}").contains("SECRET"));
}
