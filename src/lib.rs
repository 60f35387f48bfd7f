//! latchkey: a standalone identity provider.
//!
//! It signs short-lived JWT access tokens with asymmetric keys and publishes
//! the public keys as a JWKS, so downstream services verify tokens offline.
//! What cannot be offline (users, refresh-token families, clients, keys,
//! bans, revocations) lives in PostgreSQL or SQLite.
//!
//! Read top-down: the edge calls concepts, concepts call storage.

// ---- edge ----
/// Command line: `serve`, `migrate`, `openapi`, `users`, `keys`.
pub mod cli;
/// Settings from `LATCHKEY_*` variables and an optional TOML file.
pub mod config;
/// Routes, OpenAPI document, error mapping, middleware.
pub mod http;
/// The periodic purge of dead rows.
pub mod purge;
/// Build the application, bind, serve, shut down gracefully.
pub mod startup;
/// Shared request state.
pub mod state;
/// Logging setup and `spawn_blocking` with span propagation.
pub mod telemetry;
/// Built-in TLS: certificate checks and reloads.
pub mod tls;

// ---- domain ----
/// Administrative actions spanning several concepts.
pub mod admin;
/// Security event log.
pub mod audit;
/// Login, refresh, logout and bearer authentication flows.
pub mod authn;
/// OAuth clients: registration, secrets, redirect URIs.
pub mod clients;
/// Signing keys: lifecycle, rotation, sealing, JWKS.
pub mod keys;
/// Clients and the deny list in each replica's memory, kept current.
pub mod memory;
/// Prometheus metrics.
pub mod metrics;
/// Second factors: TOTP, passkeys, recovery codes, and what a sign-in proved (`amr`).
pub mod mfa;
/// OAuth 2.0 / OpenID Connect protocol: grants, codes, PKCE, revocation, introspection.
pub mod oauth;
/// argon2id hashing behind a bounded semaphore.
pub mod passwords;
/// Brute-force protection: per-address limits, lockouts, slowdowns.
pub mod ratelimit;
/// Refresh-token families: rotation, reuse detection, grace window.
pub mod refresh;
/// The deny list of revoked tokens and subjects.
pub mod revocation;
/// OAuth scope sets.
pub mod scope;
/// JWT access and ID tokens: issue and verify.
pub mod tokens;
/// Accounts, usernames, roles.
pub mod users;

// ---- foundations ----
/// Time as a parameter.
pub mod clock;
/// Random bytes, hashes, MACs, constant-time comparison.
pub mod crypto;
/// Shared error types.
pub mod error;
/// Private directories and files (`0700`, `0600`).
pub mod files;
/// Every domain error classified once, for the JSON API, OAuth and HTML edges.
pub mod problem;
/// Portable SQL helpers.
pub mod sql;

// ---- storage ----
/// sea-orm entities, one per table.
pub mod entities;
