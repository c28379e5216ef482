//! `atbox lan`: what is on this LAN, seen through mDNS — the PDSes advertised there
//! (atbox boxes among them) and what a `.local` name resolves to. Works from a laptop
//! as well as on the box itself.

use clap::Args;
use std::time::Duration;

#[derive(Args)]
pub(crate) struct LanArgs {
    /// How long to listen for answers.
    #[arg(long, default_value_t = 4)]
    seconds: u64,
    /// Also resolve this name, e.g. atbox.local.
    #[arg(long)]
    resolve: Option<String>,
}

pub(crate) fn run(args: LanArgs) -> anyhow::Result<std::process::ExitCode> {
    let wait = Duration::from_secs(args.seconds.max(1));
    let mut ok = true;
    if let Some(name) = &args.resolve {
        let addrs = crate::device::mdns::resolve_host(name, wait)?;
        if addrs.is_empty() {
            println!("{name}: no answer (is the box on this network, with mdns = true?)");
            ok = false;
        } else {
            let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            println!("{name}: {}", list.join(" "));
        }
    }
    let found = crate::device::mdns::browse_pds(wait)?;
    if found.is_empty() {
        println!("no PDS advertised on this network (_atproto-pds._tcp)");
        ok = false;
    }
    for pds in found {
        let addrs: Vec<String> = pds.addresses.iter().map(ToString::to_string).collect();
        println!(
            "{}: http://{}:{}  [{}]  {} {}",
            pds.instance,
            pds.host,
            pds.port,
            addrs.join(" "),
            pds.handle.as_deref().unwrap_or("(no account yet)"),
            pds.did.as_deref().unwrap_or("")
        );
    }
    Ok(if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
