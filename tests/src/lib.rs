//! End-to-end test harness for `containerd-shim-runc-v2`.
//!
//! Every test starts its own private containerd ([`Daemon`]) with its own temp dir, sockets and
//! namespace, drives it with `ctr` ([`Ctr`]), watches `ctr events` ([`EventWatcher`]) and ends
//! with [`Daemon::assert_clean`]. The shim under test comes from `$SHIM_BIN` (see
//! [`util::shim_bin`]). Dropping the `Daemon` tears everything down, also when the test panics.
//!
//! The test process is a child subreaper and reaps orphaned shims itself ([`reaper`]).
//!
//! Environment: `SHIM_BIN` (shim under test, absolute path; default
//! `<workspace>/target/release/containerd-shim-runc-v2`), `CONTAINERD_BIN`, `CTR_BIN`
//! (default `/usr/bin/containerd`, `/usr/bin/ctr`), `RUNC_BIN` (teardown only, default `runc`),
//! `BUSYBOX` (static busybox for rootfs and image, default `/bin/busybox`). Needs root.

#![deny(unsafe_code)]

pub mod cgroup;
pub mod cleanup;
pub mod command;
pub mod config;
#[cfg(feature = "cri")]
pub mod cri;
pub mod ctr;
pub mod daemon;
pub mod events;
pub mod fifo;
pub mod image;
pub mod launch;
pub mod logger;
pub mod procfs;
pub mod pty;
pub mod reaper;
pub mod requests;
pub mod rootfs;
pub mod scenario;
pub mod shim;
pub mod util;

pub use cleanup::OwnedProcess;
pub use ctr::{parse_task_ls, parse_task_ps, Ctr, CtrOutput, TaskRow};
pub use daemon::{Daemon, DaemonOptions, RUNC_V2_RUNTIME};
pub use events::{Event, EventWatcher};
pub use image::BUSYBOX_REF;
