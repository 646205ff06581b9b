//! Running a command with captured output, optional stdin bytes and a hard timeout.

use crate::reaper;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long we wait for stdout/stderr EOF after the process itself has exited.
const PIPE_DRAIN: Duration = Duration::from_secs(5);

/// What a finished (or killed) command left behind.
#[derive(Debug, Clone)]
pub struct Output {
    /// argv as run, for messages.
    pub argv: Vec<String>,
    /// `None` only if the process could not even be waited for.
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The timeout expired and the process was SIGKILLed.
    pub timed_out: bool,
    /// The process exited but something else (a grandchild) kept its stdout/stderr open.
    pub pipes_held_open: bool,
    pub elapsed: Duration,
}

impl Output {
    /// Exit code, `None` if killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn signal(&self) -> Option<i32> {
        self.status.and_then(|s| s.signal())
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match (self.timed_out, self.status) {
            (true, _) => format!("TIMED OUT after {:.1?} (SIGKILLed)", self.elapsed),
            (false, Some(s)) => match (s.code(), s.signal()) {
                (Some(c), _) => format!("exit code {c}"),
                (None, Some(sig)) => format!("killed by signal {sig}"),
                _ => format!("{s}"),
            },
            (false, None) => "no exit status".into(),
        };
        writeln!(f, "`{}`: {how} ({:.2?})", self.argv.join(" "), self.elapsed)?;
        if self.pipes_held_open {
            writeln!(
                f,
                "  (its stdout/stderr stayed open after it exited: a child kept them)"
            )?;
        }
        writeln!(f, "  stdout: {}", quote_block(&self.stdout_str()))?;
        write!(f, "  stderr: {}", quote_block(&self.stderr_str()))
    }
}

fn quote_block(s: &str) -> String {
    let s = crate::util::tail(s.trim_end(), 4000);
    if s.is_empty() {
        "(empty)".into()
    } else if !s.contains('\n') {
        s.to_string()
    } else {
        format!("\n    {}", s.replace('\n', "\n    "))
    }
}

/// Runs `cmd` in its own process group with stdin = `stdin` bytes (then EOF) or /dev/null,
/// capturing stdout and stderr. After `timeout` the process gets SIGKILL (never SIGTERM).
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> std::io::Result<Output> {
    let argv: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let start = Instant::now();
    let mut child = reaper::spawn(cmd)?;

    let writer = match (stdin, child.take_stdin()) {
        (Some(data), Some(mut pipe)) => {
            let data = data.to_vec();
            Some(std::thread::spawn(move || {
                let _ = pipe.write_all(&data);
            }))
        }
        _ => None,
    };
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(Vec::new()));
    let mut readers = 0;
    if let Some(p) = child.take_stdout() {
        spawn_reader(p, out.clone(), done_tx.clone());
        readers += 1;
    }
    if let Some(p) = child.take_stderr() {
        spawn_reader(p, err.clone(), done_tx.clone());
        readers += 1;
    }
    drop(done_tx);

    let mut timed_out = false;
    let status = match child.wait_timeout(timeout)? {
        Some(s) => Some(s),
        None => {
            timed_out = true;
            child.kill_and_wait()
        }
    };
    let drain_deadline = Instant::now() + PIPE_DRAIN;
    let mut finished = 0;
    while finished < readers {
        let left = drain_deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(()) => finished += 1,
            Err(_) => break,
        }
    }
    if let Some(w) = writer {
        if w.is_finished() {
            let _ = w.join();
        }
    }
    let take = |b: &Arc<Mutex<Vec<u8>>>| b.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(Output {
        argv,
        status,
        stdout: take(&out),
        stderr: take(&err),
        timed_out,
        pipes_held_open: finished < readers,
        elapsed: start.elapsed(),
    })
}

fn spawn_reader(mut pipe: impl Read + Send + 'static, buf: Arc<Mutex<Vec<u8>>>, done: mpsc::Sender<()>) {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = done.send(());
    });
}

/// Runs a helper command that must succeed (tar, runc, umount, ...); panics with its output.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> Output {
    let out = run(cmd, None, timeout).unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if out.code() != Some(0) {
        panic!("command failed: {out}");
    }
    out
}
