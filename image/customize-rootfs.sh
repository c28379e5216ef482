#!/usr/bin/env bash
# mmdebstrap's customize hook for the atbox image: turns the Debian arm64 root
# filesystem in "$1" into the appliance. Runs on the build host; commands that must run
# inside the image use `chroot "$1"` (arm64, under qemu-user). ATBOX_BIN is the
# cross-built atbox binary.
set -euo pipefail
root=$1
repo=$(cd "$(dirname "$0")/.." && pwd)
inside() { chroot "$root" "$@"; }

# Files of the appliance (config defaults, network, SD-card care, I2C, recovery).
cp -a "$repo/image/rootfs/." "$root/"
install -m 0755 "$ATBOX_BIN" "$root/usr/bin/atbox"
for unit in "$repo"/systemd/*.service "$repo"/systemd/*.mount; do
  install -m 0644 "$unit" "$root/etc/systemd/system/"
done
install -m 0644 "$repo/systemd/atbox.sysusers.conf" "$root/usr/lib/sysusers.d/atbox.conf"
inside systemd-sysusers
inside chown root:atbox /etc/atbox/atbox.toml
# Where the backup drive is mounted (atbox.service may write there and only there).
install -d -m 0700 "$root/media/ATBOX-BACKUP"
inside chown atbox:atbox /media/ATBOX-BACKUP
chmod 0640 "$root/etc/atbox/atbox.toml"

# The Pi's boot firmware: root by label, consoles on the serial port and HDMI, the OLED's
# I2C bus on. raspi-firmware writes config.txt and cmdline.txt from these when the
# initramfs is built below.
sed -i -e 's/^#\?ROOTPART=.*/ROOTPART=LABEL=RASPIROOT/' \
       -e 's/^#\?CONSOLES=.*/CONSOLES="ttyS1,115200 tty0"/' \
       -e 's/^#\?CMA=.*/CMA=0/' "$root/etc/default/raspi-firmware"
grep -q '^ROOTPART=LABEL=RASPIROOT' "$root/etc/default/raspi-firmware"
printf '# atbox: the OLED status display is on the I2C bus of GPIO 2/3.\ndtparam=i2c_arm=on\n' \
  > "$root/etc/default/raspi-firmware-custom"

# The initramfs, once, now that everything is installed (it was diverted to /bin/true
# during package installation: building it under emulation takes minutes each time).
rm "$root/usr/sbin/update-initramfs"
inside dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs
kernel=$(ls "$root/lib/modules" | sort -V | tail -1)
inside update-initramfs -c -k "$kernel"
[ -e "$root/boot/firmware/cmdline.txt" ] && [ -e "$root/boot/firmware/config.txt" ] || {
  echo "error: raspi-firmware did not write config.txt/cmdline.txt" >&2; exit 1; }
grep -q 'i2c_arm=on' "$root/boot/firmware/config.txt"

echo atbox > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tatbox\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"

# Services: atbox and its first-boot helpers, networkd, timesyncd; SSH only when a key
# is put on the boot partition; no apt or scrub timers writing to the card.
inside systemctl enable --quiet atbox.service atbox-firstboot.service atbox-expand-rootfs.service \
  atbox-ssh-keys.service systemd-networkd.service systemd-timesyncd.service
inside systemctl disable --quiet ssh.service ssh.socket 2>/dev/null || true
inside systemctl mask --quiet apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service
# No image-wide secrets: SSH host keys and the machine id are made on each box.
rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
# The Pi has no real-time clock: start from the build time, not 1970, until NTP answers.
install -d "$root/var/lib/systemd/timesync"
touch "$root/var/lib/systemd/timesync/clock"
inside chown -R systemd-timesync:systemd-timesync /var/lib/systemd/timesync 2>/dev/null || true

# Smaller image: no package lists or caches (apt update fetches them when needed).
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
rm -f "$root/boot/firmware/"*.bak
