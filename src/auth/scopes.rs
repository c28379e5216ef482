//! OAuth scopes and what they let an app do (atproto.com/specs/oauth and
//! /specs/permission), as plain data: parsing a scope string into [`Permissions`] and
//! answering "may this token do X". No I/O: permission sets (`include:`) are expanded by
//! a lookup the caller passes (atbox's embedded lexicons).
//!
//! The transition scopes keep older apps working: `transition:generic` grants what an
//! app password may do (records, blobs, calls to any service except chat),
//! `transition:chat.bsky` adds chat, `transition:email` lets the app read the email
//! address. Granular permissions (`repo:`, `rpc:`, `blob:`, `account:`, `identity:`)
//! grant exactly what they name.

use serde_json::Value;

/// A record write's kind, as `repo:` permissions name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoAction {
    Create,
    Update,
    Delete,
}

impl RepoAction {
    fn parse(s: &str) -> Option<RepoAction> {
        match s {
            "create" => Some(RepoAction::Create),
            "update" => Some(RepoAction::Update),
            "delete" => Some(RepoAction::Delete),
            _ => None,
        }
    }

    fn bit(self) -> u8 {
        match self {
            RepoAction::Create => 1,
            RepoAction::Update => 2,
            RepoAction::Delete => 4,
        }
    }
}

