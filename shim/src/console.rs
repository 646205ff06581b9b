//! The console socket runc sends a terminal process's pty master to.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A listening socket in a private temporary directory, removed on drop.
#[derive(Debug)]
pub struct ConsoleSocket {
    dir: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn new() -> io::Result<ConsoleSocket> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("pty{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let listener = match UnixListener::bind(dir.join("pty.sock")) {
            Ok(l) => l,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        listener.set_nonblocking(true)?;
        Ok(ConsoleSocket { dir, listener })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("pty.sock")
    }

    /// Takes the master runc sent. Called after runc returned, so the connection
    /// and its message are already queued; nothing here waits.
    pub fn receive_master(&self) -> io::Result<OwnedFd> {
        let (stream, _) = self.listener.accept().map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(io::ErrorKind::NotFound, "runc did not send a console")
            } else {
                e
            }
        })?;
        stream.set_nonblocking(true)?;
        sys::recv_fd(stream.as_raw_fd())
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::IoSlice;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn receives_a_descriptor_like_runc_sends_it() {
        let sock = ConsoleSocket::new().unwrap();
        let path = sock.path();
        let (r, w) = nix::unistd::pipe().unwrap();
        let client = UnixStream::connect(&path).unwrap();
        let fds = [w.as_raw_fd()];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
        nix::sys::socket::sendmsg::<()>(
            client.as_raw_fd(),
            &[IoSlice::new(b"/dev/pts/9")],
            &cmsg,
            nix::sys::socket::MsgFlags::empty(),
            None,
        )
        .unwrap();
        drop(client);
        drop(w);
        let got = sock.receive_master().unwrap();
        nix::unistd::write(got.as_fd(), b"x").unwrap();
        let mut b = [0u8; 1];
        nix::unistd::read(r.as_fd(), &mut b).unwrap();
        assert_eq!(&b, b"x");
        let dir = path.parent().unwrap().to_path_buf();
        drop(sock);
        assert!(!dir.exists());
    }

    #[test]
    fn nothing_sent_is_an_error() {
        let sock = ConsoleSocket::new().unwrap();
        assert_eq!(sock.receive_master().unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
