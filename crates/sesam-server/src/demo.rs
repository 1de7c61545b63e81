//! Demo users for trying Sesam on a laptop (`sesam serve --demo`), with passwordless on.
//! Never for production: their passwords are in the README.

use sesam_core::{Clock, Username};
use sesam_store::{NewUser, Store, StoreError};

use crate::password::hash_now;

pub const DEMO_USERS: &[(&str, &str, &str, bool)] = &[
    ("anna", "Anna Andersen", "Anna-demo-login-1", false),
    (
        "robot",
        "RPA robot (password only)",
        "Robot-demo-login-1",
        true,
    ),
];

/// App requests a demo user may get per window: trying the demo means many logins in a
/// row, and the production default (5 in 15 minutes) would stop a visitor after five.
pub const DEMO_CHALLENGE_LIMITS: &[(&str, &str)] = &[
    ("challenge_limit_per_user", "100"),
    ("challenge_limit_per_ip", "400"),
];

pub async fn seed(store: &Store, clock: &dyn Clock) -> anyhow::Result<()> {
    for (name, display, password, password_only) in DEMO_USERS {
        let new = NewUser {
            username: Username::parse(name).expect("demo usernames are valid"),
            display_name: (*display).into(),
            email: Some(format!("{name}@demo.invalid")),
            password_hash: Some(hash_now(password)?),
            is_admin: false,
            password_only: *password_only,
            must_change_password: false,
        };
        match store.create_user(new, clock.now()).await {
            Ok(_) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // The demo is about passwordless: switch it on unless someone already chose.
    if !store.setting_is_stored("passwordless").await? {
        store.set_setting("passwordless", "on", clock.now()).await?;
    }
    for (key, value) in DEMO_CHALLENGE_LIMITS {
        if !store.setting_is_stored(key).await? {
            store.set_setting(key, value, clock.now()).await?;
        }
    }
    tracing::info!(
        "demo users: anna / Anna-demo-login-1, robot / Robot-demo-login-1 (password only)"
    );
    Ok(())
}
