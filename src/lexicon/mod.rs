//! Lexicons (`specs/lexicon`): the schemas of records and XRPC methods.
//!
//! The official `com.atproto`, `app.bsky` and `chat.bsky` documents are embedded at
//! build time from `lexicons/` (copied from upstream with their licence). Records whose
//! `$type` has a known schema are validated before they are written; others are stored
//! with `validationStatus: "unknown"`, as the spec allows.

mod validate;

pub use validate::ValidationError;

use crate::data::Ipld;
use crate::syntax::Nsid;
use include_dir::{include_dir, Dir};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::OnceLock;

static EMBEDDED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/lexicons");

/// The outcome of validating a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// The record matched its known schema.
    Valid,
    /// No schema is known for its type.
    Unknown,
}

impl Validation {
    pub fn as_str(self) -> &'static str {
        match self {
            Validation::Valid => "valid",
            Validation::Unknown => "unknown",
        }
    }
}

/// A set of lexicon documents, by NSID.
///
/// Embedded documents stay as their JSON text until first used: parsed all at once they
/// would hold several MiB of a Raspberry Pi's memory for schemas most requests never
/// touch.
#[derive(Debug, Default)]
pub struct Lexicons {
    docs: HashMap<String, Doc>,
}

#[derive(Debug)]
struct Doc {
    text: &'static [u8],
    parsed: OnceLock<Value>,
}

impl Doc {
    fn get(&self) -> &Value {
        self.parsed.get_or_init(|| {
            serde_json::from_slice(self.text)
                .expect("embedded lexicons are JSON (checked by tests)")
        })
    }
}

/// Why a lexicon document is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lexicon {id}: {problem}")]
pub struct SchemaError {
    pub id: String,
    pub problem: String,
}

/// Definition types that may only be the `main` definition of a document.
const PRIMARY_TYPES: &[&str] = &[
    "record",
    "query",
    "procedure",
    "subscription",
    "permission-set",
];
/// Definition types a document may declare (`unknown` and `ref` are only field types).
const DEF_TYPES: &[&str] = &[
    "record",
    "query",
    "procedure",
    "subscription",
    "permission-set",
    "object",
    "token",
    "string",
    "integer",
    "boolean",
    "bytes",
    "cid-link",
    "blob",
    "array",
    "null",
    "union",
];

impl Lexicons {
    /// The lexicons built into atbox, keyed by the NSID their path spells
    /// (`com/atproto/repo/getRecord.json` is `com.atproto.repo.getRecord`).
    pub fn embedded() -> Lexicons {
        let mut lex = Lexicons::default();
        let mut stack = vec![&EMBEDDED];
        while let Some(dir) = stack.pop() {
            for file in dir.files() {
                let path = file.path();
                if path.extension().is_some_and(|e| e == "json") {
                    let id = path.with_extension("").to_string_lossy().replace('/', ".");
                    lex.docs.insert(
                        id,
                        Doc {
                            text: file.contents(),
                            parsed: OnceLock::new(),
                        },
                    );
                }
            }
            stack.extend(dir.dirs());
        }
        lex
    }

    /// Adds a document after checking its shape.
    pub fn add(&mut self, doc: Value) -> Result<(), SchemaError> {
        let id = check_document(&doc)?;
        let parsed = OnceLock::new();
        let _ = parsed.set(doc);
        self.docs.insert(id, Doc { text: b"", parsed });
        Ok(())
    }

