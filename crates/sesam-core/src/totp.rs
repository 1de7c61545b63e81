//! Time-based one-time passwords (RFC 6238: HMAC-SHA1, 30-second steps, 6 digits), the
//! code display as a second factor. Pure: the time and the last used step come in.

use std::fmt;

use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use crate::clock::UnixTime;

/// Seconds per step (RFC 6238's default; what every authenticator app assumes).
pub const STEP_SECONDS: i64 = 30;
/// Digits in a code.
pub const DIGITS: usize = 6;
/// Steps accepted either side of now, for clocks that drift and users who type slowly.
pub const SKEW_STEPS: i64 = 1;
/// Bytes of a new secret (160 bits, RFC 4226's recommendation for HMAC-SHA1).
pub const SECRET_BYTES: usize = 20;

/// A TOTP secret. Its `Debug` does not show the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

impl TotpSecret {
    /// A secret of these bytes (from a CSPRNG, or opened from storage).
    pub fn from_bytes(bytes: Vec<u8>) -> TotpSecret {
        TotpSecret(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// As authenticator apps take it: base32 without padding (`JBSWY3DP…`).
    pub fn to_base32(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.0)
    }

    /// A base32 secret as people type or scripts hold it: case, spaces and padding do not
    /// matter.
    pub fn from_base32(text: &str) -> Option<TotpSecret> {
        let cleaned: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '=')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        data_encoding::BASE32_NOPAD
            .decode(cleaned.as_bytes())
            .ok()
            .filter(|b| !b.is_empty())
            .map(TotpSecret)
    }

    /// The code of `step` (HOTP of the step counter, RFC 4226 dynamic truncation).
    pub fn code_at_step(&self, step: i64) -> TotpCode {
        let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&self.0) else {
            // HMAC takes keys of any length; this branch is unreachable in practice.
            return TotpCode([b'0'; DIGITS]);
        };
        mac.update(&step.to_be_bytes());
        let digest = mac.finalize().into_bytes();
        let offset = usize::from(digest[digest.len() - 1] & 0x0f);
        let value = u32::from_be_bytes([
            digest[offset] & 0x7f,
            digest[offset + 1],
            digest[offset + 2],
            digest[offset + 3],
        ]) % 10u32.pow(DIGITS as u32);
        let text = format!("{value:0width$}", width = DIGITS);
        let mut digits = [b'0'; DIGITS];
        digits.copy_from_slice(text.as_bytes());
        TotpCode(digits)
    }

    /// The code an authenticator shows at `now`.
    pub fn code_at(&self, now: UnixTime) -> TotpCode {
        self.code_at_step(step_of(now))
    }

    /// Checks a typed code at `now` against the steps within the skew. `last_step` is the
    /// step of the last code accepted for this secret: a code of that step or an earlier
    /// one is a replay. Every candidate step is compared, in constant time.
    pub fn verify(&self, code: &TotpCode, now: UnixTime, last_step: Option<i64>) -> Verdict {
        let current = step_of(now);
        let mut matched: Option<i64> = None;
        for step in current - SKEW_STEPS..=current + SKEW_STEPS {
            let equal: bool = self.code_at_step(step).0.ct_eq(&code.0).into();
            if equal && matched.is_none() {
                matched = Some(step);
            }
        }
        match matched {
            None => Verdict::Wrong,
            Some(step) if last_step.is_some_and(|last| step <= last) => Verdict::Replayed,
            Some(step) => Verdict::Accepted { step },
        }
    }

    /// The `otpauth://` URI authenticator apps read from the QR code (Key Uri Format).
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        let issuer_enc = uri_component(issuer);
        format!(
            "otpauth://totp/{issuer_enc}:{}?secret={}&issuer={issuer_enc}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
            uri_component(account),
            self.to_base32()
        )
    }
}

/// The step `now` falls in.
pub fn step_of(now: UnixTime) -> i64 {
    now.0.div_euclid(STEP_SECONDS)
}

fn uri_component(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Six digits, as typed: the only shape of code the login and the enrolment accept.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TotpCode([u8; DIGITS]);

impl fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpCode(..)")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TotpCodeError {
    #[error("the code is empty")]
    Empty,
    #[error("the code has characters other than digits")]
    NotDigits,
    #[error("the code does not have 6 digits")]
    WrongLength,
}

