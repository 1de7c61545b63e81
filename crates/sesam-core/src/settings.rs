//! Organisation-wide settings: typed, with defaults, stored as text pairs in the database.

use std::fmt;
use std::str::FromStr;

use crate::assurance::AssuranceLevel;

/// Whether the passwordless branch is offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordlessMode {
    Off,
    /// Only users in the pilot group.
    Pilot,
    On,
}

impl PasswordlessMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PasswordlessMode::Off => "off",
            PasswordlessMode::Pilot => "pilot",
            PasswordlessMode::On => "on",
        }
    }
}

/// major.minor.patch; anything after a `-` or `+` is ignored for comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppVersion(pub u32, pub u32, pub u32);

impl FromStr for AppVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let core = s.split(['-', '+']).next().unwrap_or("");
        let parts: Vec<&str> = core.split('.').collect();
        if parts.is_empty() || parts.len() > 3 {
            return Err(format!("{s:?} is not a version like 3.0.0"));
        }
        let mut nums = [0u32; 3];
        for (i, p) in parts.iter().enumerate() {
            nums[i] = p
                .parse()
                .map_err(|_| format!("{s:?} is not a version like 3.0.0"))?;
        }
        Ok(AppVersion(nums[0], nums[1], nums[2]))
    }
}

impl fmt::Display for AppVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub passwordless: PasswordlessMode,
    pub min_app_version: AppVersion,
    pub min_pin_length: u32,
    pub lockout_max_failures: u32,
    pub lockout_window_seconds: i64,
    /// Failed passwords from one address within `lockout_window_seconds` before that address
    /// must wait (against guessing many users' passwords; a whole office shares an address,
    /// so it is generous).
    pub password_failures_per_ip: u32,
    pub lockout_duration_seconds: i64,
    pub session_idle_seconds: i64,
    pub session_absolute_seconds: i64,
    pub organisation_name: String,
    /// The organisation's CVR number (8 digits) for the professional SAML attributes; empty
    /// when not set.
    pub organisation_cvr: String,
    /// Every SAML service provider must sign its AuthnRequests (WantAuthnRequestsSigned).
    pub saml_want_signed_requests: bool,
    /// How long the app has to answer a challenge.
    pub challenge_lifetime_seconds: i64,
    /// Challenges per user, and per client address, within the window; beyond that the
    /// login falls back to the password form (push-bombing).
    pub challenge_limit_per_user: u32,
    pub challenge_limit_per_ip: u32,
    pub challenge_limit_window_seconds: i64,
    /// The least level every login must reach; services may ask for more.
    pub required_level: AssuranceLevel,
    /// A user who has no device yet may enrol the first one after a password login alone.
    /// Off: a first device needs an activation code from an administrator.
    pub first_device_with_password: bool,
    /// PSD2 mode: in a two-factor login a wrong password is not said at once; the code page
    /// follows as if it were right, and only the end says that one or more details were wrong.
    pub psd2_mode: bool,
    /// The organisation's time zone (an IANA name) for the times people read.
    pub time_zone: String,
    /// The colour of buttons and links as `#rrggbb`; empty for Sesam's own. White text must
    /// stay readable on it (4.5:1), so darker colours only.
    pub accent_colour: String,
    /// Where the login pages' "Help" and "Privacy" links go; empty for no link.
    pub help_url: String,
    pub privacy_url: String,
    /// A short notice on every page ("Planned maintenance on Saturday"), per language; empty
    /// for none.
    pub login_notice_da: String,
    pub login_notice_en: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            passwordless: PasswordlessMode::Off,
            min_app_version: AppVersion(3, 0, 0),
            min_pin_length: 6,
            lockout_max_failures: 5,
            lockout_window_seconds: 15 * 60,
            password_failures_per_ip: 100,
            lockout_duration_seconds: 15 * 60,
            session_idle_seconds: 60 * 60,
            session_absolute_seconds: 10 * 60 * 60,
            organisation_name: String::new(),
            organisation_cvr: String::new(),
            saml_want_signed_requests: false,
            challenge_lifetime_seconds: 120,
            challenge_limit_per_user: 5,
            challenge_limit_per_ip: 20,
            challenge_limit_window_seconds: 15 * 60,
            required_level: AssuranceLevel::Low,
            first_device_with_password: false,
            psd2_mode: false,
            time_zone: "Europe/Copenhagen".into(),
            accent_colour: String::new(),
            help_url: String::new(),
            privacy_url: String::new(),
            login_notice_da: String::new(),
            login_notice_en: String::new(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("unknown setting {0:?}; known settings: {known}", known = Settings::KEYS.join(", "))]
    UnknownKey(String),
    #[error("setting {key}: {problem}")]
    BadValue { key: String, problem: String },
}

