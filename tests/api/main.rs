//! latchkey's integration tests: one binary, every test through the public
//! interface (HTTP or the CLI), each on its own database, on SQLite and — when
//! `LATCHKEY_TEST_DATABASE_URL` is set — PostgreSQL.

// A test binary: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod browser;
mod helpers;
mod jwt;
mod oauth_support;
mod processes;
mod spa_support;
mod webauthn_soft;

mod abuse;
mod admin_create_user;
mod admin_scope;
mod admin_users;
mod browser_cookie;
mod browser_mfa;
mod browser_signin;
mod browser_spa;
mod cli;
mod client_audit;
mod cookie_mode;
mod cors;
mod db_roles;
mod deploy_files;
mod errors;
mod faults;
mod feed;
mod first_party;
mod health;
mod keys;
mod memory;
mod mfa;
mod nginx;
mod oauth;
mod oidc_client;
mod openapi;
mod operations;
mod pkce;
mod protection;
mod refresh;
mod refresh_context;
mod register_login;
mod replicas;
mod restart;
mod spa_example;
mod strict_input;
mod taking_access;
mod tasks_e2e;
mod tls;
mod token_attacks;
