//! A process's stdio: what the strings containerd sends mean, and the file
//! descriptors handed to runc.
//!
//! Fifo mode passes the client's fifos to the container directly instead of
//! copying through pipes: stdout/stderr are opened read-write (so the container
//! never gets EPIPE when the client detaches, and the open never blocks), stdin is
//! opened read-only next to a keep-alive writer held by the shim until `CloseIO`.
//! The kernel then moves every byte; the shim holds no buffer and runs no copy
//! loop, and nothing written before an exit can be lost in the shim.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::attach::Role;
use crate::console::ConsoleSocket;
use crate::error::Error;

/// The stdio strings of a process, exactly as containerd sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioNames {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// What the stdout string means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// All three strings empty: /dev/null everywhere.
    Null,
    /// Paths of fifos the client created (`fifo://` or a bare path).
    Fifo,
    /// `file:///path`: stdout and stderr appended to one file.
    File(PathBuf),
    /// `binary:///path?k=v` (and `binary-v2://`): a logging program.
    Binary { path: PathBuf, args: Vec<String>, v2: bool },
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn decode_query_part(s: &str) -> String {
    percent_decode(&s.replace('+', " "))
}

impl StdioNames {
    pub fn is_null(&self) -> bool {
        self.stdin.is_empty() && self.stdout.is_empty() && self.stderr.is_empty()
    }

    /// Parses the scheme once, at the edge; nothing deeper re-reads the strings.
    pub fn scheme(&self) -> Result<Scheme, Error> {
        if self.is_null() {
            return Ok(Scheme::Null);
        }
        let out = if self.stdout.is_empty() {
            &self.stderr
        } else {
            &self.stdout
        };
        if out.is_empty() {
            return Ok(Scheme::Fifo);
        }
        let Some((scheme, rest)) = out.split_once("://") else {
            return Ok(Scheme::Fifo);
        };
        // `scheme://host/path?query`: the host part must be empty for our schemes.
        let (path_part, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let path = PathBuf::from(percent_decode(path_part));
        match scheme {
            "fifo" => Ok(Scheme::Fifo),
            "file" => {
                if !path.is_absolute() {
                    return Err(Error::InvalidArgument(format!("file log path must be absolute: {out}")));
                }
                Ok(Scheme::File(path))
            }
            "binary" | "binary-v2" => {
                if !path.is_absolute() {
                    return Err(Error::InvalidArgument(format!(
                        "binary log path must be absolute: {out}"
                    )));
                }
                let mut args = Vec::new();
                for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    args.push(decode_query_part(k));
                    args.push(decode_query_part(v));
                }
                Ok(Scheme::Binary {
                    path,
                    args,
                    v2: scheme == "binary-v2",
                })
            }
            other => Err(Error::unknown(format!("unknown STDIO scheme {other}"))),
        }
    }

    /// The fifo path named by a stdio string (`fifo://` stripped).
    pub fn fifo_path(s: &str) -> &Path {
        Path::new(s.strip_prefix("fifo://").unwrap_or(s))
    }
}

/// Descriptors the shim keeps for a process.
#[derive(Debug, Default)]
pub struct ProcessIo {
    /// The shim's writer on the stdin fifo: while it is open the container never
    /// sees EOF, even between client writers. `CloseIO` drops it.
    pub stdin_keepalive: Option<OwnedFd>,
    /// Terminal mode, until runc returns: where runc sends the pty master.
    pub console_socket: Option<ConsoleSocket>,
    /// The pty master (for ResizePty), once received; shared with the console pumps.
    pub console: Option<std::rc::Rc<OwnedFd>>,
    /// Terminal mode: the stdin fifo reader, source of the input pump.
    pub master_input: Option<OwnedFd>,
    /// Terminal mode: where the master's output goes (fifo, log file, logger pipe).
    pub master_output: Option<OwnedFd>,
    /// Pipe mode (IoUid/IoGid): (source, destination) pairs to pump once runc returned.
    pub pipe_pumps: Vec<(OwnedFd, OwnedFd, Role)>,
    /// Active pumps (slots in the daemon's pump table).
    pub pumps: Vec<u32>,
    /// The binary logger's pid.
    pub logger: Option<u32>,
    /// The binary logger's ready pipe, until it signalled.
    pub logger_ready: Option<OwnedFd>,
    pub logger_v2: bool,
}

