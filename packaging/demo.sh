#!/usr/bin/env bash
# Builds the shim and runs one real container through it on a private containerd,
# then removes everything it started. Installs missing Debian packages first.
# Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pkg in containerd runc busybox-static; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo build --release -p containerd-shim-runc-v2
shim="${CARGO_TARGET_DIR:-$PWD/target}/release/containerd-shim-runc-v2"

tmp=$(mktemp -d /tmp/shim-demo.XXXXXX)
ns="shim-demo-$$"
addr="$tmp/containerd.sock"
ctd_pid=""
cleanup() {
  set +e
  ctr --address "$addr" -n "$ns" task kill -s KILL demo >/dev/null 2>&1
  ctr --address "$addr" -n "$ns" task delete demo >/dev/null 2>&1
  ctr --address "$addr" -n "$ns" container delete demo >/dev/null 2>&1
  ctr --address "$addr" namespace remove "$ns" >/dev/null 2>&1
  if [ -n "$ctd_pid" ]; then kill "$ctd_pid" 2>/dev/null; wait "$ctd_pid" 2>/dev/null; fi
  grep " $tmp" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/rootfs/bin" "$tmp/rootfs/proc" "$tmp/rootfs/sys" "$tmp/rootfs/dev" "$tmp/rootfs/tmp"
cp /bin/busybox "$tmp/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$tmp/rootfs/bin/$applet"
done
cat > "$tmp/config.toml" <<EOC
version = 2
root = "$tmp/root"
state = "$tmp/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$addr"
[ttrpc]
  address = "$addr.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$tmp/opt"
EOC
containerd --config "$tmp/config.toml" >"$tmp/containerd.log" 2>&1 &
ctd_pid=$!
for _ in $(seq 100); do
  ctr --address "$addr" version >/dev/null 2>&1 && break
  sleep 0.1
done

echo "--- running a container through $shim" >&2
ctr --address "$addr" -n "$ns" run --rm --runtime "$shim" --rootfs "$tmp/rootfs" demo \
  /bin/sh -c 'echo "hello from a container run by the Rust shim"; echo "pid $$, $(uname -sr)"; exit 3' \
  && status=0 || status=$?
echo "--- container exited with status $status (expected 3)" >&2
[ "$status" -eq 3 ]
