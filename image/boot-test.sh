#!/usr/bin/env bash
# Boots the built SD image under qemu-system-aarch64 (-M virt, Cortex-A72, software
# emulation) and checks it as a user would use it:
#   - an atbox.toml (with a [first_account]) and an authorized_keys file are put on the
#     card's FAT partition, as from any computer;
#   - the image's own kernel and initrd boot its root filesystem, with user-mode
#     networking: the guest's port 80 and 22 forwarded to 127.0.0.1, and a PLC
#     directory stand-in (on the host's loopback) reachable from the guest;
#   - atbox.service answers describeServer from the host; the first account exists and
#     its password works; the root filesystem grew to the card; mDNS answers inside
#     the guest (`atbox lan`); the password was removed from the card's atbox.toml;
#   - a FAT drive named as Windows names ATBOX-BACKUP (ATBOX-BACKU) is mounted at
#     /media/ATBOX-BACKUP for atbox, which backs up to it (by hand and on its own) and
#     reads the backup back in full.
#   bash image/boot-test.sh [IMAGE]     (default: the one build-image.sh made)
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
IMG=${1:-target/image/atbox-$VERSION-rpi-arm64.img}
[ -f "$IMG" ] || { echo "error: $IMG not found: run image/build-image.sh first" >&2; exit 1; }
log() { printf '== [%3ss] %s\n' "$(( $(date +%s) - start ))" "$*"; }
start=$(date +%s)

need=()
command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm)
command -v mcopy >/dev/null || need+=(mtools)
command -v ssh >/dev/null || need+=(openssh-client)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -d tests/interop/node_modules/@ipld/dag-cbor ] || bash .ci/install node