/// An account attribute (`account:` permissions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountAttr {
    Email,
    Repo,
    Status,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RepoPerm {
    /// NSIDs, or `*` for every collection.
    collections: Vec<String>,
    /// [`RepoAction::bit`]s.
    actions: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RpcPerm {
    /// Method NSIDs, or `*`.
    lxms: Vec<String>,
    /// A service reference (`did:web:api.bsky.app#bsky_appview`), or `*`.
    aud: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct AccountPerm {
    attr: AccountAttr,
    manage: bool,
}

/// What a token's scope grants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// The scope as granted (space-separated, as in the token response).
    pub scope: String,
    pub atproto: bool,
    pub generic: bool,
    pub chat: bool,
    pub email: bool,
    repo: Vec<RepoPerm>,
    rpc: Vec<RpcPerm>,
    /// MIME patterns: `image/png`, `image/*`, `*/*`.
    blob: Vec<String>,
    account: Vec<AccountPerm>,
    /// `handle` or `*`.
    identity: Vec<String>,
    /// Permission sets named, for the consent page: (NSID, title).
    pub sets: Vec<(String, String)>,
}

/// Finds a permission set's `main` definition (a lexicon of type `permission-set`).
pub type SetLookup<'a> = &'a dyn Fn(&str) -> Option<Value>;

impl Permissions {
    /// Parses a space-separated scope. Every scope must be one atproto defines and
    /// well formed, and `atproto` must be among them; duplicates are dropped.
    pub fn parse(scope: &str, sets: SetLookup) -> Result<Permissions, String> {
        let mut p = Permissions::default();
        let mut kept: Vec<&str> = Vec::new();
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            if s.len() > 2048 {
                return Err("a scope is too long".into());
            }
            if kept.contains(&s) {
                continue;
            }
            p.add(s, sets)?;
            kept.push(s);
        }
        if !p.atproto {
            return Err("the scope must include \"atproto\"".into());
        }
        p.scope = kept.join(" ");
        Ok(p)
    }

    fn add(&mut self, s: &str, sets: SetLookup) -> Result<(), String> {
        let (head, query) = s.split_once('?').unwrap_or((s, ""));
        let (resource, positional) = match head.split_once(':') {
            Some((r, p)) => (r, Some(percent_decode(p))),
            None => (head, None),
        };
        let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let values = |name: &str| -> Vec<String> {
            params
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .collect()
        };
        let with_positional = |name: &str| -> Vec<String> {
            positional.iter().cloned().chain(values(name)).collect()
        };
        let bad = || format!("invalid scope \"{s}\"");
        match resource {
            "atproto" if positional.is_none() && query.is_empty() => self.atproto = true,
            "transition" if query.is_empty() => match positional.as_deref() {
                Some("generic") => self.generic = true,
                Some("chat.bsky") => self.chat = true,
                Some("email") => self.email = true,
                _ => return Err(bad()),
            },
            "repo" => {
                let collections = with_positional("collection");
                let actions = values("action");
                self.repo
                    .push(repo_perm(collections, &actions).ok_or_else(bad)?);
            }
            "rpc" => {
                let aud = single(&values("aud")).ok_or_else(bad)?;
                self.rpc
                    .push(rpc_perm(with_positional("lxm"), aud).ok_or_else(bad)?);
            }
            "blob" => {
                let accept = with_positional("accept");
                if accept.is_empty() || !accept.iter().all(|m| is_mime_pattern(m)) {
                    return Err(bad());
                }
                self.blob.extend(accept);
            }
            "account" => {
                let attr = single(&with_positional("attr")).ok_or_else(bad)?;
                let action = single(&values("action")).unwrap_or_else(|| "read".into());
                self.account
                    .push(account_perm(&attr, &action).ok_or_else(bad)?);
            }
            "identity" => {
                let attr = single(&with_positional("attr")).ok_or_else(bad)?;
                if attr != "handle" && attr != "*" {
                    return Err(bad());
                }
                self.identity.push(attr);
            }
            "include" => {
                let nsid = positional.ok_or_else(bad)?;
                let aud = single(&values("aud"));
                self.include(&nsid, aud.as_deref(), sets)?;
            }
            _ => return Err(format!("unknown scope \"{s}\"")),
        }
        Ok(())
    }

    /// Adds the permissions of the permission set `nsid`. As the spec requires, only
    /// those naming resources under the set's own namespace count.
    fn include(&mut self, nsid: &str, aud: Option<&str>, sets: SetLookup) -> Result<(), String> {
        let def = sets(nsid)
            .filter(|d| d["type"] == "permission-set")
            .ok_or_else(|| format!("unknown permission set \"{nsid}\""))?;
        let namespace = match nsid.rsplit_once('.') {
            Some((ns, _)) => format!("{ns}."),
            None => return Err(format!("invalid permission set \"{nsid}\"")),
        };
        let inside = |n: &String| n.starts_with(&namespace);
        let strings = |v: &Value| -> Vec<String> {
            match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            }
        };
        for perm in def["permissions"].as_array().into_iter().flatten() {
            match perm["resource"].as_str() {
                Some("repo") => {
                    let collections: Vec<String> = strings(&perm["collection"])
                        .into_iter()
                        .filter(inside)
                        .collect();
                    if let Some(p) = repo_perm(collections, &strings(&perm["action"])) {
                        self.repo.push(p);
                    }
                }
                Some("rpc") => {
                    let lxms: Vec<String> =
                        strings(&perm["lxm"]).into_iter().filter(inside).collect();
                    let aud = if perm["inheritAud"] == true {
                        aud.map(str::to_owned)
                    } else {
                        perm["aud"].as_str().map(str::to_owned)
                    };
                    if let Some(p) = aud.and_then(|aud| rpc_perm(lxms, aud)) {
                        self.rpc.push(p);
                    }
                }
                _ => {} // sets may only name repo and rpc resources
            }
        }
        let title = def["title"].as_str().unwrap_or(nsid).to_owned();
        self.sets.push((nsid.to_owned(), title));
        Ok(())
    }

    /// May the token write `collection` this way?
    pub fn allows_repo(&self, collection: &str, action: RepoAction) -> bool {
        self.generic
            || self.repo.iter().any(|p| {
                p.actions & action.bit() != 0
                    && p.collections.iter().any(|c| c == "*" || c == collection)
            })
    }

    /// May the token upload a blob of this MIME type?
    pub fn allows_blob(&self, mime: &str) -> bool {
        self.generic || self.blob.iter().any(|pattern| mime_matches(pattern, mime))
    }

    /// May the token call `lxm` on the service `aud` (`did…#service`)? Chat needs
    /// `transition:chat.bsky` (or a granular permission); the rest `transition:generic`.
    pub fn allows_rpc(&self, lxm: &str, aud: &str) -> bool {
        let transition = if lxm.starts_with("chat.bsky.") {
            self.chat
        } else {
            self.generic
        };
        transition
            || self.rpc.iter().any(|p| {
                (p.aud == "*" || p.aud == aud) && p.lxms.iter().any(|l| l == "*" || l == lxm)
            })
    }

    /// May the token read (or, with `manage`, change) this account attribute?
    pub fn allows_account(&self, attr: AccountAttr, manage: bool) -> bool {
        (attr == AccountAttr::Email && !manage && self.email)
            || self
                .account
                .iter()
                .any(|p| p.attr == attr && (p.manage || !manage))
    }

    /// May the token change the account's handle (`handle`) or its whole identity (`*`)?
    pub fn allows_identity(&self, attr: &str) -> bool {
        (attr == "handle" && self.generic) || self.identity.iter().any(|a| a == "*" || a == attr)
    }

    /// What the scope grants, in plain words for the consent page.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.generic {
            out.push("Read and write everything an app password can: posts, likes, follows, profile, media and your settings in apps".to_owned());
        }
        if self.chat {
            out.push("Read and send your direct messages".to_owned());
        }
        if self.email {
            out.push("See your email address".to_owned());
        }
        for (nsid, title) in &self.sets {
            out.push(format!("{title} ({nsid})"));
        }
        for p in &self.repo {
            let mut actions = Vec::new();
            for (bit, word) in [(1, "create"), (2, "update"), (4, "delete")] {
                if p.actions & bit != 0 {
                    actions.push(word);
                }
            }
            let what = if p.collections.iter().any(|c| c == "*") {
                "any kind of record".to_owned()
            } else {
                p.collections.join(", ")
            };
            out.push(format!(
                "{} records: {what}",
                capitalise(&actions.join(", "))
            ));
        }
        if !self.blob.is_empty() {
            out.push(format!("Upload files ({})", self.blob.join(", ")));
        }
        for p in &self.rpc {
            let lxms = if p.lxms.iter().any(|l| l == "*") {
                "any method".to_owned()
            } else {
                p.lxms.join(", ")
            };
            let aud = if p.aud == "*" { "any service" } else { &p.aud };
            out.push(format!("Call {lxms} on {aud} as you"));
        }
        for p in &self.account {
            let attr = match p.attr {
                AccountAttr::Email => "your email address",
                AccountAttr::Repo => "your repository (import it)",
                AccountAttr::Status => "your account's status (deactivate, activate)",
            };
            out.push(format!(
                "{} {attr}",
                if p.manage { "Change" } else { "See" }
            ));
        }
        for a in &self.identity {
            out.push(if a == "*" {
                "Change your identity: handle, keys and where your account lives".to_owned()
            } else {
                "Change your handle".to_owned()
            });
        }
        if out.is_empty() {
            out.push("Know who you are (your DID and handle), nothing more".to_owned());
        }
        out
    }

    /// Whether `self` grants nothing `earlier` did not (a refresh may keep or narrow a
    /// grant, never widen it).
    pub fn is_within(&self, earlier: &Permissions) -> bool {
        let have: Vec<&str> = earlier.scope.split(' ').collect();
        self.scope.split(' ').all(|s| have.contains(&s))
    }
}

