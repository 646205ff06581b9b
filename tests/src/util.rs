//! Small helpers: binaries under test, unique names, hashing, bounded polling.

use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The shim binary under test: `$SHIM_BIN`, else `<workspace>/target/release/containerd-shim-runc-v2`.
///
/// Panics with instructions when it does not exist: every test needs it.
pub fn shim_bin() -> PathBuf {
    let (path, origin) = match std::env::var_os("SHIM_BIN") {
        Some(p) if !p.is_empty() => (PathBuf::from(p), "$SHIM_BIN"),
        _ => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/containerd-shim-runc-v2"),
            "the default (SHIM_BIN unset)",
        ),
    };
    let path = std::path::absolute(&path).unwrap_or(path);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => path,
        Ok(_) => panic!("shim binary {} from {origin} is not an executable file", path.display()),
        Err(e) => panic!(
            "shim binary {} from {origin} is missing ({e}).\n\
             Build it with `cargo build --release -p containerd-shim-runc-v2`, or point SHIM_BIN \
             at a shim, e.g. SHIM_BIN=/usr/bin/containerd-shim-runc-v2 for the Go reference shim.",
            path.display()
        ),
    }
}

fn bin_from_env(var: &str, default: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(default),
    }
}

/// containerd: `$CONTAINERD_BIN`; else the `E2E_CONTAINERD` release from the provisioning
/// cache; else `/usr/bin/containerd` (see [`crate::config::matrix_bin`]).
pub fn containerd_bin() -> PathBuf {
    crate::config::matrix_bin("CONTAINERD_BIN", "containerd")
}

/// ctr: `$CTR_BIN`; else the `E2E_CONTAINERD` release's ctr; else `/usr/bin/ctr`.
pub fn ctr_bin() -> PathBuf {
    crate::config::matrix_bin("CTR_BIN", "ctr")
}

/// runc used for teardown of leftovers: `$RUNC_BIN`, default `runc` from PATH.
pub fn runc_bin() -> PathBuf {
    bin_from_env("RUNC_BIN", "runc")
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// Directory where shims listen (`/run/containerd/s`, shared by every containerd on the host).
pub const SHIM_SOCKET_DIR: &str = "/run/containerd/s";
/// runc state root of runc shims (`<this>/<namespace>`), shared by every containerd.
pub const RUNC_ROOT: &str = "/run/containerd/runc";
/// Where ctr creates its stdio fifos by default (`<this>/<random>/<id>-stdout`, ...).
pub const CTR_FIFO_DIR: &str = "/run/containerd/fifo";
/// Name of the runtime v2 plugin's directories under containerd's root and state.
pub const TASKS_DIR: &str = "io.containerd.runtime.v2.task";

/// Go `filepath.Join(parts...)` for absolute paths: join with `/`, drop empty elements, `.`,
/// resolve `..`, no trailing slash.
pub fn go_join(parts: &[&str]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in parts {
        for el in part.split('/') {
            match el {
                "" | "." => {}
                ".." => {
                    out.pop();
                }
                e => out.push(e),
            }
        }
    }
    format!("/{}", out.join("/"))
}

/// The socket a shim listens on for container `id` (protocol doc 2.4):
/// `/run/containerd/s/<sha256(join(address, ns, id))>`.
pub fn shim_socket_path(grpc_address: &str, ns: &str, id: &str) -> PathBuf {
    Path::new(SHIM_SOCKET_DIR).join(sha256_hex(go_join(&[grpc_address, ns, id]).as_bytes()))
}

/// A name part unique in this process and (with high probability) on this host:
/// `<pid>-<counter>-<4 random hex>`.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut r = [0u8; 2];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut r);
    }
    format!("{}-{n}-{:02x}{:02x}", std::process::id(), r[0], r[1])
}

/// Calls `f` every `every` until it returns `Some`, at most until `timeout` has passed
/// (`f` runs at least once, and once more at the deadline).
pub fn poll<T>(timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(every.min(deadline - now));
    }
}

/// First `max` bytes of `s` (on a char boundary), for error messages.
pub fn head(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Last `max` bytes of `s` (on a char boundary), for error messages.
pub fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Writes the script `text` to `path` and makes it executable (runc wrappers, loggers).
pub fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Polls `pred` every 20 ms until it holds (true) or `timeout` passes (false).
pub fn poll_until(timeout: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pred() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The entries of `d`, sorted; none when it cannot be read.
pub fn list_dir(d: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(d)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Everything under `d` that is not a directory (files, links, sockets), recursively.
pub fn files_under(d: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for e in list_dir(d) {
        if e.is_dir() && !e.is_symlink() {
            found.extend(files_under(&e));
        } else {
            found.push(e);
        }
    }
    found
}

/// rmdir bottom-up (cgroup dirs can only be removed with rmdir, when they have no processes).
pub fn remove_empty_dirs(d: &Path) {
    for e in list_dir(d) {
        if e.is_dir() && !e.is_symlink() {
            remove_empty_dirs(&e);
        }
    }
    let _ = std::fs::remove_dir(d);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_name_matches_protocol_doc_test_vector() {
        assert_eq!(
            shim_socket_path("/run/ctd-example/c.sock", "protodoc", "c3"),
            PathBuf::from("/run/containerd/s/13ca8600ded8dfa019241e0845e27c93a84ccfc3602867c31f59c3dbbf95e1ad")
        );
    }

    #[test]
    fn go_join_cleans_like_filepath_join() {
        assert_eq!(go_join(&["/a//b/", "ns", "id"]), "/a/b/ns/id");
        assert_eq!(go_join(&["/a/./b/../c", "x"]), "/a/c/x");
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail("hello", 3), "llo");
        assert_eq!(tail("hi", 3), "hi");
    }
}
