//! `atbox doctor`: the reachability and federation checks, one line each, with what to
//! do about each failure.

use crate::config::Config;
use crate::pds::doctor::{examine, Verdict};
use crate::pds::AppState;

pub(crate) async fn run(config: Config) -> anyhow::Result<()> {
    crate::server::restrict_umask();
    println!("atbox doctor: {} ({})", config.hostname, config.public_url);
    let state = AppState::open(config)?;
    let findings = examine(&state).await;
    let width = findings.iter().map(|f| f.check.len()).max().unwrap_or(0);
    for f in &findings {
        println!("{}  {:<width$}  {}", f.verdict.as_str(), f.check, f.detail);
        if let (Some(fix), Verdict::Fail | Verdict::Warn) = (&f.fix, f.verdict) {
            println!("      {:<width$}  -> {fix}", "");
        }
    }
    let failed = findings
        .iter()
        .filter(|f| f.verdict == Verdict::Fail)
        .count();
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed");
    }
    println!("all checks passed");
    Ok(())
}
