//! The lexicon `language` format: a BCP 47 language tag (`specs/lexicon#language`),
//! checked for syntax and for the RFC 5646 rule that variants and extension
//! singletons are not repeated.

use super::{string_newtype, SyntaxError};

/// A BCP 47 language tag such as `pt-BR` or `zh-Hant`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Language(String);
string_newtype!(Language, validate_language);

/// Tags RFC 5646 keeps whole for compatibility (its "grandfathered" list).
const GRANDFATHERED: &[&str] = &[
    "en-GB-oed",
    "i-ami",
    "i-bnn",
    "i-default",
    "i-enochian",
    "i-hak",
    "i-klingon",
    "i-lux",
    "i-mingo",
    "i-navajo",
    "i-pwn",
    "i-tao",
    "i-tay",
    "i-tsu",
    "sgn-BE-FR",
    "sgn-BE-NL",
    "sgn-CH-DE",
    "art-lojban",
    "cel-gaulish",
    "no-bok",
    "no-nyn",
    "zh-guoyu",
    "zh-hakka",
    "zh-min",
    "zh-min-nan",
    "zh-xiang",
];

/// Whether `s` is a tag of RFC 5646's grammar: a grandfathered tag, a private-use tag
/// (`x-…`), or `language[-script][-region](-variant)*(-extension)*[-x-private]`, the
/// primary language subtag in lowercase (as every tag atproto clients send is). The
/// subtags' kinds never overlap where the grammar lets two follow each other, so one
/// pass from left to right decides.
fn has_language_shape(s: &str) -> bool {
    if GRANDFATHERED.contains(&s) {
        return true;
    }
    let tags: Vec<&str> = s.split('-').collect();
    let alpha = |t: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&t.len()) && t.bytes().all(|c| c.is_ascii_alphabetic())
    };
    let alnum = |t: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&t.len()) && t.bytes().all(|c| c.is_ascii_alphanumeric())
    };
    let is_x = |t: &str| t.eq_ignore_ascii_case("x");
    // A run of at least one subtag after a singleton; where it ends.
    let run = |i: usize, n: std::ops::RangeInclusive<usize>| {
        let end = i + tags[i..].iter().take_while(|t| alnum(t, n.clone())).count();
        (end > i).then_some(end)
    };
    if is_x(tags[0]) {
        return run(1, 1..=8) == Some(tags.len());
    }
    let first = tags[0];
    if !first.bytes().all(|c| c.is_ascii_lowercase()) {
        return false;
    }
    let mut i = match first.len() {
        2 | 3 => {
            1 + tags[1..]
                .iter()
                .take(3)
                .take_while(|t| alpha(t, 3..=3))
                .count()
        }
        5..=8 => 1,
        _ => return false,
    };
    let at = |i: usize| tags.get(i).copied().unwrap_or("");
    if alpha(at(i), 4..=4) {
        i += 1; // script
    }
    if alpha(at(i), 2..=2) || (at(i).len() == 3 && at(i).bytes().all(|c| c.is_ascii_digit())) {
        i += 1; // region
    }
    while i < tags.len() && (alnum(at(i), 5..=8) || is_variant_digit_form(at(i))) {
        i += 1;
    }
    while i < tags.len() && alnum(at(i), 1..=1) && !is_x(at(i)) {
        match run(i + 1, 2..=8) {
            Some(end) => i = end,
            None => return false,
        }
    }
    if i < tags.len() && is_x(at(i)) {
        match run(i + 1, 1..=8) {
            Some(end) => i = end,
            None => return false,
        }
    }
    i == tags.len()
}

/// A four-character variant: a digit, then three letters or digits.
fn is_variant_digit_form(t: &str) -> bool {
    t.len() == 4 && t.as_bytes()[0].is_ascii_digit() && t.bytes().all(|c| c.is_ascii_alphanumeric())
}

fn validate_language(s: &str) -> Result<(), SyntaxError> {
    let err = |reason| Err(SyntaxError::new("language tag", s, reason));
    if s.len() > 128 {
        return err("longer than 128 characters");
    }
    if !has_language_shape(s) {
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