fn single(v: &[String]) -> Option<String> {
    match v {
        [one] => Some(one.clone()),
        _ => None,
    }
}

fn repo_perm(collections: Vec<String>, actions: &[String]) -> Option<RepoPerm> {
    if collections.is_empty() || !collections.iter().all(|c| c == "*" || is_nsid(c)) {
        return None;
    }
    let mut bits = 0;
    for a in actions {
        bits |= RepoAction::parse(a)?.bit();
    }
    Some(RepoPerm {
        collections,
        actions: if actions.is_empty() { 7 } else { bits },
    })
}

fn rpc_perm(lxms: Vec<String>, aud: String) -> Option<RpcPerm> {
    let aud_ok = aud == "*" || (aud.starts_with("did:") && aud.len() <= 2048);
    let lxms_ok = !lxms.is_empty() && lxms.iter().all(|l| l == "*" || is_nsid(l));
    // "Any method on any service" is not a permission the spec allows.
    let wide_open = aud == "*" && lxms.iter().any(|l| l == "*");
    (aud_ok && lxms_ok && !wide_open).then_some(RpcPerm { lxms, aud })
}

fn account_perm(attr: &str, action: &str) -> Option<AccountPerm> {
    let attr = match attr {
        "email" => AccountAttr::Email,
        "repo" => AccountAttr::Repo,
        "status" => AccountAttr::Status,
        _ => return None,
    };
    let manage = match action {
        "read" => false,
        "manage" => true,
        _ => return None,
    };
    Some(AccountPerm { attr, manage })
}

fn is_nsid(s: &str) -> bool {
    crate::syntax::Nsid::new(s).is_ok()
}

