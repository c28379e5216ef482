//! atproto's restrictions on top of the IPLD data model (`specs/data-model`).

use super::{DataError, Ipld};

/// Checks a decoded value against atproto's data-model rules: no floats, 64-bit
/// integers, a `$type` that is a non-empty string, and blobs (`$type: "blob"`) with a
/// `ref` link, a `mimeType` string and an integer `size`.
pub fn check_atproto_rules(value: &Ipld) -> Result<(), DataError> {
    match value {
        Ipld::Float(_) => Err(DataError::Float),
        Ipld::Integer(i) if i64::try_from(*i).is_err() => Err(DataError::IntegerRange(*i)),
        Ipld::List(items) => items.iter().try_for_each(check_atproto_rules),
        Ipld::Map(map) => {
            if let Some(t) = map.get("$type") {
                match t {
                    Ipld::String(s) if !s.is_empty() => {
                        if s == "blob" {
                            check_blob(map)?;
                        }
                    }
                    _ => return Err(DataError::Rule("$type must be a non-empty string".into())),
                }
            }
            map.values().try_for_each(check_atproto_rules)
        }
        _ => Ok(()),
    }
}

fn check_blob(map: &std::collections::BTreeMap<String, Ipld>) -> Result<(), DataError> {
    let ok = matches!(map.get("ref"), Some(Ipld::Link(_)))
        && matches!(map.get("mimeType"), Some(Ipld::String(_)))
        && matches!(map.get("size"), Some(Ipld::Integer(n)) if *n >= 0);
    if ok {
        Ok(())
    } else {
        Err(DataError::Rule(
            "a blob needs a \"ref\" link, a \"mimeType\" string and a non-negative integer \"size\"".into(),
        ))
    }
}
