//! Validating data against lexicon field definitions (`specs/lexicon#field-types`).

use super::Lexicons;
use crate::data::Ipld;
use crate::syntax;
use serde_json::Value;
use std::collections::BTreeMap;
use unicode_segmentation::UnicodeSegmentation;

/// Where and why data does not match its schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct ValidationError {
    pub path: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(path: &str, message: impl Into<String>) -> Self {
        ValidationError {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

type VResult = Result<(), ValidationError>;

pub(super) struct Validator<'l> {
    pub lexicons: &'l Lexicons,
}

fn kind(v: &Ipld) -> &'static str {
    match v {
        Ipld::Null => "null",
        Ipld::Bool(_) => "boolean",
        Ipld::Integer(_) => "integer",
        Ipld::Float(_) => "float",
        Ipld::String(_) => "string",
        Ipld::Bytes(_) => "bytes",
        Ipld::List(_) => "array",
        Ipld::Map(m) if is_blob(m) => "blob",
        Ipld::Map(_) => "object",
        Ipld::Link(_) => "cid-link",
    }
}

fn is_blob(m: &BTreeMap<String, Ipld>) -> bool {
    matches!(m.get("$type"), Some(Ipld::String(t)) if t == "blob")
}

fn num(def: &Value, key: &str) -> Option<i64> {
    def.get(key).and_then(Value::as_i64)
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}/{key}")
    }
}

