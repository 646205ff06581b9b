//! cgroup helpers: moving a process into a cgroup path on v1 or v2 hosts.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// Whether the host runs the unified (v2-only) hierarchy at /sys/fs/cgroup.
pub fn is_unified() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

/// Mount points of every cgroup v1 hierarchy.
fn v1_hierarchies() -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split(' ').next()?;
            let mnt = pre.split(' ').nth(4)?;
            (fstype == "cgroup").then(|| PathBuf::from(mnt))
        })
        .collect()
}

/// Puts `pid` into the cgroup at `path` (relative to each hierarchy's root),
/// creating it where missing.
pub fn move_pid(path: &str, pid: u32) -> io::Result<()> {
    let rel = path.trim_start_matches('/');
    let dirs: Vec<PathBuf> = if is_unified() {
        vec![Path::new(ROOT).join(rel)]
    } else {
        v1_hierarchies().into_iter().map(|h| h.join(rel)).collect()
    };
    if dirs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no cgroup hierarchy mounted",
        ));
    }
    for dir in dirs {
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("cgroup.procs"), pid.to_string())
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    }
    Ok(())
}
