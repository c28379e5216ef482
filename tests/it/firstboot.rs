//! `atbox firstboot` (what atbox-firstboot.service runs on the image's first boot):
//! the boot partition's atbox.toml becomes the system config, the first account is
//! created, its password is removed from the card's copy, and a second run does nothing.

use crate::common;

use common::server::start_plc;
use std::process::Command;

#[test]
fn the_boot_partition_config_is_applied_once() {
    let plc = start_plc();
    let root = tempfile::tempdir().unwrap();
    let boot = root.path().join("boot/firmware/atbox.toml");
    let system = root.path().join("etc/atbox/atbox.toml");
    let marker = root.path().join("var/lib/atbox/.firstboot-done");
    let data = root.path().join("var/lib/atbox/data");
    std::fs::create_dir_all(boot.parent().unwrap()).unwrap();
    // The image's defaults, which the card's file is merged over.
    std::fs::create_dir_all(system.parent().unwrap()).unwrap();
    std::fs::write(
        &system,
        "mdns = true\ndisplay = \"png:/tmp/atbox-screen\"\nhostname = \"atbox.local\"\n",
    )
    .unwrap();
    std::fs::write(
        &boot,
        format!(
            "hostname = \"localhost\"\nplc_url = \"{}\"\ndata_dir = \"{}\"\nhandle_domains = \".test\"\n\n[first_account]\nhandle = \"owner.test\"\nemail = \"owner@example.com\"\npassword = \"card secret\"\n",
            plc.url,
            data.display()
        ),
    )
    .unwrap();
    let run = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_atbox"));
        // As under atbox-firstboot.service (UMask=0077).
        // SAFETY: umask is async-signal-safe.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::umask(0o077);
                Ok(())
            });
        }
        cmd.args(["firstboot", "--boot-config"])
            .arg(&boot)
            .arg("--system-config")
            .arg(&system)
            .arg("--marker")
            .arg(&marker)
            .args(["--user", "no-such-user-here"])
            .env("ATBOX_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("created the first account: owner.test"),
        "{said}"
    );

    let installed = std::fs::read_to_string(&system).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&system).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o640,
        "the service's group must be able to read the config"
    );
    assert!(
        installed.contains("plc_url")
            && installed.contains("mdns = true")
            && installed.contains("hostname = \"localhost\"")
            && !installed.contains("atbox.local")
            && !installed.contains("first_account")
            && !installed.contains("card secret"),
        "{installed}"
    );
    let card = std::fs::read_to_string(&boot).unwrap();
    assert!(
        !card.contains("card secret") && card.contains("owner.test"),
        "{card}"
    );
    assert!(marker.exists());

    // The account exists and the password from the card works.
    let list = Command::new(env!("CARGO_BIN_EXE_atbox"))
        .args(["account", "list", "--config"])
        .arg(&system)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("owner.test"));

    // Never twice.
    std::fs::write(&boot, "hostname = \"changed.example\"\n").unwrap();
    let out = run();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("already done"));
    assert_eq!(std::fs::read_to_string(&system).unwrap(), installed);
}
