//! Challenges: one login's request to the user's app, with its 2-digit code, deadline and
//! explicit states. Answering is a pure transition here; the store makes it atomic.

use std::fmt;
use std::str::FromStr;

use rand::{CryptoRng, Rng};

use crate::clock::UnixTime;

/// 10 to 99: always two digits, never a leading zero to misread.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TwoDigitCode(u8);

impl TwoDigitCode {
    pub fn random(rng: &mut (impl Rng + CryptoRng)) -> TwoDigitCode {
        TwoDigitCode(rng.gen_range(10..=99))
    }
    pub fn value(self) -> u8 {
        self.0
    }
    /// Compares without an early exit on the first differing digit.
    pub fn matches(self, typed: &str) -> bool {
        let ours = self.to_string();
        let typed = typed.trim().as_bytes();
        typed.len() == 2 && (ours.as_bytes()[0] ^ typed[0]) | (ours.as_bytes()[1] ^ typed[1]) == 0
    }
}

impl FromStr for TwoDigitCode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().parse::<u8>() {
            Ok(n) if (10..=99).contains(&n) && s.trim().len() == 2 => Ok(TwoDigitCode(n)),
            _ => Err(format!("{s:?} is not a code from 10 to 99")),
        }
    }
}

impl fmt::Display for TwoDigitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

// The code is a secret until the user types it: keep it out of debug output and logs.
impl fmt::Debug for TwoDigitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TwoDigitCode(**)")
    }
}

/// What the app is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengeKind {
    /// Passwordless: type the code shown in the browser.
    Code,
    /// After a password (step-up): type the code shown in the browser, as for `Code`. The
    /// name (stored as "approve") stays for the database and older apps; a plain approval
    /// without the number is refused, since a tired thumb approves a push an attacker sent.
    Approve,
}

impl ChallengeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Code => "code",
            ChallengeKind::Approve => "approve",
        }
    }
}

impl FromStr for ChallengeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "code" => Ok(ChallengeKind::Code),
            "approve" => Ok(ChallengeKind::Approve),
            other => Err(format!("unknown challenge kind {other:?}")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengeState {
    Pending,
    Approved,
    Rejected,
    WrongCode,
    Expired,
    Cancelled,
}

impl ChallengeState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeState::Pending => "pending",
            ChallengeState::Approved => "approved",
            ChallengeState::Rejected => "rejected",
            ChallengeState::WrongCode => "wrong_code",
            ChallengeState::Expired => "expired",
            ChallengeState::Cancelled => "cancelled",
        }
    }
}

impl FromStr for ChallengeState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => ChallengeState::Pending,
            "approved" => ChallengeState::Approved,
            "rejected" => ChallengeState::Rejected,
            "wrong_code" => ChallengeState::WrongCode,
            "expired" => ChallengeState::Expired,
            "cancelled" => ChallengeState::Cancelled,
            other => return Err(format!("unknown challenge state {other:?}")),
        })
    }
}

/// Where the login came from, shown in the app so the user can recognise (or not) it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChallengeContext {
    pub service: String,
    pub browser: Option<String>,
    pub os: Option<String>,
    pub client_ip: Option<String>,
    pub location: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub id: String,
    pub user_id: String,
    pub kind: ChallengeKind,
    pub code: TwoDigitCode,
    pub state: ChallengeState,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub context: ChallengeContext,
    /// Set when the user said "this was not me".
    pub fraud_reported: bool,
}

/// The app's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Code(String),
    /// A plain "yes" without the code. Never accepted: it stays a variant so that an old app
    /// sending it is refused by the rule below, not by each edge on its own.
    Approve,
    /// "Yes" after a scan of the browser's QR code. `scanned` says whether this device
    /// scanned this challenge's current code (the service looks that up); the scan proved
    /// the phone was in front of this screen, which is what the typed number proves.
    ConfirmScan {
        scanned: bool,
    },
    Deny,
    ReportFraud,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the challenge is no longer pending (it is {})", .0.as_str())]
    NotPending(ChallengeState),
    #[error("the challenge expired")]
    Expired,
    #[error("a challenge is approved only with the code shown in the browser")]
    CodeRequired,
    #[error("a confirmation approves only after this device scanned the browser's QR code")]
    ScanRequired,
}

