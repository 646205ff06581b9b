//! Where a container's cgroup files are, on cgroup v1 and on cgroup v2.
//!
//! On v1 (also the hybrid layout) every controller has its own hierarchy under
//! `/sys/fs/cgroup/<controller>`; on v2 the single unified hierarchy is mounted at
//! `/sys/fs/cgroup` itself. A test names the cgroup (as in an OCI `cgroupsPath` or
//! `/proc/<pid>/cgroup`, e.g. `/<ns>/<id>`) and the [`Knob`] it wants to see, and gets the file
//! of the mode the host runs in. What a file holds can differ between the modes (v2 has
//! `cpu.weight` for `cpu.shares`, `1`/`0` for `FROZEN`/`THAWED`): each [`Knob`] says so, and
//! the tests assert the value of the mode they run in.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where the cgroup file systems are mounted.
pub const CGROUP_FS: &str = "/sys/fs/cgroup";

/// True when `/sys/fs/cgroup` is the cgroup v2 unified hierarchy (it has `cgroup.controllers`),
/// false for cgroup v1 and the hybrid layout. Detected once per test process.
pub fn is_v2() -> bool {
    static V2: OnceLock<bool> = OnceLock::new();
    *V2.get_or_init(|| Path::new(CGROUP_FS).join("cgroup.controllers").exists())
}

/// The roots of all hierarchies a cgroup can exist in: every directory under `/sys/fs/cgroup`
/// on v1, `/sys/fs/cgroup` alone on v2.
pub fn hierarchies() -> Vec<PathBuf> {
    if is_v2() {
        return vec![PathBuf::from(CGROUP_FS)];
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(CGROUP_FS)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The directory of `cgroup` (`/a/b`) in the v1 hierarchy of `controller`, or in the unified
/// hierarchy on v2 (where `controller` does not matter).
pub fn dir(controller: &str, cgroup: &str) -> PathBuf {
    let root = if is_v2() {
        PathBuf::from(CGROUP_FS)
    } else {
        Path::new(CGROUP_FS).join(controller)
    };
    root.join(cgroup.trim_start_matches('/'))
}

/// A cgroup interface file, named by what it controls or reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Knob {
    /// The memory limit in bytes: `memory.limit_in_bytes` (v1), `memory.max` (v2).
    MemoryLimit,
    /// The swap limit: `memory.memsw.limit_in_bytes` (v1, memory plus swap), `memory.swap.max`
    /// (v2, swap alone: runc writes the OCI memory.swap minus memory.limit). Absent when the
    /// kernel does no swap accounting.
    SwapLimit,
    /// The CPU share: `cpu.shares` (v1), `cpu.weight` (v2, see [`cpu_weight`]).
    CpuShares,
    /// The CFS quota: `cpu.cfs_quota_us` (v1, microseconds), `cpu.max` (v2, `<quota> <period>`).
    CpuQuota,
    /// The pids limit: `pids.max`.
    PidsMax,
    /// The number of processes: `pids.current`.
    PidsCurrent,
    /// The freezer: `freezer.state` (v1, `FROZEN`/`THAWED`), `cgroup.freeze` (v2, `1`/`0`).
    Freeze,
    /// The member processes, one pid a line: `cgroup.procs` (of the memory hierarchy on v1).
    Procs,
}

impl Knob {
    /// The v1 hierarchy the file is in.
    pub fn controller(self) -> &'static str {
        match self {
            Knob::MemoryLimit | Knob::SwapLimit | Knob::Procs => "memory",
            Knob::CpuShares | Knob::CpuQuota => "cpu",
            Knob::PidsMax | Knob::PidsCurrent => "pids",
            Knob::Freeze => "freezer",
        }
    }

    /// The file name in the mode the host runs in.
    pub fn file_name(self) -> &'static str {
        let (v1, v2) = match self {
            Knob::MemoryLimit => ("memory.limit_in_bytes", "memory.max"),
            Knob::SwapLimit => ("memory.memsw.limit_in_bytes", "memory.swap.max"),
            Knob::CpuShares => ("cpu.shares", "cpu.weight"),
            Knob::CpuQuota => ("cpu.cfs_quota_us", "cpu.max"),
            Knob::PidsMax => ("pids.max", "pids.max"),
            Knob::PidsCurrent => ("pids.current", "pids.current"),
            Knob::Freeze => ("freezer.state", "cgroup.freeze"),
            Knob::Procs => ("cgroup.procs", "cgroup.procs"),
        };
        if is_v2() {
            v2
        } else {
            v1
        }
    }
}

/// The file of `knob` for `cgroup` (`/a/b`).
pub fn file(cgroup: &str, knob: Knob) -> PathBuf {
    dir(knob.controller(), cgroup).join(knob.file_name())
}

/// The trimmed content of the file of `knob` for `cgroup`; panics naming the file if it cannot
/// be read.
pub fn read(cgroup: &str, knob: Knob) -> String {
    let p = file(cgroup, knob);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// The `cpu.weight` runc writes on v2 for OCI `cpu.shares` (its `ConvertCPUSharesToCgroupV2Value`:
/// the v1 range 2..262144 mapped onto 1..10000).
pub fn cpu_weight(shares: u64) -> u64 {
    1 + ((shares - 2) * 9999) / 262142
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_weight_follows_runc() {
        assert_eq!(cpu_weight(2), 1);
        assert_eq!(cpu_weight(512), 20);
        assert_eq!(cpu_weight(1024), 39);
        assert_eq!(cpu_weight(262144), 10000);
    }

    #[test]
    fn paths_of_the_mode() {
        let p = file("/ns/id", Knob::MemoryLimit);
        if is_v2() {
            assert_eq!(p, Path::new("/sys/fs/cgroup/ns/id/memory.max"));
        } else {
            assert_eq!(p, Path::new("/sys/fs/cgroup/memory/ns/id/memory.limit_in_bytes"));
        }
    }
}