impl ProcessIo {
    pub fn close_stdin(&mut self) {
        self.stdin_keepalive = None;
    }
}

/// The container's side of its stdio, handed to runc as its stdin/out/err.
pub struct ChildStdio {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

impl ChildStdio {
    pub fn null() -> ChildStdio {
        ChildStdio {
            stdin: Stdio::null(),
            stdout: Stdio::null(),
            stderr: Stdio::null(),
        }
    }
}

fn clear_nonblock(fd: &OwnedFd) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
    Ok(())
}

pub fn set_nonblock(fd: &OwnedFd) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Opens the stdin fifo: a reader (made blocking when the container gets it)
/// and the shim's keep-alive writer. Neither open waits for the client.
fn open_stdin(path: &Path, blocking_reader: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    let reader: OwnedFd = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?
        .into();
    let writer: OwnedFd = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?
        .into();
    if blocking_reader {
        clear_nonblock(&reader)?;
    }
    Ok((reader, writer))
}

/// Opens an output fifo read-write (never blocks, never EPIPE); a regular file
/// given instead of a fifo is appended to.
fn open_output(path: &Path, nonblocking: bool) -> io::Result<OwnedFd> {
    let meta = fs::metadata(path)?;
    let nb = if nonblocking { libc::O_NONBLOCK } else { 0 };
    let f = if meta.file_type().is_fifo() {
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC | nb)
            .open(path)?
    } else {
        OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_CLOEXEC | nb)
            .open(path)?
    };
    Ok(f.into())
}

fn open_log_file(path: &Path) -> io::Result<OwnedFd> {
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
    }
    Ok(OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?
        .into())
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

/// Who the container-side ends belong to (IoUid/IoGid options).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoOwner {
    pub uid: u32,
    pub gid: u32,
}

impl IoOwner {
    pub fn is_root(&self) -> bool {
        self.uid == 0 && self.gid == 0
    }

    fn apply(&self, fd: &OwnedFd) -> io::Result<()> {
        if self.is_root() {
            return Ok(());
        }
        nix::unistd::fchown(
            fd,
            Some(nix::unistd::Uid::from_raw(self.uid)),
            Some(nix::unistd::Gid::from_raw(self.gid)),
        )?;
        Ok(())
    }
}

/// Everything needed to start a process's stdio; see `prepare`.
pub struct Prepared {
    /// runc's stdin/out/err: the container's stdio, or `None` in terminal mode
    /// (runc's own output is then captured).
    pub child: Option<ChildStdio>,
    pub io: ProcessIo,
}

/// Where a process's stdio ends up, for the logger's environment.
pub struct LoggerEnv<'a> {
    pub id: &'a str,
    pub namespace: &'a str,
    pub cwd: &'a Path,
}

