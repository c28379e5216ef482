//! Identity: did:plc operations, DID documents, and resolving handles and DIDs.
//!
//! Everything that talks to the outside world about identity is here; the rest of
//! atbox sees a [`Resolver`] and plain [`DidDocument`]s.

pub mod did_doc;
pub mod outbound;
pub mod plc;
pub mod resolve;

pub use did_doc::DidDocument;
pub use outbound::Outbound;
pub use resolve::Resolver;

/// Why an identity could not be created, read or resolved.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IdentityError {
    #[error("PLC directory: {0}")]
    Plc(String),
    #[error("could not resolve {0}: {1}")]
    Unresolved(String, String),
    #[error("invalid DID document for {0}: {1}")]
    BadDocument(String, String),
}
