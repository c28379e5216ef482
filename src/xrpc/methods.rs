//! The XRPC method table: every method atbox serves itself, declared once — its NSID,
//! its kind, what the caller must present ([`Auth`]), which account states may call
//! ([`StatusCheck`]) and its handler. This table is the one place to audit who may call
//! what; the checks run in [`super::call`] before any handler.
//!
//! The requirements follow the reference PDS (`authorization({scopes, checkTakedown})`
//! in its method files), and are stricter where atbox always was: every account
//! setting and migration step needs the account password, never an app password.
//! A test keeps the table honest: every entry is a method of the embedded lexicons,
//! of the kind it says, declared once.

use super::call::OAuthNeed::{self, Account, Any, AppView, Identity, Operation};
use super::call::{Auth, Call, StatusCheck};
use super::handlers::{admin, repo, server, sync};
use crate::auth::ratelimit::MethodLimit;
use crate::auth::scopes::AccountAttr;
use crate::error::XrpcResult;
use axum::response::Response;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;

/// How a method is called and what its body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// GET, no body.
    Query,
    /// POST with (at most) a JSON body, read before the handler.
    Procedure,
    /// POST with a body the handler streams (blobs, repo CARs).
    Stream,
}

pub(crate) type Reply = Pin<Box<dyn Future<Output = XrpcResult<Response>> + Send>>;

/// One served method.
pub(crate) struct Method {
    pub nsid: &'static str,
    pub kind: Kind,
    pub auth: Auth,
    /// What an OAuth token's scope must grant (see [`OAuthNeed`]).
    pub oauth: OAuthNeed,
    pub status: StatusCheck,
    /// A rate limit per client address, beyond the global one.
    pub limit: Option<MethodLimit>,
    pub handler: fn(Call) -> Reply,
}

macro_rules! m {
    ($kind:ident, $nsid:literal, $auth:ident, $status:ident, $handler:path $(, limit = $limit:ident)? $(, oauth = $oauth:expr)?) => {
        Method {
            nsid: $nsid,
            kind: Kind::$kind,
            auth: Auth::$auth,
            oauth: m!(@oauth $auth $(, $oauth)?),
            status: StatusCheck::$status,
            limit: m!(@limit $($limit)?),
            handler: |call| Box::pin($handler(call)),
        }
    };
    (@limit) => { None };
    (@limit $limit:ident) => { Some(MethodLimit::$limit) };
    (@oauth $auth:ident) => { OAuthNeed::default_for(Auth::$auth) };
    (@oauth $auth:ident, $oauth:expr) => { $oauth };
}

