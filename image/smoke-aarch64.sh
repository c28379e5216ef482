#!/usr/bin/env bash
# Runs the cross-built Raspberry Pi binary under qemu-aarch64-static (user-mode
# emulation) as a smoke test: `atbox --version`, `atbox serve` answering
# describeServer on 127.0.0.1, an account, a post, and `atbox repo verify` on the
# exported repo with the key from its DID document. Needs `bash image/build-binary.sh`
# first; installs what it needs (qemu-user-static, curl; Node.js and tests/interop's
# packages for the PLC directory stand-in).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/aarch64-unknown-linux-gnu/appliance/atbox}
[ -x "$BIN" ] || { echo "error: $BIN is missing: run bash image/build-binary.sh first" >&2; exit 1; }
need=()
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -d tests/interop/node_modules/@ipld/dag-cbor ] || bash .ci/install node
# Child processes (none today) would need the loader too: set it for all of them.
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
pi() { qemu-aarch64-static "$BIN" "$@"; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
start=$(date +%s)

command -v file >/dev/null && echo "== $(file -b "$BIN" | cut -d, -f1-2)"
pi --version

node tests/interop/plc-standin.mjs > "$work/plc.json" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/plc.json" ] && break; sleep 0.1; done
PLC=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).url)' "$work/plc.json")

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# qemu itself in the background, not the `pi` function: `$!` of a backgrounded function
# is a subshell, and killing that would leave the server running.
ATBOX_LISTEN=127.0.0.1:$PORT ATBOX_DATA_DIR=$work/data ATBOX_PLC_URL=$PLC ATBOX_LOG=warn \
  qemu-aarch64-static "$BIN" serve > "$work/serve.log" 2>&1 &
pids+=($!)
URL=http://127.0.0.1:$PORT
for _ in $(seq 300); do curl -sf "$URL/xrpc/_health" >/dev/null && break; sleep 0.1; done
echo "== describeServer: $(curl -sf "$URL/xrpc/com.atproto.server.describeServer")"

json() { python3 -c "import sys,json; print(json.load(sys.stdin)$1)"; }
ACCOUNT=$(curl -sf -X POST "$URL/xrpc/com.atproto.server.createAccount" -H 'content-type: application/json' \
  -d '{"handle":"raspberry.test","email":"pi@example.com","password":"raspberry"}')
DID=$(echo "$ACCOUNT" | json "['did']")
TOKEN=$(echo "$ACCOUNT" | json "['accessJwt']")
curl -sf -X POST "$URL/xrpc/com.atproto.repo.createRecord" -H 'content-type: application/json' -H "authorization: Bearer $TOKEN" \
  -d "{\"repo\":\"$DID\",\"collection\":\"app.bsky.feed.post\",\"record\":{\"text\":\"hello from an emulated Pi\",\"createdAt\":\"2026-01-01T00:00:00Z\"}}" >/dev/null
curl -sf "$URL/xrpc/com.atproto.sync.getRepo?did=$DID" -o "$work/repo.car"
KEY=did:key:$(curl -sf "$PLC/$DID" | json "['verificationMethod'][0]['publicKeyMultibase']")
pi repo verify "$work/repo.car" --did-key "$KEY"
echo "== aarch64 smoke test passed in $(( $(date +%s) - start ))s"
