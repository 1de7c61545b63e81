//! Universal links (iOS) and app links (Android): which apps may open Sesam's `/app/open`
//! links, as the two association files say. Checked at start-up, so a typo cannot ship.

use serde_json::{json, Value};

/// The path the "Open the Sesam app" link opens; the app claims it, a browser gets a page.
pub const OPEN_PATH: &str = "/app/open";

/// The apps associated with this Sesam's domain. Empty: no association files are served.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppLinks {
    /// `TEAMID.bundle.id`, e.g. `ABCDE12345.dk.sesam.app`.
    pub apple_app_ids: Vec<String>,
    /// The Android application id, e.g. `dk.sesam.app`.
    pub android_package: Option<String>,
    /// SHA-256 fingerprints of the app's signing certificates, `AA:BB:…` (32 bytes).
    pub android_cert_fingerprints: Vec<String>,
}

/// A refused value: the config key and why.
pub type Refusal = (&'static str, String);

impl AppLinks {
    pub fn new(
        apple_app_ids: Vec<String>,
        android_package: Option<String>,
        android_cert_fingerprints: Vec<String>,
    ) -> Result<AppLinks, Refusal> {
        for id in &apple_app_ids {
            if !is_apple_app_id(id) {
                return Err((
                    "apple_app_ids",
                    format!("{id:?} is not TEAMID.bundle.id (a 10-character team id of A-Z and 0-9, a dot, then the bundle id)"),
                ));
            }
        }
        let android_package = android_package.filter(|p| !p.is_empty());
        if let Some(p) = &android_package {
            if !is_android_package(p) {
                return Err((
                    "android_package",
                    format!("{p:?} is not an Android application id like dk.sesam.app"),
                ));
            }
        }
        for fp in &android_cert_fingerprints {
            if !is_fingerprint(fp) {
                return Err((
                    "android_cert_fingerprints",
                    format!("{fp:?} is not a SHA-256 fingerprint: 32 bytes as uppercase hex pairs separated by colons (AA:BB:…)"),
                ));
            }
        }
        match (&android_package, android_cert_fingerprints.is_empty()) {
            (Some(_), true) => Err((
                "android_cert_fingerprints",
                "android_package needs at least one signing certificate fingerprint".into(),
            )),
            (None, false) => Err((
                "android_package",
                "android_cert_fingerprints need the android_package they belong to".into(),
            )),
            _ => Ok(AppLinks {
                apple_app_ids,
                android_package,
                android_cert_fingerprints,
            }),
        }
    }

    /// `/.well-known/apple-app-site-association`, or `None` when no iOS app is configured.
    pub fn apple_association(&self) -> Option<Value> {
        if self.apple_app_ids.is_empty() {
            return None;
        }
        Some(json!({
            "applinks": {
                "details": [{
                    "appIDs": self.apple_app_ids,
                    "components": [{
                        "/": OPEN_PATH,
                        "?": { "challenge": "?*" },
                        "comment": "Open the Sesam app at a login's challenge"
                    }]
                }]
            }
        }))
    }

    /// `/.well-known/assetlinks.json`, or `None` when no Android app is configured.
    pub fn asset_links(&self) -> Option<Value> {
        let package = self.android_package.as_ref()?;
        Some(json!([{
            "relation": ["delegate_permission/common.handle_all_urls"],
            "target": {
                "namespace": "android_app",
                "package_name": package,
                "sha256_cert_fingerprints": self.android_cert_fingerprints,
            }
        }]))
    }
}

fn is_apple_app_id(id: &str) -> bool {
    let Some((team, bundle)) = id.split_once('.') else {
        return false;
    };
    team.len() == 10
        && team
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && !bundle.is_empty()
        && bundle.len() <= 155
        && bundle.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn is_android_package(p: &str) -> bool {
    let parts: Vec<&str> = p.split('.').collect();
    p.len() <= 255
        && parts.len() >= 2
        && parts.iter().all(|part| {
            part.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

fn is_fingerprint(fp: &str) -> bool {
    let pairs: Vec<&str> = fp.split(':').collect();
    pairs.len() == 32
        && pairs.iter().all(|pair| {
            pair.len() == 2
                && pair
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp() -> String {
        vec!["AB"; 32].join(":")
    }

    #[test]
    fn good_values_make_both_files() {
        let links = AppLinks::new(
            vec!["ABCDE12345.dk.sesam.app".into()],
            Some("dk.sesam.app".into()),
            vec![fp()],
        )
        .unwrap();
        let aasa = links.apple_association().unwrap();
        assert_eq!(
            aasa["applinks"]["details"][0]["appIDs"][0],
            "ABCDE12345.dk.sesam.app"
        );
        assert_eq!(
            aasa["applinks"]["details"][0]["components"][0]["/"],
            OPEN_PATH
        );
        let assets = links.asset_links().unwrap();
        assert_eq!(assets[0]["target"]["package_name"], "dk.sesam.app");
        assert!(AppLinks::default().apple_association().is_none());
        assert!(AppLinks::default().asset_links().is_none());
    }

    #[test]
    fn bad_values_name_their_key() {
        let lower = fp().to_lowercase();
        let short = vec!["AB"; 31].join(":");
        let dashes = vec!["AB"; 32].join("-");
        for (apple, package, fps, key) in [
            (vec!["dk.sesam.app"], None, vec![], "apple_app_ids"),
            (
                vec!["abcde12345.dk.sesam.app"],
                None,
                vec![],
                "apple_app_ids",
            ),
            (vec!["ABCDE12345."], None, vec![], "apple_app_ids"),
            (vec!["ABCDE12345.dk..app"], None, vec![], "apple_app_ids"),
            (vec![], Some("sesam"), vec![fp()], "android_package"),
            (vec![], Some("dk.1sesam"), vec![fp()], "android_package"),
            (
                vec![],
                Some("dk.sesam"),
                vec![],
                "android_cert_fingerprints",
            ),
            (vec![], None, vec![fp()], "android_package"),
            (
                vec![],
                Some("dk.sesam"),
                vec![lower],
                "android_cert_fingerprints",
            ),
            (
                vec![],
                Some("dk.sesam"),
                vec![short],
                "android_cert_fingerprints",
            ),
            (
                vec![],
                Some("dk.sesam"),
                vec![dashes],
                "android_cert_fingerprints",
            ),
        ] {
            let e = AppLinks::new(
                apple.iter().map(|s| s.to_string()).collect(),
                package.map(str::to_owned),
                fps.clone(),
            )
            .unwrap_err();
            assert_eq!(e.0, key, "{apple:?} {package:?} {fps:?}: {}", e.1);
        }
    }
}
