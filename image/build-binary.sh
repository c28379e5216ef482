#!/usr/bin/env bash
# Cross-compiles atbox for the Raspberry Pi (aarch64) with Debian's cross toolchain:
#   bash image/build-binary.sh            -> target/aarch64-unknown-linux-gnu/appliance/atbox
# Installs what it needs (apt: gcc-aarch64-linux-gnu; rustup: the aarch64 target).
#
# TLS uses rustls with the `ring` provider: it cross-compiles with plain gcc (no cmake
# or Go, unlike aws-lc-sys), builds in the old compilers of cross-rs images, and its
# AArch64 assembly (AES, SHA-2 and P-256 with the ARMv8 crypto extensions the Pi 3/4/5
# cores have) makes it fast on Cortex-A53/A72/A76.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=aarch64-unknown-linux-gnu
PROFILE=${PROFILE:-appliance}

if ! command -v aarch64-linux-gnu-gcc >/dev/null; then
  echo "== installing gcc-aarch64-linux-gnu (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq gcc-aarch64-linux-gnu libc6-dev-arm64-cross >/dev/null
fi
if ! rustup target list --installed | grep -qx "$TARGET"; then
  echo "== rustup target add $TARGET"
  rustup target add "$TARGET"
fi
cargo build --locked --profile "$PROFILE" --target "$TARGET" --bin atbox
BIN="target/$TARGET/$PROFILE/atbox"
echo "== built $BIN ($(stat -c %s "$BIN") bytes)"