/// The state an answer leads to. One attempt: a wrong code ends the challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub state: ChallengeState,
    pub fraud_reported: bool,
}

impl Challenge {
    pub fn is_expired(&self, now: UnixTime) -> bool {
        now >= self.expires_at
    }

    /// The state after `answer` at `now`, or why the answer is refused. A refused answer
    /// changes nothing: the challenge stays as it was.
    pub fn answer(&self, answer: &Answer, now: UnixTime) -> Result<Outcome, AnswerError> {
        let outcome = |state| {
            Ok(Outcome {
                state,
                fraud_reported: false,
            })
        };
        match answer {
            // Whatever the state, so an app that sends it always learns the same thing.
            Answer::Approve => Err(AnswerError::CodeRequired),
            // A scan stands in for the typed number only in a passwordless login; a step-up
            // keeps the number (docs/login-flow.md).
            Answer::ConfirmScan { .. } if self.kind != ChallengeKind::Code => {
                Err(AnswerError::CodeRequired)
            }
            Answer::ConfirmScan { scanned: false } => Err(AnswerError::ScanRequired),
            _ if self.state != ChallengeState::Pending => Err(AnswerError::NotPending(self.state)),
            _ if self.is_expired(now) => Err(AnswerError::Expired),
            // Number matching for every kind, step-up included: only the person in front of
            // the browser knows the number, so a push nobody asked for cannot be approved.
            Answer::Code(typed) if self.code.matches(typed) => outcome(ChallengeState::Approved),
            Answer::Code(_) => outcome(ChallengeState::WrongCode),
            Answer::ConfirmScan { scanned: true } => outcome(ChallengeState::Approved),
            Answer::Deny => outcome(ChallengeState::Rejected),
            Answer::ReportFraud => Ok(Outcome {
                state: ChallengeState::Rejected,
                fraud_reported: true,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(kind: ChallengeKind) -> Challenge {
        Challenge {
            id: "c1".into(),
            user_id: "u1".into(),
            kind,
            code: "42".parse().unwrap(),
            state: ChallengeState::Pending,
            created_at: UnixTime(1000),
            expires_at: UnixTime(1120),
            context: ChallengeContext::default(),
            fraud_reported: false,
        }
    }

    #[test]
    fn codes_are_two_digits_from_a_csprng() {
        let mut rng = rand::rngs::OsRng;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let c = TwoDigitCode::random(&mut rng);
            assert!((10..=99).contains(&c.value()));
            seen.insert(c.value());
        }
        assert!(seen.len() > 80, "the whole range is used: {}", seen.len());
        assert!("09".parse::<TwoDigitCode>().is_err());
        assert!("100".parse::<TwoDigitCode>().is_err());
        assert!("4x".parse::<TwoDigitCode>().is_err());
        assert_eq!(format!("{:?}", TwoDigitCode(42)), "TwoDigitCode(**)");
    }

    #[test]
    fn right_code_approves_wrong_code_ends_it() {
        let c = challenge(ChallengeKind::Code);
        assert_eq!(
            c.answer(&Answer::Code("42".into()), UnixTime(1010))
                .unwrap()
                .state,
            ChallengeState::Approved
        );
        assert_eq!(
            c.answer(&Answer::Code("24".into()), UnixTime(1010))
                .unwrap()
                .state,
            ChallengeState::WrongCode
        );
        assert_eq!(
            c.answer(&Answer::Code("4".into()), UnixTime(1010))
                .unwrap()
                .state,
            ChallengeState::WrongCode
        );
        let ended = Challenge {
            state: ChallengeState::WrongCode,
            ..c.clone()
        };
        assert_eq!(
            ended.answer(&Answer::Code("42".into()), UnixTime(1011)),
            Err(AnswerError::NotPending(ChallengeState::WrongCode)),
            "never a second attempt"
        );
    }

    #[test]
    fn deadline_deny_fraud_and_kinds() {
        let c = challenge(ChallengeKind::Code);
        assert_eq!(
            c.answer(&Answer::Code("42".into()), UnixTime(1120)),
            Err(AnswerError::Expired)
        );
        assert_eq!(
            c.answer(&Answer::Deny, UnixTime(1010)).unwrap().state,
            ChallengeState::Rejected
        );
        let fraud = c.answer(&Answer::ReportFraud, UnixTime(1010)).unwrap();
        assert!(fraud.fraud_reported && fraud.state == ChallengeState::Rejected);
        let approval = challenge(ChallengeKind::Approve);
        assert_eq!(
            approval
                .answer(&Answer::Deny, UnixTime(1010))
                .unwrap()
                .state,
            ChallengeState::Rejected
        );
    }

    #[test]
    fn a_step_up_is_approved_only_by_the_right_code() {
        let step_up = challenge(ChallengeKind::Approve);
        assert_eq!(
            step_up.answer(&Answer::Code("42".into()), UnixTime(1010)),
            Ok(Outcome {
                state: ChallengeState::Approved,
                fraud_reported: false
            })
        );
        assert_eq!(
            step_up
                .answer(&Answer::Code("24".into()), UnixTime(1010))
                .unwrap()
                .state,
            ChallengeState::WrongCode,
            "one attempt, as for a passwordless login"
        );
    }

    #[test]
    fn a_plain_approval_is_refused_for_every_kind_and_state() {
        for kind in [ChallengeKind::Code, ChallengeKind::Approve] {
            for state in [
                ChallengeState::Pending,
                ChallengeState::Approved,
                ChallengeState::Rejected,
                ChallengeState::WrongCode,
                ChallengeState::Expired,
                ChallengeState::Cancelled,
            ] {
                let c = Challenge {
                    state,
                    ..challenge(kind)
                };
                for now in [UnixTime(1010), UnixTime(1120)] {
                    assert_eq!(
                        c.answer(&Answer::Approve, now),
                        Err(AnswerError::CodeRequired),
                        "{kind:?} {state:?} at {now:?}"
                    );
                }
            }
        }
        // Refused is not spent: the code still approves afterwards.
        let c = challenge(ChallengeKind::Approve);
        assert!(c.answer(&Answer::Approve, UnixTime(1010)).is_err());
        assert_eq!(
            c.answer(&Answer::Code("42".into()), UnixTime(1011))
                .unwrap()
                .state,
            ChallengeState::Approved
        );
    }

    #[test]
    fn a_step_up_is_never_approved_by_a_scan() {
        let c = challenge(ChallengeKind::Approve);
        for scanned in [true, false] {
            assert_eq!(
                c.answer(&Answer::ConfirmScan { scanned }, UnixTime(1010)),
                Err(AnswerError::CodeRequired),
                "scanned: {scanned}"
            );
        }
    }

    #[test]
    fn a_confirmation_approves_only_after_this_devices_scan() {
        let c = challenge(ChallengeKind::Code);
        for state in [
            ChallengeState::Pending,
            ChallengeState::Approved,
            ChallengeState::Cancelled,
        ] {
            let c = Challenge { state, ..c.clone() };
            assert_eq!(
                c.answer(&Answer::ConfirmScan { scanned: false }, UnixTime(1010)),
                Err(AnswerError::ScanRequired),
                "{state:?}"
            );
        }
        assert_eq!(
            c.answer(&Answer::ConfirmScan { scanned: true }, UnixTime(1010))
                .unwrap()
                .state,
            ChallengeState::Approved
        );
        assert_eq!(
            c.answer(&Answer::ConfirmScan { scanned: true }, UnixTime(1120)),
            Err(AnswerError::Expired),
            "the scan does not outlive the challenge"
        );
        let ended = Challenge {
            state: ChallengeState::Approved,
            ..c
        };
        assert_eq!(
            ended.answer(&Answer::ConfirmScan { scanned: true }, UnixTime(1011)),
            Err(AnswerError::NotPending(ChallengeState::Approved)),
            "one approval"
        );
    }
}
