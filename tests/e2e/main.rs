//! Sesam's end-to-end suite: one test binary (see STYLE.md), a module per area. Every test
//! that touches a database runs against SQLite and, when SESAM_TEST_DATABASE_URL is set,
//! against PostgreSQL too.

mod harness;

mod admin;
mod app_api;
mod branding;
mod browser;
mod cli;
mod directory;
mod edge;
mod failover;
mod flow;
mod login;
mod metrics;
mod oidc;
mod openapi;
mod pages;
mod passkeys;
mod passwordless;
mod pushes;
mod qr;
mod saml;
mod scim;
mod store;
mod totp;
mod upstream;