    /// Checks every document's shape (and, for embedded ones, that the id matches the
    /// path it was stored under). Parses them all: for tests and start-up checks.
    pub fn check_all(&self) -> Result<(), SchemaError> {
        for (id, doc) in &self.docs {
            let checked = check_document(doc.get())?;
            if &checked != id {
                return Err(SchemaError {
                    id: id.clone(),
                    problem: format!("its id is {checked}"),
                });
            }
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// A definition by reference: `nsid`, `nsid#name`, or `#name` relative to `base`.
    pub fn def(&self, reference: &str, base: &str) -> Option<&Value> {
        let (nsid, name) = match reference.split_once('#') {
            Some(("", name)) => (base, name),
            Some((nsid, name)) => (nsid, name),
            None => (reference, "main"),
        };
        self.docs.get(nsid)?.get().get("defs")?.get(name)
    }

    /// The `main` definition's type for an NSID (`record`, `query`, `procedure`, ...).
    pub fn main_type(&self, nsid: &str) -> Option<&str> {
        self.def(nsid, nsid)?.get("type")?.as_str()
    }

    /// Validates a record of `collection`. `Ok(Unknown)` when no schema is known.
    pub fn validate_record(
        &self,
        collection: &Nsid,
        record: &Ipld,
    ) -> Result<Validation, ValidationError> {
        let Ipld::Map(map) = record else {
            return Err(ValidationError::new("", "a record must be an object"));
        };
        match map.get("$type") {
            Some(Ipld::String(t)) if t == collection.as_str() => {}
            Some(Ipld::String(t)) => {
                return Err(ValidationError::new(
                    "$type",
                    format!("is {t:?}, but the collection is {collection}"),
                ));
            }
            _ => {
                return Err(ValidationError::new(
                    "$type",
                    "a record needs a $type naming its collection",
                ))
            }
        }
        let Some(def) = self.def(collection.as_str(), collection.as_str()) else {
            return Ok(Validation::Unknown);
        };
        if def.get("type").and_then(Value::as_str) != Some("record") {
            return Err(ValidationError::new(
                "$type",
                format!("{collection} is not a record type"),
            ));
        }
        let schema = def
            .get("record")
            .ok_or_else(|| ValidationError::new("", "schema has no record definition"))?;
        validate::Validator { lexicons: self }.value(schema, collection.as_str(), record, "")?;
        Ok(Validation::Valid)
    }

    /// Validates a procedure's JSON input (as IPLD) against its lexicon's `input.schema`;
    /// a method without one accepts anything.
    pub fn validate_input(&self, nsid: &str, input: &Ipld) -> Result<(), ValidationError> {
        let schema = self
            .def(nsid, nsid)
            .and_then(|d| d.get("input"))
            .and_then(|i| i.get("schema"));
        match schema {
            Some(schema) => validate::Validator { lexicons: self }.value(schema, nsid, input, ""),
            None => Ok(()),
        }
    }

    /// The record-key type a record schema declares (`tid`, `any`, `nsid`, `literal:self`).
    pub fn record_key_type(&self, collection: &str) -> Option<&str> {
        self.def(collection, collection)?.get("key")?.as_str()
    }
}

fn check_document(doc: &Value) -> Result<String, SchemaError> {
    let id_raw = doc
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    let bad = |problem: &str| SchemaError {
        id: id_raw.clone(),
        problem: problem.to_owned(),
    };
    if doc.get("lexicon").and_then(Value::as_u64) != Some(1) {
        return Err(bad("\"lexicon\" must be 1"));
    }
    let id = doc
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("\"id\" must be a string"))?;
    Nsid::new(id).map_err(|e| bad(&e.to_string()))?;
    let defs = doc
        .get("defs")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("\"defs\" must be an object"))?;
    for (name, def) in defs {
        let ty = def
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(&format!("def {name} has no type")))?;
        if !DEF_TYPES.contains(&ty) {
            return Err(bad(&format!(
                "def {name} has type {ty:?}, which cannot be defined on its own"
            )));
        }
        if PRIMARY_TYPES.contains(&ty) && name != "main" {
            return Err(bad(&format!(
                "def {name}: a {ty} must be the main definition"
            )));
        }
        if ty == "record" {
            let record = def
                .get("record")
                .ok_or_else(|| bad("record without a \"record\" object"))?;
            if record.get("type").and_then(Value::as_str) != Some("object") {
                return Err(bad("a record's \"record\" must be of type object"));
            }
        }
    }
    Ok(id.to_owned())
}
