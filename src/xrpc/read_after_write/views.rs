//! The account's own new records drawn as the AppView would draw them (`PostView`,
//! `ThreadViewPost`, profile fields), so that read-after-write can merge them into an
//! AppView answer that does not have them yet.
//!
//! Counts are zero (the post is brand new), the author is the account (handle from
//! the box, display name and avatar from its current profile record), images point at
//! the box's own `com.atproto.sync.getBlob` (the AppView's CDN may not have them yet),
//! and a quoted post, feed or list is fetched from the AppView with a service token,
//! as the reference does; one it cannot fetch shows as not found.

use crate::pds::records::LocalRecord;
use crate::pds::AppState;
use crate::storage::unix_now;
use serde_json::{json, Map, Value};

/// Draws the requester's records: knows who the author is and where blobs live.
pub(super) struct LocalViewer<'a> {
    pub state: &'a AppState,
    pub did: &'a str,
    /// `ProfileViewBasic` of the account, read once.
    author: Value,
}

impl<'a> LocalViewer<'a> {
    pub async fn new(state: &'a AppState, did: &'a str) -> Option<LocalViewer<'a>> {
        let account = state.repo_account(did).await.ok()?;
        let profile =
            crate::pds::records::get_record(state, did, "app.bsky.actor.profile", "self", None)
                .await
                .ok()
                .map(|r| r.value);
        let mut viewer = LocalViewer {
            state,
            did,
            author: json!({ "did": did, "handle": account.handle }),
        };
        if let Some(profile) = profile {
            viewer.author = viewer.update_profile_basic(viewer.author.clone(), &profile);
        }
        Some(viewer)
    }

    /// The box's URL for one of the account's blobs.
    fn blob_url(&self, blob: &Value) -> Option<String> {
        let cid = blob["ref"]["$link"].as_str().or(blob["cid"].as_str())?;
        Some(format!(
            "{}/xrpc/com.atproto.sync.getBlob?did={}&cid={cid}",
            self.state.config.public_url.trim_end_matches('/'),
            self.did
        ))
    }

    /// A `PostView` of one of the account's new posts.
    pub async fn post_view(&self, post: &LocalRecord) -> Value {
        let mut view = json!({
            "uri": post.uri,
            "cid": post.cid,
            "author": self.author,
            "record": post.value,
            "replyCount": 0,
            "repostCount": 0,
            "likeCount": 0,
            "quoteCount": 0,
            "indexedAt": post.indexed_at,
        });
        if let Some(embed) = self.embed_view(&post.value["embed"]).await {
            view["embed"] = embed;
        }
        view
    }

    /// A `ThreadViewPost` holding just this post.
    pub async fn thread_view(&self, post: &LocalRecord) -> Value {
        json!({ "$type": "app.bsky.feed.defs#threadViewPost", "post": self.post_view(post).await })
    }

    async fn embed_view(&self, embed: &Value) -> Option<Value> {
        match embed["$type"].as_str()? {
            "app.bsky.embed.images" => Some(self.images_view(embed)),
            "app.bsky.embed.external" => Some(self.external_view(embed)),
            "app.bsky.embed.record" => Some(self.record_view(&embed["record"]).await),
            "app.bsky.embed.recordWithMedia" => {
                let media = match embed["media"]["$type"].as_str()? {
                    "app.bsky.embed.images" => self.images_view(&embed["media"]),
                    "app.bsky.embed.external" => self.external_view(&embed["media"]),
                    _ => return None,
                };
                Some(json!({
                    "$type": "app.bsky.embed.recordWithMedia#view",
                    "record": self.record_view(&embed["record"]["record"]).await,
                    "media": media,
                }))
            }
            _ => None,
        }
    }

    fn images_view(&self, embed: &Value) -> Value {
        let images: Vec<Value> = embed["images"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|img| {
                let url = self.blob_url(&img["image"]);
                let mut view = json!({ "thumb": url, "fullsize": url, "alt": img["alt"] });
                if !img["aspectRatio"].is_null() {
                    view["aspectRatio"] = img["aspectRatio"].clone();
                }
                view
            })
            .collect();
        json!({ "$type": "app.bsky.embed.images#view", "images": images })
    }

    fn external_view(&self, embed: &Value) -> Value {
        let e = &embed["external"];
        let mut external = json!({
            "uri": e["uri"], "title": e["title"], "description": e["description"],
        });
        if let Some(thumb) = self.blob_url(&e["thumb"]) {
            external["thumb"] = json!(thumb);
        }
        json!({ "$type": "app.bsky.embed.external#view", "external": external })
    }

    /// `app.bsky.embed.record#view` of a quoted post, feed or list, from the AppView.
    async fn record_view(&self, strong_ref: &Value) -> Value {
        let uri = strong_ref["uri"].as_str().unwrap_or_default();
        let record = match self.fetch_embedded(uri).await {
            Some(view) => view,
            None => json!({
                "$type": "app.bsky.embed.record#viewNotFound", "uri": uri, "notFound": true,
            }),
        };
        json!({ "$type": "app.bsky.embed.record#view", "record": record })
    }

    async fn fetch_embedded(&self, uri: &str) -> Option<Value> {
        let collection = crate::syntax::AtUri::new(uri).ok()?.collection?;
        match collection.as_str() {
            "app.bsky.feed.post" => {
                let answer = self.appview("app.bsky.feed.getPosts", "uris", uri).await?;
                let post = answer["posts"].get(0)?;
                let mut view = json!({
                    "$type": "app.bsky.embed.record#viewRecord",
                    "uri": post["uri"], "cid": post["cid"], "author": post["author"],
                    "value": post["record"], "indexedAt": post["indexedAt"],
                });
                if !post["labels"].is_null() {
                    view["labels"] = post["labels"].clone();
                }
                if !post["embed"].is_null() {
                    view["embeds"] = json!([post["embed"]]);
                }
                Some(view)
            }
            "app.bsky.feed.generator" => {
                let answer = self
                    .appview("app.bsky.feed.getFeedGenerator", "feed", uri)
                    .await?;
                Some(typed(
                    answer["view"].clone(),
                    "app.bsky.feed.defs#generatorView",
                ))
            }
            "app.bsky.graph.list" => {
                let answer = self.appview("app.bsky.graph.getList", "list", uri).await?;
                Some(typed(
                    answer["list"].clone(),
                    "app.bsky.graph.defs#listView",
                ))
            }
            _ => None,
        }
    }

    /// One query to the configured AppView as the account (a 60-second service token).
    pub async fn appview(&self, nsid: &str, param: &str, value: &str) -> Option<Value> {
        let (did, url) = (
            self.state.config.appview_did.as_deref()?,
            self.state.config.appview_url.as_deref()?,
        );
        let token = crate::pds::sessions::sign_service_token(
            self.state,
            self.did,
            did,
            Some(nsid),
            unix_now() + 60,
        )
        .await
        .ok()?;
        let answer = self
            .state
            .http
            .get(format!("{}/xrpc/{nsid}", url.trim_end_matches('/')))
            .query(&[(param, value)])
            .bearer_auth(token)
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        if !answer.status().is_success() {
            return None;
        }
        answer.json().await.ok()
    }

    /// `ProfileViewBasic` fields from the profile record: display name and avatar.
    pub fn update_profile_basic(&self, mut view: Value, profile: &Value) -> Value {
        set_or_remove(
            &mut view,
            "displayName",
            profile.get("displayName").cloned(),
        );
        let avatar = self.blob_url(&profile["avatar"]).map(Value::from);
        set_or_remove(&mut view, "avatar", avatar);
        view
    }

    /// `ProfileViewDetailed` fields: the basic ones, the description and the banner.
    pub fn update_profile_detailed(&self, view: Value, profile: &Value) -> Value {
        let mut view = self.update_profile_basic(view, profile);
        set_or_remove(
            &mut view,
            "description",
            profile.get("description").cloned(),
        );
        let banner = self.blob_url(&profile["banner"]).map(Value::from);
        set_or_remove(&mut view, "banner", banner);
        view
    }
}

fn set_or_remove(view: &mut Value, key: &str, value: Option<Value>) {
    if let Some(map) = view.as_object_mut() {
        match value {
            Some(v) if !v.is_null() => {
                map.insert(key.to_owned(), v);
            }
            _ => {
                map.remove(key);
            }
        }
    }
}

/// `value` with its `$type` set (views inside a union carry one).
fn typed(value: Value, ty: &str) -> Value {
    let mut map = match value {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    map.insert("$type".into(), json!(ty));
    Value::Object(map)
}
