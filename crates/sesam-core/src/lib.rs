//! Sesam's domain: users, devices, settings, the login decision and assurance levels.
//! Pure code: the clock and randomness come in from outside, nothing here does I/O.
#![forbid(unsafe_code)]

pub mod assurance;
pub mod challenge;
pub mod clock;
pub mod device;
pub mod flow;
pub mod login;
pub mod preview;
pub mod scan;
pub mod settings;
pub mod totp;
pub mod user;

pub use assurance::{AssuranceLevel, Factor};
pub use challenge::{
    Answer, AnswerError, Challenge, ChallengeContext, ChallengeKind, ChallengeState, Outcome,
    TwoDigitCode,
};
pub use clock::{Clock, ManualClock, SystemClock, UnixTime};
pub use device::{Device, DeviceStatus, Ineligibility, Platform};
pub use flow::{
    may_enrol, may_remove_factor, second_factor_order, ChallengePurpose, EnrolDecision, Login,
    LoginFlow, ProvenFactor, SecondFactor, ServiceRequest,
};
pub use login::{choose_login_branch, LoginBranch};
pub use preview::{preview, Blocker, Preview};
pub use scan::{PayloadError, ScanPayload, ScanToken};
pub use settings::AppVersion;
pub use settings::{PasswordlessMode, Settings, SettingsError};
pub use user::{is_hidden_char, User, UserId, UserStatus, Username, UsernameError};
