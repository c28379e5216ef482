//! Which methods an app password may reach through others, as the reference PDS rules
//! (its `PRIVILEGED_METHODS` and `PROTECTED_METHODS`): a service-auth token or a proxied
//! call is a way to act as the account somewhere else, so it must not let a weaker
//! credential do what it could not do here.

use super::tokens::Scope;

/// Methods only the account password or a privileged app password may mint service
/// tokens for or proxy: direct messages, and creating an account elsewhere (the first
/// step of moving the account away).
const PRIVILEGED: &[&str] = &[
    "chat.bsky.actor.deleteAccount",
    "chat.bsky.actor.exportAccountData",
    "chat.bsky.convo.deleteMessageForSelf",
    "chat.bsky.convo.getConvo",
    "chat.bsky.convo.getConvoForMembers",
    "chat.bsky.convo.getLog",
    "chat.bsky.convo.getMessages",
    "chat.bsky.convo.leaveConvo",
    "chat.bsky.convo.listConvos",
    "chat.bsky.convo.muteConvo",
    "chat.bsky.convo.sendMessage",
    "chat.bsky.convo.sendMessageBatch",
    "chat.bsky.convo.unmuteConvo",
    "chat.bsky.convo.updateRead",
    "com.atproto.server.createAccount",
];

/// Methods that must be called on this PDS directly, never through a service token or
/// a proxy: account settings, sessions, app passwords, identity.
const PROTECTED: &[&str] = &[
    "com.atproto.admin.sendEmail",
    "com.atproto.identity.requestPlcOperationSignature",
    "com.atproto.identity.signPlcOperation",
    "com.atproto.identity.updateHandle",
    "com.atproto.server.activateAccount",
    "com.atproto.server.confirmEmail",
    "com.atproto.server.createAppPassword",
    "com.atproto.server.deactivateAccount",
    "com.atproto.server.getAccountInviteCodes",
    "com.atproto.server.getSession",
    "com.atproto.server.listAppPasswords",
    "com.atproto.server.requestAccountDelete",
    "com.atproto.server.requestEmailConfirmation",
    "com.atproto.server.requestEmailUpdate",
    "com.atproto.server.revokeAppPassword",
    "com.atproto.server.updateEmail",
];

fn listed(list: &[&str], nsid: &str) -> bool {
    list.iter().any(|m| m.eq_ignore_ascii_case(nsid))
}

/// Whether `nsid` may never be reached through a service token or a proxy.
pub fn is_protected(nsid: &str) -> bool {
    listed(PROTECTED, nsid)
}

/// Whether a session of `scope` may reach `nsid` through a service token or a proxy.
pub fn scope_may_reach(scope: Scope, nsid: &str) -> bool {
    !listed(PRIVILEGED, nsid) || matches!(scope, Scope::Access | Scope::AppPassPrivileged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_passwords_reach_neither_chat_nor_account_creation() {
        for nsid in [
            "chat.bsky.convo.getMessages",
            "com.atproto.server.createAccount",
        ] {
            assert!(!scope_may_reach(Scope::AppPass, nsid), "{nsid}");
            assert!(scope_may_reach(Scope::AppPassPrivileged, nsid), "{nsid}");
            assert!(scope_may_reach(Scope::Access, nsid), "{nsid}");
        }
        assert!(scope_may_reach(Scope::AppPass, "app.bsky.feed.getTimeline"));
        assert!(is_protected("com.atproto.identity.updateHandle"));
        assert!(is_protected("COM.ATPROTO.SERVER.GETSESSION"));
        assert!(!is_protected("com.atproto.repo.uploadBlob"));
    }
}
