#!/usr/bin/env bash
# Installs the shim.
#
#   ./packaging/install.sh                 replaces io.containerd.runc.v2: installs
#                                          /usr/local/bin/containerd-shim-runc-v2, which
#                                          precedes /usr/bin in containerd's PATH
#   ./packaging/install.sh --side-by-side  installs it next to the Go shim:
#                                          /usr/local/lib/containerd-shim-rs/containerd-shim-runc-v2
#                                          (for runtime_path and absolute runtime names) and
#                                          /usr/local/bin/containerd-shim-runc-rs-v2 linked to it
#                                          (the runtime type io.containerd.runc-rs.v2)
#
# See packaging/containerd/ for the matching containerd configuration. Builds the release
# binary first if it is missing. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/containerd-shim-runc-v2"
[ -x "$bin" ] || cargo build --release -p containerd-shim-runc-v2

case "${1:-}" in
  "")
    dest=/usr/local/bin/containerd-shim-runc-v2 ;;
  --side-by-side)
    dest=/usr/local/lib/containerd-shim-rs/containerd-shim-runc-v2 ;;
  *)
    echo "usage: $0 [--side-by-side]" >&2; exit 2 ;;
esac
install -D -m 0755 "$bin" "$dest"
echo "installed $dest"
if [ "${1:-}" = --side-by-side ]; then
  ln -sfn "$dest" /usr/local/bin/containerd-shim-runc-rs-v2
  echo "linked /usr/local/bin/containerd-shim-runc-rs-v2 -> $dest"
fi
"$dest" -v
