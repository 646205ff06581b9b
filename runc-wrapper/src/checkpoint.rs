//! `runc checkpoint`: dump a running container with CRIU.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::{Invocation, Op, Runc};

/// Options of `runc checkpoint`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointOpts {
    /// `--image-path`: where CRIU writes the images.
    pub image_path: PathBuf,
    /// `--work-path`: CRIU's work files and logs (`dump.log`).
    pub work_path: Option<PathBuf>,
    /// `--parent-path`: images of a previous pre-dump.
    pub parent_path: Option<PathBuf>,
    /// `--leave-running`: keep the container running afterwards.
    pub leave_running: bool,
    /// `--tcp-established`: allow open TCP connections.
    pub tcp_established: bool,
    /// `--ext-unix-sk`: allow external unix sockets.
    pub ext_unix_sk: bool,
    /// `--shell-job`: allow a terminal.
    pub shell_job: bool,
    /// `--file-locks`: dump file locks.
    pub file_locks: bool,
    /// `--empty-ns NS` for each: namespaces recreated empty on restore.
    pub empty_ns: Vec<String>,
    /// `--manage-cgroups-mode`: `soft`, `full` or `strict`.
    pub cgroups_mode: Option<String>,
}

impl CheckpointOpts {
    /// The CRIU flags `checkpoint` and `restore` share, in go-runc's order;
    /// `--leave-running` is not among them.
    pub(crate) fn criu_args(&self) -> Vec<OsString> {
        let mut args = vec!["--image-path".into(), self.image_path.clone().into()];
        if let Some(work) = &self.work_path {
            args.push("--work-path".into());
            args.push(work.into());
        }
        if let Some(parent) = &self.parent_path {
            args.push("--parent-path".into());
            args.push(parent.into());
        }
        let switches = [
            (self.tcp_established, "--tcp-established"),
            (self.ext_unix_sk, "--ext-unix-sk"),
            (self.shell_job, "--shell-job"),
            (self.file_locks, "--file-locks"),
        ];
        for (_, flag) in switches.iter().filter(|(on, _)| *on) {
            args.push(flag.into());
        }
        if let Some(mode) = &self.cgroups_mode {
            args.push("--manage-cgroups-mode".into());
            args.push(mode.into());
        }
        for ns in &self.empty_ns {
            args.push("--empty-ns".into());
            args.push(ns.into());
        }
        args
    }
}

impl Runc {
    /// `checkpoint --image-path I [--work-path W] [--parent-path P]
    /// [--tcp-established] [--ext-unix-sk] [--shell-job] [--file-locks]
    /// [--manage-cgroups-mode M] [--empty-ns NS]... [--leave-running] ID`.
    pub fn checkpoint(&self, id: &str, opts: &CheckpointOpts) -> Invocation {
        let mut args = vec!["checkpoint".into()];
        args.extend(opts.criu_args());
        if opts.leave_running {
            args.push("--leave-running".into());
        }
        args.push(id.into());
        self.invocation(Op::Checkpoint, args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{runc, verb_args};

    #[test]
    fn plain() {
        let inv = runc().checkpoint(
            "c1",
            &CheckpointOpts {
                image_path: "/ckpt".into(),
                ..CheckpointOpts::default()
            },
        );
        assert_eq!(inv.op, Op::Checkpoint);
        assert_eq!(verb_args(&inv), ["checkpoint", "--image-path", "/ckpt", "c1"]);
    }

    #[test]
    fn every_option() {
        let inv = runc().checkpoint(
            "c1",
            &CheckpointOpts {
                image_path: "/ckpt".into(),
                work_path: Some("/bundle/criu-work".into()),
                parent_path: Some("/prev".into()),
                leave_running: true,
                tcp_established: true,
                ext_unix_sk: true,
                shell_job: true,
                file_locks: true,
                empty_ns: vec!["network".into(), "ipc".into()],
                cgroups_mode: Some("soft".into()),
            },
        );
        assert_eq!(
            verb_args(&inv),
            [
                "checkpoint",
                "--image-path",
                "/ckpt",
                "--work-path",
                "/bundle/criu-work",
                "--parent-path",
                "/prev",
                "--tcp-established",
                "--ext-unix-sk",
                "--shell-job",
                "--file-locks",
                "--manage-cgroups-mode",
                "soft",
                "--empty-ns",
                "network",
                "--empty-ns",
                "ipc",
                "--leave-running",
                "c1"
            ]
        );
    }
}
