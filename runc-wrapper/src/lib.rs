//! A typed command line for runc.
//!
//! Every runc verb lives in its own module as a small `impl Runc` whose method
//! builds an [`Invocation`]: the program, its argv and the log file runc writes
//! its errors to. Nothing here waits for a child in the main API: the shim is a
//! subreaper with a single `waitpid(-1)` loop, so it spawns
//! [`Invocation::command`] itself, learns the exit status from its reaper and
//! hands `(status, captured output)` back to [`Invocation::check`], which turns
//! a failure into [`Error::Failed`] carrying runc's own message from `log.json`.
//!
//! [`Invocation::output`] is a blocking convenience for callers that are not
//! subreapers (the shim's `delete` action, tests).

#![deny(unsafe_code)]
#![warn(missing_docs)]

use std::ffi::OsString;
use std::path::PathBuf;

mod checkpoint;
mod create;
mod delete;
mod error;
mod exec;
mod features;
mod invocation;
mod kill;
mod log;
mod pause;
mod ps;
mod restore;
mod resume;
mod start;
mod state;
mod update;

#[cfg(test)]
mod fixtures;

pub use checkpoint::CheckpointOpts;
pub use create::CreateOpts;
pub use error::Error;
pub use exec::ExecOpts;
pub use invocation::{Invocation, Op};
pub use log::{last_error, last_error_since};
pub use ps::parse_ps;
pub use restore::RestoreOpts;
pub use state::{parse_state, State};

/// How to call runc: the binary and the global flags that precede every verb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runc {
    /// The runc binary; a bare name such as `runc` is looked up in `PATH`.
    pub binary: PathBuf,
    /// `--root`: the full state directory, e.g. `/run/containerd/runc/<namespace>`.
    /// `None` leaves runc's default.
    pub root: Option<PathBuf>,
    /// `--log <path> --log-format json`, normally `<bundle>/log.json`; error
    /// messages are read back from it.
    pub log: Option<PathBuf>,
    /// `--criu <path>`.
    pub criu: Option<PathBuf>,
    /// `--systemd-cgroup`.
    pub systemd_cgroup: bool,
    /// `--debug`.
    pub debug: bool,
}

impl Runc {
    /// A runc without global flags; set the public fields to add them.
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Runc {
            binary: binary.into(),
            root: None,
            log: None,
            criu: None,
            systemd_cgroup: false,
            debug: false,
        }
    }

    /// The global flags, in go-runc's order:
    /// `--root R --debug --log L --log-format json --criu C --systemd-cgroup`.
    pub fn global_args(&self) -> Vec<OsString> {
        let mut args = Vec::new();
        if let Some(root) = &self.root {
            args.push("--root".into());
            args.push(root.into());
        }
        if self.debug {
            args.push("--debug".into());
        }
        if let Some(log) = &self.log {
            args.push("--log".into());
            args.push(log.into());
            args.push("--log-format".into());
            args.push("json".into());
        }
        if let Some(criu) = &self.criu {
            args.push("--criu".into());
            args.push(criu.into());
        }
        if self.systemd_cgroup {
            args.push("--systemd-cgroup".into());
        }
        args
    }

    /// An invocation of `op` with the global flags followed by `verb_args`.
    fn invocation(&self, op: Op, verb_args: Vec<OsString>) -> Invocation {
        let mut args = self.global_args();
        args.extend(verb_args);
        Invocation::new(op, self.binary.clone(), args, self.log.clone())
    }
}

impl Default for Runc {
    /// `runc` from `PATH`, no global flags.
    fn default() -> Self {
        Runc::new("runc")
    }
}

/// Turns a path into an argument, made absolute against the current directory
/// as go-runc does for pid files, so that a caller changing runc's working
/// directory does not move the file. Left as is if the directory is unknown.
fn absolute_arg(path: &std::path::Path) -> OsString {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .into_os_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_global_flags_by_default() {
        assert!(Runc::default().global_args().is_empty());
        assert_eq!(Runc::default().binary, PathBuf::from("runc"));
    }

    #[test]
    fn global_flags_in_order() {
        let runc = Runc {
            binary: "/usr/sbin/runc".into(),
            root: Some("/run/containerd/runc/default".into()),
            log: Some("/b/log.json".into()),
            criu: Some("/usr/sbin/criu".into()),
            systemd_cgroup: true,
            debug: true,
        };
        assert_eq!(
            runc.global_args(),
            [
                "--root",
                "/run/containerd/runc/default",
                "--debug",
                "--log",
                "/b/log.json",
                "--log-format",
                "json",
                "--criu",
                "/usr/sbin/criu",
                "--systemd-cgroup",
            ]
        );
    }

    #[test]
    fn relative_pid_file_becomes_absolute() {
        let arg = absolute_arg(std::path::Path::new("init.pid"));
        assert!(std::path::Path::new(&arg).is_absolute());
        assert!(std::path::Path::new(&arg).ends_with("init.pid"));
    }
}
