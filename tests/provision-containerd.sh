#!/usr/bin/env bash
# Provisions the containerd releases of the end-to-end test matrix into a cache directory,
# once; later runs reuse what is there and touch nothing else.
#
#   1.6  Debian 12 (bookworm): the system package, /usr/bin/containerd (installed with apt by
#        .ci/run); only linked here so that every version has the same layout.
#   1.7  Debian 13 (trixie) containerd 1.7.24
#   2.1  Debian unstable (sid) containerd 2.1.9
#
# 1.7 and 2.1 are fetched with `apt-get download` under a private apt configuration (its own
# sources list, lists and cache dirs under the cache directory; the system's apt sources and
# configuration stay untouched) and unpacked with `dpkg -x`. Nothing is installed. They run on
# Debian 12 with bookworm's runc 1.1.5.
#
# Result, for V in 1.6 1.7 2.1:
#   $CACHE/containerd-$V/bin/{containerd,ctr,containerd-shim-runc-v2}   (the release's own Go shim)
#   $CACHE/containerd-$V/VERSION                                        (Debian package version)
# The e2e harness finds them with E2E_CONTAINERD=$V (and SHIM_CI_CACHE=$CACHE if not the default).
#
# Usage: tests/provision-containerd.sh [--cache DIR] [VERSION...]
#   DIR defaults to $SHIM_CI_CACHE, else /var/cache/shim-ci. VERSION defaults to "1.6 1.7 2.1".
# Environment: CONTAINERD_17_VERSION / CONTAINERD_21_VERSION override the wanted upstream
#   version (default 1.7.24 / 2.1.9). If the suite no longer carries it, the newest release of
#   the same minor series is taken, with a warning. DEBIAN_MIRROR (default
#   http://deb.debian.org/debian).
set -euo pipefail

CACHE="${SHIM_CI_CACHE:-/var/cache/shim-ci}"
versions=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cache) CACHE="$2"; shift 2 ;;
    --cache=*) CACHE="${1#--cache=}"; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) versions+=("$1"); shift ;;
  esac
done
[ ${#versions[@]} -gt 0 ] || versions=(1.6 1.7 2.1)
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

log() { echo "[provision] $*" >&2; }
die() { echo "[provision] ERROR: $*" >&2; exit 1; }

mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"

# suite and wanted upstream version of each fetched release
suite_of() { case "$1" in 1.7) echo trixie ;; 2.1) echo sid ;; *) return 1 ;; esac; }
wanted_of() {
  case "$1" in
    1.7) echo "${CONTAINERD_17_VERSION:-1.7.24}" ;;
    2.1) echo "${CONTAINERD_21_VERSION:-2.1.9}" ;;
  esac
}

# ---- private apt configuration (APT_CONFIG is read before, and replaces, /etc/apt/apt.conf*)
APTDIR="$CACHE/apt"
apt_setup() {
  mkdir -p "$APTDIR"/{etc/apt.conf.d,etc/sources.list.d,etc/preferences.d,lists/partial,cache/archives/partial,download}
  {
    echo "deb [signed-by=$KEYRING] $MIRROR trixie main"
    echo "deb [signed-by=$KEYRING] $MIRROR sid main"
  } >"$APTDIR/etc/sources.list"
  cat >"$APTDIR/etc/apt.conf" <<EOF
Dir::Etc::main "$APTDIR/etc/apt.conf.main";
Dir::Etc::Parts "$APTDIR/etc/apt.conf.d";
Dir::Etc::SourceList "$APTDIR/etc/sources.list";
Dir::Etc::SourceParts "$APTDIR/etc/sources.list.d";
Dir::Etc::Preferences "$APTDIR/etc/preferences";
Dir::Etc::PreferencesParts "$APTDIR/etc/preferences.d";
Dir::State::Lists "$APTDIR/lists";
Dir::Cache "$APTDIR/cache";
Dir::Cache::archives "$APTDIR/cache/archives";
Acquire::Languages "none";
Acquire::IndexTargets::deb::DEP-11::DefaultEnabled "false";
Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled "false";
Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled "false";
Acquire::IndexTargets::deb::CNF::DefaultEnabled "false";
APT::Sandbox::User "root";
// The mirrors these machines reach serve a fixed snapshot of the archive whose Release files
// may be past their Valid-Until (the system's apt configuration says the same); signatures
// are still checked against debian-archive-keyring.
Acquire::Check-Valid-Until "false";
Acquire::Check-Date "false";
EOF
  : >"$APTDIR/etc/apt.conf.main"
}
papt() { APT_CONFIG="$APTDIR/etc/apt.conf" "$@"; }
apt_updated=0
apt_update() {
  [ $apt_updated = 1 ] && return 0
  apt_setup
  log "apt-get update (private lists in $APTDIR/lists: trixie, sid)"
  papt apt-get -q update >"$APTDIR/update.log" 2>&1 || { cat "$APTDIR/update.log" >&2; die "apt-get update failed"; }
  apt_updated=1
}

