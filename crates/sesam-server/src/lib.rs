//! Sesam's server: the axum application, its configuration and the command line.
//! Handlers stay thin; decisions live in sesam-core, data in sesam-store.
#![forbid(unsafe_code)]

pub mod activation;
pub mod api;
pub mod applinks;
pub mod body;
pub mod challenges;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod directory;
pub mod i18n;
pub mod metrics;
pub mod oidc;
pub mod outbound;
pub mod passkey;
pub mod password;
pub mod push;
pub mod saml;
pub mod serve;
pub mod service;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod totp;
pub mod upstream;
pub mod web;

pub use config::Config;
pub use startup::{start, RunningServer};
