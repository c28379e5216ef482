//! Query parameters of XRPC calls (`specs/xrpc#lexicon-http-endpoints`): strings,
//! integers with lexicon bounds, booleans, and repeated array parameters.

use crate::error::{XrpcError, XrpcResult};

/// The decoded query string of a request.
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(query: Option<&str>) -> Params {
        let pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Params { pairs }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn required(&self, name: &str) -> XrpcResult<&str> {
        self.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            XrpcError::invalid_request(format!("Error: Params must have the property \"{name}\""))
        })
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// An integer parameter within `min..=max`, or `default` when absent.
    pub fn int(&self, name: &str, default: i64, min: i64, max: i64) -> XrpcResult<i64> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => {
                let n: i64 = v.parse().map_err(|_| {
                    XrpcError::invalid_request(format!("{name} must be an integer"))
                })?;
                if n < min || n > max {
                    return Err(XrpcError::invalid_request(format!(
                        "{name} must be between {min} and {max}"
                    )));
                }
                Ok(n)
            }
        }
    }

    pub fn bool(&self, name: &str) -> XrpcResult<Option<bool>> {
        match self.get(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(XrpcError::invalid_request(format!(
                "{name} must be true or false"
            ))),
        }
    }
}
