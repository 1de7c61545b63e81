//! What switching passwordless on would do, before it is done: how many users would log in
//! without a password right now and, for everyone else, the one reason that stops them.

use std::collections::BTreeMap;

use crate::device::{Device, Ineligibility};
use crate::login::{choose_login_branch, LoginBranch};
use crate::settings::{PasswordlessMode, Settings};
use crate::user::User;

/// Why a user would still get the password form; one per user, the first that applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Blocker {
    PasswordlessOff,
    NotInPilot,
    PasswordOnly,
    AccountInactive,
    FraudReported,
    NoDevice,
    NotPhoneApp,
    AppTooOld,
    PinTooShort,
    DeviceBlocked,
}

impl Blocker {
    pub fn as_str(self) -> &'static str {
        match self {
            Blocker::PasswordlessOff => "passwordless_off",
            Blocker::NotInPilot => "not_in_pilot",
            Blocker::PasswordOnly => "password_only",
            Blocker::AccountInactive => "account_inactive",
            Blocker::FraudReported => "fraud_reported",
            Blocker::NoDevice => "no_device",
            Blocker::NotPhoneApp => "not_phone_app",
            Blocker::AppTooOld => "app_too_old",
            Blocker::PinTooShort => "pin_too_short",
            Blocker::DeviceBlocked => "device_blocked",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preview {
    pub total: usize,
    pub passwordless: usize,
    pub blocked: BTreeMap<Blocker, usize>,
}

/// The one reason `user` would get the password form under `settings`, or `None` when the
/// user would log in passwordless.
pub fn blocker(settings: &Settings, user: &User, devices: &[Device]) -> Option<Blocker> {
    // The app's passwordless: what switching it on means for the organisation's phones.
    if choose_login_branch(settings, Some(user), devices, false, None) == LoginBranch::Passwordless
    {
        return None;
    }
    Some(match settings.passwordless {
        PasswordlessMode::Off => Blocker::PasswordlessOff,
        PasswordlessMode::Pilot if !user.in_pilot => Blocker::NotInPilot,
        _ if user.password_only => Blocker::PasswordOnly,
        _ if !user.is_active() => Blocker::AccountInactive,
        _ if user.passwordless_locked => Blocker::FraudReported,
        _ if devices.is_empty() => Blocker::NoDevice,
        _ => {
            // The device closest to eligible says what is missing.
            let reasons = devices
                .iter()
                .map(|d| d.passwordless_ineligibility(settings))
                .min_by_key(Vec::len)
                .unwrap_or_default();
            match reasons.first() {
                Some(Ineligibility::NotPhoneApp(_)) => Blocker::NotPhoneApp,
                Some(Ineligibility::AppTooOld { .. }) => Blocker::AppTooOld,
                Some(Ineligibility::PinTooShort { .. }) => Blocker::PinTooShort,
                Some(Ineligibility::Locked | Ineligibility::Disabled) | None => {
                    Blocker::DeviceBlocked
                }
            }
        }
    })
}

/// The preview over a population, as it would be with `settings`.
pub fn preview<'a>(
    settings: &Settings,
    population: impl IntoIterator<Item = (&'a User, &'a [Device])>,
) -> Preview {
    let mut p = Preview::default();
    for (user, devices) in population {
        p.total += 1;
        match blocker(settings, user, devices) {
            None => p.passwordless += 1,
            Some(b) => *p.blocked.entry(b).or_default() += 1,
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{DeviceStatus, Platform};
    use crate::user::{UserId, UserStatus, Username};
    use crate::UnixTime;

    fn user(name: &str) -> User {
        User {
            id: UserId(name.into()),
            username: Username::parse(name).unwrap(),
            display_name: name.into(),
            email: None,
            status: UserStatus::Active,
            password_hash: None,
            password_only: false,
            is_admin: false,
            must_change_password: false,
            in_pilot: false,
            passwordless_locked: false,
            session_epoch: 0,
            directory_id: None,
            created_at: UnixTime(0),
            updated_at: UnixTime(0),
        }
    }

    fn phone(version: &str, pin: u32) -> Device {
        Device {
            id: "d".into(),
            platform: Platform::Ios,
            app_version: version.parse().unwrap(),
            pin_length: pin,
            status: DeviceStatus::Active,
        }
    }

    #[test]
    fn counts_and_reasons_match_the_population() {
        let on = Settings {
            passwordless: PasswordlessMode::On,
            ..Settings::default()
        };
        let ready = user("ready");
        let robot = User {
            password_only: true,
            ..user("robot")
        };
        let locked = User {
            status: UserStatus::Locked,
            ..user("locked")
        };
        let none = user("none");
        let old = user("old");
        let short = user("short");
        let population: Vec<(&User, Vec<Device>)> = vec![
            (&ready, vec![phone("3.1.0", 6)]),
            (&robot, vec![phone("3.1.0", 6)]),
            (&locked, vec![phone("3.1.0", 6)]),
            (&none, vec![]),
            (&old, vec![phone("2.9.0", 6)]),
            (&short, vec![phone("3.0.0", 4), phone("2.0.0", 4)]),
        ];
        let p = preview(&on, population.iter().map(|(u, d)| (*u, d.as_slice())));
        assert_eq!((p.total, p.passwordless), (6, 1));
        let expect: BTreeMap<Blocker, usize> = [
            (Blocker::PasswordOnly, 1),
            (Blocker::AccountInactive, 1),
            (Blocker::NoDevice, 1),
            (Blocker::AppTooOld, 1),
            (Blocker::PinTooShort, 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(p.blocked, expect);

        let pilot = Settings {
            passwordless: PasswordlessMode::Pilot,
            ..Settings::default()
        };
        let p = preview(&pilot, population.iter().map(|(u, d)| (*u, d.as_slice())));
        assert_eq!(
            (p.passwordless, p.blocked.get(&Blocker::NotInPilot)),
            (0, Some(&6))
        );
    }
}
