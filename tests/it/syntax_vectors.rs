//! Every line of the interop syntax vectors: `*_valid.txt` accepted, `*_invalid.txt` rejected.

use crate::common;

use atbox::syntax::*;

fn check(kind: &str, valid: &[&str], invalid: &[&str], accepts: impl Fn(&str) -> bool) {
    let mut count = 0;
    for file in valid {
        for line in common::vector_lines(&format!("syntax/{file}")) {
            assert!(accepts(&line), "{kind}: {file}: should accept {line:?}");
            count += 1;
        }
    }
    for file in invalid {
        for line in common::vector_lines(&format!("syntax/{file}")) {
            assert!(!accepts(&line), "{kind}: {file}: should reject {line:?}");
            count += 1;
        }
    }
    common::report(kind, count);
}

#[test]
fn did() {
    check(
        "did",
        &["did_syntax_valid.txt"],
        &["did_syntax_invalid.txt"],
        |s| Did::new(s).is_ok(),
    );
}

#[test]
fn handle() {
    check(
        "handle",
        &["handle_syntax_valid.txt"],
        &["handle_syntax_invalid.txt"],
        |s| Handle::new(s).is_ok(),
    );
}

#[test]
fn nsid() {
    check(
        "nsid",
        &["nsid_syntax_valid.txt"],
        &["nsid_syntax_invalid.txt"],
        |s| Nsid::new(s).is_ok(),
    );
}

#[test]
fn at_uri() {
    check(
        "at-uri",
        &["aturi_syntax_valid.txt"],
        &["aturi_syntax_invalid.txt"],
        |s| AtUri::new(s).is_ok(),
    );
}

#[test]
fn at_uri_round_trips() {
    for line in common::vector_lines("syntax/aturi_syntax_valid.txt") {
        assert_eq!(AtUri::new(&line).unwrap().to_string(), line);
    }
}

#[test]
fn record_key() {
    check(
        "record-key",
        &["recordkey_syntax_valid.txt"],
        &["recordkey_syntax_invalid.txt"],
        |s| RecordKey::new(s).is_ok(),
    );
}

#[test]
fn tid() {
    check(
        "tid",
        &["tid_syntax_valid.txt"],
        &["tid_syntax_invalid.txt"],
        |s| Tid::new(s).is_ok(),
    );
}

#[test]
fn cid_string() {
    check(
        "cid",
        &["cid_syntax_valid.txt"],
        &["cid_syntax_invalid.txt"],
        |s| validate_cid_string(s).is_ok(),
    );
}

#[test]
fn datetime() {
    check(
        "datetime",
        &["datetime_syntax_valid.txt"],
        &["datetime_syntax_invalid.txt", "datetime_parse_invalid.txt"],
        |s| Datetime::new(s).is_ok(),
    );
}

#[test]
fn language() {
    check(
        "language",
        &["language_syntax_valid.txt"],
        &["language_syntax_invalid.txt", "language_parse_invalid.txt"],
        |s| Language::new(s).is_ok(),
    );
}

#[test]
fn at_identifier() {
    check(
        "at-identifier",
        &["atidentifier_syntax_valid.txt"],
        &["atidentifier_syntax_invalid.txt"],
        |s| AtIdentifier::new(s).is_ok(),
    );
}

#[test]
fn uri() {
    check(
        "uri",
        &["uri_syntax_valid.txt"],
        &["uri_syntax_invalid.txt"],
        |s| validate_uri(s).is_ok(),
    );
}

#[test]
fn every_syntax_file_is_covered() {
    let covered = [
        "did",
        "handle",
        "nsid",
        "aturi",
        "recordkey",
        "tid",
        "cid",
        "datetime",
        "language",
        "atidentifier",
        "uri",
    ];
    for entry in std::fs::read_dir(common::vectors_dir().join("syntax")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let kind = name.split('_').next().unwrap();
        assert!(
            covered.contains(&kind),
            "syntax/{name} has no test: add one"
        );
    }
}
