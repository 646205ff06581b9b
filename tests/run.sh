#!/usr/bin/env bash
# Runs the whole test suite: the unit tests of every crate once, then the whole end-to-end
# suite (private containerd daemons, real containers through the release build of the shim,
# Docker Engine on top) once against each containerd of the version matrix:
#
#   1.6  Debian 12's containerd 1.6.20 (/usr/bin/containerd)
#   1.7  containerd 1.7.24 (Debian trixie)   } fetched once into a cache dir by
#   2.1  containerd 2.1.9  (Debian sid)      } tests/provision-containerd.sh
#
# A failing test is reported with the containerd version it failed on, and the run ends with
# one summary line per version and a total. Needs root, containerd, ctr, runc, busybox-static
# and docker.io (.ci/run installs them).
#
# Environment:
#   E2E_VERSIONS   versions to run (default "1.6 1.7 2.1")
#   SHIM_CI_CACHE  cache dir of the provisioned releases (default /var/cache/shim-ci)
#   E2E_GO_BASELINE=1  run the e2e suite with each version's own Go shim instead of ours
#                      (the reference; known differences are listed in tests/COMPAT.md)
#   E2E_FILTER     passed to the e2e test binaries as a name filter
#   SHIM_BIN       test this shim binary instead of building ours (and skip the unit tests)
set -euo pipefail
cd "$(dirname "$0")/.."

VERSIONS="${E2E_VERSIONS:-1.6 1.7 2.1}"
export SHIM_CI_CACHE="${SHIM_CI_CACHE:-/var/cache/shim-ci}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
logs="$target/e2e-logs"
mkdir -p "$logs"

# shellcheck disable=SC2086
tests/provision-containerd.sh $VERSIONS

if [ -n "${SHIM_BIN:-}" ]; then
  OUR_SHIM="$SHIM_BIN"
else
  cargo build --release -p containerd-shim-runc-v2
  OUR_SHIM="$target/release/containerd-shim-runc-v2"
fi

if [ -z "${E2E_GO_BASELINE:-}" ] && [ -z "${SHIM_BIN:-}" ]; then
  # Unit tests of every crate except the e2e suite (which runs per version below).
  cargo test --workspace --exclude e2e -- --test-threads=2
fi
cargo test -p e2e --features cri --no-run

total_pass=0
total_fail=0
summary=()
failed_names=()
for v in $VERSIONS; do
  bin_dir="$SHIM_CI_CACHE/containerd-$v/bin"
  label="containerd $("$bin_dir/containerd" --version | awk '{print $3}')"
  if [ -n "${E2E_GO_BASELINE:-}" ]; then
    shim="$bin_dir/containerd-shim-runc-v2"
    label="$label with its Go shim"
  else
    shim="$OUR_SHIM"
  fi
  log="$logs/e2e-$v.log"
  echo
  echo "=== e2e suite against $label (E2E_CONTAINERD=$v, log $log)"
  start=$(date +%s)
  set +e
  # shellcheck disable=SC2086
  E2E_CONTAINERD="$v" SHIM_BIN="$shim" E2E_LOG_DIR="$logs/failed-$v" \
    cargo test -p e2e --features cri --no-fail-fast -- --test-threads=2 ${E2E_FILTER:-} 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  secs=$(( $(date +%s) - start ))
  read -r pass fail < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i } }
                              END { print p + 0, f + 0 }' "$log")
  # A test binary that did not even run (build or startup failure) counts as a failure.
  if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; fi
  while read -r name; do
    [ -n "$name" ] && failed_names+=("FAILED on $label: $name")
  done < <(awk '/Running (tests|unittests)/ { bin = $2 } / \.\.\. FAILED$/ { print bin "::" $2 }' "$log")
  summary+=("$label: $pass passed, $fail failed (${secs}s)")
  total_pass=$((total_pass + pass))
  total_fail=$((total_fail + fail))
done

echo
echo "=== e2e version matrix"
for s in "${summary[@]}"; do echo "  $s"; done
for f in "${failed_names[@]}"; do echo "  $f"; done
[ "$total_fail" -eq 0 ] || echo "  logs of failed tests: $logs/failed-<version>/"
echo "total: $total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
