//! Read-after-write: your own new post on your own screen while the AppView catches up.
//!
//! The AppView tells which revision of the account's repo it has seen
//! (`atproto-repo-rev`). When the account has written records since then, the answers
//! to the app's most visible reads are mended with them, as the reference PDS does
//! (`packages/pds/src/read-after-write/`): new posts go into `getTimeline` and, when
//! it is the requester's own feed, `getAuthorFeed`; own replies into `getPostThread`
//! (built from local records when the AppView says `NotFound` for the requester's new
//! post); the profile record's fields into `getProfile` and `getProfiles`. The answer
//! then carries `Atproto-Upstream-Lag` (milliseconds since the oldest of those
//! records). Anything unexpected — not JSON, not the expected shape, no local records —
//! leaves the AppView's answer as it was.

mod views;

use crate::error::{XrpcError, XrpcResult};
use crate::pds::records::{LocalRecord, LocalRecords};
use crate::pds::AppState;
use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use views::LocalViewer;

/// The methods whose answers are mended.
const METHODS: &[&str] = &[
    "app.bsky.feed.getTimeline",
    "app.bsky.feed.getAuthorFeed",
    "app.bsky.feed.getPostThread",
    "app.bsky.actor.getProfile",
    "app.bsky.actor.getProfiles",
];
/// Largest AppView answer read whole for mending (they are far smaller).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// Whether the AppView's answer to `nsid` may need mending: a mended method, a repo
/// rev, and JSON (or no content type).
pub(crate) fn applies(nsid: &str, headers: &HeaderMap) -> bool {
    METHODS.contains(&nsid)
        && headers.contains_key("atproto-repo-rev")
        && headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|t| t.starts_with("application/json"))
}

/// The AppView's answer (status, headers, whole body) as it came.
pub(crate) struct Upstream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

/// Reads the answer whole and mends it for `requester` (see the module doc).
pub(crate) async fn respond(
    state: &AppState,
    nsid: &str,
    requester: &str,
    query: Option<&str>,
    upstream: reqwest::Response,
) -> XrpcResult<(Upstream, Option<Response>)> {
    let status = StatusCode::from_u16(upstream.status().as_u16())
        .map_err(|e| XrpcError::upstream(e.to_string()))?;
    let headers = upstream.headers().clone();
    let body = read_capped(upstream).await?;
    let answer = Upstream {
        status,
        headers,
        body,
    };
    let mended = mend(state, nsid, requester, query, &answer).await;
    Ok((answer, mended))
}

async fn read_capped(mut upstream: reqwest::Response) -> XrpcResult<bytes::Bytes> {
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = upstream
        .chunk()
        .await
        .map_err(|e| XrpcError::upstream(format!("the AppView's answer broke off: {e}")))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER {
            return Err(XrpcError::upstream("the AppView's answer is too large"));
        }
    }
    Ok(body.freeze())
}

/// The mended answer, or `None` to pass the AppView's on unchanged.
async fn mend(
    state: &AppState,
    nsid: &str,
    requester: &str,
    query: Option<&str>,
    answer: &Upstream,
) -> Option<Response> {
    let rev = answer.headers.get("atproto-repo-rev")?.to_str().ok()?;
    let original: Value = serde_json::from_slice(&answer.body).ok()?;
    let local = crate::pds::records::since_rev(state, requester, rev)
        .await
        .ok()?;
    if local.count == 0 {
        return None;
    }
    let viewer = LocalViewer::new(state, requester).await?;
    let mended = if answer.status.is_success() {
        match nsid {
            "app.bsky.feed.getTimeline" => timeline(&viewer, original, &local).await?,
            "app.bsky.feed.getAuthorFeed" => author_feed(&viewer, original, &local).await?,
            "app.bsky.feed.getPostThread" => post_thread(&viewer, original, &local).await?,
            "app.bsky.actor.getProfile" => profile(&viewer, original, &local)?,
            "app.bsky.actor.getProfiles" => profiles(&viewer, original, &local)?,
            _ => return None,
        }
    } else if nsid == "app.bsky.feed.getPostThread" && original["error"] == "NotFound" {
        thread_not_found(&viewer, query, &local).await?
    } else {
        return None;
    };
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut res = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8");
    if let Some(lag) = local.lag_ms(now_ms) {
        res = res.header("atproto-upstream-lag", lag.to_string());
    }
    res.body(Body::from(mended.to_string())).ok()
}

/// New posts inserted into a feed by time, newest first, after nothing older than the
/// feed's last item (they would belong to a later page).
async fn insert_posts(
    viewer: &LocalViewer<'_>,
    mut feed: Vec<Value>,
    posts: &[LocalRecord],
) -> Vec<Value> {
    let last = feed
        .last()
        .and_then(|item| item["post"]["indexedAt"].as_str().map(str::to_owned))
        .unwrap_or_default();
    for post in posts
        .iter()
        .rev()
        .filter(|p| p.indexed_at.as_str() > last.as_str())
    {
        let view = viewer.post_view(post).await;
        let at = feed.iter().position(|item| {
            item["post"]["indexedAt"].as_str().unwrap_or("") < post.indexed_at.as_str()
        });
        let item = json!({ "post": view });
        match at {
            Some(i) => feed.insert(i, item),
            None => feed.push(item),
        }
    }
    feed
}

