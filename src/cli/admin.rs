//! Admin commands in the spirit of `pdsadmin`: accounts and invites, run against the
//! data directory (SQLite's locking makes this safe while the server runs).

use crate::config::Config;
use crate::pds::AppState;
use crate::storage::accounts as db;
use anyhow::Context;
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum AccountCommand {
    /// Create an account (registers its did:plc with the configured PLC directory).
    Create {
        #[arg(long)]
        handle: String,
        #[arg(long)]
        email: String,
        /// The password; omit to have one generated and printed.
        #[arg(long)]
        password: Option<String>,
    },
    /// List accounts.
    List,
    /// Set a new password for an account (by handle or DID); all its sessions end.
    ResetPassword {
        account: String,
        /// The new password; omit to have one generated and printed.
        #[arg(long)]
        password: Option<String>,
    },
    /// Show pending one-time codes (password reset, account deletion, ...), which the
    /// reference PDS would have emailed.
    Tokens,
}

#[derive(Subcommand)]
pub(crate) enum IdentityCommand {
    /// Put a rotation key that you hold above the server's, so you can recover or move
    /// your DID without this box. Without --key, one is generated and printed once.
    AddRecoveryKey {
        /// The account (handle or DID).
        account: String,
        /// Your own key, as did:key:z...
        #[arg(long)]
        key: Option<String>,
    },
}

pub(crate) async fn identity(config: Config, cmd: IdentityCommand) -> anyhow::Result<()> {
    crate::server::restrict_umask();
    let state = AppState::open(config)?;
    let IdentityCommand::AddRecoveryKey { account, key } = cmd;
    let found = account_named(&state, &account).await?;
    let (did_key, generated) = crate::pds::identity::add_recovery_key(&state, &found.did, key)
        .await
        .map_err(plain)?;
    println!(
        "{} now has the recovery key {did_key} above this server's.",
        found.did
    );
    if let Some(kp) = generated {
        let hex: String = kp
            .private_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        println!("private key (secp256k1, hex): {hex}");
        println!("Store it offline now: atbox keeps no copy and will not show it again.");
    }
    Ok(())
}

#[derive(Subcommand)]
pub(crate) enum InviteCommand {
    /// Create an invite code.
    Create {
        /// How many accounts may use it.
        #[arg(long, default_value_t = 1)]
        uses: i64,
    },
}

/// An XRPC error as the CLI shows it: just what happened and what to do.
fn plain(e: crate::error::XrpcError) -> anyhow::Error {
    anyhow::anyhow!(e.message)
}

/// The account a command names (handle or DID).
async fn account_named(
    state: &AppState,
    account: &str,
) -> anyhow::Result<crate::storage::accounts::Account> {
    state
        .find_account(account)
        .await
        .map_err(plain)?
        .ok_or_else(|| {
            anyhow::anyhow!("no account {account:?} on this server (see `atbox account list`)")
        })
}

fn generated_password() -> String {
    const CHARS: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..20)
        .map(|_| CHARS[rand::random::<usize>() % CHARS.len()] as char)
        .collect()
}

pub(crate) async fn account(config: Config, cmd: AccountCommand) -> anyhow::Result<()> {
    crate::server::restrict_umask();
    let state = AppState::open(config)?;
    match cmd {
        AccountCommand::Create {
            handle,
            email,
            password,
        } => {
            let shown = password.is_none();
            let password = password.unwrap_or_else(generated_password);
            let input = crate::pds::accounts::NewAccount {
                handle,
                email: Some(email),
                password: Some(password.clone()),
                by_owner: true,
                ..Default::default()
            };
            let created = crate::pds::accounts::create_account(&state, input, None)
                .await
                .map_err(plain)?;
            println!("created {} ({})", created.handle, created.did);
            if shown {
                println!("password: {password}");
            }
        }
        AccountCommand::List => {
            let accounts = state
                .storage
                .read(|conn| Ok::<_, anyhow::Error>(db::list(conn)?))
                .await?;
            if accounts.is_empty() {
                println!("no accounts yet");
            }
            for a in accounts {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    a.handle,
                    a.did,
                    a.email.unwrap_or_default(),
                    a.status.as_str(),
                    a.created_at
                );
            }
        }
        AccountCommand::ResetPassword { account, password } => {
            let found = account_named(&state, &account).await?;
            let shown = password.is_none();
            let password = password.unwrap_or_else(generated_password);
            crate::pds::accounts::set_password(&state, &found.did, &password)
                .await
                .map_err(plain)?;
            println!("password changed for {}", found.handle);
            if shown {
                println!("password: {password}");
            }
        }
        AccountCommand::Tokens => {
            let tokens = state
                .storage
                .read(|conn| Ok::<_, anyhow::Error>(db::pending_tokens(conn)?))
                .await?;
            if tokens.is_empty() {
                println!("no pending codes");
            }
            let now = crate::storage::unix_now();
            for (purpose, did, token, at) in tokens {
                let age = now - at;
                let state = if age > crate::pds::accounts::TOKEN_TTL_SECS {
                    "expired"
                } else {
                    "valid"
                };
                println!("{purpose}\t{did}\t{token}\t{state} ({age}s old)");
            }
        }
    }
    Ok(())
}

pub(crate) async fn invite(config: Config, cmd: InviteCommand) -> anyhow::Result<()> {
    crate::server::restrict_umask();
    let state = AppState::open(config)?;
    match cmd {
        InviteCommand::Create { uses } => {
            let codes = crate::pds::accounts::create_invites(&state, 1, uses, "admin")
                .await
                .map_err(plain)
                .context("creating an invite")?;
            println!("{}", codes[0]);
        }
    }
    Ok(())
}
