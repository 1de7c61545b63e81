//! MFA devices and the rule that says which of them may carry a passwordless login.

use std::fmt;
use std::str::FromStr;

use crate::settings::{AppVersion, Settings};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    Ios,
    Android,
    Desktop,
    /// Hardware keys, code displays (TOTP) and anything else that is not the phone app.
    Other,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Ios => "ios",
            Platform::Android => "android",
            Platform::Desktop => "desktop",
            Platform::Other => "other",
        }
    }
}

impl FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ios" => Ok(Platform::Ios),
            "android" => Ok(Platform::Android),
            "desktop" => Ok(Platform::Desktop),
            "other" => Ok(Platform::Other),
            other => Err(format!("unknown platform {other:?}")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceStatus {
    Active,
    Locked,
    Disabled,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Active => "active",
            DeviceStatus::Locked => "locked",
            DeviceStatus::Disabled => "disabled",
        }
    }
}

impl FromStr for DeviceStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(DeviceStatus::Active),
            "locked" => Ok(DeviceStatus::Locked),
            "disabled" => Ok(DeviceStatus::Disabled),
            other => Err(format!("unknown device status {other:?}")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    pub platform: Platform,
    pub app_version: AppVersion,
    /// As reported by the app; biometrics may unlock it, the PIN length still counts.
    pub pin_length: u32,
    pub status: DeviceStatus,
}

/// Why a device cannot carry a passwordless login. Shown to users and admins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ineligibility {
    NotPhoneApp(Platform),
    AppTooOld { has: AppVersion, needs: AppVersion },
    PinTooShort { has: u32, needs: u32 },
    Locked,
    Disabled,
}

impl fmt::Display for Ineligibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ineligibility::NotPhoneApp(p) => {
                write!(f, "platform {} is not the phone app", p.as_str())
            }
            Ineligibility::AppTooOld { has, needs } => {
                write!(f, "app version {has} is older than {needs}")
            }
            Ineligibility::PinTooShort { has, needs } => {
                write!(f, "PIN has {has} digits, {needs} needed")
            }
            Ineligibility::Locked => f.write_str("device is locked"),
            Ineligibility::Disabled => f.write_str("device is disabled"),
        }
    }
}

impl Device {
    /// Every reason this device may not be used for passwordless; empty means it may.
    pub fn passwordless_ineligibility(&self, settings: &Settings) -> Vec<Ineligibility> {
        let mut reasons = Vec::new();
        if !matches!(self.platform, Platform::Ios | Platform::Android) {
            reasons.push(Ineligibility::NotPhoneApp(self.platform));
        }
        if self.app_version < settings.min_app_version {
            reasons.push(Ineligibility::AppTooOld {
                has: self.app_version,
                needs: settings.min_app_version,
            });
        }
        if self.pin_length < settings.min_pin_length {
            reasons.push(Ineligibility::PinTooShort {
                has: self.pin_length,
                needs: settings.min_pin_length,
            });
        }
        match self.status {
            DeviceStatus::Active => {}
            DeviceStatus::Locked => reasons.push(Ineligibility::Locked),
            DeviceStatus::Disabled => reasons.push(Ineligibility::Disabled),
        }
        reasons
    }

    pub fn is_passwordless_capable(&self, settings: &Settings) -> bool {
        self.passwordless_ineligibility(settings).is_empty()
    }

    /// May approve a step-up after a password: any enrolled phone app that is not blocked
    /// (the version and PIN thresholds are for passwordless only).
    pub fn can_approve_step_up(&self) -> bool {
        matches!(self.platform, Platform::Ios | Platform::Android)
            && self.status == DeviceStatus::Active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone() -> Device {
        Device {
            id: "d1".into(),
            platform: Platform::Ios,
            app_version: "3.0.0".parse().unwrap(),
            pin_length: 6,
            status: DeviceStatus::Active,
        }
    }

    #[test]
    fn a_current_phone_app_with_six_digit_pin_is_eligible() {
        assert!(phone().is_passwordless_capable(&Settings::default()));
    }

    #[test]
    fn each_shortcoming_is_named() {
        let settings = Settings::default();
        let mut d = phone();
        d.platform = Platform::Desktop;
        d.app_version = "2.9.0".parse().unwrap();
        d.pin_length = 4;
        d.status = DeviceStatus::Locked;
        let reasons = d.passwordless_ineligibility(&settings);
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert!(reasons.contains(&Ineligibility::PinTooShort { has: 4, needs: 6 }));
        assert!(reasons.contains(&Ineligibility::NotPhoneApp(Platform::Desktop)));
    }
}
