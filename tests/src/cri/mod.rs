//! The Kubernetes path: a private containerd with its CRI plugin whose runtime handler is the
//! shim under test, driven by a CRI v1 client (cargo feature `cri`).
//!
//! * [`CriDaemon`]: containerd with CRI, configured from our packaging snippet
//!   (`packaging/containerd/config-v2-*.toml`, shim path pointed at `SHIM_BIN`; on containerd
//!   1.6, whose CRI ignores `runtime_path`, `SHIM_BIN` is also first in PATH), a CNI bridge
//!   network of its own (Debian's containernetworking-plugins in `/usr/lib/cni`), netns under its
//!   state dir, its own cgroup parent, and a pause image and a busybox image built from the
//!   host's busybox and imported into `k8s.io` (CRI never pulls: there is no registry).
//! * [`CriClient`]: blocking RuntimeService/ImageService calls, each bounded.
//! * [`StreamSession`]: the streaming server's WebSocket protocol (`v4.channel.k8s.io`) for
//!   Exec and Attach.
//!
//! Dropping the daemon removes pods, containers, shims, mounts, netns, the bridge and cgroups,
//! also when the test panics.

pub mod client;
pub mod config;
pub mod daemon;
pub mod image;
pub mod log;
pub mod raw_client;
pub mod stream;

/// Generated CRI v1 messages and clients (`runtime.v1`).
#[allow(clippy::all, clippy::pedantic, rustdoc::all, missing_docs)]
pub mod api {
    include!("runtime_v1.rs");
}

pub use client::{CriClient, CriError, CriResult};
pub use config::{CniNetwork, CriConfig, RuntimeHandler, Snippet};
pub use daemon::{CriDaemon, CriOptions, CRI_NAMESPACE};
pub use image::{BUSYBOX_IMAGE, PAUSE_IMAGE};
pub use stream::StreamSession;

/// Memory of a process from `/proc/<pid>/smaps_rollup`, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    pub rss_kib: u64,
    pub pss_kib: u64,
    /// `Anonymous`: private and shared anonymous memory (heap, stacks).
    pub anonymous_kib: u64,
}

impl std::fmt::Display for MemoryUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Rss {} KiB, Pss {} KiB, Anonymous {} KiB",
            self.rss_kib, self.pss_kib, self.anonymous_kib
        )
    }
}

/// Parses `smaps_rollup` text.
pub fn parse_smaps_rollup(text: &str) -> MemoryUsage {
    let mut m = MemoryUsage::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(key), Some(val)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(v) = val.parse::<u64>() else {
            continue;
        };
        match key {
            "Rss:" => m.rss_kib = v,
            "Pss:" => m.pss_kib = v,
            "Anonymous:" => m.anonymous_kib = v,
            _ => {}
        }
    }
    m
}

/// Memory of process `pid`, `None` if it is gone.
pub fn memory_usage(pid: i32) -> Option<MemoryUsage> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    Some(parse_smaps_rollup(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaps_rollup_fields() {
        let t = "55d0c0a00000-7ffd8a5fe000 ---p 00000000 00:00 0                          [rollup]\n\
                 Rss:                2048 kB\nPss:                1100 kB\nPss_Anon:            700 kB\n\
                 Shared_Clean:        900 kB\nAnonymous:           720 kB\nSwap:                  0 kB\n";
        assert_eq!(
            parse_smaps_rollup(t),
            MemoryUsage {
                rss_kib: 2048,
                pss_kib: 1100,
                anonymous_kib: 720
            }
        );
    }

    #[test]
    fn own_memory_is_readable() {
        let m = memory_usage(std::process::id() as i32).expect("own smaps_rollup");
        assert!(m.rss_kib > 0 && m.pss_kib > 0, "{m}");
    }
}
