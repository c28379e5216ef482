//! atbox: a personal data server for the AT Protocol, built to run as a home appliance.
//!
//! The crate is a library with a thin binary (`src/main.rs` → [`cli::main`]) on top.
//! Modules, from the bottom up (ARCHITECTURE.md says what may depend on what, and a
//! test keeps that true):
//!
//! - [`syntax`]: identifiers and string formats (DID, handle, NSID, AT-URI, TID, ...).
//! - [`crypto`]: k256/p256 keys, signatures, `did:key`.
//! - [`device`]: the appliance's hardware face: status snapshots, the OLED, mDNS, `/sys`.
//! - [`data`]: the atproto data model, DAG-CBOR, JSON and CIDs.
//! - [`repo`]: the repository core — MST, signed commits, CAR — over a block-store trait.
//! - [`lexicon`]: the embedded official lexicons and record validation.
//! - [`storage`]: SQLite, the repo log, the single writer thread, blob and certificate files.
//! - [`error`]: the XRPC error contract every upper layer returns.
//! - [`http`]: request helpers (host, client address, query parameters).
//! - [`config`]: `atbox.toml`, `ATBOX_*` variables and the setup page's settings.
//! - [`identity`]: PLC, DID documents, handle and DID resolution.
//! - [`auth`]: passwords, session tokens, credentials, service JWTs, the pairing code.
//! - [`pds`]: what each operation does, independent of HTTP; the shared `AppState`.
//! - [`sync`]: the firehose and the relays that follow it.
//! - [`tls`]: HTTPS with ACME or certificate files.
//! - [`setup`]: the LAN setup page.
//! - [`xrpc`]: the XRPC method table, its checks, handlers and proxying.
//! - [`server`]: `atbox serve`: every route, the listeners and background tasks.
//! - [`bench`](mod@bench): `atbox bench`.
//! - [`cli`]: the `atbox` command line.

pub mod auth;
pub mod backup;
pub mod bench;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod data;
pub mod device;
pub mod error;
pub mod http;
pub mod identity;
pub mod lexicon;
pub mod oauth;
pub mod pds;
pub mod repo;
pub mod server;
pub mod setup;
pub mod storage;
pub mod sync;
pub mod syntax;
pub mod tls;
pub mod xrpc;

#[doc(hidden)]
pub mod fuzz_targets;

#[cfg(test)]
mod architecture_tests;
