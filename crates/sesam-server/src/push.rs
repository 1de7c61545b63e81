//! Builds the push sender from configuration: the database outbox by default, Apple and
//! Google when `push_provider = "live"`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context;
use sesam_core::Clock;
use sesam_push::{ApnsConfig, FcmConfig, Notification, Outbox, PushToken, Pusher};
use sesam_store::Store;

use crate::config::PushConfig;

/// Records pushes in the `push_outbox` table.
pub struct StoreOutbox {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
}

impl Outbox for StoreOutbox {
    fn record<'a>(
        &'a self,
        to: &'a PushToken,
        n: &'a Notification,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            self.store
                .record_outbox_push(
                    to.provider.as_str(),
                    &to.token,
                    &n.challenge_id,
                    &n.title,
                    &n.body,
                    self.clock.now(),
                )
                .await
                .map_err(|e| e.to_string())
        })
    }
}

pub fn build(config: &PushConfig, store: &Store, clock: Arc<dyn Clock>) -> anyhow::Result<Pusher> {
    if !config.live {
        return Ok(Pusher::outbox(Arc::new(StoreOutbox {
            store: store.clone(),
            clock,
        })));
    }
    let apns = match (
        &config.apns_key_file,
        &config.apns_key_id,
        &config.apns_team_id,
        &config.apns_topic,
    ) {
        (Some(file), Some(key_id), Some(team_id), Some(topic)) => Some(ApnsConfig {
            base_url: config.apns_base_url.clone(),
            key_pem: std::fs::read_to_string(file)
                .with_context(|| format!("reading apns_key_file {}", file.display()))?,
            key_id: key_id.clone(),
            team_id: team_id.clone(),
            topic: topic.clone(),
            ca_file_pem: read_ca_file("apns_ca_file", config.apns_ca_file.as_deref())?,
        }),
        _ => None,
    };
    let fcm = match (&config.fcm_project_id, &config.fcm_service_account_file) {
        (Some(project_id), Some(file)) => Some(FcmConfig {
            base_url: config.fcm_base_url.clone(),
            project_id: project_id.clone(),
            service_account_json: std::fs::read_to_string(file)
                .with_context(|| format!("reading fcm_service_account_file {}", file.display()))?,
            ca_file_pem: read_ca_file("fcm_ca_file", config.fcm_ca_file.as_deref())?,
        }),
        _ => None,
    };
    Ok(Pusher::live(apns, fcm)?)
}

/// Reads an optional CA file; whether it holds certificates is checked when the client is made
/// (and named by its key then, through [`sesam_push::PushError`]).
fn read_ca_file(key: &str, file: Option<&std::path::Path>) -> anyhow::Result<Option<String>> {
    file.map(|file| {
        std::fs::read_to_string(file).with_context(|| format!("reading {key} {}", file.display()))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::read_ca_file;

    #[test]
    fn ca_file_is_optional_and_a_missing_one_names_its_key() {
        assert_eq!(read_ca_file("apns_ca_file", None).unwrap(), None);
        let missing = std::path::Path::new("/nonexistent/sesam/ca.pem");
        let err = read_ca_file("fcm_ca_file", Some(missing)).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("fcm_ca_file"), "{text}");
        assert!(text.contains("/nonexistent/sesam/ca.pem"), "{text}");
    }
}
