//! The lexicon `language` format: a BCP 47 language tag (`specs/lexicon#language`),
//! checked for syntax and for the RFC 5646 rule that variants and extension
//! singletons are not repeated.

use super::{string_newtype, SyntaxError};
use regex::Regex;
use std::sync::LazyLock;

/// A BCP 47 language tag such as `pt-BR` or `zh-Hant`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Language(String);
string_newtype!(Language, validate_language);

static LANGUAGE: LazyLock<Regex> = LazyLock::new(|| {
    let grandfathered = "en-GB-oed|i-ami|i-bnn|i-default|i-enochian|i-hak|i-klingon|i-lux|i-mingo|\
        i-navajo|i-pwn|i-tao|i-tay|i-tsu|sgn-BE-FR|sgn-BE-NL|sgn-CH-DE|art-lojban|cel-gaulish|\
        no-bok|no-nyn|zh-guoyu|zh-hakka|zh-min|zh-min-nan|zh-xiang";
    // The primary language subtag is lowercase, as every tag atproto clients send is.
    let langtag = concat!(
        r"(?:[a-z]{2,3}(?:-[A-Za-z]{3}){0,3}|[a-z]{5,8})",
        r"(?:-[A-Za-z]{4})?",
        r"(?:-(?:[A-Za-z]{2}|[0-9]{3}))?",
        r"(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*",
        r"(?:-[0-9A-WY-Za-wy-z](?:-[A-Za-z0-9]{2,8})+)*",
        r"(?:-[xX](?:-[A-Za-z0-9]{1,8})+)?",
    );
    let private = r"[xX](?:-[A-Za-z0-9]{1,8})+";
    Regex::new(&format!("^(?:{grandfathered}|{langtag}|{private})$"))
        .expect("language regex compiles")
});

fn validate_language(s: &str) -> Result<(), SyntaxError> {
    let err = |reason| Err(SyntaxError::new("language tag", s, reason));
    if s.len() > 128 {
        return err("longer than 128 characters");
    }
    if !LANGUAGE.is_match(s) {
        return err("not a BCP 47 language tag");
    }
    // RFC 5646 §2.2.5/§2.2.6: no repeated variant, no repeated extension singleton
    // (case-insensitively); private use after `x` is free-form.
    let mut variants: Vec<String> = Vec::new();
    let mut singletons: Vec<String> = Vec::new();
    for (i, subtag) in s.split('-').enumerate().skip(1) {
        let subtag = subtag.to_ascii_lowercase();
        if subtag == "x" {
            break;
        }
        if subtag.len() == 1 {
            if singletons.contains(&subtag) {
                return err("an extension singleton is repeated");
            }
            singletons.push(subtag);
        } else if singletons.is_empty() && i > 0 && is_variant(&subtag) {
            if variants.contains(&subtag) {
                return err("a variant subtag is repeated");
            }
            variants.push(subtag);
        }
    }
    Ok(())
}

fn is_variant(subtag: &str) -> bool {
    (5..=8).contains(&subtag.len()) || (subtag.len() == 4 && subtag.as_bytes()[0].is_ascii_digit())
}
