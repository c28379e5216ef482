#!/usr/bin/env bash
# Builds the flashable Raspberry Pi SD image from Debian arm64 packages:
#   bash image/build-image.sh [--xz]   -> target/image/atbox-<version>-rpi-arm64.img(.xz)
#
# No loop devices and no mounts of the image: mmdebstrap builds the root filesystem in a
# directory (arm64 programs run under qemu-user through binfmt_misc), the boot files go
# into a FAT image with mtools, the root directory into an ext4 image with
# `mkfs.ext4 -d`, and sfdisk + dd assemble the card: an MBR with the FAT partition at
# 4 MiB and the root partition after it, both aligned to 4 MiB (SD erase blocks).
#
# Debian packages come from the build host's own apt mirror (`apt-cache policy`), or
# from ATBOX_IMAGE_MIRROR / ATBOX_IMAGE_SECURITY_MIRROR; the release is
# ATBOX_IMAGE_SUITE (default bookworm). The binary is ATBOX_BIN (default: the
# cross-built appliance binary, built first if missing). Runs as root; installs what it
# needs from apt.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
XZ=no
[ "${1:-}" = "--xz" ] && XZ=yes
SUITE=${ATBOX_IMAGE_SUITE:-bookworm}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
OUT=${ATBOX_IMAGE_OUT:-target/image}
NAME="atbox-$VERSION-rpi-arm64"
BIN=${ATBOX_BIN:-target/aarch64-unknown-linux-gnu/appliance/atbox}
log() { printf '== %s\n' "$*"; }
start=$(date +%s)

[ "$(id -u)" = 0 ] || { echo "error: build-image.sh needs root (mmdebstrap --mode=root, binfmt_misc)" >&2; exit 1; }

need=()
# arch-test: mmdebstrap's check that arm64 programs run here (only recommended by its
# package, so --no-install-recommends leaves it out, and mmdebstrap then refuses a
# foreign architecture).
for tool in mmdebstrap:mmdebstrap qemu-aarch64-static:qemu-user-static update-binfmts:binfmt-support \
            mkfs.vfat:dosfstools mcopy:mtools sfdisk:fdisk mkfs.ext4:e2fsprogs xz:xz-utils \
            arch-test:arch-test; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# arm64 maintainer scripts run under qemu-user via binfmt_misc.
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
update-binfmts --enable qemu-aarch64 2>/dev/null || true
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { echo "error: binfmt_misc has no qemu-aarch64 entry" >&2; exit 1; }

[ -x "$BIN" ] || bash image/build-binary.sh
BIN=$(realpath "$BIN")

# The host's Debian mirror: the first non-security Debian archive apt knows of.
host_mirror() {
  apt-cache policy 2>/dev/null | awk -v want="$1" '
    $1 ~ /^[0-9]+$/ && $2 ~ /^(https?|file):/ { uri = $2; suite = $3; sub(/\/.*/, "", suite); next }
    /release .*o=Debian,/ && uri != "" {
      sec = (suite ~ /-security$/)
      if ((want == "security") == sec) { print uri; exit }
      uri = ""
    }'
}
MIRROR=${ATBOX_IMAGE_MIRROR:-$(host_mirror main)}
SECURITY=${ATBOX_IMAGE_SECURITY_MIRROR:-$(host_mirror security)}
[ -n "$MIRROR" ] || { echo "error: no Debian mirror in this machine's apt configuration; set ATBOX_IMAGE_MIRROR" >&2; exit 1; }
COMPONENTS="main non-free-firmware"
sources=("deb $MIRROR $SUITE $COMPONENTS" "deb $MIRROR $SUITE-updates $COMPONENTS")
[ -n "$SECURITY" ] && sources+=("deb $SECURITY $SUITE-security $COMPONENTS")
log "Debian $SUITE arm64 from $MIRROR${SECURITY:+ (security: $SECURITY)}"

work=$(mktemp -d "${TMPDIR:-/tmp}/atbox-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
# Peak scratch: the root tree (~0.9 GB) and its ext4 image (~1.4 GB), then the card
# (~1.4 GB, sparse); say so up front rather than fail after 15 minutes of building.
free_mb() { df --output=avail -BM "$1" | tail -1 | tr -dc 0-9; }
mkdir -p "$OUT"
for dir in "$work" "$OUT"; do
  if [ "$(free_mb "$dir")" -lt 4096 ]; then
    echo "error: $(free_mb "$dir") MiB free under $dir; the image build needs 4 GiB (set TMPDIR or free space)" >&2
    exit 1
  fi
done
rootfs="$work/rootfs"

PACKAGES=(
  linux-image-arm64 raspi-firmware initramfs-tools
  systemd systemd-sysv systemd-timesyncd udev dbus kmod
  iproute2 netbase ca-certificates
  e2fsprogs dosfstools fdisk
  openssh-server
)
log "root filesystem (mmdebstrap; the initramfs is built once, at the end)"
mmdebstrap --mode=root --variant=minbase --architectures=arm64 \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --include="$(IFS=,; echo "${PACKAGES[*]}")" \
  --essential-hook='chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs && ln -s /bin/true "$1/usr/sbin/update-initramfs"' \
  --customize-hook="ATBOX_BIN='$BIN' bash '$repo/image/customize-rootfs.sh' \"\$1\"" \
  "$SUITE" "$rootfs" "${sources[@]}"

log "boot partition (FAT32, mtools)"
BOOT_MB=256
mkfs.vfat -F 32 -n RASPIFIRM -C "$work/boot.img" $((BOOT_MB * 1024)) >/dev/null
mcopy -s -p -i "$work/boot.img" "$rootfs"/boot/firmware/* ::
rm -rf "$rootfs"/boot/firmware/*

log "root partition (ext4, mkfs.ext4 -d)"
used_mb=$(du -sm --apparent-size "$rootfs" | cut -f1)
# Room for the first boot (logs, keys, the first account) before the partition grows
# to fill the card; rounded to 4 MiB.
ROOT_MB=$(( (used_mb * 13 / 10 + 256 + 3) / 4 * 4 ))
mkfs.ext4 -q -L RASPIROOT -d "$rootfs" -E root_owner=0:0 "$work/root.img" "${ROOT_MB}M"
rm -rf "$rootfs"

log "assembling the card (sfdisk, 4 MiB alignment)"
mkdir -p "$OUT"
img="$OUT/$NAME.img"
rm -f "$img" "$img.xz"
truncate -s $(( (4 + BOOT_MB + ROOT_MB) * 1024 * 1024 )) "$img"
sfdisk --quiet "$img" <<SFDISK
label: dos
start=4MiB, size=${BOOT_MB}MiB, type=c, bootable
start=$((4 + BOOT_MB))MiB, size=${ROOT_MB}MiB, type=83
SFDISK
dd if="$work/boot.img" of="$img" bs=1M seek=4 conv=notrunc,sparse status=none
dd if="$work/root.img" of="$img" bs=1M seek=$((4 + BOOT_MB)) conv=notrunc,sparse status=none
rm -f "$work/boot.img" "$work/root.img"
size=$(stat -c %s "$img")
if [ "$XZ" = yes ]; then
  log "compressing (xz)"
  xz -T0 -6 -k -f "$img"
fi
took=$(( $(date +%s) - start ))
log "built $img ($((size / 1024 / 1024)) MiB$( [ "$XZ" = yes ] && echo ", $(( $(stat -c %s "$img.xz") / 1024 / 1024 )) MiB as .xz"), $((took / 60)) min $((took % 60)) s)"