fn is_mime_pattern(s: &str) -> bool {
    let Some((t, sub)) = s.split_once('/') else {
        return false;
    };
    let token = |x: &str| {
        !x.is_empty()
            && x.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    (t == "*" && sub == "*") || (token(t) && (sub == "*" || token(sub)))
}

fn mime_matches(pattern: &str, mime: &str) -> bool {
    let mime = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match pattern.split_once('/') {
        Some(("*", "*")) => true,
        Some((t, "*")) => mime.split_once('/').is_some_and(|(mt, _)| mt == t),
        _ => pattern.eq_ignore_ascii_case(&mime),
    }
}

fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_sets(_: &str) -> Option<Value> {
        None
    }

    fn parse(s: &str) -> Result<Permissions, String> {
        Permissions::parse(s, &no_sets)
    }

    #[test]
    fn atproto_is_required_and_unknown_scopes_are_refused() {
        assert!(parse("transition:generic").is_err());
        assert!(parse("atproto frobnicate").is_err());
        assert!(parse("atproto transition:nothing").is_err());
        assert!(parse("atproto include:com.example.unknownSet").is_err());
        let p = parse("atproto  atproto transition:generic").unwrap();
        assert_eq!(p.scope, "atproto transition:generic");
    }

    #[test]
    fn transition_generic_is_an_app_password() {
        let p = parse("atproto transition:generic").unwrap();
        assert!(p.allows_repo("app.bsky.feed.post", RepoAction::Delete));
        assert!(p.allows_blob("video/mp4"));
        assert!(p.allows_rpc(
            "app.bsky.feed.getTimeline",
            "did:web:api.bsky.app#bsky_appview"
        ));
        assert!(!p.allows_rpc(
            "chat.bsky.convo.listConvos",
            "did:web:api.bsky.chat#bsky_chat"
        ));
        assert!(!p.allows_account(AccountAttr::Email, false));
        assert!(!p.allows_account(AccountAttr::Status, true));
        assert!(p.allows_identity("handle") && !p.allows_identity("*"));
        let chat = parse("atproto transition:chat.bsky transition:email").unwrap();
        assert!(chat.allows_rpc(
            "chat.bsky.convo.listConvos",
            "did:web:api.bsky.chat#bsky_chat"
        ));
        assert!(chat.allows_account(AccountAttr::Email, false));
        assert!(!chat.allows_account(AccountAttr::Email, true));
        assert!(!chat.allows_repo("app.bsky.feed.post", RepoAction::Create));
    }

    #[test]
    fn granular_permissions_grant_exactly_what_they_name() {
        let p = parse(
            "atproto repo:app.bsky.feed.post?action=create repo?collection=app.bsky.feed.like&collection=app.bsky.graph.follow \
             rpc:app.bsky.feed.getFeedSkeleton?aud=did:web:feeds.example%23bsky_fg blob:image/* account:email?action=manage identity:handle",
        )
        .unwrap();
        assert!(p.allows_repo("app.bsky.feed.post", RepoAction::Create));
        assert!(!p.allows_repo("app.bsky.feed.post", RepoAction::Delete));
        assert!(p.allows_repo("app.bsky.graph.follow", RepoAction::Delete));
        assert!(!p.allows_repo("app.bsky.actor.profile", RepoAction::Update));
        assert!(p.allows_rpc(
            "app.bsky.feed.getFeedSkeleton",
            "did:web:feeds.example#bsky_fg"
        ));
        assert!(!p.allows_rpc(
            "app.bsky.feed.getFeedSkeleton",
            "did:web:other.example#bsky_fg"
        ));
        assert!(p.allows_blob("image/png") && !p.allows_blob("video/mp4"));
        assert!(p.allows_account(AccountAttr::Email, false));
        assert!(p.allows_account(AccountAttr::Email, true));
        assert!(p.allows_identity("handle") && !p.allows_identity("*"));
    }

    #[test]
    fn malformed_permissions_are_refused() {
        for bad in [
            "atproto repo:not-an-nsid",
            "atproto repo:app.bsky.feed.post?action=burn",
            "atproto rpc:app.bsky.feed.getTimeline",
            "atproto rpc:*?aud=*",
            "atproto blob:image",
            "atproto account:password",
            "atproto account:email?action=destroy",
            "atproto identity:keys",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn permission_sets_expand_within_their_namespace() {
        let lookup = |nsid: &str| -> Option<Value> {
            (nsid == "app.bsky.authTest").then(|| {
                serde_json::json!({
                    "type": "permission-set", "title": "Test",
                    "permissions": [
                        {"type": "permission", "resource": "repo", "action": ["create"],
                         "collection": ["app.bsky.feed.post", "com.example.elsewhere"]},
                        {"type": "permission", "resource": "rpc", "inheritAud": true,
                         "lxm": ["app.bsky.video.uploadVideo"]}
                    ]
                })
            })
        };
        let p = Permissions::parse(
            "atproto include:app.bsky.authTest?aud=did:web:video.example%23bsky_video",
            &lookup,
        )
        .unwrap();
        assert!(p.allows_repo("app.bsky.feed.post", RepoAction::Create));
        assert!(!p.allows_repo("com.example.elsewhere", RepoAction::Create));
        assert!(p.allows_rpc(
            "app.bsky.video.uploadVideo",
            "did:web:video.example#bsky_video"
        ));
        assert!(!p.allows_rpc(
            "app.bsky.video.uploadVideo",
            "did:web:evil.example#bsky_video"
        ));
        assert_eq!(
            p.sets,
            vec![("app.bsky.authTest".to_owned(), "Test".to_owned())]
        );
    }
}
