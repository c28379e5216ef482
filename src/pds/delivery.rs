//! How a one-time code reaches its person: by email when the owner set `smtp_url`,
//! otherwise on the box itself — the owner's LAN page and the screen show
//! "CODE for alice: …" for a few minutes — and always through `atbox account tokens`.
//!
//! Home connections often cannot send mail (ISPs block port 25) and a friend with an
//! account on the box has no terminal on it, so without SMTP the box's owner reads the
//! code off the screen or the LAN page and passes it on. Mail goes through `lettre`
//! (SMTP with rustls), never our own SMTP client.

use super::accounts::Purpose;
use crate::config::Config;
use crate::device::snapshot::ShownCode;
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::sync::Mutex;
use std::time::Duration;

/// How long a code stays on the screen and the LAN page.
pub const SHOWN_FOR_SECS: i64 = 10 * 60;
/// At most this many codes are shown at once (the newest).
const SHOWN_MAX: usize = 8;

/// The codes on show: newest last, each until it expires.
#[derive(Default)]
pub struct CodeBoard {
    codes: Mutex<Vec<ShownCode>>,
}

impl CodeBoard {
    /// Puts a code on show (replacing that account's earlier one for the same purpose).
    pub fn show(&self, code: ShownCode) {
        let mut codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
        codes.retain(|c| !(c.did == code.did && c.purpose == code.purpose));
        codes.push(code);
        let extra = codes.len().saturating_sub(SHOWN_MAX);
        codes.drain(..extra);
    }

    /// The codes still on show at `now`.
    pub fn current(&self, now: i64) -> Vec<ShownCode> {
        let mut codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
        codes.retain(|c| c.until > now);
        codes.clone()
    }
}

/// The codes on show that are still unused (a code spent or expired in storage leaves
/// the screen and the LAN page at once).
pub async fn on_show(state: &super::AppState) -> Vec<ShownCode> {
    let shown = state.codes.current(crate::storage::unix_now());
    if shown.is_empty() {
        return shown;
    }
    let pending = state
        .storage
        .read(crate::storage::accounts::pending_tokens)
        .await
        .unwrap_or_default();
    shown
        .into_iter()
        .filter(|c| {
            pending.iter().any(|(purpose, did, code, _)| {
                *purpose == c.purpose && *did == c.did && *code == c.code
            })
        })
        .collect()
}

/// The SMTP sender, when the owner configured one.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    service: String,
}

impl Mailer {
    /// The mailer for `smtp_url`/`smtp_from`, or `None` when mail is not configured.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Mailer>> {
        let Some(url) = &config.smtp_url else {
            return Ok(None);
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| anyhow::anyhow!("config: smtp_url: {e}"))?
            .hello_name(ClientId::Domain(config.hostname.clone()))
            .timeout(Some(Duration::from_secs(20)))
            .build();
        let from = config
            .smtp_from
            .parse::<Mailbox>()
            .map_err(|e| anyhow::anyhow!("config: smtp_from: {e}"))?;
        Ok(Some(Mailer {
            transport,
            from,
            service: config.hostname.clone(),
        }))
    }

    /// Emails `code` for `purpose` to `to`.
    pub async fn send(
        &self,
        to: &str,
        handle: &str,
        purpose: Purpose,
        code: &str,
    ) -> anyhow::Result<()> {
        let message = Message::builder()
            .from(self.from.clone())
            .to(to.parse::<Mailbox>()?)
            .subject(purpose.subject())
            .header(ContentType::TEXT_PLAIN)
            .body(letter(&self.service, handle, purpose, code))?;
        self.transport.send(message).await?;
        Ok(())
    }
}

/// The email's text: what was asked for, the code, and what to do if it was not you.
fn letter(service: &str, handle: &str, purpose: Purpose, code: &str) -> String {
    format!(
        "Hello @{handle},\n\n\
         {asked} Your code is:\n\n    {code}\n\n\
         It works once, for the next 15 minutes.\n\n\
         If you did not ask for this, you can ignore this email; nothing changes \
         without the code.\n\n-- {service} (atbox)\n",
        asked = purpose.asked(),
    )
}

/// Where a code went, for the log and the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    Emailed,
    ShownOnBox,
}

/// Sends `code` to the account's address, or shows it on the box when there is no
/// mailer, no address, or the mail server refused it (so that the person can still
/// get it from the owner).
pub async fn deliver(
    state: &super::AppState,
    account: &crate::storage::accounts::Account,
    purpose: Purpose,
    code: &str,
) -> Delivered {
    if let (Some(mailer), Some(email)) = (&state.mailer, &account.email) {
        match mailer.send(email, &account.handle, purpose, code).await {
            Ok(()) => return Delivered::Emailed,
            Err(e) => tracing::warn!(
                did = %account.did,
                purpose = purpose.as_str(),
                "could not email a one-time code ({e}); showing it on the box instead"
            ),
        }
    }
    state.codes.show(ShownCode {
        did: account.did.clone(),
        handle: account.handle.clone(),
        purpose: purpose.as_str().to_owned(),
        what: purpose.short().to_owned(),
        code: code.to_owned(),
        until: crate::storage::unix_now() + SHOWN_FOR_SECS,
    });
    Delivered::ShownOnBox
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(did: &str, purpose: &str, until: i64) -> ShownCode {
        ShownCode {
            did: did.into(),
            handle: "alice.test".into(),
            purpose: purpose.into(),
            what: "email".into(),
            code: "ABCDE-FGHJK".into(),
            until,
        }
    }

    #[test]
    fn the_board_keeps_one_live_code_per_account_and_purpose() {
        let board = CodeBoard::default();
        board.show(code("did:plc:a", "confirm_email", 100));
        board.show(code("did:plc:a", "confirm_email", 200));
        board.show(code("did:plc:b", "confirm_email", 50));
        assert_eq!(
            board.current(60).len(),
            1,
            "b's expired, a's first replaced"
        );
        assert_eq!(board.current(60)[0].until, 200);
        for i in 0..20 {
            board.show(code(&format!("did:plc:{i}"), "x", 1000));
        }
        assert_eq!(board.current(0).len(), SHOWN_MAX);
    }

    #[test]
    fn the_letter_names_the_code_and_the_purpose() {
        let text = letter("pds.example", "alice.test", Purpose::ConfirmEmail, "AB-CD");
        assert!(text.contains("    AB-CD\n"));
        assert!(text.contains("@alice.test"));
        assert!(text.contains("confirm"));
    }
}
