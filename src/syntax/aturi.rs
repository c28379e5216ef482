//! AT-URIs in the restricted form the repo and lexicons use:
//! `at://AUTHORITY[/COLLECTION[/RKEY]]`, with no query, fragment or trailing slash.

use super::{AtIdentifier, Nsid, RecordKey, SyntaxError};

/// A parsed AT-URI (`specs/at-uri-scheme`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AtUri {
    pub authority: AtIdentifier,
    pub collection: Option<Nsid>,
    pub rkey: Option<RecordKey>,
}

impl AtUri {
    pub fn new(s: &str) -> Result<Self, SyntaxError> {
        let fail = |reason| SyntaxError::new("AT-URI", s, reason);
        let err = |reason| Err(fail(reason));
        if s.len() > 8 * 1024 {
            return err("longer than 8 KiB");
        }
        let Some(rest) = s.strip_prefix("at://") else {
            return err("must start with \"at://\"");
        };
        if rest.contains(['#', '?']) {
            return err("query and fragment parts are not supported");
        }
        let mut parts = rest.split('/');
        let authority = AtIdentifier::new(parts.next().unwrap_or_default())
            .map_err(|_| fail("authority is neither a DID nor a handle"))?;
        let collection = match parts.next() {
            None => None,
            Some(c) => Some(Nsid::new(c).map_err(|_| fail("collection is not a valid NSID"))?),
        };
        let rkey = match parts.next() {
            None => None,
            Some(r) => Some(RecordKey::new(r).map_err(|_| fail("record key is not valid"))?),
        };
        if parts.next().is_some() {
            return err("too many path segments");
        }
        Ok(AtUri {
            authority,
            collection,
            rkey,
        })
    }
}

impl std::fmt::Display for AtUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at://{}", self.authority)?;
        if let Some(c) = &self.collection {
            write!(f, "/{c}")?;
        }
        if let Some(r) = &self.rkey {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for AtUri {
    type Err = SyntaxError;
    fn from_str(s: &str) -> Result<Self, SyntaxError> {
        AtUri::new(s)
    }
}
