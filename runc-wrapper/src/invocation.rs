//! One runc command, ready to spawn, and the reading of its outcome.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;
use crate::log::last_error_since;

/// The runc verb an [`Invocation`] runs; it chooses the prefix of
/// [`Error::Failed`]'s message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `runc create`.
    Create,
    /// `runc start`.
    Start,
    /// `runc state`.
    State,
    /// `runc kill` of the init process.
    Kill,
    /// `runc kill --all`.
    KillAll,
    /// `runc delete`.
    Delete,
    /// `runc ps`.
    Ps,
    /// `runc exec`.
    Exec,
    /// `runc pause`.
    Pause,
    /// `runc resume`.
    Resume,
    /// `runc update`.
    Update,
    /// `runc checkpoint`.
    Checkpoint,
    /// `runc restore`.
    Restore,
    /// `runc features`.
    Features,
}

impl Op {
    /// What the Go shim puts before runc's message when this verb fails,
    /// e.g. `OCI runtime create failed`.
    pub fn failure_prefix(&self) -> &'static str {
        match self {
            Op::Create => "OCI runtime create failed",
            Op::Start => "OCI runtime start failed",
            Op::State => "runc state failed",
            Op::Kill => "runc kill failed",
            Op::KillAll => "OCI runtime killall failed",
            Op::Delete => "failed to delete task",
            Op::Ps => "runc ps failed",
            Op::Exec => "OCI runtime exec failed",
            Op::Pause => "OCI runtime pause failed",
            Op::Resume => "OCI runtime resume failed",
            Op::Update => "OCI runtime update failed",
            Op::Checkpoint => "runc checkpoint failed",
            Op::Restore => "OCI runtime restore failed",
            Op::Features => "runc features failed",
        }
    }
}

/// A runc command line: spawn [`command`](Invocation::command) however suits
/// the caller, then give the exit code and captured output to
/// [`check`](Invocation::check).
#[derive(Debug)]
pub struct Invocation {
    /// The verb, for error messages.
    pub op: Op,
    /// The runc binary.
    pub program: PathBuf,
    /// Every argument after the program name: global flags, verb, options, id.
    pub args: Vec<OsString>,
    /// The `--log` file runc writes its errors to, if any.
    pub log: Option<PathBuf>,
    /// Length of `log` when [`command`](Invocation::command) was last built:
    /// errors logged before it belong to earlier invocations.
    log_start: AtomicU64,
}

impl Invocation {
    /// An invocation of `program` with `args`; `log` is where runc's errors
    /// are read from.
    pub fn new(op: Op, program: PathBuf, args: Vec<OsString>, log: Option<PathBuf>) -> Self {
        Invocation {
            op,
            program,
            args,
            log,
            log_start: AtomicU64::new(0),
        }
    }

    /// The command to spawn: program and arguments, without `NOTIFY_SOCKET`
    /// in its environment. Stdio, working directory and process attributes
    /// (PDEATHSIG, ...) are the caller's.
    ///
    /// Also notes how long the log file is at this moment, so that
    /// [`check`](Invocation::check) ignores errors logged before this run.
    pub fn command(&self) -> Command {
        let start = self
            .log
            .as_deref()
            .and_then(|log| fs::metadata(log).ok())
            .map_or(0, |meta| meta.len());
        self.log_start.store(start, Ordering::Relaxed);
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).env_remove("NOTIFY_SOCKET");
        cmd
    }

    /// Turns runc's exit code and captured output (stdout and stderr, as far
    /// as the caller captured them) into a result.
    ///
    /// Zero is success. Otherwise the error carries the message of the last
    /// `"level":"error"` line runc appended to the log file, or, when there is
    /// none, `exit status N: <output>` (`exit status N` for empty output).
    pub fn check(&self, exit_code: i32, output: &[u8]) -> Result<(), Error> {
        if exit_code == 0 {
            return Ok(());
        }
        let start = self.log_start.load(Ordering::Relaxed);
        let message = self
            .log
            .as_deref()
            .and_then(|log| last_error_since(log, start))
            .unwrap_or_else(|| exit_message(exit_code, output));
        Err(Error::Failed {
            op: self.op,
            message,
            exit_code,
        })
    }

    /// Blocking helper for callers that are not subreapers: runs the command
    /// with stdin closed, waits for it, and returns its stdout, or the error
    /// [`check`](Invocation::check) makes of its exit code, stdout and stderr.
    ///
    /// It waits for end-of-file on stdout and stderr, so it does not suit
    /// verbs whose container process inherits runc's stdio (`create`,
    /// `restore`, `exec` without a console socket).
    pub fn output(&self) -> Result<Vec<u8>, Error> {
        self.run(None)
    }

    /// Like [`output`](Invocation::output), with `input` written to runc's
    /// stdin (the resources JSON of `update --resources -`).
    pub fn output_with_input(&self, input: &[u8]) -> Result<Vec<u8>, Error> {
        self.run(Some(input))
    }

    fn run(&self, input: Option<&[u8]>) -> Result<Vec<u8>, Error> {
        let spawn_error = |source| Error::Spawn {
            op: self.op,
            program: self.program.clone(),
            source,
        };
        let mut cmd = self.command();
        cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(spawn_error)?;
        let stdin = child.stdin.take();
        let output = std::thread::scope(|scope| {
            if let (Some(mut stdin), Some(input)) = (stdin, input) {
                // runc may exit without reading everything: a broken pipe is
                // then reported through its exit status.
                scope.spawn(move || stdin.write_all(input));
            }
            child.wait_with_output()
        })
        .map_err(spawn_error)?;
        let mut captured = output.stdout.clone();
        captured.extend_from_slice(&output.stderr);
        self.check(exit_code(output.status), &captured)?;
        Ok(output.stdout)
    }
}