work=$(mktemp -d "${TMPDIR:-/tmp}/atbox-boot.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A card larger than the image, as a real one is: the root filesystem must grow into it.
disk="$work/card.img"
cp --sparse=always "$IMG" "$disk"
truncate -s +1G "$disk"
fat="$disk@@4M"
# The backup drive: FAT, with the 11-character name Windows gives "ATBOX-BACKUP".
usb="$work/usb.img"
truncate -s 64M "$usb"
mformat -i "$usb" -v ATBOX-BACKU ::

# The PLC directory stand-in, on the host's loopback.
node tests/interop/plc-standin.mjs > "$work/plc.json" &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/plc.json" ] && break; sleep 0.1; done
PLC_PORT=$(sed -n 's/.*"url":"http:\/\/127.0.0.1:\([0-9]*\)".*/\1/p' "$work/plc.json")
[ -n "$PLC_PORT" ] || { echo "error: the PLC stand-in did not start" >&2; exit 1; }

# What a user puts on the boot partition.
ssh-keygen -q -t ed25519 -N '' -f "$work/key"
cp "$work/key.pub" "$work/authorized_keys"
cat > "$work/atbox.toml" <<TOML
hostname = "atbox.local"
plc_url = "http://10.0.2.100:2582"
handle_domains = ".test"
relays = []

[first_account]
handle = "owner.test"
email = "owner@example.com"
password = "boot test password"
TOML
mcopy -o -i "$fat" "$work/atbox.toml" "$work/authorized_keys" ::
kernel=$(mdir -b -i "$fat" :: | sed 's#^::/##' | grep '^vmlinuz-' | sort -V | tail -1)
initrd=$(mdir -b -i "$fat" :: | sed 's#^::/##' | grep '^initrd.img-' | sort -V | tail -1)
mcopy -i "$fat" "::$kernel" "::$initrd" "$work/"
log "booting $kernel with $initrd"

HTTP=$(free_port)
SSH=$(free_port)
qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 \
  -kernel "$work/$kernel" -initrd "$work/$initrd" \
  -append "root=LABEL=RASPIROOT rw rootwait console=ttyAMA0 net.ifnames=1" \
  -drive "file=$disk,format=raw,if=virtio" \
  -drive "file=$usb,format=raw,if=virtio" \
  -netdev "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:$HTTP-:80,hostfwd=tcp:127.0.0.1:$SSH-:22,guestfwd=tcp:10.0.2.100:2582-tcp:127.0.0.1:$PLC_PORT" \
  -device virtio-net-pci,netdev=net0,romfile= \
  -display none -monitor none -serial "file:$work/console.log" &
qemu=$!
pids+=($qemu)

fail() {
  echo "error: $*" >&2
  echo "--- guest console (last 60 lines) ---" >&2
  tail -60 "$work/console.log" >&2 || true
  exit 1
}
url="http://127.0.0.1:$HTTP"
deadline=$(( $(date +%s) + 600 ))
until curl -fsS --max-time 5 "$url/xrpc/com.atproto.server.describeServer" > "$work/describe.json" 2>/dev/null; do
  kill -0 $qemu 2>/dev/null || fail "QEMU exited"
  [ "$(date +%s)" -lt "$deadline" ] || fail "atbox did not answer within 10 minutes"
  sleep 2
done
log "describeServer from the host: $(cat "$work/describe.json")"
grep -q '"did":"did:web:atbox.local"' "$work/describe.json" || fail "unexpected describeServer answer"

# The first account from the card: resolvable, and its password works.
did=""
for _ in $(seq 60); do
  did=$(curl -fsS "$url/xrpc/com.atproto.identity.resolveHandle?handle=owner.test" 2>/dev/null | sed -n 's/.*"did":"\([^"]*\)".*/\1/p') && [ -n "$did" ] && break
  sleep 2
done
[ -n "$did" ] || fail "the first account (owner.test) was not created"
curl -fsS -H 'content-type: application/json' \
  -d '{"identifier":"owner.test","password":"boot test password"}' \
  "$url/xrpc/com.atproto.server.createSession" | grep -q '"accessJwt"' || fail "cannot log in as owner.test"
log "first account from the boot partition: owner.test = $did, login ok"

sshg() { ssh -q -i "$work/key" -p "$SSH" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10 root@127.0.0.1 "$@"; }
for _ in $(seq 60); do sshg true 2>/dev/null && break; sleep 2; done
sshg true || fail "SSH with the key from the boot partition did not work"
log "SSH with the key from the boot partition: ok"
echo "--- inside the guest ---"
sshg 'systemctl is-active atbox.service atbox-firstboot.service atbox-expand-rootfs.service systemd-networkd.service;
      echo "root filesystem: $(findmnt -no SIZE /) on $(findmnt -no SOURCE /) ($(findmnt -no OPTIONS /))";
      echo "journal: $(grep -h ^Storage /etc/systemd/journald.conf.d/*.conf)";
      echo "/tmp: $(findmnt -no FSTYPE /tmp); swap: $(swapon --show=NAME --noheadings | wc -l) devices";
      atbox --version' | tee "$work/guest.txt"
grep -qx 'active' "$work/guest.txt" || fail "services not active"
! sshg 'systemctl is-active --quiet atbox.service atbox-firstboot.service atbox-expand-rootfs.service' && fail "a service is not active"
root_bytes=$(sshg 'findmnt -bno SIZE /')
image_bytes=$(stat -c %s "$IMG")
[ "$root_bytes" -gt "$image_bytes" ] || fail "the root filesystem did not grow ($root_bytes bytes)"
log "root filesystem grew to $root_bytes bytes (image: $image_bytes)"
sshg 'atbox lan --seconds 5 --resolve atbox.local' | tee "$work/lan.txt" || fail "mDNS did not answer inside the guest"
grep -q 'atbox.local: 10.0.2.15' "$work/lan.txt" && grep -q "owner.test $did" "$work/lan.txt" || fail "mDNS answers are incomplete"
grep -q '127.0.0.1' "$work/lan.txt" && fail "mDNS must not advertise loopback addresses"
log "mDNS inside the guest: ok"

# The backup drive: mounted for atbox; a run by hand, the server's own, the full check.
for _ in $(seq 30); do sshg 'findmnt -n /media/ATBOX-BACKUP' >/dev/null && break; sleep 1; done
sshg 'findmnt -no FSTYPE,OPTIONS /media/ATBOX-BACKUP' | tee "$work/usb.txt"
grep -q '^vfat .*uid=' "$work/usb.txt" || fail "the backup drive is not mounted at /media/ATBOX-BACKUP for atbox"
sshg 'runuser -u atbox -- atbox backup run' | tee "$work/backup.txt" || fail "atbox backup run failed"
grep -q 'last good backup' "$work/backup.txt" || fail "atbox backup run did not report a good backup"
sshg 'runuser -u atbox -- atbox backup verify' | tee "$work/verify.txt" || fail "atbox backup verify failed"
grep -q 'is good' "$work/verify.txt" || fail "the backup did not check out"
sshg 'ls /media/ATBOX-BACKUP/atbox-backup/manifests' | grep -q '\.age$' || fail "no backup on the drive"
log "backup drive (ATBOX-BACKU, FAT): mounted, backed up, checked"

sshg 'systemctl poweroff' || true
for _ in $(seq 120); do kill -0 $qemu 2>/dev/null || break; sleep 1; done
kill -0 $qemu 2>/dev/null && fail "the guest did not power off"
mtype -i "$fat" ::atbox.toml > "$work/card-after.toml"
grep -q 'boot test password' "$work/card-after.toml" && fail "the password is still on the card"
grep -q 'owner.test' "$work/card-after.toml" || fail "the card's atbox.toml lost its other settings"
log "the card's atbox.toml no longer holds the password"
log "boot test passed"
