//! `atbox repo inspect|ls|verify FILE.car`: look inside and check a repository export.

use crate::crypto::parse_did_key;
use crate::repo::car::read_car;
use crate::repo::verify::{verify_repo, RepoSummary};
use crate::repo::BlockMap;
use anyhow::{bail, Context};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum RepoCommand {
    /// Print the DID, revision, commit and data CIDs, record count and size of a CAR.
    Inspect { file: PathBuf },
    /// List every record as `collection/rkey<TAB>cid`, sorted.
    Ls { file: PathBuf },
    /// Check every block hash, the MST shape and order, and (with --did-key) the
    /// commit signature. Exits non-zero with one line naming the first problem.
    Verify {
        file: PathBuf,
        /// The account's signing key, e.g. did:key:zQ3sh...
        #[arg(long)]
        did_key: Option<String>,
    },
}

pub(crate) fn run(cmd: RepoCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RepoCommand::Inspect { file } => {
            let (summary, blocks, size) = load(&file, None)?;
            println!("did:          {}", summary.commit.did);
            println!("rev:          {}", summary.commit.rev);
            println!("commit:       {}", summary.commit_cid);
            println!("data:         {}", summary.commit.data);
            println!("records:      {}", summary.records.len());
            println!("blocks:       {}", blocks.len());
            println!("bytes:        {size}");
            Ok(ExitCode::SUCCESS)
        }
        RepoCommand::Ls { file } => {
            let (summary, _, _) = load(&file, None)?;
            let mut out = String::new();
            for (key, cid) in &summary.records {
                out.push_str(&format!("{key}\t{cid}\n"));
            }
            print!("{out}");
            Ok(ExitCode::SUCCESS)
        }
        RepoCommand::Verify { file, did_key } => {
            let key = did_key
                .as_deref()
                .map(parse_did_key)
                .transpose()
                .context("--did-key must be a did:key for a k256 or p256 key")?;
            let (summary, blocks, _) = load(&file, key.as_ref())?;
            let sig = if summary.signature_verified {
                "signature ok"
            } else {
                "signature not checked (no --did-key)"
            };
            println!(
                "ok: {} rev {}, {} records, {} blocks, {sig}",
                summary.commit.did,
                summary.commit.rev,
                summary.records.len(),
                blocks.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads and fully verifies a repo CAR.
fn load(
    file: &Path,
    key: Option<&crate::crypto::PublicKey>,
) -> anyhow::Result<(RepoSummary, BlockMap, u64)> {
    let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let (roots, blocks) =
        read_car(std::io::BufReader::new(f)).with_context(|| file.display().to_string())?;
    let [root] = roots[..] else {
        bail!(
            "{}: a repo CAR has exactly one root (the commit), this one has {}",
            file.display(),
            roots.len()
        );
    };
    let summary = verify_repo(&blocks, root, key).with_context(|| file.display().to_string())?;
    Ok((summary, blocks, size))
}
