#!/usr/bin/env bash
# Builds a Debian package of the shim: containerd-shim-runc-rs_<version>-1_<arch>.deb.
#
#   ./packaging/build-deb.sh [OUT_DIR]      (default OUT_DIR: target/debian)
#
# The package installs the shim next to Debian's Go shim, never over it (that file belongs to
# the containerd package):
#
#   /usr/lib/containerd-shim-rs/containerd-shim-runc-v2   the binary; for `runtime_path`,
#                                                       `ctr run --runtime <path>`, or first
#                                                       in containerd's PATH to replace
#                                                       io.containerd.runc.v2
#   /usr/bin/containerd-shim-runc-rs-v2                 link to it: the runtime type
#                                                       io.containerd.runc-rs.v2
#   /usr/share/doc/containerd-shim-runc-rs/examples/    the containerd snippets of
#                                                       packaging/containerd/ with the paths of
#                                                       this layout, and a systemd drop-in that
#                                                       puts the shim first in containerd's PATH
#
# SHIM_BIN selects the binary to package (default: the release build, built if missing).
# Needs dpkg-deb and objdump (binutils), which reads the glibc version the binary needs.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-${CARGO_TARGET_DIR:-$PWD/target}/debian}"
bin="${SHIM_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/containerd-shim-runc-v2}"
if [ -z "${SHIM_BIN:-}" ] && [ ! -x "$bin" ]; then
  cargo build --release -p containerd-shim-runc-v2
fi
[ -x "$bin" ] || { echo "build-deb: no executable shim at $bin" >&2; exit 1; }
for tool in dpkg-deb objdump; do
  command -v "$tool" >/dev/null || { echo "build-deb: $tool is missing" >&2; exit 1; }
done

pkg=containerd-shim-runc-rs
upstream=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
[ -n "$upstream" ] || { echo "build-deb: no [workspace.package] version in Cargo.toml" >&2; exit 1; }
version="$upstream-1"
arch=$(dpkg --print-architecture)
# The newest glibc symbol version the binary links against is the libc6 it needs.
glibc=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)
[ -n "$glibc" ] || { echo "build-deb: $bin links no glibc symbols (not a glibc build?)" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
lib=usr/lib/containerd-shim-rs
doc="usr/share/doc/$pkg"

install -D -m 0755 "$bin" "$root/$lib/containerd-shim-runc-v2"
install -d -m 0755 "$root/usr/bin" "$root/$doc/examples"
ln -s "../lib/containerd-shim-rs/containerd-shim-runc-v2" "$root/usr/bin/containerd-shim-runc-rs-v2"

# The snippets of packaging/containerd/, their comments (which speak of install.sh) replaced
# by one for this package and their paths by the package's.
for f in packaging/containerd/*.toml; do
  name=$(basename "$f")
  case "$name" in
    config-v2-replace.toml) about="containerd 1.6/1.7 (config version 2): our shim serves io.containerd.runc.v2.
# containerd runs the containerd-shim-runc-v2 first in its PATH: put /$lib first there
# (examples/containerd-path.conf). 1.7's CRI also honours the runtime_path below." ;;
    config-v2-side-by-side.toml) about="containerd 1.6/1.7 (config version 2): our shim beside the Go shim, as the runtime
# type io.containerd.runc-rs.v2 (/usr/bin/containerd-shim-runc-rs-v2).
#   ctr:  ctr run --runtime io.containerd.runc-rs.v2 ...
#   CRI:  a RuntimeClass with handler \"runc-rs\"; other pods keep the Go shim (\"runc\")." ;;
    config-v3-replace.toml) about="containerd 2.x (config version 3): our shim serves io.containerd.runc.v2 for CRI.
# For ctr and Docker too, put /$lib first in containerd's PATH
# (examples/containerd-path.conf)." ;;
    config-v3-side-by-side.toml) about="containerd 2.x (config version 3): our shim beside the Go shim.
#   ctr:  ctr run --runtime /$lib/containerd-shim-runc-v2 ...
#         (or --runtime io.containerd.runc-rs.v2)
#   CRI:  a RuntimeClass with handler \"runc-rs\"; other pods keep the Go shim (\"runc\")." ;;
    *) echo "build-deb: no description for $name" >&2; exit 1 ;;
  esac
  {
    printf '# %s\n# (%s package; merge into /etc/containerd/config.toml)\n' "$about" "$pkg"
    grep -v '^#' "$f" |
      sed -e "s#/usr/local/lib/containerd-shim-rs/#/$lib/#g" \
          -e "s#/usr/local/bin/containerd-shim-runc-v2#/$lib/containerd-shim-runc-v2#g"
  } >"$root/$doc/examples/$name"
  chmod 0644 "$root/$doc/examples/$name"
done
cat >"$root/$doc/examples/containerd-path.conf" <<EOF
# systemd drop-in for containerd.service: our shim replaces io.containerd.runc.v2 for every
# client (ctr, Docker, CRI) by coming first in containerd's PATH. Install it as
#   /etc/systemd/system/containerd.service.d/shim-rs.conf
# then: systemctl daemon-reload && systemctl restart containerd
# (running containers keep the shim that started them).
[Service]
Environment=PATH=/$lib:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EOF
cat >"$root/$doc/README.Debian" <<EOF
$pkg for Debian
$(printf '%*s' $((${#pkg} + 11)) '' | tr ' ' '-')

This package installs the Rust containerd shim beside containerd's own Go shim:

  /$lib/containerd-shim-runc-v2
      the shim. Use it per container with
        ctr run --runtime /$lib/containerd-shim-runc-v2 ...
      or for a CRI runtime handler through runtime_path (containerd 1.7, 2.x).
  /usr/bin/containerd-shim-runc-rs-v2
      the same binary under the runtime type io.containerd.runc-rs.v2
        ctr run --runtime io.containerd.runc-rs.v2 ...
      which containerd 1.6's CRI can use too (it ignores runtime_path).

To make it serve io.containerd.runc.v2 itself (every ctr, Docker and CRI container),
put /$lib first in containerd's PATH: examples/containerd-path.conf is a
systemd drop-in doing that. examples/config-*.toml are containerd configuration
snippets for both ways: config-v2-* for containerd 1.6/1.7, config-v3-* for 2.x.
EOF
cat >"$root/$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: $pkg

Files: *
Copyright: the containerd-shim-runc-v2 in Rust authors
License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 can be
 found in /usr/share/common-licenses/Apache-2.0.
EOF
chmod 0644 "$root/$doc/README.Debian" "$root/$doc/copyright" "$root/$doc/examples/containerd-path.conf"

installed_kib=$(du -sk --apparent-size "$root" | cut -f1)
install -d -m 0755 "$root/DEBIAN"
cat >"$root/DEBIAN/control" <<EOF
Package: $pkg
Version: $version
Architecture: $arch
Maintainer: containerd-shim-runc-v2 in Rust team <root@localhost>
Installed-Size: $installed_kib
Depends: libc6 (>= $glibc), libgcc-s1, runc
Recommends: containerd
Section: admin
Priority: optional
Description: containerd runtime shim v2 for runc, written in Rust
 A drop-in replacement for containerd's io.containerd.runc.v2 shim
 (containerd-shim-runc-v2): it serves the shim v2 Task API to containerd 1.6,
 1.7 and 2.x, creates containers through runc, copies their stdio, reaps every
 exit and publishes task and OOM events. One thread and a fraction of the Go
 shim's memory per container.
 .
 Installed beside containerd's Go shim as the runtime io.containerd.runc-rs.v2;
 see README.Debian to make it replace io.containerd.runc.v2.
EOF
(cd "$root" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/${pkg}_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
