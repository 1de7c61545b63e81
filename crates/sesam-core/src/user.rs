//! Users as Sesam stores them, and the username newtype every handler must go through.

use std::fmt;
use std::str::FromStr;

/// Longest username accepted anywhere (form, CLI, cookie).
pub const MAX_USERNAME_CHARS: usize = 128;

/// Characters a name shown to people must not contain: control characters, and the
/// invisible formatting ones (bidirectional overrides and isolates, zero-width characters)
/// that make a name read differently from what it is ("Anna\u{202E}nimda" shows as "Annaadmin").
pub fn is_hidden_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// A username that has been checked: trimmed, 1 to 128 characters, no control characters
/// and no whitespace inside. Comparison for lookup goes through [`Username::key`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Username(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsernameError {
    #[error("the username is empty")]
    Empty,
    #[error("the username is longer than {MAX_USERNAME_CHARS} characters")]
    TooLong,
    #[error("the username may not contain spaces or control characters")]
    BadCharacter,
}

impl Username {
    pub fn parse(raw: &str) -> Result<Username, UsernameError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(UsernameError::Empty);
        }
        if trimmed.chars().count() > MAX_USERNAME_CHARS {
            return Err(UsernameError::TooLong);
        }
        if trimmed
            .chars()
            .any(|c| is_hidden_char(c) || c.is_whitespace())
        {
            return Err(UsernameError::BadCharacter);
        }
        Ok(Username(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-insensitive form that is unique in the store.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Username {
    type Err = UsernameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Username::parse(s)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserId(pub String);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Set by an administrator. The temporary lock after failed passwords is separate (the
/// login throttle) so that it works the same for unknown usernames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserStatus {
    Active,
    Locked,
    Disabled,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Locked => "locked",
            UserStatus::Disabled => "disabled",
        }
    }
}

impl FromStr for UserStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(UserStatus::Active),
            "locked" => Ok(UserStatus::Locked),
            "disabled" => Ok(UserStatus::Disabled),
            other => Err(format!("unknown user status {other:?}")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: Username,
    pub display_name: String,
    pub email: Option<String>,
    pub status: UserStatus,
    /// PHC string (argon2id); `None` for a user who has never had a password.
    pub password_hash: Option<String>,
    /// Service accounts and RPA robots: always the password form, never passwordless.
    pub password_only: bool,
    pub is_admin: bool,
    /// A one-time password was set: the next login must choose a new one.
    pub must_change_password: bool,
    /// Member of the pilot group for a staged passwordless rollout.
    pub in_pilot: bool,
    /// Set when the user reported a push as fraud; cleared by an admin or a password login.
    pub passwordless_locked: bool,
    /// Raised by a password change: logins of an older epoch no longer count.
    pub session_epoch: i64,
    /// The stable id of the user's entry in the organisation's directory (entryUUID,
    /// objectGUID): its password is checked there. `None`: a local user.
    pub directory_id: Option<String>,
    pub created_at: crate::UnixTime,
    pub updated_at: crate::UnixTime,
}

impl User {
    pub fn is_active(&self) -> bool {
        self.status == UserStatus::Active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_trimmed_and_compared_case_insensitively() {
        let name = Username::parse("  Anna.Hansen ").unwrap();
        assert_eq!(name.as_str(), "Anna.Hansen");
        assert_eq!(name.key(), "anna.hansen");
    }

    #[test]
    fn bad_usernames_are_refused() {
        assert_eq!(Username::parse("   "), Err(UsernameError::Empty));
        assert_eq!(Username::parse("a b"), Err(UsernameError::BadCharacter));
        assert_eq!(Username::parse("a\u{0}b"), Err(UsernameError::BadCharacter));
        assert_eq!(
            Username::parse(&"x".repeat(MAX_USERNAME_CHARS + 1)),
            Err(UsernameError::TooLong)
        );
        assert!(Username::parse(&"æ".repeat(MAX_USERNAME_CHARS)).is_ok());
    }

    #[test]
    fn status_round_trips() {
        for s in [UserStatus::Active, UserStatus::Locked, UserStatus::Disabled] {
            assert_eq!(s.as_str().parse::<UserStatus>(), Ok(s));
        }
        assert!("gone".parse::<UserStatus>().is_err());
    }
}
