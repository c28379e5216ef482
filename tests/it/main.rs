//! atbox's integration tests, in one binary (as ripgrep's are): one link step on a
//! 2-core builder instead of one per file, and one `common` shared by all.
//!
//! Where a test belongs (see ARCHITECTURE.md, "Tests"):
//! - a unit test in `src/` when it checks one module's logic;
//! - here, in-process (the library's `AppState` on a temp directory, or the whole
//!   router served in the test's runtime: `common::inproc`) when it checks behaviour;
//! - here, against a real `atbox serve` process only when the point is the process or
//!   a real peer: crash safety, the official clients, a browser, ACME, mDNS, the CLI.

mod common;

// The interop vectors (data-driven; no server).
mod crypto_vectors;
mod data_model_vectors;
mod lexicon_vectors;
mod mst_vectors;
mod syntax_vectors;
mod vectors_copy;

// The repository core and parsers, in-process.
mod mst_properties;
mod parser_robustness;
mod reference_interop;

// Storage and the pds boundary, in-process.
mod blob_gc;
mod storage_log;

// A real server over HTTP.
mod accounts_http;
mod firehose;
mod handles_and_legacy_sync;
mod server_http;

// The security review's findings, each replayed (named after its finding).
mod security;

// What the Bluesky app and its services need (issue 15).
mod app_compat;
mod email_codes;

// OAuth: the official client through the pages, and every refusal; the account page
// (issue 14).
mod account_page;
mod oauth;
mod oauth_clients;

// Backups that restore, through a directory and S3 (issue 16).
mod backup;

// A real server and real peers: official clients, relays, AppViews, a second box.
mod federation;
mod firehose_relay;
mod migration;
mod official_clients;

// The appliance: processes, hardware stand-ins, the network, the browser.
mod acme_pebble;
mod crash_safety;
mod display;
mod doctor;
mod export_memory;
mod firstboot;
mod mdns_netns;
mod setup_page;
mod tls_files;
