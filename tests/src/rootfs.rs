//! A busybox root filesystem, built once per test process from the host's static busybox.

use crate::command;
use crate::procfs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The host's static busybox: `$BUSYBOX`, default `/bin/busybox`.
pub fn busybox_bin() -> PathBuf {
    match std::env::var_os("BUSYBOX") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("/bin/busybox"),
    }
}

const CACHE_PREFIX: &str = "e2e-rootfs-";

/// A script in the rootfs: `e2e-trap-term [N]` runs until SIGTERM, then exits N (default 42).
pub const TRAP_TERM_SCRIPT: &str = "/bin/e2e-trap-term";

/// A read-mostly busybox rootfs shared by all tests of this process (`ctr run --rootfs`).
/// Containers must not rely on writing to it.
pub fn busybox_rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        sweep_stale_caches();
        let dir = std::env::temp_dir()
            .join(format!("{CACHE_PREFIX}{}", crate::util::unique_suffix()))
            .join("rootfs");
        populate(&dir);
        dir
    })
}

/// Removes rootfs caches left by test processes that no longer exist.
fn sweep_stale_caches() {
    let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(CACHE_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if procfs::stat(pid).is_none() && procfs::mounts_under(&e.path()).is_empty() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Fills `dir` with `/bin/busybox`, one symlink per applet, the usual empty mount points and
/// an `/etc/passwd` and `/etc/group` that know root.
pub fn populate(dir: &Path) {
    let bb = busybox_bin();
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root", "run", "var"] {
        std::fs::create_dir_all(dir.join(d)).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    }
    std::fs::copy(&bb, dir.join("bin/busybox"))
        .unwrap_or_else(|e| panic!("copy {} into rootfs: {e} (install busybox-static)", bb.display()));
    let list = command::run_ok(Command::new(&bb).arg("--list"), Duration::from_secs(10));
    let mut applets: Vec<String> = list.stdout_str().split_whitespace().map(str::to_string).collect();
    for must in [
        "sh", "echo", "cat", "head", "sleep", "true", "false", "dd", "ls", "ps", "kill", "id", "stty", "tty",
    ] {
        assert!(
            applets.iter().any(|a| a == must),
            "{} has no applet {must}",
            bb.display()
        );
    }
    applets.retain(|a| a != "busybox" && !a.contains('/'));
    for a in applets {
        let link = dir.join("bin").join(&a);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link).unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
        }
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("write passwd");
    // For commands given where ctr reorders dash arguments (`ctr container create`).
    let trap = dir.join("bin").join(TRAP_TERM_SCRIPT.trim_start_matches("/bin/"));
    crate::util::write_executable(
        &trap,
        "#!/bin/sh\ntrap \"exit ${1:-42}\" TERM\nwhile :; do sleep 1 & wait $!; done\n",
    );
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").expect("write group");
}
