//! A process's stdio: what the strings containerd sends mean, and the file
//! descriptors handed to runc.
//!
//! Fifo mode passes the client's fifos to the container directly instead of
//! copying through pipes: stdout/stderr are opened read-write (so the container
//! never gets EPIPE when the client detaches, and the open never blocks), stdin is
//! opened read-only next to a keep-alive writer held by the shim until `CloseIO`.
//! The kernel then moves every byte; the shim holds no buffer and runs no copy
//! loop, and nothing written before an exit can be lost in the shim.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

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
    Binary {
        path: PathBuf,
        args: Vec<String>,
        v2: bool,
    },
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
                    return Err(Error::InvalidArgument(format!(
                        "file log path must be absolute: {out}"
                    )));
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

/// Descriptors the shim keeps for a process after runc has started it.
#[derive(Debug, Default)]
pub struct ProcessIo {
    /// The shim's writer on the stdin fifo: while it is open the container never
    /// sees EOF, even between client writers. `CloseIO` drops it.
    pub stdin_keepalive: Option<OwnedFd>,
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

fn open_stdin(path: &Path) -> io::Result<(OwnedFd, OwnedFd)> {
    // Non-blocking read-only open never waits for a writer; then our own writer
    // exists, so the reader can be made blocking for the container.
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
    clear_nonblock(&reader)?;
    Ok((reader, writer))
}

/// Opens an output fifo read-write (never blocks, never EPIPE); a regular file
/// given instead of a fifo is appended to.
fn open_output(path: &Path) -> io::Result<File> {
    let meta = fs::metadata(path)?;
    if meta.file_type().is_fifo() {
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
    } else {
        OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
    }
}

fn open_log_file(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// Sets up fifo or file mode for a non-terminal process.
pub fn prepare(names: &StdioNames, scheme: &Scheme) -> Result<(ChildStdio, ProcessIo), Error> {
    let mut io = ProcessIo::default();
    let mut child = ChildStdio::null();
    let ctx = |what: &str, path: &str, e: io::Error| {
        Error::unknown(format!("failed to open {what} {path}: {e}"))
    };
    if !names.stdin.is_empty() {
        let path = StdioNames::fifo_path(&names.stdin);
        let (reader, writer) = open_stdin(path).map_err(|e| ctx("stdin fifo", &names.stdin, e))?;
        child.stdin = Stdio::from(reader);
        io.stdin_keepalive = Some(writer);
    }
    match scheme {
        Scheme::Null => {}
        Scheme::Fifo => {
            let same = !names.stdout.is_empty() && names.stdout == names.stderr;
            if !names.stdout.is_empty() {
                let f = open_output(StdioNames::fifo_path(&names.stdout))
                    .map_err(|e| ctx("stdout", &names.stdout, e))?;
                if same {
                    let dup = f.try_clone().map_err(|e| ctx("stderr", &names.stderr, e))?;
                    child.stderr = Stdio::from(dup);
                }
                child.stdout = Stdio::from(f);
            }
            if !names.stderr.is_empty() && !same {
                let f = open_output(StdioNames::fifo_path(&names.stderr))
                    .map_err(|e| ctx("stderr", &names.stderr, e))?;
                child.stderr = Stdio::from(f);
            }
        }
        Scheme::File(path) => {
            let f =
                open_log_file(path).map_err(|e| ctx("log file", &path.display().to_string(), e))?;
            let dup = f
                .try_clone()
                .map_err(|e| ctx("log file", &path.display().to_string(), e))?;
            child.stdout = Stdio::from(f);
            child.stderr = Stdio::from(dup);
        }
        Scheme::Binary { .. } => {
            return Err(Error::Unimplemented("binary logging".into()));
        }
    }
    Ok((child, io))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            names("/f/in", "/f/out", "/f/err").scheme().unwrap(),
            Scheme::Fifo
        );
        assert_eq!(
            names("", "fifo:///f/out", "").scheme().unwrap(),
            Scheme::Fifo
        );
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
        let (_child, io) = prepare(&n, &Scheme::Fifo).unwrap();
        assert!(io.stdin_keepalive.is_some());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_fifo_is_a_clear_error() {
        let n = names("", "/nonexistent/dir/out", "");
        let e = prepare(&n, &Scheme::Fifo).err().unwrap();
        assert!(e.to_string().contains("/nonexistent/dir/out"), "{e}");
    }
}