async fn timeline(
    viewer: &LocalViewer<'_>,
    mut original: Value,
    local: &LocalRecords,
) -> Option<Value> {
    let feed = original.get_mut("feed")?.as_array_mut()?;
    let merged = insert_posts(viewer, std::mem::take(feed), &local.posts).await;
    original["feed"] = Value::Array(merged);
    Some(original)
}

/// getAuthorFeed: only the requester's own feed (its first item theirs, or their
/// repost) gets their new posts and their new display name and avatar.
async fn author_feed(
    viewer: &LocalViewer<'_>,
    mut original: Value,
    local: &LocalRecords,
) -> Option<Value> {
    let feed = original.get_mut("feed")?.as_array_mut()?;
    let first = feed.first()?;
    let own = match first.get("reason") {
        None => first["post"]["author"]["did"] == viewer.did,
        Some(reason) => {
            reason["$type"] == "app.bsky.feed.defs#reasonRepost"
                && reason["by"]["did"] == viewer.did
        }
    };
    if !own {
        return Some(original);
    }
    let mut items = std::mem::take(feed);
    if let Some(profile) = &local.profile {
        for item in &mut items {
            if item["post"]["author"]["did"] == viewer.did {
                let author = item["post"]["author"].take();
                item["post"]["author"] = viewer.update_profile_basic(author, &profile.value);
            }
        }
    }
    original["feed"] = Value::Array(insert_posts(viewer, items, &local.posts).await);
    Some(original)
}

async fn post_thread(
    viewer: &LocalViewer<'_>,
    mut original: Value,
    local: &LocalRecords,
) -> Option<Value> {
    if original["thread"]["$type"] != "app.bsky.feed.defs#threadViewPost" {
        return Some(original);
    }
    let thread = original["thread"].take();
    original["thread"] = add_to_thread(viewer, thread, &local.posts).await;
    Some(original)
}

/// The requester's replies that belong in this thread (same root), each put under
/// its parent wherever that is in the tree.
async fn add_to_thread(
    viewer: &LocalViewer<'_>,
    mut thread: Value,
    posts: &[LocalRecord],
) -> Value {
    let root_of = |v: &Value| v["reply"]["root"]["uri"].as_str().map(str::to_owned);
    let top_uri = thread["post"]["uri"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let top_root = root_of(&thread["post"]["record"]);
    for post in posts {
        let Some(root) = root_of(&post.value) else {
            continue;
        };
        if root != top_uri && Some(&root) != top_root.as_ref() {
            continue;
        }
        let view = viewer.thread_view(post).await;
        let parent = post.value["reply"]["parent"]["uri"]
            .as_str()
            .unwrap_or_default();
        insert_reply(&mut thread, parent, &view);
    }
    thread
}

/// Puts `reply` first among the replies of the node whose post is `parent`.
fn insert_reply(node: &mut Value, parent: &str, reply: &Value) {
    if node["post"]["uri"] == parent {
        let mut replies = node["replies"].as_array().cloned().unwrap_or_default();
        replies.insert(0, reply.clone());
        node["replies"] = Value::Array(replies);
        return;
    }
    if let Some(replies) = node.get_mut("replies").and_then(Value::as_array_mut) {
        for child in replies {
            if child["$type"] == "app.bsky.feed.defs#threadViewPost" {
                insert_reply(child, parent, reply);
            }
        }
    }
}

/// getPostThread of the requester's own post the AppView has not seen: the thread
/// from local records, with its parents from the AppView when it has them.
async fn thread_not_found(
    viewer: &LocalViewer<'_>,
    query: Option<&str>,
    local: &LocalRecords,
) -> Option<Value> {
    let params = crate::http::Params::parse(query);
    let uri = crate::syntax::AtUri::new(params.get("uri")?).ok()?;
    let authority = uri.authority.to_string();
    let did = if authority.starts_with("did:") {
        authority
    } else {
        viewer.state.find_account(&authority).await.ok()??.did
    };
    if did != viewer.did {
        return None;
    }
    let wanted = format!(
        "at://{did}/{}/{}",
        uri.collection.as_ref()?.as_str(),
        uri.rkey.as_ref()?.as_str()
    );
    let found = local.posts.iter().find(|p| p.uri == wanted)?;
    let rest: Vec<LocalRecord> = local
        .posts
        .iter()
        .filter(|p| p.uri != wanted)
        .cloned()
        .collect();
    let mut thread = viewer.thread_view(found).await;
    thread = add_to_thread(viewer, thread, &rest).await;
    if let Some(parent) = found.value["reply"]["parent"]["uri"].as_str() {
        if let Some(answer) = viewer
            .appview("app.bsky.feed.getPostThread", "uri", parent)
            .await
        {
            thread["parent"] = answer["thread"].clone();
        }
    }
    Some(json!({ "thread": thread }))
}

fn profile(viewer: &LocalViewer<'_>, original: Value, local: &LocalRecords) -> Option<Value> {
    match &local.profile {
        Some(p) if original["did"] == viewer.did => {
            Some(viewer.update_profile_detailed(original, &p.value))
        }
        _ => Some(original),
    }
}

fn profiles(viewer: &LocalViewer<'_>, mut original: Value, local: &LocalRecords) -> Option<Value> {
    let Some(p) = &local.profile else {
        return Some(original);
    };
    for view in original.get_mut("profiles")?.as_array_mut()? {
        if view["did"] == viewer.did {
            *view = viewer.update_profile_detailed(view.take(), &p.value);
        }
    }
    Some(original)
}
