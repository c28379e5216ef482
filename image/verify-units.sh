#!/usr/bin/env bash
# Checks the systemd units: `systemd-analyze verify` (syntax, directives, the binary
# they start) and the `systemd-analyze security` exposure score of atbox.service.
# The units name /usr/bin/atbox, as installed on the image; here they are checked
# against the binary just built (BIN, default target/debug/atbox).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${BIN:-target/debug/atbox}")
[ -x "$BIN" ] || { echo "error: $BIN is missing: build atbox first" >&2; exit 1; }
if ! command -v systemd-analyze >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq systemd >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for unit in systemd/*.service; do
  sed -e "s#/usr/bin/atbox#$BIN#g" -e "s#/usr/libexec/atbox/#$PWD/image/rootfs/usr/libexec/atbox/#g" \
    "$unit" > "$work/$(basename "$unit")"
done
cp systemd/*.mount "$work/"
systemd-analyze verify "$work"/*.service "$work"/*.mount
echo "== systemd-analyze verify: ok ($(cd systemd && ls -- *.service *.mount | tr '\n' ' '))"
root="$work/root"
mkdir -p "$root/usr/bin" "$root/etc/systemd/system"
cp "$BIN" "$root/usr/bin/atbox"
cp systemd/atbox.service "$root/etc/systemd/system/"
systemd-analyze security --offline=yes --root="$root" atbox.service | tail -1
