//! A logging binary for `binary://` and `binary-v2://` log URIs: a shell script on the host
//! (the shim runs it, not the container) that records what it was given.
//!
//! Query parameters (the shim passes each as two arguments, `key value`, in any order):
//! `dir=<record dir>` (required), `gate=<file>` (signal ready only once that file exists),
//! `ready=eof` (close fd 5 without writing a byte; default: write one byte, then close).
//!
//! Into the record dir it writes `argv` (one per line, `$0` first), `environ` (its initial
//! environment, one per line), `fds` (`ls -l /proc/<pid>/fd` before signalling ready),
//! `stdout`/`stderr` (what arrives on fds 3 and 4), `ready` (once it signalled), and appends
//! `TERM` to `signals` when it gets SIGTERM (then exits 0).

use std::path::{Path, PathBuf};
use std::time::Duration;

const SCRIPT: &str = r#"#!/bin/sh
# e2e test logger (see tests/src/logger.rs). Runs with an environment of only CONTAINER_ID and
# CONTAINER_NAMESPACE, so every command has an absolute path.
argv=$(printf '%s\n' "$0" "$@")
d= gate= ready=byte
while [ $# -ge 2 ]; do
  case "$1" in
    dir) d="$2" ;;
    gate) gate="$2" ;;
    ready) ready="$2" ;;
  esac
  shift 2
done
[ -n "$d" ] || exit 90
printf '%s\n' "$argv" > "$d/argv"
/bin/cat "/proc/$$/environ" | /usr/bin/tr '\000' '\n' > "$d/environ"
/bin/ls -l "/proc/$$/fd" > "$d/fds" 2>&1
child=
trap '/bin/echo TERM >> "$d/signals"; [ -n "$child" ] && kill $child 2>/dev/null; exit 0' TERM
/bin/cat <&3 > "$d/stdout" 4<&- 5>&- &
/bin/cat <&4 > "$d/stderr" 3<&- 5>&- &
exec 3<&- 4<&-
if [ -n "$gate" ]; then
  while [ ! -e "$gate" ]; do /bin/sleep 0.05; done
fi
[ "$ready" = eof ] || printf r >&5
exec 5>&-
: > "$d/ready"
while :; do
  /bin/sleep 1 &
  child=$!
  wait $child
done
"#;

/// The test logger installed in a directory, with one record dir per use.
pub struct TestLogger {
    pub script: PathBuf,
    pub record: PathBuf,
}

impl TestLogger {
    /// Writes the script to `<dir>/e2e-logger` and makes the record dir `<dir>/<name>`.
    pub fn install(dir: &Path, name: &str) -> TestLogger {
        std::fs::create_dir_all(dir).expect("mkdir logger dir");
        let script = dir.join("e2e-logger");
        if !script.exists() {
            crate::util::write_executable(&script, SCRIPT);
        }
        let record = dir.join(name);
        std::fs::create_dir_all(&record).expect("mkdir logger record dir");
        TestLogger { script, record }
    }

    /// `<scheme>://<script>?dir=<record>` plus `extra` query pairs.
    pub fn uri(&self, scheme: &str, extra: &[(&str, &str)]) -> String {
        let mut u = format!("{scheme}://{}?dir={}", self.script.display(), self.record.display());
        for (k, v) in extra {
            u.push_str(&format!("&{k}={v}"));
        }
        u
    }

    pub fn file(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.record.join(name)).ok()
    }

    /// Polls until the record file `name` satisfies `pred`.
    pub fn wait_file(&self, name: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        crate::util::poll(timeout, Duration::from_millis(50), || {
            self.file(name).filter(|t| pred(t)).map(|_| ())
        })
        .is_some()
    }

    /// Arguments after `$0`.
    pub fn args(&self) -> Vec<String> {
        self.file("argv")
            .unwrap_or_default()
            .lines()
            .skip(1)
            .map(str::to_string)
            .collect()
    }

    /// The initial environment, sorted.
    pub fn environ(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .file("environ")
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    /// Target of fd `n` as `ls -l /proc/<pid>/fd` showed it (e.g. `pipe:[123]`).
    pub fn fd_target(&self, n: u32) -> Option<String> {
        let fds = self.file("fds")?;
        fds.lines().find_map(|l| {
            let (name, target) = l.split_once(" -> ")?;
            (name.split_whitespace().last()? == n.to_string()).then(|| target.trim().to_string())
        })
    }
}
