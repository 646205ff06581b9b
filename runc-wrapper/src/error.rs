//! What can go wrong when running runc.

use std::io;
use std::path::PathBuf;

use crate::invocation::Op;

/// A failed runc invocation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// runc ran and exited non-zero; `message` is runc's own error from its
    /// log, or `exit status N: <output>` when it logged none.
    #[error("{}: {message}", op.failure_prefix())]
    Failed {
        /// The verb that failed.
        op: Op,
        /// runc's message, without the verb's prefix.
        message: String,
        /// runc's exit code (128 + signal if a signal killed it).
        exit_code: i32,
    },
    /// runc could not be started (or waited for, by the blocking helper). Worded as
    /// the Go shim words it, e.g. `OCI runtime create failed: exec: "no-runc":
    /// executable file not found in $PATH`, so clients matching on it keep working.
    #[error("{}: exec: \"{}\": {}", op.failure_prefix(), program.display(), spawn_reason(program, source))]
    Spawn {
        /// The verb that was to run.
        op: Op,
        /// The binary that was to run.
        program: PathBuf,
        /// Why it did not.
        source: io::Error,
    },
    /// runc's output is not the JSON expected.
    #[error("failed to parse {what}: {source}")]
    Parse {
        /// What was being parsed, e.g. `runc state output`.
        what: &'static str,
        /// The decoder's complaint.
        source: serde_json::Error,
    },
}

impl Error {
    /// runc's message for [`Error::Failed`] (without the verb's prefix); empty
    /// for the other variants, which runc did not produce.
    pub fn runc_message(&self) -> &str {
        match self {
            Error::Failed { message, .. } => message,
            Error::Spawn { .. } | Error::Parse { .. } => "",
        }
    }

    /// runc says the process is gone: `container not running`,
    /// `no such process` (ESRCH, any case) or `process already finished`.
    /// The shim reports these as NOT_FOUND `process already finished`.
    /// Check this before [`is_not_exist`](Error::is_not_exist), as the Go shim does.
    pub fn is_already_finished(&self) -> bool {
        let message = self.runc_message();
        message.contains("container not running")
            || message.contains("process already finished")
            || message.to_lowercase().contains("no such process")
    }

    /// runc does not know the container (`container does not exist`).
    pub fn is_not_exist(&self) -> bool {
        self.runc_message().contains("does not exist")
    }
}

/// Why `program` did not start: a bare name that is nowhere on `$PATH` is said as Go
/// says it; anything else is the system's reason.
fn spawn_reason(program: &std::path::Path, error: &io::Error) -> String {
    let bare = !program.as_os_str().is_empty() && program.components().count() == 1 && !program.has_root();
    if bare && error.kind() == io::ErrorKind::NotFound {
        return "executable file not found in $PATH".to_owned();
    }
    os_reason(error)
}

/// An I/O error's description without Rust's ` (os error N)` suffix, e.g.
/// `No such file or directory`.
fn os_reason(error: &io::Error) -> String {
    let text = error.to_string();
    match (error.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(end)) => text[..end].to_owned(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(op: Op, message: &str) -> Error {
        Error::Failed {
            op,
            message: message.to_owned(),
            exit_code: 1,
        }
    }

    #[test]
    fn display_has_prefix() {
        assert_eq!(
            failed(Op::Create, "boom").to_string(),
            "OCI runtime create failed: boom"
        );
        assert_eq!(failed(Op::Delete, "boom").to_string(), "failed to delete task: boom");
    }

    #[test]
    fn already_finished() {
        for message in [
            "container not running",
            "no such process",
            "kill: No such process",
            "os: process already finished",
        ] {
            let err = failed(Op::Kill, message);
            assert!(err.is_already_finished(), "{message}");
            assert!(!err.is_not_exist(), "{message}");
        }
    }

    #[test]
    fn not_exist() {
        for message in ["container does not exist", "container \"x\" does not exist"] {
            let err = failed(Op::Delete, message);
            assert!(err.is_not_exist(), "{message}");
            assert!(!err.is_already_finished(), "{message}");
        }
    }

    #[test]
    fn other_failures_are_neither() {
        let err = failed(Op::Pause, "unable to freeze");
        assert!(!err.is_already_finished());
        assert!(!err.is_not_exist());
        let spawn = Error::Spawn {
            op: Op::State,
            program: "/x/y".into(),
            source: io::Error::from_raw_os_error(2),
        };
        assert!(!spawn.is_already_finished());
        assert!(!spawn.is_not_exist());
        assert_eq!(spawn.runc_message(), "");
    }

    #[test]
    fn spawn_names_the_binary_as_the_go_shim_does() {
        let err = Error::Spawn {
            op: Op::Create,
            program: "/x/y".into(),
            source: io::Error::from_raw_os_error(2),
        };
        assert_eq!(
            err.to_string(),
            "OCI runtime create failed: exec: \"/x/y\": No such file or directory"
        );
        let bare = Error::Spawn {
            op: Op::Create,
            program: "no-runc".into(),
            source: io::Error::from_raw_os_error(2),
        };
        assert_eq!(
            bare.to_string(),
            "OCI runtime create failed: exec: \"no-runc\": executable file not found in $PATH"
        );
        let custom = Error::Spawn {
            op: Op::Kill,
            program: "runc".into(),
            source: io::Error::other("odd"),
        };
        assert_eq!(custom.to_string(), "runc kill failed: exec: \"runc\": odd");
    }

    #[test]
    fn parse_names_what() {
        let source = serde_json::from_str::<u32>("x").unwrap_err();
        let err = Error::Parse {
            what: "runc ps output",
            source,
        };
        assert!(err.to_string().starts_with("failed to parse runc ps output: "));
    }
}
