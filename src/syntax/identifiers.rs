//! DIDs, handles, NSIDs, record keys and at-identifiers (a DID or a handle).

use super::{string_newtype, SyntaxError};

/// A decentralized identifier, e.g. `did:plc:ewvi7nxzyoun6zhxrhs64oiz` (`specs/did`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Did(String);
string_newtype!(Did, validate_did);

impl Did {
    /// The method name: `plc` for `did:plc:...`.
    pub fn method(&self) -> &str {
        self.0[4..].split(':').next().unwrap_or_default()
    }
}

fn validate_did(s: &str) -> Result<(), SyntaxError> {
    let err = |reason| Err(SyntaxError::new("DID", s, reason));
    if s.len() > 2048 {
        return err("longer than 2048 characters");
    }
    let Some(rest) = s.strip_prefix("did:") else {
        return err("must start with \"did:\"");
    };
    let Some((method, id)) = rest.split_once(':') else {
        return err("needs a method and an identifier");
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_lowercase()) {
        return err("method must be lowercase letters");
    }
    if id.is_empty() {
        return err("identifier is empty");
    }
    let allowed =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'%' | b'-');
    if !id.bytes().all(allowed) {
        return err("identifier has a character outside [A-Za-z0-9._:%-]");
    }
    if id.ends_with(':') || id.ends_with('%') {
        return err("identifier may not end with ':' or '%'");
    }
    Ok(())
}

/// A handle: a DNS name such as `alice.example.com` (`specs/handle`).
/// Stored as given; compare handles with [`Handle::normalized`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Handle(String);
string_newtype!(Handle, validate_handle);

impl Handle {
    /// Handles are case-insensitive; the canonical form is lowercase.
    pub fn normalized(&self) -> Handle {
        Handle(self.0.to_ascii_lowercase())
    }
}

/// Top-level domains that may never be used for a handle (`specs/handle#additional-non-syntax-restrictions`).
/// Kept as syntax-level knowledge; the server refuses them at registration.
pub const DISALLOWED_HANDLE_TLDS: &[&str] = &[
    ".alt",
    ".arpa",
    ".example",
    ".internal",
    ".invalid",
    ".local",
    ".localhost",
    ".onion",
];

fn validate_handle(s: &str) -> Result<(), SyntaxError> {
    let err = |reason| Err(SyntaxError::new("handle", s, reason));
    if s.len() > 253 {
        return err("longer than 253 characters");
    }
    let labels: Vec<&str> = s.split('.').collect();
    if labels.len() < 2 {
        return err("needs at least two labels separated by '.'");
    }
    for label in &labels {
        if label.is_empty() || label.len() > 63 {
            return err("each label must be 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return err("labels may only hold ASCII letters, digits and '-'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return err("labels may not start or end with '-'");
        }
    }
    if !labels[labels.len() - 1].as_bytes()[0].is_ascii_alphabetic() {
        return err("the top-level domain must start with a letter");
    }
    Ok(())
}

/// A namespaced identifier for a lexicon, e.g. `app.bsky.feed.post` (`specs/nsid`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nsid(String);
string_newtype!(Nsid, validate_nsid);

impl Nsid {
    /// The last segment: `post` in `app.bsky.feed.post`.
    pub fn name(&self) -> &str {
        self.0.rsplit('.').next().unwrap_or_default()
    }
}

fn validate_nsid(s: &str) -> Result<(), SyntaxError> {
    let err = |reason| Err(SyntaxError::new("NSID", s, reason));
    if s.len() > 317 {
        return err("longer than 317 characters");
    }
    let segments: Vec<&str> = s.split('.').collect();
    if segments.len() < 3 {
        return err("needs at least three segments");
    }
    let (name, authority) = segments.split_last().expect("at least three segments");
    for label in authority {
        if label.is_empty() || label.len() > 63 {
            return err("each domain segment must be 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return err("domain segments may only hold ASCII letters, digits and '-'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return err("domain segments may not start or end with '-'");
        }
    }
    if !authority[0].as_bytes()[0].is_ascii_alphabetic() {
        return err("the first segment (top-level domain) must start with a letter");
    }
    if name.is_empty() || name.len() > 63 {
        return err("the name segment must be 1 to 63 characters");
    }
    if !name.as_bytes()[0].is_ascii_alphabetic() || !name.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return err("the name segment must be letters and digits, starting with a letter");
    }
    Ok(())
}

/// A record key: the last part of a record's path in a repo (`specs/record-key`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey(String);
string_newtype!(RecordKey, validate_record_key);

fn validate_record_key(s: &str) -> Result<(), SyntaxError> {
    let err = |reason| Err(SyntaxError::new("record key", s, reason));
    if s.is_empty() || s.len() > 512 {
        return err("must be 1 to 512 characters");
    }
    if s == "." || s == ".." {
        return err("'.' and '..' are not allowed");
    }
    let allowed =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'~');
    if !s.bytes().all(allowed) {
        return err("may only hold ASCII letters, digits and . - _ : ~");
    }
    Ok(())
}

/// Either a DID or a handle, as accepted by `repo` parameters (`specs/lexicon#at-identifier`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AtIdentifier {
    Did(Did),
    Handle(Handle),
}

impl AtIdentifier {
    pub fn new(s: &str) -> Result<Self, SyntaxError> {
        if s.starts_with("did:") {
            Did::new(s).map(AtIdentifier::Did)
        } else {
            Handle::new(s)
                .map(AtIdentifier::Handle)
                .map_err(|_| SyntaxError::new("at-identifier", s, "neither a DID nor a handle"))
        }
    }
    pub fn as_str(&self) -> &str {
        match self {
            AtIdentifier::Did(d) => d.as_str(),
            AtIdentifier::Handle(h) => h.as_str(),
        }
    }
}

impl std::str::FromStr for AtIdentifier {
    type Err = SyntaxError;
    fn from_str(s: &str) -> Result<Self, SyntaxError> {
        AtIdentifier::new(s)
    }
}

impl std::fmt::Display for AtIdentifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