fn boolean(key: &str, value: &str) -> Result<bool, SettingsError> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(bad(key, format!("{other:?} is not true or false"))),
    }
}

fn bad(key: &str, problem: impl Into<String>) -> SettingsError {
    SettingsError::BadValue {
        key: key.to_owned(),
        problem: problem.into(),
    }
}

fn int_in<T: FromStr + PartialOrd + fmt::Display + Copy>(
    key: &str,
    value: &str,
    min: T,
    max: T,
) -> Result<T, SettingsError> {
    let n: T = value
        .trim()
        .parse()
        .map_err(|_| bad(key, format!("{value:?} is not a whole number")))?;
    if n < min || n > max {
        return Err(bad(key, format!("{n} is outside {min}..={max}")));
    }
    Ok(n)
}

const MAX_URL_CHARS: usize = 500;
const MAX_NOTICE_CHARS: usize = 300;

/// `#rrggbb` (lower-cased), dark enough that white button text on it has WCAG's 4.5:1.
fn accent_colour(key: &str, value: &str) -> Result<String, SettingsError> {
    let v = value.trim().to_ascii_lowercase();
    if v.is_empty() {
        return Ok(v);
    }
    let hex = v.strip_prefix('#').unwrap_or("");
    let channels: Option<Vec<u8>> = (hex.len() == 6 && hex.is_ascii())
        .then(|| {
            (0..3)
                .map(|i| u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).ok())
                .collect()
        })
        .flatten();
    let Some(rgb) = channels else {
        return Err(bad(
            key,
            format!("{:?} is not a colour like #0b5cad", value.trim()),
        ));
    };
    let ratio = readable_contrast(&rgb);
    if ratio < 4.5 {
        return Err(bad(
            key,
            format!(
                "#{hex} is too light: white text on it, or it on the page, reaches only {ratio:.1}:1 \
                 contrast where 4.5:1 is needed; choose a darker colour"
            ),
        ));
    }
    Ok(format!("#{hex}"))
}

/// The page's background behind links outside the white card (sesam.css `body`).
const PAGE_BACKGROUND: [u8; 3] = [0xf3, 0xf5, 0xf8];

/// WCAG 2.1's relative luminance of an sRGB colour.
fn luminance(rgb: &[u8]) -> f64 {
    let linear = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.03928 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * linear(rgb[0]) + 0.7152 * linear(rgb[1]) + 0.0722 * linear(rgb[2])
}

/// The lower of the colour's contrast with white (button text, the card) and with the page's
/// background (the links below the card).
fn readable_contrast(rgb: &[u8]) -> f64 {
    let dark = luminance(rgb) + 0.05;
    let white = 1.05 / dark;
    let page = (luminance(&PAGE_BACKGROUND) + 0.05) / dark;
    white.min(page)
}

/// An absolute http(s) address for a link people follow, or empty.
fn link(key: &str, value: &str) -> Result<String, SettingsError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(String::new());
    }
    if v.chars().count() > MAX_URL_CHARS {
        return Err(bad(key, format!("longer than {MAX_URL_CHARS} characters")));
    }
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"));
    let host_ok = rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !host.contains('@')
    });
    if !host_ok
        || v.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>\"'`".contains(c))
    {
        return Err(bad(
            key,
            format!("{v:?} is not a web address like https://www.example.dk/help"),
        ));
    }
    Ok(v.to_owned())
}

