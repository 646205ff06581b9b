//! `runc exec`: start an additional process in a running container.

use std::path::PathBuf;

use crate::{absolute_arg, Invocation, Op, Runc};

/// Options of `runc exec`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOpts {
    /// `--process`: a file holding the OCI `Process` as JSON.
    pub process: PathBuf,
    /// `--console-socket`: receives the pty master when the process has a terminal.
    pub console_socket: Option<PathBuf>,
    /// `--detach`: runc exits once the process is started.
    pub detach: bool,
    /// `--pid-file`: where runc writes the process's pid (made absolute).
    pub pid_file: Option<PathBuf>,
}

impl Runc {
    /// `exec --process F [--console-socket S] [--detach] [--pid-file P] ID`.
    pub fn exec(&self, id: &str, opts: &ExecOpts) -> Invocation {
        let mut args = vec!["exec".into(), "--process".into(), opts.process.clone().into()];
        if let Some(socket) = &opts.console_socket {
            args.push("--console-socket".into());
            args.push(socket.into());
        }
        if opts.detach {
            args.push("--detach".into());
        }
        if let Some(pid_file) = &opts.pid_file {
            args.push("--pid-file".into());
            args.push(absolute_arg(pid_file));
        }
        args.push(id.into());
        self.invocation(Op::Exec, args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{runc, verb_args};

    #[test]
    fn plain() {
        let inv = runc().exec(
            "c1",
            &ExecOpts {
                process: "/tmp/runc-process123".into(),
                ..ExecOpts::default()
            },
        );
        assert_eq!(inv.op, Op::Exec);
        assert_eq!(verb_args(&inv), ["exec", "--process", "/tmp/runc-process123", "c1"]);
    }

    #[test]
    fn every_option() {
        let inv = runc().exec(
            "c1",
            &ExecOpts {
                process: "/tmp/runc-process123".into(),
                console_socket: Some("/tmp/pty.sock".into()),
                detach: true,
                pid_file: Some("/bundle/e1.pid".into()),
            },
        );
        assert_eq!(
            verb_args(&inv),
            [
                "exec",
                "--process",
                "/tmp/runc-process123",
                "--console-socket",
                "/tmp/pty.sock",
                "--detach",
                "--pid-file",
                "/bundle/e1.pid",
                "c1"
            ]
        );
    }
}
