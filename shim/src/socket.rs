//! Where the shim's ttrpc socket lives and how containerd's naming rule works.
//!
//! The socket is `<dir>/<hex sha256 of clean("<address>/<namespace>/<group>")>`,
//! `unix://`-prefixed in the address handed to containerd. `ctr shim` computes the
//! same name, so it must match the Go shim bit for bit.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// containerd's fixed socket directory (it does not follow `--state`).
pub const SOCKET_DIR: &str = "/run/containerd/s";

/// Go's `path.Clean`: collapses `//`, drops `.`, resolves `..`, drops a trailing `/`.
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// The socket path for a grouping key (`-id`, or the group/sandbox annotation).
pub fn socket_path(dir: &Path, address: &str, namespace: &str, group: &str) -> PathBuf {
    let name = clean(&format!("{address}/{namespace}/{group}"));
    let digest = Sha256::digest(name.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest.iter() {
        hex.push_str(&format!("{b:02x}"));
    }
    dir.join(hex)
}

/// The address string containerd expects: always `unix://` + absolute path.
pub fn address_of(path: &Path) -> String {
    format!("unix://{}", path.display())
}

/// Strips an optional `unix://` scheme.
pub fn path_of(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

/// The result of trying to claim a socket path.
pub enum Claim {
    /// We now listen on the path.
    Listening(UnixListener),
    /// A live shim already serves this path.
    InUse,
}

/// Creates the socket directory (0700) and listens on `path` (0600). A socket file
/// nobody answers on is stale and replaced; one that answers belongs to a live shim.
pub fn claim(path: &Path) -> io::Result<Claim> {
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let meta = fs::metadata(dir)?;
        if meta.permissions().mode() & 0o777 != 0o700 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
    }
    let listener = match UnixListener::bind(path) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                return Ok(Claim::InUse);
            }
            fs::remove_file(path)?;
            UnixListener::bind(path)?
        }
        Err(e) => return Err(e),
    };
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(Claim::Listening(listener))
}

/// Whether anything answers on the socket at `path`.
pub fn is_live(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_doc_test_vector() {
        let p = socket_path(Path::new(SOCKET_DIR), "/run/ctd-example/c.sock", "protodoc", "c3");
        assert_eq!(
            p,
            Path::new("/run/containerd/s/13ca8600ded8dfa019241e0845e27c93a84ccfc3602867c31f59c3dbbf95e1ad")
        );
        assert_eq!(
            address_of(&p),
            "unix:///run/containerd/s/13ca8600ded8dfa019241e0845e27c93a84ccfc3602867c31f59c3dbbf95e1ad"
        );
    }

    #[test]
    fn naming_cleans_like_go() {
        let a = socket_path(Path::new("/s"), "/run/c.sock/", "ns", "id");
        let b = socket_path(Path::new("/s"), "/run//c.sock", "ns", "id");
        let c = socket_path(Path::new("/s"), "/run/c.sock", "ns", "id");
        assert_eq!(a, c);
        assert_eq!(b, c);
    }

    #[test]
    fn clean_matches_go_path_clean() {
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("a/b/../c", "a/c"),
            ("/../a", "/a"),
            ("../a", "../a"),
            ("a//b/./c/", "a/b/c"),
            ("/run/c.sock/ns/id", "/run/c.sock/ns/id"),
            ("a/..", "."),
        ] {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn claim_replaces_stale_and_detects_live() {
        let dir = std::env::temp_dir().join(format!("shim-sock-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("s").join("sock");
        let first = match claim(&path).unwrap() {
            Claim::Listening(l) => l,
            Claim::InUse => panic!("fresh path reported in use"),
        };
        let dmode = fs::metadata(path.parent().unwrap()).unwrap().permissions().mode();
        assert_eq!(dmode & 0o777, 0o700);
        let smode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(smode & 0o777, 0o600);
        assert!(matches!(claim(&path).unwrap(), Claim::InUse));
        drop(first); // the file stays behind: stale
        assert!(!is_live(&path));
        assert!(matches!(claim(&path).unwrap(), Claim::Listening(_)));
        fs::remove_dir_all(&dir).unwrap();
    }
}
