//! Process state machines: which operation each state allows.
//!
//! The table mirrors the Go shim's per-state types (init: created, created from a
//! checkpoint, running, paused, stopped, deleted; exec: created, running, stopped),
//! including its error wording, so that clients see the same refusals.

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    /// A `runc pause` is in flight; reported by State, treated as paused otherwise.
    Pausing,
    Paused,
    Stopped,
    Deleted,
}

impl Status {
    /// The value of containerd's `Status` enum.
    pub fn wire(self) -> protos::types::Status {
        use protos::types::Status as W;
        match self {
            Status::Created => W::CREATED,
            Status::Running => W::RUNNING,
            Status::Pausing => W::PAUSING,
            Status::Paused => W::PAUSED,
            Status::Stopped | Status::Deleted => W::STOPPED,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Init,
    /// An init created from a checkpoint: `Start` restores it.
    InitFromCheckpoint,
    Exec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Start,
    Delete,
    Kill,
    Pause,
    Resume,
    Exec,
    Update,
    Checkpoint,
    Resize,
}

fn refuse(msg: &str) -> Result<()> {
    Err(Error::unknown(msg))
}

/// Whether `op` may be applied to a process of `kind` in `status`.
pub fn check(kind: Kind, status: Status, op: Op) -> Result<()> {
    use Op::*;
    use Status::*;
    if kind == Kind::Exec {
        return match (status, op) {
            (Created, Start | Delete | Resize) => Ok(()),
            (Created, Kill) => Err(Error::FailedPrecondition("process not created".into())),
            (Running | Pausing | Paused, Kill | Resize) => Ok(()),
            (Running | Pausing | Paused, Start) => refuse("cannot start a running process"),
            (Running | Pausing | Paused, Delete) => refuse("cannot delete a running process"),
            (Stopped, Delete) => Ok(()),
            (Stopped, Kill) => Err(Error::already_finished()),
            (Stopped, Resize) => refuse("cannot resize a stopped container"),
            (Stopped, Start) => refuse("cannot start a stopped process"),
            (Deleted, _) => Err(Error::NotFound("process does not exist".into())),
            (_, op) => Err(Error::unknown(format!("{op:?} is not valid for an exec process"))),
        };
    }
    let from_checkpoint = kind == Kind::InitFromCheckpoint;
    match (status, op) {
        (_, Resize) if status != Deleted => Ok(()),
        (Created, Start | Delete | Kill | Update) => Ok(()),
        (Created, Exec) if from_checkpoint => refuse("cannot exec in a created state"),
        (Created, Exec) => Ok(()),
        (Created, Pause) => refuse("cannot pause task in created state"),
        (Created, Resume) => refuse("cannot resume task in created state"),
        (Created, Checkpoint) => refuse("cannot checkpoint a task in created state"),

        (Running, Kill | Pause | Exec | Update | Checkpoint) => Ok(()),
        (Running, Start) => refuse("cannot start a running process"),
        (Running, Delete) => refuse("cannot delete a running process"),
        (Running, Resume) => refuse("cannot resume a running process"),

        (Pausing | Paused, Kill | Resume | Update | Checkpoint) => Ok(()),
        (Pausing | Paused, Start) => refuse("cannot start a paused process"),
        (Pausing | Paused, Delete) => refuse("cannot delete a paused process"),
        (Pausing | Paused, Pause) => refuse("cannot pause a paused container"),
        (Pausing | Paused, Exec) => refuse("cannot exec in a paused state"),

        (Stopped, Delete | Kill) => Ok(()),
        (Stopped, Start) => refuse("cannot start a stopped process"),
        (Stopped, Pause) => refuse("cannot pause a stopped container"),
        (Stopped, Resume) => refuse("cannot resume a stopped container"),
        (Stopped, Exec) => refuse("cannot exec in a stopped state"),
        (Stopped, Update) => refuse("cannot update a stopped container"),
        (Stopped, Checkpoint) => refuse("cannot checkpoint a stopped container"),

        (Deleted, Delete) => Err(Error::NotFound("cannot delete a deleted process".into())),
        (Deleted, Kill) => Err(Error::NotFound("cannot kill a deleted process".into())),
        (Deleted, Start) => refuse("cannot start a deleted process"),
        (Deleted, Pause) => refuse("cannot pause a deleted process"),
        (Deleted, Resume) => refuse("cannot resume a deleted process"),
        (Deleted, Exec) => refuse("cannot exec in a deleted state"),
        (Deleted, Update) => refuse("cannot update a deleted process"),
        (Deleted, Checkpoint) => refuse("cannot checkpoint a deleted process"),
        (Deleted, Resize) => refuse("cannot resize a deleted process"),
        (_, Resize) => Ok(()),
    }
}

/// containerd's identifier rule (its `identifiers.Validate`): at most 76 characters,
/// alphanumeric runs joined by single `.`, `_` or `-`. containerd checks exec ids before
/// they reach a shim; the shim checks again because an exec id names files in the bundle
/// (`<exec id>.pid`), so one with a `/` or `..` from any other client must not get that far.
pub fn check_exec_id(id: &str) -> Result<()> {
    const MAX: usize = 76;
    let shape_ok = !id.is_empty()
        && id.len() <= MAX
        && id
            .split(['.', '_', '-'])
            .all(|run| !run.is_empty() && run.bytes().all(|b| b.is_ascii_alphanumeric()));
    if shape_ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid exec id {id:?}: identifiers must be at most {MAX} characters of letters and \
             digits, separated by single '.', '_' or '-'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::Kind::{Init, InitFromCheckpoint};
    use super::Op::*;
    use super::Status::*;
    use super::*;
    use ttrpc::Code;

    fn ok(kind: Kind, s: Status, op: Op) -> bool {
        check(kind, s, op).is_ok()
    }

    #[test]
    fn init_created() {
        for op in [Start, Delete, Kill, Update, Exec, Resize] {
            assert!(ok(Init, Created, op), "{op:?}");
        }
        for op in [Pause, Resume, Checkpoint] {
            assert!(!ok(Init, Created, op), "{op:?}");
        }
        assert!(!ok(InitFromCheckpoint, Created, Exec));
        assert!(ok(InitFromCheckpoint, Created, Start));
    }

    #[test]
    fn init_running_and_paused() {
        for op in [Kill, Pause, Exec, Update, Checkpoint] {
            assert!(ok(Init, Running, op), "{op:?}");
        }
        assert_eq!(
            check(Init, Running, Delete).unwrap_err().to_string(),
            "cannot delete a running process"
        );
        assert_eq!(
            check(Init, Running, Resume).unwrap_err().to_string(),
            "cannot resume a running process"
        );
        for op in [Kill, Resume, Update, Checkpoint] {
            assert!(ok(Init, Paused, op), "{op:?}");
        }
        for op in [Start, Delete, Pause, Exec] {
            assert!(!ok(Init, Paused, op), "{op:?}");
            assert!(!ok(Init, Pausing, op), "{op:?}");
        }
    }

    #[test]
    fn init_stopped_and_deleted() {
        assert!(ok(Init, Stopped, Delete));
        assert!(ok(Init, Stopped, Kill));
        let e = check(Init, Stopped, Pause).unwrap_err();
        assert_eq!(e.to_string(), "cannot pause a stopped container");
        assert_eq!(e.code(), Code::UNKNOWN);
        for op in [Start, Resume, Exec, Update, Checkpoint] {
            assert!(!ok(Init, Stopped, op), "{op:?}");
        }
        assert_eq!(check(Init, Deleted, Delete).unwrap_err().code(), Code::NOT_FOUND);
        assert_eq!(check(Init, Deleted, Kill).unwrap_err().code(), Code::NOT_FOUND);
        assert!(!ok(Init, Deleted, Resize));
    }

    #[test]
    fn exec_states() {
        assert_eq!(
            check(Kind::Exec, Created, Kill).unwrap_err().code(),
            Code::FAILED_PRECONDITION
        );
        assert!(ok(Kind::Exec, Created, Start));
        assert!(ok(Kind::Exec, Created, Delete));
        assert!(ok(Kind::Exec, Running, Kill));
        assert!(!ok(Kind::Exec, Running, Delete));
        assert!(!ok(Kind::Exec, Running, Start));
        let e = check(Kind::Exec, Stopped, Kill).unwrap_err();
        assert_eq!(e.code(), Code::NOT_FOUND);
        assert_eq!(e.to_string(), "process already finished: not found");
        assert!(ok(Kind::Exec, Stopped, Delete));
        assert_eq!(
            check(Kind::Exec, Stopped, Resize).unwrap_err().to_string(),
            "cannot resize a stopped container"
        );
    }

    #[test]
    fn exec_ids_follow_containerds_identifier_rule() {
        let max = "a".repeat(76);
        for ok in ["e1", "exec-1", "a.b_c-d", "0", "3f1c9e8a", max.as_str()] {
            assert!(check_exec_id(ok).is_ok(), "{ok:?} must be accepted");
        }
        let long = "a".repeat(77);
        for bad in [
            "",
            "../x",
            "a/b",
            "..",
            ".a",
            "a.",
            "a--b",
            "a b",
            "é",
            "x\0",
            long.as_str(),
        ] {
            let e = check_exec_id(bad).expect_err(bad);
            assert!(matches!(e, Error::InvalidArgument(_)), "{bad:?}: {e}");
        }
    }
}
