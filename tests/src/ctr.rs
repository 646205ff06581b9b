//! Running `ctr` against a private daemon.

use crate::command::{self, Output};
use crate::daemon::Daemon;
use crate::util;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::ops::Deref;
use std::process::Command;
use std::time::Duration;

/// Default bound for one ctr call.
pub const CTR_TIMEOUT: Duration = Duration::from_secs(30);

/// A ctr invocation (`--address <daemon> --namespace <ns>` are added).
pub struct Ctr<'d> {
    daemon: &'d Daemon,
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl<'d> Ctr<'d> {
    pub(crate) fn new<S: AsRef<OsStr>>(daemon: &'d Daemon, args: &[S]) -> Self {
        Ctr {
            daemon,
            args: args.iter().map(|a| a.as_ref().to_os_string()).collect(),
            stdin: None,
            timeout: CTR_TIMEOUT,
        }
    }

    /// Feed these bytes to ctr's stdin, then EOF (default: /dev/null).
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// After this long ctr gets SIGKILL (never SIGTERM: ctr forwards it to the container) and
    /// the test fails with what was captured.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Runs ctr; panics only on timeout or if ctr cannot be started.
    pub fn run(self) -> CtrOutput<'d> {
        let mut cmd = Command::new(util::ctr_bin());
        cmd.args(self.daemon.ctr_base_args()).args(&self.args);
        let out = command::run(&mut cmd, self.stdin.as_deref(), self.timeout)
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", util::ctr_bin().display()));
        let out = CtrOutput {
            out,
            daemon: self.daemon,
        };
        if out.timed_out {
            panic!("ctr did not finish in {:?}: {out}", self.timeout);
        }
        out
    }

    /// Runs ctr and asserts exit code 0.
    pub fn ok(self) -> CtrOutput<'d> {
        let out = self.run();
        assert_eq!(out.code(), Some(0), "ctr failed: {out}");
        out
    }

    /// Runs ctr and asserts the exit code.
    pub fn code(self, expected: i32) -> CtrOutput<'d> {
        let out = self.run();
        assert_eq!(out.code(), Some(expected), "unexpected ctr exit code: {out}");
        out
    }
}

impl Daemon {
    /// `ctr run <flags> --runtime <runtime> --rootfs <busybox rootfs> <id> <cmd...>`.
    pub fn run_rootfs<'d>(&'d self, flags: &[&str], id: &str, cmd: &[&str]) -> Ctr<'d> {
        self.run_rootfs_with(self.runtime(), flags, id, cmd)
    }

    /// [`Daemon::run_rootfs`] through another runtime (a path or a runtime name).
    pub fn run_rootfs_with<'d>(&'d self, runtime: &str, flags: &[&str], id: &str, cmd: &[&str]) -> Ctr<'d> {
        let mut args: Vec<OsString> = vec!["run".into()];
        args.extend(flags.iter().map(OsString::from));
        args.extend([
            "--runtime".into(),
            runtime.into(),
            "--rootfs".into(),
            self.rootfs().into(),
        ]);
        args.push(id.into());
        args.extend(cmd.iter().map(OsString::from));
        Ctr::new(self, &args)
    }

    /// The `ctr task ls` row of `id`, if listed.
    pub fn task(&self, id: &str) -> Option<TaskRow> {
        let out = self.ctr(&["task", "ls"]).ok();
        parse_task_ls(&out.stdout_str()).into_iter().find(|t| t.id == id)
    }

    /// Polls `ctr task ls` until `id` has `status` (bounded); panics with the last listing.
    pub fn wait_task_status(&self, id: &str, status: &str, timeout: Duration) -> TaskRow {
        let mut last = String::new();
        util::poll(timeout, Duration::from_millis(100), || {
            let out = self.ctr(&["task", "ls"]).ok();
            last = out.stdout_str();
            parse_task_ls(&last)
                .into_iter()
                .find(|t| t.id == id && t.status == status)
        })
        .unwrap_or_else(|| {
            panic!(
                "task {id} not {status} within {timeout:?}; ctr task ls:\n{last}\n{}",
                self.log_tail(30)
            )
        })
    }
}

/// ctr's output; its `Display` includes the tail of containerd's log.
pub struct CtrOutput<'d> {
    pub out: Output,
    daemon: &'d Daemon,
}

impl Deref for CtrOutput<'_> {
    type Target = Output;
    fn deref(&self) -> &Output {
        &self.out
    }
}

impl fmt::Display for CtrOutput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.out)?;
        write!(f, "{}", self.daemon.log_tail(30))
    }
}

impl fmt::Debug for CtrOutput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One row of `ctr task ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub id: String,
    pub pid: u32,
    pub status: String,
}

/// Parses `ctr task ls` output (`TASK PID STATUS` table).
pub fn parse_task_ls(stdout: &str) -> Vec<TaskRow> {
    stdout
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some(TaskRow {
                id: f.next()?.into(),
                pid: f.next()?.parse().ok()?,
                status: f.next()?.into(),
            })
        })
        .collect()
}

/// Pids listed by `ctr task ps` (`PID INFO` table).
pub fn parse_task_ps(stdout: &str) -> Vec<u32> {
    stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The exit status `ctr task delete` reports. ctr 1.6 exits 0 and only logs
/// `task <id> exit with non-zero exit code N` (0 is not mentioned); a ctr that exits with the
/// status itself is understood as well.
pub fn deleted_exit_status(out: &Output) -> Option<u32> {
    if let Some(c) = out.code().filter(|&c| c != 0) {
        return Some(c as u32);
    }
    if out.code() != Some(0) {
        return None;
    }
    let err = out.stderr_str();
    match err.find("exit with non-zero exit code ") {
        Some(i) => err[i + "exit with non-zero exit code ".len()..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok()),
        None => Some(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ls_table() {
        let t = "TASK    PID     STATUS    \nc1      4242    RUNNING\nc2      0       STOPPED\n";
        assert_eq!(
            parse_task_ls(t),
            vec![
                TaskRow {
                    id: "c1".into(),
                    pid: 4242,
                    status: "RUNNING".into()
                },
                TaskRow {
                    id: "c2".into(),
                    pid: 0,
                    status: "STOPPED".into()
                },
            ]
        );
    }

    #[test]
    fn delete_status_from_ctr_warning() {
        let mk = |code: i32, err: &str| Output {
            argv: vec![],
            status: Some(std::os::unix::process::ExitStatusExt::from_raw(code << 8)),
            stdout: vec![],
            stderr: err.as_bytes().to_vec(),
            timed_out: false,
            pipes_held_open: false,
            elapsed: Duration::ZERO,
        };
        let warn = "time=\"x\" level=warning msg=\"task c1 exit with non-zero exit code 137\"\n";
        assert_eq!(deleted_exit_status(&mk(0, warn)), Some(137));
        assert_eq!(deleted_exit_status(&mk(0, "")), Some(0));
        assert_eq!(deleted_exit_status(&mk(3, "")), Some(3));
    }

    #[test]
    fn task_ps_table() {
        assert_eq!(
            parse_task_ps("PID     INFO\n123     -\n456     &ProcessDetails{ExecID:e1,}\n"),
            vec![123, 456]
        );
    }
}
