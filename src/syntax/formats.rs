//! Lexicon string formats that are checked but not given a type of their own:
//! `cid` (the textual syntax; parsing a real CID is [`crate::data`]'s job) and `uri`.

use super::SyntaxError;

/// The lexicon `cid` string format: a multibase CIDv1 string. Like the reference
/// implementation this is a syntax check (characters and length), not a full decode,
/// and legacy CIDv0 (`Qm...`) is refused.
pub fn validate_cid_string(s: &str) -> Result<(), SyntaxError> {
    let err = |reason| Err(SyntaxError::new("CID", s, reason));
    if s.len() < 8 || s.len() > 256 {
        return err("must be 8 to 256 characters");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'=')
    {
        return err("has characters outside the multibase alphabets");
    }
    if s.starts_with("Qm") {
        return err("CIDv0 is not supported; use CIDv1");
    }
    Ok(())
}

/// The lexicon `uri` format: `scheme:rest` with no whitespace, at most 8 KiB.
pub fn validate_uri(s: &str) -> Result<(), SyntaxError> {
    let err = |reason| Err(SyntaxError::new("URI", s, reason));
    if s.len() > 8 * 1024 {
        return err("longer than 8 KiB");
    }
    let Some((scheme, rest)) = s.split_once(':') else {
        return err("needs a scheme, e.g. \"https:\"");
    };
    let mut scheme_bytes = scheme.bytes();
    let scheme_ok = scheme_bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme_bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return err("scheme must be a letter followed by letters, digits, '+', '-' or '.'");
    }
    if rest.is_empty() {
        return err("nothing after the scheme");
    }
    if s.chars().any(char::is_whitespace) {
        return err("may not contain whitespace");
    }
    Ok(())
}
