//! The lexicon `datetime` format: a strict RFC 3339 subset (`specs/lexicon#datetime`).

use super::{string_newtype, SyntaxError};
use chrono::{DateTime, Datelike, FixedOffset, SecondsFormat, Utc};

/// A validated datetime string, e.g. `1985-04-12T23:20:50.123Z`. The text is kept as
/// given (records must round-trip byte for byte); [`Datetime::to_utc`] gives the instant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Datetime(String);
string_newtype!(Datetime, validate_datetime);

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
    if !has_datetime_shape(s.as_bytes()) {
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

/// `YYYY-MM-DDTHH:MM:SS[.f{1,20}](Z|±HH:MM)`, digit by digit (the first digit of the
/// month, day, hour, minute and second in their ranges; the rest `parse` checks).
fn has_datetime_shape(b: &[u8]) -> bool {
    const SHAPE: &[u8; 19] = b"dddd-1d-3dT2d:6d:6d";
    if b.len() < SHAPE.len() + 1 {
        return false;
    }
    let fits = |c: u8, want: u8| match want {
        b'd' => c.is_ascii_digit(),
        b'1' => matches!(c, b'0'..=b'1'),
        b'2' => matches!(c, b'0'..=b'2'),
        b'3' => matches!(c, b'0'..=b'3'),
        b'5' => matches!(c, b'0'..=b'5'),
        b'6' => matches!(c, b'0'..=b'6'),
        other => c == other,
    };
    if !SHAPE.iter().zip(b).all(|(want, c)| fits(*c, *want)) {
        return false;
    }
    let mut rest = &b[SHAPE.len()..];
    if let Some(after_dot) = rest.strip_prefix(b".") {
        let digits = after_dot.iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=20).contains(&digits) {
            return false;
        }
        rest = &after_dot[digits..];
    }
    match rest {
        b"Z" => true,
        [sign, zone @ ..] if matches!(sign, b'+' | b'-') && zone.len() == 5 => {
            zone.iter().zip(b"2d:5d").all(|(c, want)| fits(*c, *want))
        }
        _ => false,
    }
}
