//! Moving bytes between two non-blocking descriptors, for the cases where the
//! kernel cannot connect them directly: a pty master and the client's fifos, or
//! pipes the shim must own (IoUid/IoGid) and the fifos.
//!
//! `splice(2)` is used whenever one side is a pipe (fifos are pipes), so bytes are
//! not copied through user space; otherwise a shared scratch buffer is used and
//! only bytes the destination could not take yet are kept, per pump. Backpressure
//! is the destination's own capacity: a slow reader never grows our memory beyond
//! one scratch buffer's worth.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{splice, SpliceFFlags};

/// Outcome of running a pump until it cannot make progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Blocked on the source or the destination; wait for readiness.
    Blocked,
    /// The source reached end of file and everything read was written.
    Done,
    /// The destination is gone (EPIPE); the rest of the stream is discarded.
    DestinationGone,
}

/// The two ends are shared so that a pty master, which is the source of the output
/// pump and the destination of the input pump, stays one descriptor in the shim (as
/// containerd's tests count it).
pub struct Pump {
    pub src: Rc<OwnedFd>,
    pub dst: Rc<OwnedFd>,
    /// Bytes read but not yet written (read/write mode only).
    pending: Vec<u8>,
    /// Whether to try splice; cleared for good when the kernel refuses it.
    splice: bool,
    pub moved: u64,
}

/// Size of the read/write buffer used when splice is not possible.
pub const SCRATCH: usize = 32 * 1024;

/// How much one splice call asks for.
const SPLICE_CHUNK: usize = 1 << 16;

fn is_eof_error(e: Errno) -> bool {
    // A pty master reports EIO once every slave descriptor is closed.
    e == Errno::EIO
}

impl Pump {
    pub fn new(src: Rc<OwnedFd>, dst: Rc<OwnedFd>) -> Pump {
        Pump {
            src,
            dst,
            pending: Vec::new(),
            splice: true,
            moved: 0,
        }
    }

    /// Moves bytes until both sides would block, the source ends, or the
    /// destination goes away. `scratch` is shared by all pumps and only grown
    /// (to `SCRATCH` bytes) when a pump cannot splice.
    pub fn run(&mut self, scratch: &mut Vec<u8>) -> io::Result<Progress> {
        loop {
            if !self.pending.is_empty() {
                match nix::unistd::write(&self.dst, &self.pending) {
                    Ok(n) => {
                        self.pending.drain(..n);
                        self.moved += n as u64;
                        if !self.pending.is_empty() {
                            continue;
                        }
                        if self.pending.capacity() > scratch.len() {
                            self.pending = Vec::new();
                        }
                    }
                    Err(Errno::EAGAIN) => return Ok(Progress::Blocked),
                    Err(Errno::EINTR) => continue,
                    Err(Errno::EPIPE) => return Ok(Progress::DestinationGone),
                    Err(e) => return Err(e.into()),
                }
            }
            if self.splice {
                match splice(
                    self.src.as_fd(),
                    None,
                    self.dst.as_fd(),
                    None,
                    SPLICE_CHUNK,
                    SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE,
                ) {
                    Ok(0) => return Ok(Progress::Done),
                    Ok(n) => {
                        self.moved += n as u64;
                        continue;
                    }
                    Err(Errno::EAGAIN) => return Ok(Progress::Blocked),
                    Err(Errno::EINTR) => continue,
                    Err(Errno::EPIPE) => return Ok(Progress::DestinationGone),
                    Err(e) if is_eof_error(e) => return Ok(Progress::Done),
                    Err(Errno::EINVAL) => {
                        // Neither side is a pipe, or the file type cannot splice.
                        self.splice = false;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if scratch.len() < SCRATCH {
                scratch.resize(SCRATCH, 0);
            }
            match nix::unistd::read(&self.src, scratch) {
                Ok(0) => return Ok(Progress::Done),
                Ok(n) => match nix::unistd::write(&self.dst, &scratch[..n]) {
                    Ok(w) => {
                        self.moved += w as u64;
                        if w < n {
                            self.pending.extend_from_slice(&scratch[w..n]);
                        }
                    }
                    Err(Errno::EAGAIN) | Err(Errno::EINTR) => self.pending.extend_from_slice(&scratch[..n]),
                    Err(Errno::EPIPE) => return Ok(Progress::DestinationGone),
                    Err(e) => return Err(e.into()),
                },
                Err(Errno::EAGAIN) => return Ok(Progress::Blocked),
                Err(Errno::EINTR) => continue,
                Err(e) if is_eof_error(e) => return Ok(Progress::Done),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::OFlag;
    use nix::unistd::pipe2;

    fn nb_pipe() -> (OwnedFd, OwnedFd) {
        pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).unwrap()
    }

    #[test]
    fn pipe_to_pipe_moves_everything_and_sees_eof() {
        let (src_r, src_w) = nb_pipe();
        let (dst_r, dst_w) = nb_pipe();
        let mut pump = Pump::new(Rc::new(src_r), Rc::new(dst_w));
        let mut scratch = Vec::new();
        nix::unistd::write(&src_w, b"hello ").unwrap();
        nix::unistd::write(&src_w, b"world").unwrap();
        assert_eq!(pump.run(&mut scratch).unwrap(), Progress::Blocked);
        drop(src_w);
        assert_eq!(pump.run(&mut scratch).unwrap(), Progress::Done);
        let mut buf = [0u8; 64];
        let n = nix::unistd::read(&dst_r, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello world");
        assert_eq!(pump.moved, 11);
    }

    #[test]
    fn full_destination_blocks_then_resumes_without_loss() {
        let (src_r, src_w) = nb_pipe();
        let (dst_r, dst_w) = nb_pipe();
        let mut pump = Pump::new(Rc::new(src_r), Rc::new(dst_w));
        let mut scratch = Vec::new();
        let chunk = vec![7u8; 32 * 1024];
        let mut written = 0usize;
        let mut read = 0usize;
        let total = 1 << 20;
        let mut buf = vec![0u8; 64 * 1024];
        while read < total {
            if written < total {
                if let Ok(n) = nix::unistd::write(&src_w, &chunk[..chunk.len().min(total - written)]) {
                    written += n;
                }
            }
            pump.run(&mut scratch).unwrap();
            if let Ok(n) = nix::unistd::read(&dst_r, &mut buf) {
                assert!(buf[..n].iter().all(|&b| b == 7));
                read += n;
            }
        }
        assert_eq!(read, total);
    }

    #[test]
    fn gone_destination_is_reported() {
        let (src_r, src_w) = nb_pipe();
        let (dst_r, dst_w) = nb_pipe();
        drop(dst_r);
        let mut pump = Pump::new(Rc::new(src_r), Rc::new(dst_w));
        nix::unistd::write(&src_w, b"x").unwrap();
        let mut scratch = Vec::new();
        assert_eq!(pump.run(&mut scratch).unwrap(), Progress::DestinationGone);
    }
}