impl Clone for Invocation {
    fn clone(&self) -> Self {
        Invocation {
            op: self.op,
            program: self.program.clone(),
            args: self.args.clone(),
            log: self.log.clone(),
            log_start: AtomicU64::new(self.log_start.load(Ordering::Relaxed)),
        }
    }
}

/// The shell's convention: the exit code, or 128 + the signal that killed it.
fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(-1)
}

/// go-runc's wording when the log has nothing: `exit status N[: output]`.
fn exit_message(exit_code: i32, output: &[u8]) -> String {
    let output = String::from_utf8_lossy(output);
    let output = output.trim();
    if output.is_empty() {
        format!("exit status {exit_code}")
    } else {
        format!("exit status {exit_code}: {output}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ScratchDir;

    fn create_with_log(log: Option<PathBuf>) -> Invocation {
        Invocation::new(Op::Create, "runc".into(), vec!["create".into()], log)
    }

    #[test]
    fn success_ignores_log_and_output() {
        let dir = ScratchDir::new("check-ok");
        let log = dir.write("log.json", r#"{"level":"error","msg":"old"}"#);
        assert!(create_with_log(Some(log)).check(0, b"noise").is_ok());
    }

    #[test]
    fn failure_message_from_log() {
        let dir = ScratchDir::new("check-log");
        let log = dir.write(
            "log.json",
            "{\"level\":\"error\",\"msg\":\"runc create failed: unable to start container process: exec: \\\"nope\\\": executable file not found in $PATH\",\"time\":\"2024-01-01T00:00:00Z\"}\n",
        );
        let err = create_with_log(Some(log)).check(1, b"ignored").unwrap_err();
        assert_eq!(
            err.to_string(),
            "OCI runtime create failed: runc create failed: unable to start container process: exec: \"nope\": executable file not found in $PATH"
        );
        match err {
            Error::Failed { op, exit_code, .. } => {
                assert_eq!(op, Op::Create);
                assert_eq!(exit_code, 1);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn failure_fallback_with_output() {
        let err = create_with_log(None).check(2, b"  something broke\n").unwrap_err();
        assert_eq!(err.runc_message(), "exit status 2: something broke");
        assert_eq!(
            err.to_string(),
            "OCI runtime create failed: exit status 2: something broke"
        );
    }

    #[test]
    fn failure_fallback_without_output() {
        let dir = ScratchDir::new("check-empty");
        // A log that exists but holds no error line also falls back.
        let log = dir.write("log.json", "{\"level\":\"warning\",\"msg\":\"meh\"}\n");
        let err = create_with_log(Some(log)).check(137, b"\n").unwrap_err();
        assert_eq!(err.to_string(), "OCI runtime create failed: exit status 137");
    }

    #[test]
    fn missing_log_falls_back() {
        let dir = ScratchDir::new("check-missing");
        let err = create_with_log(Some(dir.path().join("absent.json")))
            .check(1, b"out")
            .unwrap_err();
        assert_eq!(err.runc_message(), "exit status 1: out");
    }

    #[test]
    fn errors_logged_before_command_are_ignored() {
        let dir = ScratchDir::new("check-stale");
        let log = dir.write(
            "log.json",
            "{\"level\":\"error\",\"msg\":\"container does not exist\"}\n",
        );
        let inv = create_with_log(Some(log.clone()));
        let _ = inv.command();
        let err = inv.check(1, b"").unwrap_err();
        assert_eq!(err.runc_message(), "exit status 1");

        let mut file = fs::OpenOptions::new().append(true).open(&log).unwrap();
        file.write_all(b"{\"level\":\"error\",\"msg\":\"fresh\"}\n").unwrap();
        assert_eq!(inv.check(1, b"").unwrap_err().runc_message(), "fresh");
        // A clone keeps the mark.
        assert_eq!(inv.clone().check(1, b"").unwrap_err().runc_message(), "fresh");
    }

    #[test]
    fn command_drops_notify_socket() {
        let inv = Invocation::new(
            Op::State,
            "/usr/sbin/runc".into(),
            vec!["state".into(), "c1".into()],
            None,
        );
        let cmd = inv.command();
        assert_eq!(cmd.get_program(), "/usr/sbin/runc");
        assert_eq!(cmd.get_args().collect::<Vec<_>>(), ["state", "c1"]);
        assert!(cmd
            .get_envs()
            .any(|(key, value)| key == "NOTIFY_SOCKET" && value.is_none()));
    }

    #[test]
    fn prefixes() {
        assert_eq!(Op::Delete.failure_prefix(), "failed to delete task");
        assert_eq!(Op::KillAll.failure_prefix(), "OCI runtime killall failed");
        assert_eq!(Op::Exec.failure_prefix(), "OCI runtime exec failed");
        assert_eq!(Op::Restore.failure_prefix(), "OCI runtime restore failed");
    }
}