impl Validator<'_> {
    /// Validates `v` against field definition `def`, which lives in document `base`.
    ///
    /// Long by design: one match arm per lexicon type, each a few lines, read side by
    /// side with the lexicon spec's list of types; split, the arms would only move.
    pub fn value(&self, def: &Value, base: &str, v: &Ipld, path: &str) -> VResult {
        let err = |m: String| Err(ValidationError::new(path, m));
        let ty = def.get("type").and_then(Value::as_str).unwrap_or("");
        let expect = |want: &str| -> VResult {
            Err(ValidationError::new(
                path,
                format!("expected {want}, got {}", kind(v)),
            ))
        };
        match ty {
            "object" => {
                let Ipld::Map(map) = v else {
                    return expect("an object");
                };
                if is_blob(map) {
                    return expect("an object");
                }
                self.object(def, base, map, path)
            }
            "ref" => {
                let r = def.get("ref").and_then(Value::as_str).unwrap_or("");
                let (target, target_base) = self
                    .resolve(r, base)
                    .ok_or_else(|| ValidationError::new(path, format!("unknown ref {r}")))?;
                self.value(target, target_base, v, path)
            }
            "union" => self.union(def, base, v, path),
            "token" => err("a token is not a value".into()),
            "string" => {
                let Ipld::String(s) = v else {
                    return expect("a string");
                };
                self.string(def, s, path)
            }
            "integer" => {
                let Ipld::Integer(i) = v else {
                    return expect("an integer");
                };
                let i = *i as i64;
                if let Some(c) = num(def, "const") {
                    if i != c {
                        return err(format!("must be {c}"));
                    }
                }
                if let Some(values) = def.get("enum").and_then(Value::as_array) {
                    if !values.iter().any(|e| e.as_i64() == Some(i)) {
                        return err(format!("{i} is not one of the allowed values"));
                    }
                }
                if num(def, "minimum").is_some_and(|m| i < m)
                    || num(def, "maximum").is_some_and(|m| i > m)
                {
                    return err(format!("{i} is out of range"));
                }
                Ok(())
            }
            "boolean" => {
                let Ipld::Bool(b) = v else {
                    return expect("a boolean");
                };
                match def.get("const").and_then(Value::as_bool) {
                    Some(c) if c != *b => err(format!("must be {c}")),
                    _ => Ok(()),
                }
            }
            "bytes" => {
                let Ipld::Bytes(b) = v else {
                    return expect("bytes");
                };
                let n = b.len() as i64;
                if num(def, "minLength").is_some_and(|m| n < m)
                    || num(def, "maxLength").is_some_and(|m| n > m)
                {
                    return err(format!("{n} bytes is out of the allowed length"));
                }
                Ok(())
            }
            "cid-link" => match v {
                Ipld::Link(_) => Ok(()),
                _ => expect("a CID link"),
            },
            "blob" => self.blob(def, v, path),
            "array" => {
                let Ipld::List(items) = v else {
                    return expect("an array");
                };
                let n = items.len() as i64;
                if num(def, "minLength").is_some_and(|m| n < m)
                    || num(def, "maxLength").is_some_and(|m| n > m)
                {
                    return err(format!("{n} items is out of the allowed length"));
                }
                let item_def = def
                    .get("items")
                    .ok_or_else(|| ValidationError::new(path, "schema array has no items"))?;
                for (i, item) in items.iter().enumerate() {
                    self.value(item_def, base, item, &child(path, &i.to_string()))?;
                }
                Ok(())
            }
            "unknown" => match v {
                Ipld::Map(m) if !is_blob(m) => Ok(()),
                _ => expect("an object"),
            },
            "null" => match v {
                Ipld::Null => Ok(()),
                _ => expect("null"),
            },
            other => err(format!("schema type {other:?} cannot hold data")),
        }
    }

    fn resolve<'a>(&'a self, reference: &'a str, base: &'a str) -> Option<(&'a Value, &'a str)> {
        let def = self.lexicons.def(reference, base)?;
        let doc = match reference.split_once('#') {
            Some(("", _)) => base,
            Some((nsid, _)) => nsid,
            None => reference,
        };
        Some((def, doc))
    }

    fn object(&self, def: &Value, base: &str, map: &BTreeMap<String, Ipld>, path: &str) -> VResult {
        let strs = |key: &str| -> Vec<&str> {
            def.get(key)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default()
        };
        let nullable = strs("nullable");
        for name in strs("required") {
            match map.get(name) {
                None => return Err(ValidationError::new(&child(path, name), "is required")),
                Some(Ipld::Null) if !nullable.contains(&name) => {
                    return Err(ValidationError::new(
                        &child(path, name),
                        "is required and may not be null",
                    ))
                }
                _ => {}
            }
        }
        let Some(props) = def.get("properties").and_then(Value::as_object) else {
            return Ok(());
        };
        for (name, prop) in props {
            match map.get(name) {
                None => {}
                Some(Ipld::Null) if nullable.contains(&name.as_str()) => {}
                Some(value) => self.value(prop, base, value, &child(path, name))?,
            }
        }
        Ok(())
    }

    fn union(&self, def: &Value, base: &str, v: &Ipld, path: &str) -> VResult {
        let Ipld::Map(map) = v else {
            return Err(ValidationError::new(
                path,
                format!("expected an object with $type, got {}", kind(v)),
            ));
        };
        let Some(Ipld::String(t)) = map.get("$type") else {
            return Err(ValidationError::new(path, "a union member needs a $type"));
        };
        let normalize = |r: &str| -> String {
            let full = if let Some(name) = r.strip_prefix('#') {
                format!("{base}#{name}")
            } else {
                r.to_owned()
            };
            full.strip_suffix("#main")
                .map(str::to_owned)
                .unwrap_or(full)
        };
        let wanted = normalize(t);
        let refs: Vec<&str> = def
            .get("refs")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match refs.iter().find(|r| normalize(r) == wanted) {
            Some(r) => {
                let (target, target_base) = self
                    .resolve(r, base)
                    .ok_or_else(|| ValidationError::new(path, format!("unknown ref {r}")))?;
                self.value(target, target_base, v, path)
            }
            None if def.get("closed").and_then(Value::as_bool) == Some(true) => {
                Err(ValidationError::new(
                    path,
                    format!("$type {t:?} is not one of {}", refs.join(", ")),
                ))
            }
            None => Ok(()),
        }
    }

    fn string(&self, def: &Value, s: &str, path: &str) -> VResult {
        let err = |m: String| Err(ValidationError::new(path, m));
        if let Some(c) = def.get("const").and_then(Value::as_str) {
            if s != c {
                return err(format!("must be {c:?}"));
            }
        }
        if let Some(values) = def.get("enum").and_then(Value::as_array) {
            if !values.iter().any(|e| e.as_str() == Some(s)) {
                return err(format!("{s:?} is not one of the allowed values"));
            }
        }
        let bytes = s.len() as i64;
        if num(def, "minLength").is_some_and(|m| bytes < m) {
            return err(format!(
                "must be at least {} bytes",
                num(def, "minLength").unwrap_or(0)
            ));
        }
        if num(def, "maxLength").is_some_and(|m| bytes > m) {
            return err(format!(
                "must be at most {} bytes",
                num(def, "maxLength").unwrap_or(0)
            ));
        }
        if def.get("minGraphemes").is_some() || def.get("maxGraphemes").is_some() {
            let g = s.graphemes(true).count() as i64;
            if num(def, "minGraphemes").is_some_and(|m| g < m) {
                return err(format!(
                    "must be at least {} characters",
                    num(def, "minGraphemes").unwrap_or(0)
                ));
            }
            if num(def, "maxGraphemes").is_some_and(|m| g > m) {
                return err(format!(
                    "must be at most {} characters",
                    num(def, "maxGraphemes").unwrap_or(0)
                ));
            }
        }
        if let Some(format) = def.get("format").and_then(Value::as_str) {
            let ok = match format {
                "datetime" => syntax::Datetime::new(s).is_ok(),
                "uri" => syntax::validate_uri(s).is_ok(),
                "at-uri" => syntax::AtUri::new(s).is_ok(),
                "did" => syntax::Did::new(s).is_ok(),
                "handle" => syntax::Handle::new(s).is_ok(),
                "at-identifier" => syntax::AtIdentifier::new(s).is_ok(),
                "nsid" => syntax::Nsid::new(s).is_ok(),
                "cid" => syntax::validate_cid_string(s).is_ok(),
                "language" => syntax::Language::new(s).is_ok(),
                "tid" => syntax::Tid::new(s).is_ok(),
                "record-key" => syntax::RecordKey::new(s).is_ok(),
                _ => true,
            };
            if !ok {
                return err(format!("{s:?} is not a valid {format}"));
            }
        }
        Ok(())
    }

    fn blob(&self, def: &Value, v: &Ipld, path: &str) -> VResult {
        let Ipld::Map(m) = v else {
            return Err(ValidationError::new(
                path,
                format!("expected a blob, got {}", kind(v)),
            ));
        };
        let (mime, size) = if is_blob(m) {
            let size = match m.get("size") {
                Some(Ipld::Integer(n)) => Some(*n as i64),
                _ => None,
            };
            (m.get("mimeType"), size)
        } else if matches!(m.get("cid"), Some(Ipld::String(_))) {
            // The legacy blob form: {"cid": "...", "mimeType": "..."}.
            (m.get("mimeType"), None)
        } else {
            return Err(ValidationError::new(path, "expected a blob"));
        };
        let Some(Ipld::String(mime)) = mime else {
            return Err(ValidationError::new(path, "a blob needs a mimeType"));
        };
        if let (Some(max), Some(size)) = (num(def, "maxSize"), size) {
            if size > max {
                return Err(ValidationError::new(
                    path,
                    format!("blob of {size} bytes is over the limit of {max}"),
                ));
            }
        }
        if let Some(accept) = def.get("accept").and_then(Value::as_array) {
            let ok = accept
                .iter()
                .filter_map(Value::as_str)
                .any(|pattern| mime_matches(pattern, mime));
            if !ok {
                return Err(ValidationError::new(
                    path,
                    format!("blob type {mime} is not accepted here"),
                ));
            }
        }
        Ok(())
    }
}

fn mime_matches(pattern: &str, mime: &str) -> bool {
    pattern == "*/*"
        || pattern == mime
        || pattern
            .strip_suffix("/*")
            .is_some_and(|p| mime.split('/').next() == Some(p))
}
