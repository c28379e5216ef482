//! The JSON form of atproto data: links as `{"$link": "<cid>"}`, bytes as
//! `{"$bytes": "<base64, no padding>"}`; everything else maps one to one.

use super::{check_atproto_rules, parse_cid, DataError, Ipld};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, Engine};
use serde_json::Value;
use std::collections::BTreeMap;

/// Standard base64 alphabet; written without padding, read with or without.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The largest integer a JSON number can carry exactly (JavaScript's safe range).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Converts JSON into an atproto value, checking the data-model rules.
/// The top level must be an object, as records and XRPC bodies are.
pub fn ipld_from_json(value: &Value) -> Result<Ipld, DataError> {
    if !value.is_object() {
        return Err(DataError::Json("the top level must be an object".into()));
    }
    let ipld = convert(value)?;
    check_atproto_rules(&ipld)?;
    Ok(ipld)
}

fn convert(value: &Value) -> Result<Ipld, DataError> {
    Ok(match value {
        Value::Null => Ipld::Null,
        Value::Bool(b) => Ipld::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ipld::Integer(i.into())
            } else if n.is_u64() {
                return Err(DataError::Json(format!(
                    "integer {n} is outside the 64-bit signed range"
                )));
            } else {
                // JSON has one number type; an integral float such as 123.0 is the integer 123.
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.fract() != 0.0 || !f.is_finite() || f.abs() > MAX_SAFE_INTEGER {
                    return Err(DataError::Float);
                }
                Ipld::Integer(f as i128)
            }
        }
        Value::String(s) => Ipld::String(s.clone()),
        Value::Array(items) => Ipld::List(items.iter().map(convert).collect::<Result<_, _>>()?),
        Value::Object(map) => {
            if let Some(link) = map.get("$link") {
                return match (link, map.len()) {
                    (Value::String(s), 1) => Ok(Ipld::Link(parse_cid(s)?)),
                    (Value::String(_), _) => Err(DataError::Json(
                        "a $link object may have no other keys".into(),
                    )),
                    _ => Err(DataError::Json("$link must be a CID string".into())),
                };
            }
            if let Some(bytes) = map.get("$bytes") {
                return match (bytes, map.len()) {
                    (Value::String(s), 1) => BASE64
                        .decode(s)
                        .map(Ipld::Bytes)
                        .map_err(|e| DataError::Json(format!("$bytes is not base64: {e}"))),
                    (Value::String(_), _) => Err(DataError::Json(
                        "a $bytes object may have no other keys".into(),
                    )),
                    _ => Err(DataError::Json("$bytes must be a base64 string".into())),
                };
            }
            let mut out = BTreeMap::new();
            for (k, v) in map {
                out.insert(k.clone(), convert(v)?);
            }
            Ipld::Map(out)
        }
    })
}

/// Converts an atproto value to its JSON form.
pub fn ipld_to_json(value: &Ipld) -> Value {
    match value {
        Ipld::Null => Value::Null,
        Ipld::Bool(b) => Value::Bool(*b),
        Ipld::Integer(i) => match i64::try_from(*i) {
            Ok(i) => Value::from(i),
            Err(_) => Value::from(*i as f64),
        },
        Ipld::Float(f) => Value::from(*f),
        Ipld::String(s) => Value::String(s.clone()),
        Ipld::Bytes(b) => serde_json::json!({ "$bytes": BASE64.encode(b) }),
        Ipld::Link(cid) => serde_json::json!({ "$link": cid.to_string() }),
        Ipld::List(items) => Value::Array(items.iter().map(ipld_to_json).collect()),
        Ipld::Map(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), ipld_to_json(v)))
                .collect(),
        ),
    }
}