# The Debian version of containerd to fetch for series $1 (e.g. 1.7) from suite $2.
pick_version() {
  local series="$1" suite="$2" want="$3" all exact same
  all="$(papt apt-cache madison containerd | awk -v s="/debian $suite/" 'index($0, s) { print $3 }')"
  exact="$(printf '%s\n' "$all" | grep -E "^([0-9]+:)?${want//./\\.}[~+-]" | head -n1 || true)"
  if [ -n "$exact" ]; then echo "$exact"; return 0; fi
  same="$(printf '%s\n' "$all" | grep -E "^([0-9]+:)?${series//./\\.}\." | head -n1 || true)"
  if [ -n "$same" ]; then
    log "WARNING: $suite no longer has containerd $want; taking $same instead"
    echo "$same"; return 0
  fi
  die "suite $suite has no containerd $series.x (it has: ${all:-nothing})"
}

link_bins() { # dir-with-binaries target-dir
  local src="$1" dst="$2" b
  mkdir -p "$dst"
  for b in containerd ctr containerd-shim-runc-v2; do
    [ -x "$src/$b" ] || die "$src/$b is missing"
    ln -sfn "$src/$b" "$dst/$b"
  done
}

provision_system_16() {
  local dir="$CACHE/containerd-1.6"
  command -v /usr/bin/containerd >/dev/null || die "containerd 1.6 is not installed (apt-get install containerd)"
  link_bins /usr/bin "$dir/bin"
  dpkg-query -W -f='${Version}\n' containerd >"$dir/VERSION"
  log "1.6: system containerd $(cat "$dir/VERSION") -> $dir/bin"
}

provision_fetched() {
  local series="$1" suite want dir ver deb tree
  suite="$(suite_of "$series")" || die "unknown version $series (known: 1.6 1.7 2.1)"
  want="$(wanted_of "$series")"
  dir="$CACHE/containerd-$series"
  if [ -f "$dir/VERSION" ] && "$dir/bin/containerd" --version >/dev/null 2>&1 \
     && [ -x "$dir/bin/ctr" ] && [ -x "$dir/bin/containerd-shim-runc-v2" ]; then
    log "$series: cached $(cat "$dir/VERSION") in $dir"
    return 0
  fi
  apt_update
  ver="$(pick_version "$series" "$suite" "$want")"
  log "$series: downloading containerd=$ver from $suite"
  (cd "$APTDIR/download" && rm -f containerd_*.deb && papt apt-get -q download "containerd=$ver" >&2) \
    || die "apt-get download containerd=$ver failed"
  deb="$(ls "$APTDIR"/download/containerd_*.deb | head -n1)"
  tree="$dir/tree"
  rm -rf "$dir"
  mkdir -p "$tree"
  dpkg -x "$deb" "$tree"
  link_bins "$tree/usr/bin" "$dir/bin"
  echo "$ver" >"$dir/VERSION"
  rm -f "$deb"
  "$dir/bin/containerd" --version >&2 || die "the unpacked containerd $ver does not run here"
  log "$series: containerd $ver -> $dir/bin"
}

for v in "${versions[@]}"; do
  case "$v" in
    1.6) provision_system_16 ;;
    1.7|2.1) provision_fetched "$v" ;;
    *) die "unknown version $v (known: 1.6 1.7 2.1)" ;;
  esac
done

# The package lists (~250 MB) are only needed to fetch; a later run fetches them again if a
# release is missing from the cache.
if [ $apt_updated = 1 ]; then
  rm -rf "$APTDIR/lists" "$APTDIR/cache" "$APTDIR/download"
fi
