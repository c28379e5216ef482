//! The lexicon `datetime` format: a strict RFC 3339 subset (`specs/lexicon#datetime`).

use super::{string_newtype, SyntaxError};
use chrono::{DateTime, Datelike, FixedOffset, SecondsFormat, Utc};
use regex::Regex;
use std::sync::LazyLock;

/// A validated datetime string, e.g. `1985-04-12T23:20:50.123Z`. The text is kept as
/// given (records must round-trip byte for byte); [`Datetime::to_utc`] gives the instant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Datetime(String);
string_newtype!(Datetime, validate_datetime);

static DATETIME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9](\.[0-9]{1,20})?(Z|[+-][0-2][0-9]:[0-5][0-9])$",
    )
    .expect("datetime regex compiles")
});

impl Datetime {
    /// The current time in the canonical form atbox writes: UTC, milliseconds, `Z`.
    pub fn now() -> Datetime {
        Datetime(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true))
    }
    pub fn to_utc(&self) -> DateTime<Utc> {
        parse(&self.0)
            .expect("validated at construction")
            .with_timezone(&Utc)
    }
}

fn parse(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).ok()
}

fn validate_datetime(s: &str) -> Result<(), SyntaxError> {
    let err = |reason| Err(SyntaxError::new("datetime", s, reason));
    if s.len() > 64 {
        return err("longer than 64 characters");
    }
    if !DATETIME.is_match(s) {
        return err("not of the form YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM)");
    }
    if s.ends_with("-00:00") {
        return err("\"-00:00\" is not allowed as a UTC offset; use Z");
    }
    let Some(dt) = parse(s) else {
        return err("not a real date and time (month, day, hour, minute or second out of range)");
    };
    if dt.with_timezone(&Utc).year() < 0 {
        return err("normalizes to a negative year");
    }
    Ok(())
}
