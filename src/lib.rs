//! atbox: a personal data server for the AT Protocol, built to run as a home appliance.
//!
//! The crate is a library with a thin binary (`src/main.rs`) on top. Modules, from the
//! bottom up (see ARCHITECTURE.md for what may depend on what):
//!
//! - [`syntax`]: identifiers and string formats (DID, handle, NSID, AT-URI, TID, ...).
//! - [`data`]: the atproto data model, DAG-CBOR, JSON and CIDs.
//! - [`crypto`]: k256/p256 keys, signatures, `did:key`.
//! - [`repo`]: the repository core — MST, signed commits, CAR — over a block-store trait.
//! - [`cli`]: the `atbox` command line.

pub mod auth;
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