/// One line of plain text, or empty.
fn notice(key: &str, value: &str) -> Result<String, SettingsError> {
    let v = value.trim();
    if v.chars().count() > MAX_NOTICE_CHARS {
        return Err(bad(
            key,
            format!("longer than {MAX_NOTICE_CHARS} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(bad(key, "must be one line of text"));
    }
    Ok(v.to_owned())
}

/// How a setting is typed in: the portal draws the matching control, `set` checks it (a
/// test keeps the two in step).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettingInput {
    /// One of these values.
    Choice(&'static [&'static str]),
    /// `true` or `false`.
    Switch,
    /// A whole number in `min..=max`, in `unit` (`""`, `"seconds"`, `"digits"`).
    Number {
        min: i64,
        max: i64,
        unit: &'static str,
    },
    /// Free text of at most `max_chars`.
    Text { max_chars: usize },
}

impl SettingInput {
    /// The input for `key`, `None` for an unknown key.
    pub fn of(key: &str) -> Option<SettingInput> {
        const DAY: i64 = 24 * 60 * 60;
        let number = |min, max, unit| SettingInput::Number { min, max, unit };
        Some(match key {
            "passwordless" => SettingInput::Choice(&["off", "pilot", "on"]),
            "required_level" => SettingInput::Choice(&["low", "substantial"]),
            "saml_want_signed_requests" | "first_device_with_password" | "psd2_mode" => {
                SettingInput::Switch
            }
            "min_app_version" => SettingInput::Text { max_chars: 32 },
            "organisation_name" => SettingInput::Text { max_chars: 200 },
            "organisation_cvr" => SettingInput::Text { max_chars: 8 },
            "time_zone" => SettingInput::Text { max_chars: 64 },
            "accent_colour" => SettingInput::Text { max_chars: 7 },
            "help_url" | "privacy_url" => SettingInput::Text {
                max_chars: MAX_URL_CHARS,
            },
            "login_notice_da" | "login_notice_en" => SettingInput::Text {
                max_chars: MAX_NOTICE_CHARS,
            },
            "min_pin_length" => number(4, 32, "digits"),
            "lockout_max_failures" => number(1, 1000, ""),
            "lockout_window_seconds" | "lockout_duration_seconds" => number(1, DAY, "seconds"),
            "password_failures_per_ip" => number(1, 100_000, ""),
            "session_idle_seconds" => number(60, 30 * DAY, "seconds"),
            "session_absolute_seconds" => number(60, 90 * DAY, "seconds"),
            "challenge_lifetime_seconds" => number(30, 600, "seconds"),
            "challenge_limit_per_user" => number(1, 1000, ""),
            "challenge_limit_per_ip" => number(1, 100_000, ""),
            "challenge_limit_window_seconds" => number(60, DAY, "seconds"),
            _ => return None,
        })
    }
}

impl Settings {
    pub const KEYS: &'static [&'static str] = &[
        "passwordless",
        "min_app_version",
        "min_pin_length",
        "lockout_max_failures",
        "lockout_window_seconds",
        "lockout_duration_seconds",
        "password_failures_per_ip",
        "session_idle_seconds",
        "session_absolute_seconds",
        "organisation_name",
        "organisation_cvr",
        "saml_want_signed_requests",
        "challenge_lifetime_seconds",
        "challenge_limit_per_user",
        "challenge_limit_per_ip",
        "challenge_limit_window_seconds",
        "required_level",
        "first_device_with_password",
        "psd2_mode",
        "time_zone",
        "accent_colour",
        "help_url",
        "privacy_url",
        "login_notice_da",
        "login_notice_en",
    ];

    /// Applies one stored or typed-in value, checking it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingsError> {
        const DAY: i64 = 24 * 60 * 60;
        match key {
            "passwordless" => {
                self.passwordless = match value.trim() {
                    "off" => PasswordlessMode::Off,
                    "pilot" => PasswordlessMode::Pilot,
                    "on" => PasswordlessMode::On,
                    other => {
                        return Err(bad(key, format!("{other:?} is not one of off, pilot, on")))
                    }
                }
            }
            "min_app_version" => {
                self.min_app_version = value.trim().parse().map_err(|e| bad(key, e))?
            }
            "min_pin_length" => self.min_pin_length = int_in(key, value, 4, 32)?,
            "lockout_max_failures" => self.lockout_max_failures = int_in(key, value, 1, 1000)?,
            "lockout_window_seconds" => self.lockout_window_seconds = int_in(key, value, 1, DAY)?,
            "password_failures_per_ip" => {
                self.password_failures_per_ip = int_in(key, value, 1, 100_000)?
            }
            "lockout_duration_seconds" => {
                self.lockout_duration_seconds = int_in(key, value, 1, DAY)?
            }
            "session_idle_seconds" => self.session_idle_seconds = int_in(key, value, 60, 30 * DAY)?,
            "session_absolute_seconds" => {
                self.session_absolute_seconds = int_in(key, value, 60, 90 * DAY)?
            }
            "organisation_name" => {
                if value.chars().count() > 200 {
                    return Err(bad(key, "longer than 200 characters"));
                }
                self.organisation_name = value.trim().to_owned()
            }
            "organisation_cvr" => {
                let cvr = value.trim();
                if !(cvr.is_empty() || (cvr.len() == 8 && cvr.bytes().all(|b| b.is_ascii_digit())))
                {
                    return Err(bad(key, "not 8 digits"));
                }
                self.organisation_cvr = cvr.to_owned()
            }
            "saml_want_signed_requests" => self.saml_want_signed_requests = boolean(key, value)?,
            "first_device_with_password" => self.first_device_with_password = boolean(key, value)?,
            "psd2_mode" => self.psd2_mode = boolean(key, value)?,
            "time_zone" => {
                // The shape of an IANA name; the server checks that its zone database has it.
                let zone = value.trim();
                let shaped = !zone.is_empty()
                    && zone.len() <= 64
                    && zone
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "/_-+".contains(c));
                if !shaped {
                    return Err(bad(
                        key,
                        format!("{zone:?} is not a time zone name like Europe/Copenhagen"),
                    ));
                }
                self.time_zone = zone.to_owned()
            }
            "accent_colour" => self.accent_colour = accent_colour(key, value)?,
            "help_url" => self.help_url = link(key, value)?,
            "privacy_url" => self.privacy_url = link(key, value)?,
            "login_notice_da" => self.login_notice_da = notice(key, value)?,
            "login_notice_en" => self.login_notice_en = notice(key, value)?,
            "challenge_lifetime_seconds" => {
                self.challenge_lifetime_seconds = int_in(key, value, 30, 600)?
            }
            "challenge_limit_per_user" => {
                self.challenge_limit_per_user = int_in(key, value, 1, 1000)?
            }
            "challenge_limit_per_ip" => {
                self.challenge_limit_per_ip = int_in(key, value, 1, 100_000)?
            }
            "challenge_limit_window_seconds" => {
                self.challenge_limit_window_seconds = int_in(key, value, 60, DAY)?
            }
            "required_level" => {
                self.required_level = match AssuranceLevel::parse(value) {
                    Some(level) if level < AssuranceLevel::High => level,
                    _ => {
                        return Err(bad(
                            key,
                            format!("{:?} is not one of low, substantial", value.trim()),
                        ))
                    }
                }
            }
            other => return Err(SettingsError::UnknownKey(other.to_owned())),
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> Result<String, SettingsError> {
        Ok(match key {
            "passwordless" => self.passwordless.as_str().to_owned(),
            "min_app_version" => self.min_app_version.to_string(),
            "min_pin_length" => self.min_pin_length.to_string(),
            "lockout_max_failures" => self.lockout_max_failures.to_string(),
            "lockout_window_seconds" => self.lockout_window_seconds.to_string(),
            "password_failures_per_ip" => self.password_failures_per_ip.to_string(),
            "lockout_duration_seconds" => self.lockout_duration_seconds.to_string(),
            "session_idle_seconds" => self.session_idle_seconds.to_string(),
            "session_absolute_seconds" => self.session_absolute_seconds.to_string(),
            "organisation_name" => self.organisation_name.clone(),
            "organisation_cvr" => self.organisation_cvr.clone(),
            "saml_want_signed_requests" => self.saml_want_signed_requests.to_string(),
            "challenge_lifetime_seconds" => self.challenge_lifetime_seconds.to_string(),
            "challenge_limit_per_user" => self.challenge_limit_per_user.to_string(),
            "challenge_limit_per_ip" => self.challenge_limit_per_ip.to_string(),
            "challenge_limit_window_seconds" => self.challenge_limit_window_seconds.to_string(),
            "required_level" => self.required_level.as_str().to_owned(),
            "first_device_with_password" => self.first_device_with_password.to_string(),
            "psd2_mode" => self.psd2_mode.to_string(),
            "time_zone" => self.time_zone.clone(),
            "accent_colour" => self.accent_colour.clone(),
            "help_url" => self.help_url.clone(),
            "privacy_url" => self.privacy_url.clone(),
            "login_notice_da" => self.login_notice_da.clone(),
            "login_notice_en" => self.login_notice_en.clone(),
            other => return Err(SettingsError::UnknownKey(other.to_owned())),
        })
    }

    /// Defaults overlaid with stored pairs. A stored value that no longer parses is
    /// reported rather than silently replaced.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Settings, SettingsError> {
        let mut settings = Settings::default();
        for (k, v) in pairs {
            settings.set(k, v)?;
        }
        Ok(settings)
    }

    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        Settings::KEYS
            .iter()
            .map(|k| (*k, self.get(k).unwrap_or_default()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_has_an_input_that_set_agrees_with() {
        for key in Settings::KEYS {
            let input = SettingInput::of(key).unwrap_or_else(|| panic!("{key} has no input"));
            let mut s = Settings::default();
            match input {
                SettingInput::Choice(values) => {
                    for v in values {
                        assert!(s.set(key, v).is_ok(), "{key} = {v}");
                    }
                    assert!(s.set(key, "neither").is_err(), "{key}");
                }
                SettingInput::Switch => {
                    assert!(s.set(key, "true").is_ok() && s.set(key, "false").is_ok());
                    assert!(s.set(key, "yes").is_err(), "{key}");
                }
                SettingInput::Number { min, max, .. } => {
                    for ok in [min, max] {
                        assert!(s.set(key, &ok.to_string()).is_ok(), "{key} = {ok}");
                    }
                    for bad in [min - 1, max + 1] {
                        assert!(s.set(key, &bad.to_string()).is_err(), "{key} = {bad}");
                    }
                }
                SettingInput::Text { .. } => {}
            }
        }
    }

    #[test]
    fn accent_colours_must_keep_white_text_readable() {
        let mut s = Settings::default();
        s.set("accent_colour", " #0B5CAD ").unwrap();
        assert_eq!(s.accent_colour, "#0b5cad");
        s.set("accent_colour", "").unwrap();
        assert_eq!(s.accent_colour, "");
        s.set("accent_colour", "#000000").unwrap();
        for bad in [
            "#ffff00",
            "#ffffff",
            "#77aaff",
            "0b5cad",
            "#0b5ca",
            "#0b5cadd",
            "#gggggg",
            "red",
            "#ØØØØØØ",
        ] {
            let err = s.set("accent_colour", bad).unwrap_err().to_string();
            assert!(err.contains("accent_colour"), "{bad}: {err}");
            assert_eq!(s.accent_colour, "#000000", "{bad} changed the colour");
        }
        // Black is 19.2:1 against the grey page (21:1 on white), Sesam's own blue passes, a mid
        // grey does not, nor a colour that passes on white only (4.7:1 there, 4.3:1 on grey).
        assert!((readable_contrast(&[0, 0, 0]) - 19.23).abs() < 0.01);
        assert!(s.set("accent_colour", "#737373").is_err());
        assert!(readable_contrast(&[0x0b, 0x5c, 0xad]) >= 4.5);
        assert!(readable_contrast(&[0x99, 0x99, 0x99]) < 4.5);
    }

    #[test]
    fn help_and_privacy_links_are_web_addresses_only() {
        let mut s = Settings::default();
        s.set("help_url", " https://www.aarhus.dk/hjaelp ").unwrap();
        assert_eq!(s.help_url, "https://www.aarhus.dk/hjaelp");
        s.set("privacy_url", "http://intra.example/privacy?x=1#a")
            .unwrap();
        let long = format!("https://example.dk/{}", "a".repeat(500));
        for bad in [
            "javascript:alert(1)",
            "data:text/html,x",
            "//example.dk",
            "https://",
            "https://user@evil.example",
            "https://example.dk/a b",
            "https://example.dk/\"onmouseover=",
            "ftp://example.dk",
            long.as_str(),
        ] {
            assert!(s.set("help_url", bad).is_err(), "{bad}");
            assert_eq!(s.help_url, "https://www.aarhus.dk/hjaelp");
        }
        s.set("help_url", "").unwrap();
        assert_eq!(s.help_url, "");
    }

    #[test]
    fn notices_are_one_short_line() {
        let mut s = Settings::default();
        s.set("login_notice_da", " Planlagt vedligehold lørdag ")
            .unwrap();
        assert_eq!(s.login_notice_da, "Planlagt vedligehold lørdag");
        assert!(s.set("login_notice_en", "two\nlines").is_err());
        assert!(s.set("login_notice_en", &"x".repeat(301)).is_err());
        assert!(s.set("login_notice_en", &"ø".repeat(300)).is_ok());
        assert_eq!(s.login_notice_da, "Planlagt vedligehold lørdag");
    }

    #[test]
    fn defaults_match_the_design() {
        let s = Settings::default();
        assert_eq!(s.passwordless, PasswordlessMode::Off);
        assert_eq!(s.min_app_version, AppVersion(3, 0, 0));
        assert_eq!(s.min_pin_length, 6);
        assert_eq!(s.lockout_max_failures, 5);
        assert_eq!(s.lockout_window_seconds, 900);
    }

    #[test]
    fn pairs_round_trip() {
        let mut s = Settings::default();
        s.set("passwordless", "pilot").unwrap();
        s.set("organisation_name", "Aarhus Kommune").unwrap();
        s.set("organisation_cvr", " 55133018 ").unwrap();
        assert_eq!(s.organisation_cvr, "55133018");
        for bad in ["5513301", "551330181", "5513301X"] {
            assert!(s.set("organisation_cvr", bad).is_err(), "{bad}");
        }
        assert_eq!(
            s.organisation_cvr, "55133018",
            "a refused value changes nothing"
        );
        let pairs = s.to_pairs();
        let back = Settings::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str()))).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn bad_values_name_the_key_and_the_problem() {
        let mut s = Settings::default();
        let err = s.set("lockout_max_failures", "zero").unwrap_err();
        assert!(err.to_string().contains("lockout_max_failures"), "{err}");
        assert!(s.set("lockout_max_failures", "0").is_err());
        assert!(s.set("passwordless", "maybe").is_err());
        assert!(s.set("min_app_version", "three").is_err());
        assert!(s.set("first_device_with_password", "yes").is_err());
        assert!(
            s.set("required_level", "high").is_err(),
            "High is never reached"
        );
        assert!(s.set("required_level", "").is_err());
        assert!(matches!(
            s.set("colour", "red"),
            Err(SettingsError::UnknownKey(_))
        ));
        assert_eq!(s, Settings::default(), "failed sets change nothing");
        s.set("first_device_with_password", " true ").unwrap();
        assert!(s.first_device_with_password);
        s.set("required_level", "Substantial").unwrap();
        assert_eq!(s.get("required_level").unwrap(), "substantial");
    }

    #[test]
    fn versions_compare_numerically() {
        let v = |s: &str| s.parse::<AppVersion>().unwrap();
        assert!(v("2.9.0") < v("3.0.0"));
        assert!(v("3.10.0") > v("3.9.9"));
        assert_eq!(v("3"), v("3.0.0"));
        assert_eq!(v("3.1.0-beta.2"), v("3.1.0"));
        assert!("3.x".parse::<AppVersion>().is_err());
        assert!("".parse::<AppVersion>().is_err());
    }
}
