//! The password check as a port: the login asks "is this the password of this user?" and an
//! adapter answers, Sesam's own argon2 hashes ([`Passwords`]) or the organisation's directory.

use futures_util::future::BoxFuture;
use sesam_core::{User, Username};
use sesam_store::DirectoryUser;

use crate::password::Passwords;

/// A typed password: never empty (an empty simple bind is an unauthenticated bind, which
/// many directories answer with success), never shown by `Debug`.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// `None` for an empty password: it is refused before anything checks it.
    pub fn new(typed: String) -> Option<Password> {
        (!typed.is_empty()).then_some(Password(typed))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// One login attempt to judge.
#[derive(Clone, Copy, Debug)]
pub struct Claim<'a> {
    pub username: &'a Username,
    pub password: &'a Password,
    /// The local user of that name, when there is one.
    pub user: Option<&'a User>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The right password. From the directory: what it says of the user now.
    Proven(Option<DirectoryUser>),
    /// A wrong password, or no such user.
    Refused,
    /// The directory could not answer (down, too slow, refused the service account): the
    /// user can try again later; nothing was learnt about the password.
    Unavailable,
}

/// The port.
pub trait PasswordCheck: Send + Sync {
    fn check<'a>(&'a self, claim: Claim<'a>) -> BoxFuture<'a, anyhow::Result<Verdict>>;
}

/// Sesam's own hashes. An unknown user or one without a password takes the same time.
impl PasswordCheck for Passwords {
    fn check<'a>(&'a self, claim: Claim<'a>) -> BoxFuture<'a, anyhow::Result<Verdict>> {
        Box::pin(async move {
            let stored = claim.user.and_then(|u| u.password_hash.clone());
            let right = self
                .verify(claim.password.expose().to_owned(), stored)
                .await?;
            Ok(if right {
                Verdict::Proven(None)
            } else {
                Verdict::Refused
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_password_cannot_be_made_and_none_is_shown() {
        assert!(Password::new(String::new()).is_none());
        let p = Password::new("hunter2 hunter2".into()).unwrap();
        assert_eq!(p.expose(), "hunter2 hunter2");
        assert_eq!(format!("{p:?}"), "Password(***)");
    }
}
