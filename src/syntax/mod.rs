//! Syntax of atproto identifiers and string formats.
//!
//! Every type here is a validated newtype around `String`: holding a [`Did`] means the
//! text was checked against the atproto spec (`specs/did`, `specs/handle`, `specs/nsid`,
//! `specs/at-uri-scheme`, `specs/record-key`, `specs/tid`, `specs/lexicon#string-formats`).
//! Validation is strict and allocation-light, because every XRPC request and every record
//! passes through it. The public interop vectors (`tests/fixtures/atproto-interop-tests/syntax`)
//! are the judge: see `tests/it/syntax_vectors.rs`.

mod aturi;
mod datetime;
mod formats;
mod identifiers;
mod language;
mod tid;

pub use aturi::AtUri;
pub use datetime::Datetime;
pub use formats::{validate_cid_string, validate_uri};
pub use identifiers::{AtIdentifier, Did, Handle, Nsid, RecordKey, DISALLOWED_HANDLE_TLDS};
pub use language::Language;
pub use tid::{Tid, TidGenerator};

/// Why a string is not a valid identifier of the named kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {input:?}: {reason}")]
pub struct SyntaxError {
    pub kind: &'static str,
    pub input: String,
    pub reason: &'static str,
}

impl SyntaxError {
    pub(crate) fn new(kind: &'static str, input: &str, reason: &'static str) -> Self {
        // Inputs can be huge (an attacker's 1 MB "handle"); keep errors readable.
        let mut input: String = input.chars().take(120).collect();
        if input.len() >= 120 {
            input.push('…');
        }
        SyntaxError {
            kind,
            input,
            reason,
        }
    }
}

/// Implements the shared plumbing of a validated string newtype:
/// `new`, `as_str`, `Display`, `FromStr`, `AsRef<str>` and serde as a plain string
/// (deserialisation validates).
macro_rules! string_newtype {
    ($ty:ident, $validate:path) => {
        impl $ty {
            /// Validates `s` and wraps it.
            pub fn new(s: impl Into<String>) -> Result<Self, $crate::syntax::SyntaxError> {
                let s = s.into();
                $validate(&s)?;
                Ok($ty(s))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_string(self) -> String {
                self.0
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::str::FromStr for $ty {
            type Err = $crate::syntax::SyntaxError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use string_newtype;
