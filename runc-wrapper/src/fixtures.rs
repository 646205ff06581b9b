//! Test fixtures: throw-away directories and a runc with global flags.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system temp dir, removed on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("runc-wrapper-{}-{n}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        ScratchDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The global flags of [`runc`].
pub const GLOBALS: [&str; 6] = [
    "--root",
    "/run/containerd/runc/default",
    "--log",
    "/bundle/log.json",
    "--log-format",
    "json",
];

/// A runc with a root and a log, as the shim configures it.
pub fn runc() -> crate::Runc {
    crate::Runc {
        root: Some("/run/containerd/runc/default".into()),
        log: Some("/bundle/log.json".into()),
        ..crate::Runc::new("/usr/sbin/runc")
    }
}

/// The arguments after [`GLOBALS`], which must lead; also checks the program
/// and the log file of the invocation.
pub fn verb_args(inv: &crate::Invocation) -> Vec<String> {
    assert_eq!(inv.program, Path::new("/usr/sbin/runc"));
    assert_eq!(inv.log.as_deref(), Some(Path::new("/bundle/log.json")));
    let args: Vec<String> = inv.args.iter().map(|arg| arg.to_str().unwrap().to_owned()).collect();
    assert_eq!(args[..GLOBALS.len()], GLOBALS);
    args[GLOBALS.len()..].to_vec()
}
