//! The decision at the username step: passwordless or the password form.

use crate::device::Device;
use crate::settings::{PasswordlessMode, Settings};
use crate::user::User;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginBranch {
    Password,
    Passwordless,
    /// Would be passwordless, but the user reported a push as fraud ("this was not me"):
    /// the password, with a notice that says why.
    PasswordlessPaused,
}

/// Passwordless only when the organisation offers it to this user, the user is active, not
/// password-only and has not reported a push as fraud, and at least one device is eligible. Unknown users (`None`) get the
/// password form like everyone else who does not qualify.
pub fn choose_login_branch(
    settings: &Settings,
    user: Option<&User>,
    devices: &[Device],
) -> LoginBranch {
    let Some(user) = user else {
        return LoginBranch::Password;
    };
    let offered = match settings.passwordless {
        PasswordlessMode::Off => false,
        PasswordlessMode::Pilot => user.in_pilot,
        PasswordlessMode::On => true,
    };
    if offered
        && user.is_active()
        && !user.password_only
        && devices.iter().any(|d| d.is_passwordless_capable(settings))
    {
        // Saying "paused" tells no more than the wait page would: this user has the app.
        if user.passwordless_locked {
            LoginBranch::PasswordlessPaused
        } else {
            LoginBranch::Passwordless
        }
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
            choose_login_branch(&s, Some(&user()), &[phone()]),
            LoginBranch::Password
        );
    }

    #[test]
    fn on_with_an_eligible_phone_is_passwordless() {
        assert_eq!(
            choose_login_branch(&on(), Some(&user()), &[phone()]),
            LoginBranch::Passwordless
        );
    }

    #[test]
    fn everyone_else_gets_the_password_form() {
        let s = on();
        assert_eq!(choose_login_branch(&s, None, &[]), LoginBranch::Password);
        assert_eq!(
            choose_login_branch(&s, Some(&user()), &[]),
            LoginBranch::Password
        );
        let robot = User {
            password_only: true,
            ..user()
        };
        assert_eq!(
            choose_login_branch(&s, Some(&robot), &[phone()]),
            LoginBranch::Password
        );
        let locked = User {
            status: UserStatus::Locked,
            ..user()
        };
        assert_eq!(
            choose_login_branch(&s, Some(&locked), &[phone()]),
            LoginBranch::Password
        );
        let reported = User {
            passwordless_locked: true,
            ..user()
        };
        assert_eq!(
            choose_login_branch(&s, Some(&reported), &[phone()]),
            LoginBranch::PasswordlessPaused,
            "a fraud report pauses passwordless, and the password page says so"
        );
        let reported_without_app = User {
            password_only: true,
            ..reported.clone()
        };
        assert_eq!(
            choose_login_branch(&s, Some(&reported_without_app), &[phone()]),
            LoginBranch::Password,
            "no notice where passwordless would not be offered anyway"
        );
        let old = Device {
            app_version: "2.9.0".parse().unwrap(),
            ..phone()
        };
        assert_eq!(
            choose_login_branch(&s, Some(&user()), &[old]),
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
            choose_login_branch(&s, Some(&user()), &[phone()]),
            LoginBranch::Password
        );
        let pilot = User {
            in_pilot: true,
            ..user()
        };
        assert_eq!(
            choose_login_branch(&s, Some(&pilot), &[phone()]),
            LoginBranch::Passwordless
        );
    }
}
