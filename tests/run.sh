#!/usr/bin/env bash
# Runs the whole test suite: unit tests of every crate and the end-to-end tests,
# which start private containerd daemons and run real containers through the
# release build of the shim. Needs root, containerd, ctr, runc and busybox-static.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p containerd-shim-runc-v2
export SHIM_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/containerd-shim-runc-v2"
cargo test --workspace -- --test-threads=2