/// Sets up a process's stdio before runc is called.
pub fn prepare(names: &StdioNames, scheme: &Scheme, owner: IoOwner, logger: &LoggerEnv<'_>) -> Result<Prepared, Error> {
    let ctx = |what: &str, path: &str, e: io::Error| Error::unknown(format!("failed to open {what} {path}: {e}"));
    let mut io = ProcessIo::default();
    let mut child = ChildStdio::null();
    let terminal = names.terminal;
    // Where the process's output goes; for a terminal, the master's destination.
    let mut out: Option<OwnedFd> = None;
    let mut err: Option<OwnedFd> = None;
    let piped = !owner.is_root() && !terminal;

    if !names.stdin.is_empty() {
        let path = StdioNames::fifo_path(&names.stdin);
        let (reader, writer) = open_stdin(path, !terminal && !piped).map_err(|e| ctx("stdin fifo", &names.stdin, e))?;
        io.stdin_keepalive = Some(writer);
        if terminal {
            io.master_input = Some(reader);
        } else if piped {
            let (r, w) = pipe().map_err(|e| ctx("stdin pipe", "", e))?;
            owner.apply(&r).map_err(|e| ctx("stdin pipe", "", e))?;
            set_nonblock(&w).map_err(|e| ctx("stdin pipe", "", e))?;
            io.pipe_pumps.push((reader, w, Role::Input));
            child.stdin = Stdio::from(r);
        } else {
            child.stdin = Stdio::from(reader);
        }
    }

    match scheme {
        Scheme::Null => {}
        Scheme::Fifo => {
            let nb = terminal || piped;
            let same = !names.stdout.is_empty() && names.stdout == names.stderr;
            if !names.stdout.is_empty() {
                out = Some(
                    open_output(StdioNames::fifo_path(&names.stdout), nb)
                        .map_err(|e| ctx("stdout", &names.stdout, e))?,
                );
            }
            // A terminal has no stderr: the client never opens that fifo.
            if !names.stderr.is_empty() && !terminal {
                err = Some(if same {
                    out.as_ref()
                        .expect("stdout opened")
                        .try_clone()
                        .map_err(|e| ctx("stderr", &names.stderr, e))?
                } else {
                    open_output(StdioNames::fifo_path(&names.stderr), nb)
                        .map_err(|e| ctx("stderr", &names.stderr, e))?
                });
            }
        }
        Scheme::File(path) => {
            let shown = path.display().to_string();
            let f = open_log_file(path).map_err(|e| ctx("log file", &shown, e))?;
            if terminal || piped {
                set_nonblock(&f).map_err(|e| ctx("log file", &shown, e))?;
            }
            if !terminal {
                err = Some(f.try_clone().map_err(|e| ctx("log file", &shown, e))?);
            }
            out = Some(f);
        }
        Scheme::Binary { path, args, v2 } => {
            let (out_r, out_w) = pipe().map_err(|e| ctx("logger pipe", "", e))?;
            let (err_r, err_w) = pipe().map_err(|e| ctx("logger pipe", "", e))?;
            let (ready_r, ready_w) = pipe().map_err(|e| ctx("logger pipe", "", e))?;
            let mut cmd = std::process::Command::new(path);
            cmd.args(args)
                .env_clear()
                .env("CONTAINER_ID", logger.id)
                .env("CONTAINER_NAMESPACE", logger.namespace)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if logger.cwd.is_dir() {
                cmd.current_dir(logger.cwd);
            }
            use std::os::fd::AsRawFd;
            crate::sys::pass_fds(
                &mut cmd,
                vec![(out_r.as_raw_fd(), 3), (err_r.as_raw_fd(), 4), (ready_w.as_raw_fd(), 5)],
            );
            let child_proc = cmd
                .spawn()
                .map_err(|e| Error::unknown(format!("failed to start logging binary {}: {e}", path.display())))?;
            drop(cmd);
            drop((out_r, err_r, ready_w));
            io.logger = Some(child_proc.id());
            io.logger_ready = Some(ready_r);
            io.logger_v2 = *v2;
            if terminal {
                out = Some(out_w);
                set_nonblock(out.as_ref().expect("set above")).map_err(|e| ctx("logger pipe", "", e))?;
                drop(err_w);
            } else {
                // The container writes straight into the logger's pipes.
                owner.apply(&out_w).map_err(|e| ctx("logger pipe", "", e))?;
                owner.apply(&err_w).map_err(|e| ctx("logger pipe", "", e))?;
                child.stdout = Stdio::from(out_w);
                child.stderr = Stdio::from(err_w);
                return Ok(Prepared { child: Some(child), io });
            }
        }
    }

    if terminal {
        io.master_output = out;
        io.console_socket = Some(
            ConsoleSocket::new()
                .map_err(|e| Error::unknown(format!("failed to create OCI runtime console socket: {e}")))?,
        );
        return Ok(Prepared { child: None, io });
    }
    if piped {
        for (fd, is_out) in [(out, true), (err, false)] {
            let Some(dst) = fd else { continue };
            let (r, w) = pipe().map_err(|e| ctx("output pipe", "", e))?;
            owner.apply(&w).map_err(|e| ctx("output pipe", "", e))?;
            set_nonblock(&r).map_err(|e| ctx("output pipe", "", e))?;
            io.pipe_pumps.push((r, dst, Role::Output));
            if is_out {
                child.stdout = Stdio::from(w);
            } else {
                child.stderr = Stdio::from(w);
            }
        }
        return Ok(Prepared { child: Some(child), io });
    }
    if let Some(o) = out {
        child.stdout = Stdio::from(o);
    }
    if let Some(e) = err {
        child.stderr = Stdio::from(e);
    }
    Ok(Prepared { child: Some(child), io })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> LoggerEnv<'static> {
        LoggerEnv {
            id: "c",
            namespace: "ns",
            cwd: Path::new("/"),
        }
    }

    fn names(stdin: &str, stdout: &str, stderr: &str) -> StdioNames {
        StdioNames {
            stdin: stdin.into(),
            stdout: stdout.into(),
            stderr: stderr.into(),
            terminal: false,
        }
    }

    #[test]
    fn schemes() {
        assert_eq!(names("", "", "").scheme().unwrap(), Scheme::Null);
        assert_eq!(names("/f/in", "/f/out", "/f/err").scheme().unwrap(), Scheme::Fifo);
        assert_eq!(names("", "fifo:///f/out", "").scheme().unwrap(), Scheme::Fifo);
        assert_eq!(
            names("", "file:///var/log/x%20y.log", "file:///var/log/x%20y.log")
                .scheme()
                .unwrap(),
            Scheme::File(PathBuf::from("/var/log/x y.log"))
        );
        assert_eq!(
            names("", "binary:///usr/bin/logger?foo=bar&a=b+c", "")
                .scheme()
                .unwrap(),
            Scheme::Binary {
                path: PathBuf::from("/usr/bin/logger"),
                args: vec!["foo".into(), "bar".into(), "a".into(), "b c".into()],
                v2: false
            }
        );
        assert!(matches!(
            names("", "binary-v2:///l", "").scheme().unwrap(),
            Scheme::Binary { v2: true, .. }
        ));
        let e = names("", "gopher://x/y", "").scheme().unwrap_err();
        assert_eq!(e.to_string(), "unknown STDIO scheme gopher");
        assert!(names("", "file://relative", "").scheme().is_err());
    }

    #[test]
    fn fifo_paths() {
        assert_eq!(StdioNames::fifo_path("fifo:///a/b"), Path::new("/a/b"));
        assert_eq!(StdioNames::fifo_path("/a/b"), Path::new("/a/b"));
    }

    #[test]
    fn fifos_open_without_a_client() {
        let dir = std::env::temp_dir().join(format!("shim-stdio-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mk = |n: &str| {
            let p = dir.join(n);
            let _ = fs::remove_file(&p);
            nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            p.display().to_string()
        };
        let n = names(&mk("in"), &mk("out"), &mk("err"));
        let p = prepare(&n, &Scheme::Fifo, IoOwner::default(), &env()).unwrap();
        assert!(p.io.stdin_keepalive.is_some());
        assert!(p.child.is_some());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_fifo_is_a_clear_error() {
        let n = names("", "/nonexistent/dir/out", "");
        let e = prepare(&n, &Scheme::Fifo, IoOwner::default(), &env()).err().unwrap();
        assert!(e.to_string().contains("/nonexistent/dir/out"), "{e}");
    }
}
