//! A small XRPC client for the integration tests.

use super::server::Atbox;
use atbox::repo::car::read_car;
use atbox::repo::verify::verify_repo;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

pub struct Api {
    pub http: Client,
    pub base: String,
}

impl Api {
    pub fn new(atbox: &Atbox) -> Api {
        Api {
            http: Client::new(),
            base: atbox.server.url.clone(),
        }
    }
    pub async fn post(&self, nsid: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(format!("{}/xrpc/{nsid}", self.base))
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }
    pub async fn get(&self, nsid: &str, query: &str) -> (StatusCode, Value) {
        let res = self
            .http
            .get(format!("{}/xrpc/{nsid}?{query}", self.base))
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }
    pub async fn account(&self, handle: &str) -> (String, String, String) {
        let (s, v) = self
            .post("com.atproto.server.createAccount", None, json!({"handle": handle, "email": format!("{handle}@example.com"), "password": "correct horse"}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        (
            v["did"].as_str().unwrap().into(),
            v["accessJwt"].as_str().unwrap().into(),
            v["refreshJwt"].as_str().unwrap().into(),
        )
    }
    /// Logs in (createSession) and returns the access token.
    pub async fn login(&self, identifier: &str, password: &str) -> String {
        let (s, v) = self
            .post(
                "com.atproto.server.createSession",
                None,
                json!({"identifier": identifier, "password": password}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["accessJwt"].as_str().unwrap().to_owned()
    }
    pub async fn post_record(&self, did: &str, token: &str, text: &str) -> (StatusCode, Value) {
        let record = json!({"$type": "app.bsky.feed.post", "text": text, "createdAt": "2024-01-01T00:00:00.000Z"});
        self.post(
            "com.atproto.repo.createRecord",
            Some(token),
            json!({"repo": did, "collection": "app.bsky.feed.post", "record": record}),
        )
        .await
    }
}

impl Api {
    /// The account's repo export, verified against the key in its DID document.
    pub async fn export_verified(
        &self,
        did: &str,
        plc_url: &str,
    ) -> atbox::repo::verify::RepoSummary {
        let url = format!("{}/xrpc/com.atproto.sync.getRepo?did={did}", self.base);
        let car = self
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let doc = self.did_document(plc_url, did).await;
        let multikey = doc["verificationMethod"][0]["publicKeyMultibase"]
            .as_str()
            .unwrap();
        let key = atbox::crypto::parse_multikey(multikey).unwrap();
        let (roots, blocks) = read_car(&car[..]).unwrap();
        verify_repo(&blocks, roots[0], Some(&key)).unwrap()
    }
}

impl Api {
    /// The DID document the PLC directory at `plc_url` serves for `did`.
    pub async fn did_document(&self, plc_url: &str, did: &str) -> Value {
        self.http
            .get(format!("{plc_url}/{did}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A client for any base URL.
    pub fn at(base: &str) -> Api {
        Api {
            http: Client::new(),
            base: base.to_owned(),
        }
    }

    /// A query with a bearer token.
    pub async fn get_auth(&self, nsid: &str, query: &str, token: &str) -> (StatusCode, Value) {
        let res = self
            .http
            .get(format!("{}/xrpc/{nsid}?{query}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Raw bytes of a query (CARs, blobs).
    pub async fn get_bytes(&self, nsid: &str, query: &str) -> Vec<u8> {
        let res = self
            .http
            .get(format!("{}/xrpc/{nsid}?{query}", self.base))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{nsid}: {}", res.status());
        res.bytes().await.unwrap().to_vec()
    }

    /// A procedure with a raw body.
    pub async fn post_bytes(
        &self,
        nsid: &str,
        token: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let res = self
            .http
            .post(format!("{}/xrpc/{nsid}", self.base))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }
}

/// Asserts an XRPC error: its status, its name, and a message for people.
pub fn assert_xrpc_error(status: StatusCode, body: &Value, want_status: u16, want_error: &str) {
    assert_eq!(status.as_u16(), want_status, "{body}");
    assert_eq!(body["error"], want_error, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a message: {body}"
    );
}