/// Every method atbox serves, by namespace (one line each: a table to read down).
#[rustfmt::skip]
pub(crate) static METHODS: &[Method] = &[
    // com.atproto.server: accounts and sessions.
    m!(Query, "com.atproto.server.describeServer", None, Any, server::describe_server),
    m!(Procedure, "com.atproto.server.createAccount", ServiceOptional, Any, server::create_account, limit = CreateAccount),
    m!(Procedure, "com.atproto.server.createSession", None, Any, server::create_session),
    m!(Query, "com.atproto.server.getSession", Standard, Any, server::get_session, oauth = Any),
    m!(Procedure, "com.atproto.server.refreshSession", Refresh, Any, server::refresh_session),
    m!(Procedure, "com.atproto.server.deleteSession", Refresh, Any, server::delete_session),
    m!(Procedure, "com.atproto.server.createAppPassword", Full, Takedown, server::create_app_password),
    m!(Query, "com.atproto.server.listAppPasswords", Standard, Any, server::list_app_passwords),
    m!(Procedure, "com.atproto.server.revokeAppPassword", Full, Any, server::revoke_app_password),
    m!(Procedure, "com.atproto.server.createInviteCode", Admin, Any, server::create_invite_code),
    m!(Procedure, "com.atproto.server.createInviteCodes", Admin, Any, server::create_invite_codes),
    m!(Query, "com.atproto.server.getAccountInviteCodes", Full, Takedown, server::account_invites),
    m!(Query, "com.atproto.server.getServiceAuth", Standard, Any, server::service_auth, oauth = Operation),
    m!(Query, "com.atproto.server.checkAccountStatus", Standard, Any, server::check_account_status),
    m!(Procedure, "com.atproto.server.activateAccount", Full, Any, server::activate_account, oauth = Account(AccountAttr::Status, true)),
    m!(Procedure, "com.atproto.server.deactivateAccount", Full, Any, server::deactivate_account, oauth = Account(AccountAttr::Status, true)),
    m!(Procedure, "com.atproto.server.requestAccountDelete", Full, Takedown, server::request_account_delete),
    m!(Procedure, "com.atproto.server.deleteAccount", None, Any, server::delete_account, limit = Secret),
    m!(Procedure, "com.atproto.server.requestPasswordReset", None, Any, server::request_password_reset, limit = ResetRequest),
    m!(Procedure, "com.atproto.server.resetPassword", None, Any, server::reset_password, limit = Secret),
    m!(Procedure, "com.atproto.server.requestEmailConfirmation", Standard, Takedown, server::request_email_confirmation, oauth = Account(AccountAttr::Email, true)),
    m!(Procedure, "com.atproto.server.confirmEmail", Standard, Takedown, server::confirm_email, oauth = Account(AccountAttr::Email, true)),
    m!(Procedure, "com.atproto.server.requestEmailUpdate", Full, Takedown, server::request_email_update, oauth = Account(AccountAttr::Email, true)),
    m!(Procedure, "com.atproto.server.updateEmail", Full, Takedown, server::update_email, oauth = Account(AccountAttr::Email, true)),
    m!(Query, "com.atproto.temp.checkSignupQueue", Standard, Any, server::check_signup_queue),
    m!(Query, "com.atproto.temp.checkHandleAvailability", None, Any, server::check_handle_availability),
    // com.atproto.identity: handles, DIDs and PLC operations.
    m!(Query, "com.atproto.identity.resolveHandle", None, Any, server::resolve_handle),
    m!(Query, "com.atproto.identity.resolveDid", None, Any, server::resolve_did),
    m!(Query, "com.atproto.identity.resolveIdentity", None, Any, server::resolve_identity),
    m!(Procedure, "com.atproto.identity.refreshIdentity", None, Any, server::refresh_identity),
    m!(Procedure, "com.atproto.identity.updateHandle", Standard, Takedown, server::update_handle, oauth = Identity("handle")),
    m!(Query, "com.atproto.identity.getRecommendedDidCredentials", Standard, Any, server::recommended_credentials, oauth = Identity("*")),
    m!(Procedure, "com.atproto.identity.requestPlcOperationSignature", Full, Any, server::request_plc_signature, oauth = Identity("*")),
    m!(Procedure, "com.atproto.identity.signPlcOperation", Full, Any, server::sign_plc_operation, oauth = Identity("*")),
    m!(Procedure, "com.atproto.identity.submitPlcOperation", Full, Any, server::submit_plc_operation, oauth = Identity("*")),
    // app.bsky.actor preferences: kept by the PDS, not the AppView.
    m!(Query, "app.bsky.actor.getPreferences", Standard, Any, server::get_preferences, oauth = AppView),
    m!(Procedure, "app.bsky.actor.putPreferences", Standard, Takedown, server::put_preferences, oauth = AppView),
    // com.atproto.repo: records and blobs.
    m!(Procedure, "com.atproto.repo.createRecord", Standard, InWriter, repo::create_record, oauth = Operation),
    m!(Procedure, "com.atproto.repo.putRecord", Standard, InWriter, repo::put_record, oauth = Operation),
    m!(Procedure, "com.atproto.repo.deleteRecord", Standard, InWriter, repo::delete_record, oauth = Operation),
    m!(Procedure, "com.atproto.repo.applyWrites", Standard, InWriter, repo::apply_writes, oauth = Operation),
    m!(Query, "com.atproto.repo.getRecord", None, Any, repo::get_record),
    m!(Query, "com.atproto.repo.listRecords", None, Any, repo::list_records),
    m!(Query, "com.atproto.repo.describeRepo", None, Any, repo::describe_repo),
    m!(Query, "com.atproto.repo.listMissingBlobs", Standard, Any, repo::list_missing_blobs, oauth = Account(AccountAttr::Repo, false)),
    m!(Stream, "com.atproto.repo.uploadBlob", StandardOrService, Takedown, repo::upload_blob, oauth = Operation),
    m!(Stream, "com.atproto.repo.importRepo", Full, Takedown, repo::import_repo, oauth = Account(AccountAttr::Repo, true)),
    // com.atproto.sync: what relays and other services read.
    m!(Query, "com.atproto.sync.getRepo", Optional, Any, sync::get_repo, oauth = Any),
    m!(Query, "com.atproto.sync.getCheckout", Optional, Any, sync::checkout, oauth = Any),
    m!(Query, "com.atproto.sync.getLatestCommit", Optional, Any, sync::latest_commit, oauth = Any),
    m!(Query, "com.atproto.sync.getHead", Optional, Any, sync::head, oauth = Any),
    m!(Query, "com.atproto.sync.getRecord", Optional, Any, sync::get_record, oauth = Any),
    m!(Query, "com.atproto.sync.getBlocks", Optional, Any, sync::get_blocks, oauth = Any),
    m!(Query, "com.atproto.sync.getBlob", Optional, Any, sync::get_blob, oauth = Any),
    m!(Query, "com.atproto.sync.listBlobs", Optional, Any, sync::list_blobs, oauth = Any),
    m!(Query, "com.atproto.sync.listRepos", None, Any, sync::list_repos),
    m!(Query, "com.atproto.sync.getRepoStatus", None, Any, sync::repo_status),
    // com.atproto.admin: HTTP basic auth with the admin password.
    m!(Query, "com.atproto.admin.getAccountInfo", Admin, Any, admin::get_account_info),
    m!(Query, "com.atproto.admin.getAccountInfos", Admin, Any, admin::get_account_infos),
    m!(Query, "com.atproto.admin.getSubjectStatus", Admin, Any, admin::get_subject_status),
    m!(Query, "com.atproto.admin.getInviteCodes", Admin, Any, admin::get_invite_codes),
    m!(Procedure, "com.atproto.admin.updateAccountPassword", Admin, Any, admin::update_account_password),
    m!(Procedure, "com.atproto.admin.updateAccountEmail", Admin, Any, admin::update_account_email),
    m!(Procedure, "com.atproto.admin.updateAccountHandle", Admin, Any, admin::update_account_handle),
    m!(Procedure, "com.atproto.admin.deleteAccount", Admin, Any, admin::delete_account),
    m!(Procedure, "com.atproto.admin.updateSubjectStatus", Admin, Any, admin::update_subject_status),
    m!(Procedure, "com.atproto.admin.disableInviteCodes", Admin, Any, admin::disable_invite_codes),
];

