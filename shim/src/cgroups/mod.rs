//! cgroups: finding a container's cgroup, reading its statistics (Stats),
//! watching it for OOM kills, and moving a process into a cgroup path.
//!
//! - [`Cgroup`] locates a process's cgroup (v1 per-controller directories or
//!   the v2 directory) from `/proc/<pid>/cgroup` and mountinfo;
//! - [`Cgroup::stats`] reads it into `io.containerd.cgroups.v{1,2}.Metrics`
//!   (`v1`, `v2`), filling the fields the Go cgroups library fills;
//! - [`OomWatcher`] (`oom`) is a descriptor for the daemon's epoll loop that
//!   turns readiness into [`OomEvent`]s.

use std::io;
use std::path::{Path, PathBuf};

use protos::any::{pack, CGROUPS_V1_METRICS, CGROUPS_V2_METRICS};
use protos::Any;

mod files;
mod locate;
mod oom;
mod v1;
mod v2;

pub use locate::Cgroup;
pub use oom::{OomEvent, OomWatch, OomWatcher};
pub use v2::enable_v2_controllers;

/// Where the host mounts its cgroup hierarchies (the v2 root on a unified host).
pub const ROOT: &str = "/sys/fs/cgroup";

/// Whether the host runs the unified (v2-only) hierarchy at /sys/fs/cgroup.
pub fn is_unified() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

impl Cgroup {
    /// The cgroup's statistics as an `Any` with the bare type URL
    /// `io.containerd.cgroups.v1.Metrics` or `io.containerd.cgroups.v2.Metrics`.
    /// A cgroup that no longer exists gives `NotFound`; on v1, controllers
    /// and files the kernel doesn't provide are skipped.
    pub fn stats(&self) -> io::Result<Any> {
        if !self.exists() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "cgroup does not exist"));
        }
        let packed = match self {
            Cgroup::V1 { subsystems } => pack(
                CGROUPS_V1_METRICS,
                &v1::metrics(subsystems, Path::new("/proc/partitions"))?,
            ),
            Cgroup::V2 { dir } => pack(CGROUPS_V2_METRICS, &v2::metrics(dir)?),
        };
        packed.map_err(io::Error::other)
    }
}

/// Puts `pid` into the existing cgroup at `path` (relative to each hierarchy's
/// root), as the Go shim does for `ShimCgroup`: on v1, every hierarchy where that
/// cgroup exists is joined, and it is an error only if it exists in none.
pub fn move_pid(path: &str, pid: u32) -> io::Result<()> {
    let rel = path.trim_start_matches('/');
    let dirs: Vec<PathBuf> = if is_unified() {
        vec![Path::new(ROOT).join(rel)]
    } else {
        locate::read_mounts()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| !m.v2)
            .map(|m| m.point.join(rel))
            .collect()
    };
    let existing: Vec<PathBuf> = dirs.into_iter().filter(|d| d.is_dir()).collect();
    if existing.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("cgroup {path} does not exist"),
        ));
    }
    for dir in existing {
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    }
    Ok(())
}

/// Scratch directories and real-cgroup guards for the tests of this module.
#[cfg(test)]
pub(crate) mod testutil {
    use std::fs;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    /// A temporary directory removed (recursively) on drop.
    pub struct TempDir(pub PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> TempDir {
            static SEQ: AtomicU32 = AtomicU32::new(0);
            let n = SEQ.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("shim-cg-{tag}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        /// Writes `files` (name, contents) into `sub` (created).
        pub fn write(&self, sub: &str, files: &[(&str, &str)]) -> PathBuf {
            let dir = self.0.join(sub);
            fs::create_dir_all(&dir).unwrap();
            for (name, text) in files {
                fs::write(dir.join(name), text).unwrap();
            }
            dir
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A cgroup created in real v1 hierarchies (`/sys/fs/cgroup/<ctrl>/`),
    /// with a shell child that moves itself in; killed and removed on drop.
    pub struct RealCgroup {
        pub dirs: Vec<PathBuf>,
        pub child: Option<Child>,
    }

    impl RealCgroup {
        pub fn new(controllers: &[&str], tag: &str) -> RealCgroup {
            let name = format!("shimtest-{tag}-{}", std::process::id());
            let mut cg = RealCgroup {
                dirs: Vec::new(),
                child: None,
            };
            for c in controllers {
                let dir = Path::new("/sys/fs/cgroup").join(c).join(&name);
                let _ = fs::remove_dir(&dir);
                fs::create_dir(&dir).unwrap();
                cg.dirs.push(dir);
            }
            cg
        }

        /// Runs `script` under `sh` after the shell moved into every cgroup.
        pub fn spawn(&mut self, script: &str) -> u32 {
            let child = Command::new("/bin/sh")
                .arg("-c")
                .arg(format!(
                    "for d in \"$@\"; do echo $$ > \"$d/cgroup.procs\" || exit 99; done; {script}"
                ))
                .arg("sh")
                .args(&self.dirs)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            let pid = child.id();
            self.child = Some(child);
            pid
        }

        /// Waits (up to 10 s) until `pid` runs `comm`, i.e. the shell has
        /// moved itself and exec'd.
        pub fn wait_for_exec(&mut self, pid: u32, comm: &str) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while fs::read_to_string(format!("/proc/{pid}/comm"))
                .unwrap_or_default()
                .trim()
                != comm
            {
                if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    panic!("child exited: {status}");
                }
                assert!(Instant::now() < deadline, "child never ran {comm}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }

        /// Kills and reaps the child, then removes the cgroups.
        pub fn remove(&mut self) {
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            for d in &self.dirs {
                for _ in 0..100 {
                    if fs::remove_dir(d).is_ok() || !d.exists() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    impl Drop for RealCgroup {
        fn drop(&mut self) {
            self.remove();
        }
    }

    /// Why the real-cgroup tests can't run here, if they can't: they need
    /// root and a v1 memory hierarchy at /sys/fs/cgroup/memory.
    pub fn real_v1_unavailable() -> Option<&'static str> {
        if !nix::unistd::geteuid().is_root() {
            return Some("not root");
        }
        if super::is_unified() || !Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists() {
            return Some("no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory");
        }
        None
    }
}