impl TotpCode {
    /// A code as typed: spaces (apps show `123 456`) are ignored, anything else but six
    /// digits is refused.
    pub fn parse(typed: &str) -> Result<TotpCode, TotpCodeError> {
        let mut digits = [b'0'; DIGITS];
        let mut n = 0;
        for c in typed.chars().filter(|c| !c.is_whitespace()) {
            if !c.is_ascii_digit() {
                return Err(TotpCodeError::NotDigits);
            }
            if n == DIGITS {
                return Err(TotpCodeError::WrongLength);
            }
            digits[n] = c as u8;
            n += 1;
        }
        match n {
            0 => Err(TotpCodeError::Empty),
            DIGITS => Ok(TotpCode(digits)),
            _ => Err(TotpCodeError::WrongLength),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// What a typed code is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Right, in `step`; record the step so it cannot be used again.
    Accepted {
        step: i64,
    },
    /// Right, but its step (or a later one) was used already.
    Replayed,
    Wrong,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B's SHA-1 secret.
    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890".to_vec())
    }

    #[test]
    fn rfc_6238_vectors_in_six_digits() {
        // Appendix B lists 8 digits; the last 6 of each are the 6-digit codes.
        for (t, eight) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(
                rfc_secret().code_at(UnixTime(t)).as_str(),
                &eight[2..],
                "{t}"
            );
        }
    }

    #[test]
    fn one_step_of_skew_either_side_and_no_more() {
        let s = rfc_secret();
        let now = UnixTime(1_000_000_020);
        let step = step_of(now);
        for (offset, ok) in [(-2, false), (-1, true), (0, true), (1, true), (2, false)] {
            let code = s.code_at_step(step + offset);
            let verdict = s.verify(&code, now, None);
            assert_eq!(
                verdict
                    == (Verdict::Accepted {
                        step: step + offset
                    }),
                ok,
                "{offset}: {verdict:?}"
            );
        }
    }

    #[test]
    fn a_used_step_and_earlier_ones_are_replays() {
        let s = rfc_secret();
        let now = UnixTime(1_000_000_020);
        let step = step_of(now);
        let code = s.code_at(now);
        assert_eq!(
            s.verify(&code, now, Some(step - 1)),
            Verdict::Accepted { step }
        );
        assert_eq!(s.verify(&code, now, Some(step)), Verdict::Replayed);
        // The previous step's code after the current one was used: also refused.
        let earlier = s.code_at_step(step - 1);
        assert_eq!(s.verify(&earlier, now, Some(step)), Verdict::Replayed);
        // The next step's code is still good after the current one.
        let next = s.code_at_step(step + 1);
        assert_eq!(
            s.verify(&next, now, Some(step)),
            Verdict::Accepted { step: step + 1 }
        );
    }

    #[test]
    fn a_wrong_code_is_wrong() {
        let s = rfc_secret();
        let now = UnixTime(59);
        let right = s.code_at(now);
        let wrong = TotpCode::parse(if right.as_str() == "000000" {
            "111111"
        } else {
            "000000"
        })
        .unwrap();
        assert_eq!(s.verify(&wrong, now, None), Verdict::Wrong);
    }

    #[test]
    fn only_six_digits_parse() {
        assert_eq!(TotpCode::parse("123456").unwrap().as_str(), "123456");
        assert_eq!(TotpCode::parse(" 123 456 ").unwrap().as_str(), "123456");
        assert_eq!(TotpCode::parse(""), Err(TotpCodeError::Empty));
        assert_eq!(TotpCode::parse("   "), Err(TotpCodeError::Empty));
        assert_eq!(TotpCode::parse("12345"), Err(TotpCodeError::WrongLength));
        assert_eq!(TotpCode::parse("1234567"), Err(TotpCodeError::WrongLength));
        assert_eq!(
            TotpCode::parse(&"1".repeat(10_000)),
            Err(TotpCodeError::WrongLength)
        );
        assert_eq!(TotpCode::parse("12345a"), Err(TotpCodeError::NotDigits));
        assert_eq!(TotpCode::parse("١٢٣٤٥٦"), Err(TotpCodeError::NotDigits));
        assert_eq!(TotpCode::parse("12-456"), Err(TotpCodeError::NotDigits));
    }

    #[test]
    fn base32_round_trips_and_forgives_typing() {
        let s = rfc_secret();
        let text = s.to_base32();
        assert_eq!(text, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            TotpSecret::from_base32(&text.to_lowercase()),
            Some(s.clone())
        );
        assert_eq!(
            TotpSecret::from_base32("GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ"),
            Some(s)
        );
        assert_eq!(TotpSecret::from_base32("not base32!"), None);
        assert_eq!(TotpSecret::from_base32(""), None);
        assert_eq!(format!("{:?}", rfc_secret()), "TotpSecret(..)");
    }

    #[test]
    fn the_otpauth_uri_names_issuer_account_and_parameters() {
        let uri = rfc_secret().otpauth_uri("Sesam Kommune", "anna@x");
        assert_eq!(
            uri,
            "otpauth://totp/Sesam%20Kommune:anna%40x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Sesam%20Kommune&algorithm=SHA1&digits=6&period=30"
        );
    }
}