static BY_NSID: LazyLock<HashMap<&'static str, &'static Method>> =
    LazyLock::new(|| METHODS.iter().map(|m| (m.nsid, m)).collect());

/// The method served for `nsid`, if atbox serves it itself.
pub(crate) fn find(nsid: &str) -> Option<&'static Method> {
    BY_NSID.get(nsid).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_is_a_lexicon_method_of_its_kind_declared_once() {
        let lexicons = crate::lexicon::Lexicons::embedded();
        let mut seen = std::collections::HashSet::new();
        for m in METHODS {
            assert!(seen.insert(m.nsid), "{} is declared twice", m.nsid);
            let wanted = match m.kind {
                Kind::Query => "query",
                Kind::Procedure | Kind::Stream => "procedure",
            };
            assert_eq!(
                lexicons.main_type(m.nsid),
                Some(wanted),
                "{} is not a lexicon {wanted}",
                m.nsid
            );
        }
        assert_eq!(BY_NSID.len(), METHODS.len());
    }

    #[test]
    fn account_settings_need_the_account_password() {
        for nsid in [
            "com.atproto.server.createAppPassword",
            "com.atproto.server.deactivateAccount",
            "com.atproto.server.activateAccount",
            "com.atproto.server.requestAccountDelete",
            "com.atproto.server.updateEmail",
            "com.atproto.identity.signPlcOperation",
            "com.atproto.repo.importRepo",
        ] {
            assert_eq!(find(nsid).map(|m| m.auth), Some(Auth::Full), "{nsid}");
        }
    }
}
