//! NSIS levels of assurance and the factors that prove them.

use serde::{Deserialize, Serialize};

/// What a login proved. Stored in the session with the time it was proven.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Factor {
    /// Something the user knows: the password.
    Password,
    /// The MFA app, unlocked with PIN or biometrics, answered a challenge.
    App,
    /// Something the user has: a code display (TOTP authenticator) gave the current code.
    /// Counts only together with the password; alone it proves nothing.
    Totp,
    /// A passkey (WebAuthn) with user verification: the authenticator holds the key and
    /// checked the user's PIN or biometrics, two factors in one, bound to this server's name.
    Passkey,
    /// An upstream eID (MitID through an OpenID Connect broker) proved the user, at this
    /// level: the lower of what Sesam is configured to count it as and the upstream's `acr`.
    Upstream(AssuranceLevel),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssuranceLevel {
    Low,
    Substantial,
    High,
}

impl AssuranceLevel {
    /// The level a set of factors gives. High is never claimed by these factors. Password
    /// and code display are two factors of different categories (knows, has): Substantial
    /// together; a code display alone is no login. The app and a passkey, each unlocked by
    /// PIN or biometrics, are Substantial alone.
    /// An upstream eID login counts at the level it carries (the only way to High); the
    /// login's level is the highest of what the upstream and the local factors give.
    pub fn from_factors(factors: &[Factor]) -> Option<AssuranceLevel> {
        let password = factors.contains(&Factor::Password);
        let local = if factors.contains(&Factor::App)
            || factors.contains(&Factor::Passkey)
            || (password && factors.contains(&Factor::Totp))
        {
            Some(AssuranceLevel::Substantial)
        } else if password {
            Some(AssuranceLevel::Low)
        } else {
            None
        };
        let upstream = factors
            .iter()
            .filter_map(|f| match f {
                Factor::Upstream(level) => Some(*level),
                _ => None,
            })
            .max();
        local.max(upstream)
    }

    pub fn nsis_uri(self) -> &'static str {
        match self {
            AssuranceLevel::Low => "https://data.gov.dk/concept/core/nsis/loa/Low",
            AssuranceLevel::Substantial => "https://data.gov.dk/concept/core/nsis/loa/Substantial",
            AssuranceLevel::High => "https://data.gov.dk/concept/core/nsis/loa/High",
        }
    }

    /// `low`, `substantial` or `high` (any case), or the NSIS URI: the one parser for
    /// settings, the CLI, the portal and stored service records.
    pub fn parse(text: &str) -> Option<AssuranceLevel> {
        let text = text.trim();
        [
            AssuranceLevel::Low,
            AssuranceLevel::Substantial,
            AssuranceLevel::High,
        ]
        .into_iter()
        .find(|l| text.eq_ignore_ascii_case(l.as_str()) || text == l.nsis_uri())
    }

    /// The level an NSIS URI names exactly (`acr_values`, `AuthnContextClassRef`).
    pub fn from_nsis_uri(uri: &str) -> Option<AssuranceLevel> {
        [
            AssuranceLevel::Low,
            AssuranceLevel::Substantial,
            AssuranceLevel::High,
        ]
        .into_iter()
        .find(|l| l.nsis_uri() == uri)
    }

    /// As OIOSAML's `loa` attribute writes it: `Low`, `Substantial`, `High`.
    pub fn name(self) -> &'static str {
        match self {
            AssuranceLevel::Low => "Low",
            AssuranceLevel::Substantial => "Substantial",
            AssuranceLevel::High => "High",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AssuranceLevel::Low => "low",
            AssuranceLevel::Substantial => "substantial",
            AssuranceLevel::High => "high",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_alone_is_low_and_app_makes_it_substantial() {
        assert_eq!(AssuranceLevel::from_factors(&[]), None);
        assert_eq!(
            AssuranceLevel::from_factors(&[Factor::Password]),
            Some(AssuranceLevel::Low)
        );
        assert_eq!(
            AssuranceLevel::from_factors(&[Factor::App]),
            Some(AssuranceLevel::Substantial)
        );
        assert_eq!(
            AssuranceLevel::from_factors(&[Factor::Password, Factor::App]),
            Some(AssuranceLevel::Substantial)
        );
        assert!(AssuranceLevel::Low < AssuranceLevel::Substantial);
    }

    #[test]
    fn a_code_display_counts_only_with_the_password() {
        assert_eq!(AssuranceLevel::from_factors(&[Factor::Totp]), None);
        assert_eq!(
            AssuranceLevel::from_factors(&[Factor::Password, Factor::Totp]),
            Some(AssuranceLevel::Substantial)
        );
        assert_eq!(
            AssuranceLevel::from_factors(&[Factor::Totp, Factor::Password]),
            Some(AssuranceLevel::Substantial)
        );
    }

    #[test]
    fn a_passkey_with_user_verification_is_substantial_alone() {
        assert_eq!(
            AssuranceLevel::from_factors(&[Factor::Passkey]),
            Some(AssuranceLevel::Substantial)
        );
        assert_eq!(
            AssuranceLevel::from_factors(&[Factor::Password, Factor::Passkey]),
            Some(AssuranceLevel::Substantial),
            "never High: the factors here stop at Substantial"
        );
    }

    #[test]
    fn an_upstream_login_counts_at_its_own_level() {
        for level in [
            AssuranceLevel::Low,
            AssuranceLevel::Substantial,
            AssuranceLevel::High,
        ] {
            assert_eq!(
                AssuranceLevel::from_factors(&[Factor::Upstream(level)]),
                Some(level)
            );
        }
        // A Low upstream login with the password is still Low; with the app, Substantial.
        assert_eq!(
            AssuranceLevel::from_factors(&[
                Factor::Password,
                Factor::Upstream(AssuranceLevel::Low)
            ]),
            Some(AssuranceLevel::Low)
        );
        assert_eq!(
            AssuranceLevel::from_factors(&[Factor::App, Factor::Upstream(AssuranceLevel::Low)]),
            Some(AssuranceLevel::Substantial)
        );
        assert_eq!(
            AssuranceLevel::from_factors(&[
                Factor::Password,
                Factor::Upstream(AssuranceLevel::High)
            ]),
            Some(AssuranceLevel::High)
        );
    }

    #[test]
    fn levels_parse_from_names_and_nsis_uris() {
        for level in [
            AssuranceLevel::Low,
            AssuranceLevel::Substantial,
            AssuranceLevel::High,
        ] {
            assert_eq!(AssuranceLevel::parse(level.as_str()), Some(level));
            assert_eq!(AssuranceLevel::parse(level.nsis_uri()), Some(level));
        }
        assert_eq!(
            AssuranceLevel::parse(" Substantial "),
            Some(AssuranceLevel::Substantial)
        );
        assert_eq!(AssuranceLevel::parse("medium"), None);
        assert_eq!(
            AssuranceLevel::from_nsis_uri(AssuranceLevel::High.nsis_uri()),
            Some(AssuranceLevel::High)
        );
        assert_eq!(AssuranceLevel::from_nsis_uri("substantial"), None);
        assert_eq!(AssuranceLevel::Substantial.name(), "Substantial");
        assert_eq!(AssuranceLevel::parse(""), None);
    }
}
