//! `runc restore`: recreate a container from a CRIU checkpoint.

use std::path::PathBuf;

use crate::{absolute_arg, CheckpointOpts, Invocation, Op, Runc};

/// Options of `runc restore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreOpts {
    /// `--bundle`: the directory holding `config.json`.
    pub bundle: PathBuf,
    /// `--image-path`: the checkpoint's images.
    pub image_path: PathBuf,
    /// `--work-path`: CRIU's work files and logs (`restore.log`).
    pub work_path: Option<PathBuf>,
    /// `--parent-path`: images of a previous pre-dump.
    pub parent_path: Option<PathBuf>,
    /// `--pid-file`: where runc writes the init's pid (made absolute).
    pub pid_file: PathBuf,
    /// `--console-socket`: receives the pty master when the process has a terminal.
    pub console_socket: Option<PathBuf>,
    /// `--no-pivot`: use `chroot` instead of `pivot_root`.
    pub no_pivot: bool,
    /// Not passed: `runc restore` has no `--no-new-keyring` (runc 1.1 rejects
    /// unknown flags) and the Go shim does not pass it either. Kept so that
    /// callers can fill it from the same options as [`CreateOpts`](crate::CreateOpts).
    pub no_new_keyring: bool,
    /// `--detach`: runc exits once the container is restored.
    pub detach: bool,
    /// `-no-subreaper` (single dash, as the Go shim writes it).
    pub no_subreaper: bool,
    /// `--tcp-established`: allow open TCP connections.
    pub tcp_established: bool,
    /// `--ext-unix-sk`: allow external unix sockets.
    pub ext_unix_sk: bool,
    /// `--shell-job`: allow a terminal.
    pub shell_job: bool,
    /// `--file-locks`: restore file locks.
    pub file_locks: bool,
    /// `--empty-ns NS` for each.
    pub empty_ns: Vec<String>,
}

impl Runc {
    /// `restore --image-path I [--work-path W] [--parent-path P]
    /// [--tcp-established] [--ext-unix-sk] [--shell-job] [--file-locks]
    /// [--empty-ns NS]... [--detach] --pid-file F [--console-socket S]
    /// [--no-pivot] [-no-subreaper] --bundle B ID`.
    ///
    /// Without a console socket the restored init inherits runc's stdio.
    pub fn restore(&self, id: &str, opts: &RestoreOpts) -> Invocation {
        let criu = CheckpointOpts {
            image_path: opts.image_path.clone(),
            work_path: opts.work_path.clone(),
            parent_path: opts.parent_path.clone(),
            leave_running: false,
            tcp_established: opts.tcp_established,
            ext_unix_sk: opts.ext_unix_sk,
            shell_job: opts.shell_job,
            file_locks: opts.file_locks,
            empty_ns: opts.empty_ns.clone(),
            cgroups_mode: None,
        };
        let mut args = vec!["restore".into()];
        args.extend(criu.criu_args());
        if opts.detach {
            args.push("--detach".into());
        }
        args.push("--pid-file".into());
        args.push(absolute_arg(&opts.pid_file));
        if let Some(socket) = &opts.console_socket {
            args.push("--console-socket".into());
            args.push(socket.into());
        }
        if opts.no_pivot {
            args.push("--no-pivot".into());
        }
        if opts.no_subreaper {
            args.push("-no-subreaper".into());
        }
        args.push("--bundle".into());
        args.push(opts.bundle.clone().into());
        args.push(id.into());
        self.invocation(Op::Restore, args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{runc, verb_args};

    #[test]
    fn as_the_go_shim_calls_it() {
        let inv = runc().restore(
            "c1",
            &RestoreOpts {
                bundle: "/bundle".into(),
                image_path: "/ckpt".into(),
                work_path: Some("/bundle/work".into()),
                pid_file: "/bundle/init.pid".into(),
                detach: true,
                no_subreaper: true,
                ..RestoreOpts::default()
            },
        );
        assert_eq!(inv.op, Op::Restore);
        assert_eq!(
            verb_args(&inv),
            [
                "restore",
                "--image-path",
                "/ckpt",
                "--work-path",
                "/bundle/work",
                "--detach",
                "--pid-file",
                "/bundle/init.pid",
                "-no-subreaper",
                "--bundle",
                "/bundle",
                "c1"
            ]
        );
    }

    #[test]
    fn every_option() {
        let inv = runc().restore(
            "c1",
            &RestoreOpts {
                bundle: "/bundle".into(),
                image_path: "/ckpt".into(),
                work_path: Some("/bundle/work".into()),
                parent_path: Some("/prev".into()),
                pid_file: "/bundle/init.pid".into(),
                console_socket: Some("/tmp/pty.sock".into()),
                no_pivot: true,
                no_new_keyring: true,
                detach: true,
                no_subreaper: true,
                tcp_established: true,
                ext_unix_sk: true,
                shell_job: true,
                file_locks: true,
                empty_ns: vec!["network".into()],
            },
        );
        assert_eq!(
            verb_args(&inv),
            [
                "restore",
                "--image-path",
                "/ckpt",
                "--work-path",
                "/bundle/work",
                "--parent-path",
                "/prev",
                "--tcp-established",
                "--ext-unix-sk",
                "--shell-job",
                "--file-locks",
                "--empty-ns",
                "network",
                "--detach",
                "--pid-file",
                "/bundle/init.pid",
                "--console-socket",
                "/tmp/pty.sock",
                "--no-pivot",
                "-no-subreaper",
                "--bundle",
                "/bundle",
                "c1"
            ]
        );
    }

    #[test]
    fn minimal() {
        let inv = runc().restore(
            "c1",
            &RestoreOpts {
                bundle: "/bundle".into(),
                image_path: "/ckpt".into(),
                pid_file: "/bundle/init.pid".into(),
                ..RestoreOpts::default()
            },
        );
        assert_eq!(
            verb_args(&inv),
            [
                "restore",
                "--image-path",
                "/ckpt",
                "--pid-file",
                "/bundle/init.pid",
                "--bundle",
                "/bundle",
                "c1"
            ]
        );
    }
}
