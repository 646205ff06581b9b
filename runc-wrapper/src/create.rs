//! `runc create`: set up the container and its init process, stopped before
//! the user's program runs.

use std::path::PathBuf;

use crate::{absolute_arg, Invocation, Op, Runc};

/// Options of `runc create`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOpts {
    /// `--bundle`: the directory holding `config.json`.
    pub bundle: PathBuf,
    /// `--pid-file`: where runc writes the init's pid (made absolute).
    pub pid_file: PathBuf,
    /// `--console-socket`: receives the pty master when the process has a terminal.
    pub console_socket: Option<PathBuf>,
    /// `--no-pivot`: use `chroot` instead of `pivot_root`.
    pub no_pivot: bool,
    /// `--no-new-keyring`: keep the caller's session keyring.
    pub no_new_keyring: bool,
    /// `--detach`; the Go shim does not pass it to `create`.
    pub detach: bool,
}

impl Runc {
    /// `create --bundle B --pid-file P [--console-socket S] [--no-pivot]
    /// [--no-new-keyring] [--detach] ID`.
    ///
    /// Without a console socket the container's init inherits runc's stdio.
    pub fn create(&self, id: &str, opts: &CreateOpts) -> Invocation {
        let mut args = vec![
            "create".into(),
            "--bundle".into(),
            opts.bundle.clone().into(),
            "--pid-file".into(),
            absolute_arg(&opts.pid_file),
        ];
        if let Some(socket) = &opts.console_socket {
            args.push("--console-socket".into());
            args.push(socket.into());
        }
        if opts.no_pivot {
            args.push("--no-pivot".into());
        }
        if opts.no_new_keyring {
            args.push("--no-new-keyring".into());
        }
        if opts.detach {
            args.push("--detach".into());
        }
        args.push(id.into());
        self.invocation(Op::Create, args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{runc, verb_args};

    #[test]
    fn plain() {
        let inv = runc().create(
            "c1",
            &CreateOpts {
                bundle: "/bundle".into(),
                pid_file: "/bundle/init.pid".into(),
                ..CreateOpts::default()
            },
        );
        assert_eq!(inv.op, Op::Create);
        assert_eq!(
            verb_args(&inv),
            ["create", "--bundle", "/bundle", "--pid-file", "/bundle/init.pid", "c1"]
        );
    }

    #[test]
    fn every_option() {
        let inv = runc().create(
            "c1",
            &CreateOpts {
                bundle: "/bundle".into(),
                pid_file: "/bundle/init.pid".into(),
                console_socket: Some("/tmp/pty.sock".into()),
                no_pivot: true,
                no_new_keyring: true,
                detach: true,
            },
        );
        assert_eq!(
            verb_args(&inv),
            [
                "create",
                "--bundle",
                "/bundle",
                "--pid-file",
                "/bundle/init.pid",
                "--console-socket",
                "/tmp/pty.sock",
                "--no-pivot",
                "--no-new-keyring",
                "--detach",
                "c1"
            ]
        );
    }
}
