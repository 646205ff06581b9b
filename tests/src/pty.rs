//! Running a program (ctr) with a pseudo-terminal as its stdin and stdout, the way a user at a
//! terminal runs `ctr run -t`.
//!
//! The pty is opened with `O_CLOEXEC` on both ends (other tests spawn processes concurrently and
//! must not inherit them), given a window size before the program starts (busybox `stty size`
//! fails on a 0x0 window), and its master is drained by a background thread so the program never
//! blocks writing. The program is not made a session leader, so the kernel sends it no `SIGWINCH`
//! on a resize: [`PtyChild::resize`] sends it.

use crate::daemon::Daemon;
use crate::reaper::{self, Spawned};
use crate::util;
use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A pty pair: the master, and the path of the slave (`/dev/pts/N`).
struct Pty {
    master: File,
    slave_path: PathBuf,
}

fn open_pty() -> Pty {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).expect("posix_openpt");
    nix::pty::grantpt(&master).expect("grantpt");
    nix::pty::unlockpt(&master).expect("unlockpt");
    let slave_path = PathBuf::from(nix::pty::ptsname_r(&master).expect("ptsname_r"));
    Pty {
        master: File::from(OwnedFd::from(master)),
        slave_path,
    }
}

/// Opens the slave side (close-on-exec, never as our controlling terminal).
fn open_slave(path: &Path) -> File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
        .unwrap_or_else(|e| panic!("open pty slave {}: {e}", path.display()))
}

/// Sets the window size of the terminal at `slave` (the host's `stty`, run on the slave).
fn set_window_size(slave: &Path, rows: u16, cols: u16) {
    let mut cmd = Command::new("stty");
    cmd.args(["rows", &rows.to_string(), "cols", &cols.to_string()])
        .stdin(Stdio::from(open_slave(slave)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = reaper::spawn(&mut cmd).unwrap_or_else(|e| panic!("cannot run stty (coreutils): {e}"));
    let mut err = String::new();
    if let Some(mut e) = child.take_stderr() {
        let _ = e.read_to_string(&mut err);
    }
    let st = child.wait_timeout(Duration::from_secs(10)).expect("wait for stty");
    assert!(
        st.is_some_and(|s| s.success()),
        "stty rows {rows} cols {cols} on {} failed ({st:?}): {err}",
        slave.display()
    );
}

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    eof: bool,
}

/// A program whose stdin and stdout are a pty we hold the master of; its stderr is a pipe.
pub struct PtyChild {
    argv: Vec<String>,
    child: Spawned,
    status: Option<ExitStatus>,
    master: File,
    slave_path: PathBuf,
    output: Arc<(Mutex<Captured>, Condvar)>,
    stderr: Arc<Mutex<Vec<u8>>>,
    threads: Vec<JoinHandle<()>>,
}

impl PtyChild {
    /// Starts `cmd` with a `rows` x `cols` terminal on stdin and stdout and a pipe on stderr.
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> PtyChild {
        let pty = open_pty();
        set_window_size(&pty.slave_path, rows, cols);
        let argv: Vec<String> = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let slave = open_slave(&pty.slave_path);
        cmd.stdin(Stdio::from(slave.try_clone().expect("dup slave")))
            .stdout(Stdio::from(slave))
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = reaper::spawn(&mut cmd).unwrap_or_else(|e| panic!("cannot start {argv:?}: {e}"));
        // The slave fds now live only in the child: its exit gives EIO on the master.
        drop(cmd);

        let output = Arc::new((Mutex::new(Captured::default()), Condvar::new()));
        let mut reader = pty.master.try_clone().expect("dup pty master");
        let out = output.clone();
        let t1 = std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            loop {
                match reader.read(&mut buf) {
                    Ok(n) if n > 0 => {
                        out.0
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .bytes
                            .extend_from_slice(&buf[..n]);
                        out.1.notify_all();
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // EIO once no process holds the slave any more.
                    _ => break,
                }
            }
            out.0.lock().unwrap_or_else(|e| e.into_inner()).eof = true;
            out.1.notify_all();
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut threads = vec![t1];
        if let Some(mut p) = child.take_stderr() {
            let se = stderr.clone();
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = p.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    se.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&buf[..n]);
                }
            }));
        }
        PtyChild {
            argv,
            child,
            status: None,
            master: pty.master,
            slave_path: pty.slave_path,
            output,
            stderr,
            threads,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.pid()
    }

    /// Everything read from the terminal so far.
    pub fn output(&self) -> Vec<u8> {
        self.output.0.lock().unwrap_or_else(|e| e.into_inner()).bytes.clone()
    }

    pub fn output_str(&self) -> String {
        String::from_utf8_lossy(&self.output()).into_owned()
    }

    /// The program's stderr so far.
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Waits until the terminal output satisfies `pred` (checked on the whole output so far).
    /// Returns false on timeout or when the terminal was closed without it.
    pub fn wait_output(&self, timeout: Duration, pred: impl Fn(&[u8]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.output;
        let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if pred(&g.bytes) {
                return true;
            }
            let now = Instant::now();
            if g.eof || now >= deadline {
                return false;
            }
            g = cv.wait_timeout(g, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Waits until the output contains `text`.
    pub fn wait_for_text(&self, timeout: Duration, text: &str) -> bool {
        let needle = text.as_bytes().to_vec();
        self.wait_output(timeout, |b| b.windows(needle.len()).any(|w| w == needle.as_slice()))
    }

    /// Types `data` into the terminal.
    pub fn write_input(&self, data: &[u8]) {
        (&self.master)
            .write_all(data)
            .unwrap_or_else(|e| panic!("write to pty master: {e}"));
    }

    /// Changes the terminal's window size and sends the program `SIGWINCH`.
    pub fn resize(&self, rows: u16, cols: u16) {
        set_window_size(&self.slave_path, rows, cols);
        self.child.signal(Signal::SIGWINCH);
    }

    pub fn signal(&self, sig: Signal) {
        self.child.signal(sig);
    }

    /// Waits for the program to exit; on timeout SIGKILLs it and returns `None`. Afterwards
    /// waits (bounded) until everything it wrote to the terminal was read.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            match self.child.wait_timeout(timeout) {
                Ok(Some(s)) => self.status = Some(s),
                _ => {
                    self.child.kill_and_wait();
                    return None;
                }
            }
        }
        self.wait_output(Duration::from_secs(5), |_| false);
        self.status
    }
}

impl fmt::Display for PtyChild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let out = self.output_str();
        writeln!(
            f,
            "`{}` on a pty: {:?}, {} bytes of terminal output",
            self.argv.join(" "),
            self.status,
            out.len()
        )?;
        writeln!(f, "  terminal (tail): {:?}", util::tail(&out, 2000))?;
        write!(f, "  stderr: {}", util::tail(self.stderr_str().trim_end(), 4000))
    }
}

impl fmt::Debug for PtyChild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Drop for PtyChild {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.child.kill_and_wait();
        }
        // The reader threads end at EIO/EOF, which the child's exit brings; never join a thread
        // that could still be blocked (a grandchild might hold the slave).
        for t in self.threads.drain(..) {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

impl Daemon {
    /// `ctr <args>` against this daemon with a `rows` x `cols` terminal as stdin and stdout.
    pub fn ctr_in_pty<S: AsRef<OsStr>>(&self, args: &[S], rows: u16, cols: u16) -> PtyChild {
        let mut cmd = Command::new(util::ctr_bin());
        cmd.args(self.ctr_base_args()).args(args);
        PtyChild::spawn(cmd, rows, cols)
    }
}
