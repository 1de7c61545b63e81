//! The decision at the username step: passwordless or the password form.

use crate::device::Device;
use crate::flow::SecondFactor;
use crate::settings::{PasswordlessMode, Settings};
use crate::user::User;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginBranch {
    Password,
    Passwordless,
    /// A passkey: passwordless without the phone's app.
    Passkey,
    /// Would be passwordless, but the user reported a push as fraud ("this was not me"):
    /// the password, with a notice that says why.
    PasswordlessPaused,
}

/// Passwordless only when the organisation offers it to this user, the user is active, not
/// password-only and has not reported a push as fraud, and has a passkey or at least one
/// eligible device. A passkey comes first (it cannot be phished), unless this browser chose
/// the app last time and the app can do it. Unknown users (`None`) get the password form
/// like everyone else who does not qualify.
pub fn choose_login_branch(
    settings: &Settings,
    user: Option<&User>,
    devices: &[Device],
    has_passkey: bool,
    chosen_before: Option<SecondFactor>,
) -> LoginBranch {
    let Some(user) = user else {
        return LoginBranch::Password;
    };
    let offered = match settings.passwordless {
        PasswordlessMode::Off => false,
        PasswordlessMode::Pilot => user.in_pilot,
        PasswordlessMode::On => true,
    };
    let app = devices.iter().any(|d| d.is_passwordless_capable(settings));
    if !(offered && user.is_active() && !user.password_only && (app || has_passkey)) {
        return LoginBranch::Password;
    }
    if user.passwordless_locked {
        // Saying "paused" tells no more than the wait page would: this user has the app.
        LoginBranch::PasswordlessPaused
    } else if has_passkey && !(app && chosen_before == Some(SecondFactor::App)) {
        LoginBranch::Passkey
    } else if app {
        LoginBranch::Passwordless
    } else {
        LoginBranch::Password
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{DeviceStatus, Platform};
    use crate::user::{UserId, UserStatus, Username};
    use crate::UnixTime;

    fn user() -> User {
        User {
            id: UserId("u1".into()),
            username: Username::parse("anna").unwrap(),
            display_name: "Anna".into(),
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

    fn phone() -> Device {
        Device {
            id: "d1".into(),
            platform: Platform::Android,
            app_version: "3.2.1".parse().unwrap(),
            pin_length: 6,
            status: DeviceStatus::Active,
        }
    }

    fn on() -> Settings {
        Settings {
            passwordless: PasswordlessMode::On,
            ..Settings::default()
        }
    }

    #[test]
    fn default_settings_always_give_the_password_form() {
        let s = Settings::default();
        assert_eq!(
            choose_login_branch(&s, Some(&user()), &[phone()], false, None),
            LoginBranch::Password
        );
    }

    #[test]
    fn on_with_an_eligible_phone_is_passwordless() {
        assert_eq!(
            choose_login_branch(&on(), Some(&user()), &[phone()], false, None),
            LoginBranch::Passwordless
        );
    }

    #[test]
    fn everyone_else_gets_the_password_form() {
        let s = on();
        assert_eq!(
            choose_login_branch(&s, None, &[], false, None),
            LoginBranch::Password
        );
        assert_eq!(
            choose_login_branch(&s, Some(&user()), &[], false, None),
            LoginBranch::Password
        );
        let robot = User {
            password_only: true,
            ..user()
        };
        assert_eq!(
            choose_login_branch(&s, Some(&robot), &[phone()], false, None),
            LoginBranch::Password
        );
        let locked = User {
            status: UserStatus::Locked,
            ..user()
        };
        assert_eq!(
            choose_login_branch(&s, Some(&locked), &[phone()], false, None),
            LoginBranch::Password
        );
        let reported = User {
            passwordless_locked: true,
            ..user()
        };
        assert_eq!(
            choose_login_branch(&s, Some(&reported), &[phone()], false, None),
            LoginBranch::PasswordlessPaused,
            "a fraud report pauses passwordless, and the password page says so"
        );
        let reported_without_app = User {
            password_only: true,
            ..reported.clone()
        };
        assert_eq!(
            choose_login_branch(&s, Some(&reported_without_app), &[phone()], false, None),
            LoginBranch::Password,
            "no notice where passwordless would not be offered anyway"
        );
        let old = Device {
            app_version: "2.9.0".parse().unwrap(),
            ..phone()
        };
        assert_eq!(
            choose_login_branch(&s, Some(&user()), &[old], false, None),
            LoginBranch::Password
        );
    }

    #[test]
    fn a_passkey_comes_first_unless_this_browser_chose_the_app() {
        let s = on();
        assert_eq!(
            choose_login_branch(&s, Some(&user()), &[], true, None),
            LoginBranch::Passkey,
            "a passkey alone is passwordless"
        );
        assert_eq!(
            choose_login_branch(&s, Some(&user()), &[phone()], true, None),
            LoginBranch::Passkey
        );
        assert_eq!(
            choose_login_branch(&s, Some(&user()), &[phone()], true, Some(SecondFactor::App)),
            LoginBranch::Passwordless
        );
        assert_eq!(
            choose_login_branch(&s, Some(&user()), &[], true, Some(SecondFactor::App)),
            LoginBranch::Passkey,
            "the app chosen before, but there is none that can do it"
        );
        assert_eq!(
            choose_login_branch(&Settings::default(), Some(&user()), &[], true, None),
            LoginBranch::Password,
            "passwordless switched off: a passkey is a second factor only"
        );
        let robot = User {
            password_only: true,
            ..user()
        };
        assert_eq!(
            choose_login_branch(&s, Some(&robot), &[], true, None),
            LoginBranch::Password
        );
        assert_eq!(
            choose_login_branch(&s, None, &[], false, None),
            LoginBranch::Password
        );
    }

    #[test]
    fn pilot_mode_needs_membership() {
        let s = Settings {
            passwordless: PasswordlessMode::Pilot,
            ..Settings::default()
        };
        assert_eq!(
            choose_login_branch(&s, Some(&user()), &[phone()], false, None),
            LoginBranch::Password
        );
        let pilot = User {
            in_pilot: true,
            ..user()
        };
        assert_eq!(
            choose_login_branch(&s, Some(&pilot), &[phone()], false, None),
            LoginBranch::Passwordless
        );
    }
}
