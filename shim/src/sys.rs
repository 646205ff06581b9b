//! Every `unsafe` call of the shim lives here, each with its reason.
//!
//! The rest of the crate is compiled with `#![deny(unsafe_code)]`; this module
//! opts out and keeps each unsafe block small and documented.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The fd on which `start` hands the listening socket to the daemon.
pub const LISTENER_FD: RawFd = 3;

/// Takes ownership of the listening socket inherited on fd 3, if there is one.
pub fn inherited_listener() -> Option<OwnedFd> {
    // SAFETY: F_GETFD only inspects the descriptor table; it is valid for any number.
    let flags = unsafe { libc::fcntl(LISTENER_FD, libc::F_GETFD) };
    if flags < 0 {
        return None;
    }
    // SAFETY: fd 3 is open (checked above) and nothing else in this process owns it:
    // the daemon is exec'd with fd 3 as the listener and takes it exactly once, at start-up.
    let fd = unsafe { OwnedFd::from_raw_fd(LISTENER_FD) };
    set_cloexec(&fd);
    Some(fd)
}

fn set_cloexec(fd: &OwnedFd) {
    // SAFETY: plain fcntl on a descriptor we own; failure only leaves the flag unset.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFD);
        if flags >= 0 {
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags | libc::FD_CLOEXEC);
        }
    }
}

/// Limits glibc to one malloc arena: the shim is (almost) single-threaded and
/// every arena costs resident memory in each of the many shim processes.
pub fn limit_malloc_arenas() {
    // SAFETY: mallopt only changes allocator tunables; M_ARENA_MAX is valid on glibc.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Returns freed heap pages to the kernel (glibc's `malloc_trim`).
pub fn trim_heap() {
    // SAFETY: malloc_trim is thread-safe and has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Arranges for `cmd`'s child to receive SIGKILL when the shim dies, so runc
/// helpers never outlive a crashed shim. The child is spawned from the event
/// loop thread, which lives as long as the process.
pub fn kill_child_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls (prctl, getppid, kill); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() as u32 != parent {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        });
    }
}

/// Gives process `pid` (all its threads) a new core-scheduling cookie, which every
/// process it starts later inherits: only tasks of this shim and its containers may
/// then share a core's SMT siblings. Fails with EINVAL where the kernel lacks
/// core scheduling.
pub fn create_sched_core_cookie(pid: u32) -> io::Result<()> {
    const PR_SCHED_CORE: libc::c_int = 62;
    const PR_SCHED_CORE_CREATE: libc::c_ulong = 1;
    const PIDTYPE_TGID: libc::c_ulong = 1;
    // SAFETY: prctl with integer arguments only; no memory is handed to the kernel.
    let rc = unsafe {
        libc::prctl(
            PR_SCHED_CORE,
            PR_SCHED_CORE_CREATE,
            pid as libc::c_ulong,
            PIDTYPE_TGID,
            0 as libc::c_ulong,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `fd` appear as `target` in `cmd`'s child (with close-on-exec cleared).
/// `fd` must stay open until the child has been spawned.
pub fn pass_fd(cmd: &mut Command, fd: RawFd, target: RawFd) {
    // SAFETY: the closure runs between fork and exec and only calls dup2/fcntl,
    // which are async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if fd == target {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(fd, target) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sets the window size of a terminal.
pub fn set_winsize(fd: RawFd, cols: u16, rows: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a `winsize` struct from the pointer, which is valid
    // for the duration of the call.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws as *const libc::winsize) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reaps one exited child without blocking: `Ok(None)` when no child has exited
/// (or there are no children). The status is returned raw.
pub fn reap_one() -> io::Result<Option<(i32, i32)>> {
    let mut status: libc::c_int = 0;
    // SAFETY: waitpid writes the status into a valid, writable c_int.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    match pid {
        0 => Ok(None),
        p if p > 0 => Ok(Some((p, status))),
        _ => {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ECHILD) {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }
}

/// Converts a raw wait status into containerd's exit status: the exit code, or
/// 128 + signal number for a process killed by a signal.
pub fn exit_code(status: i32) -> u32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status) as u32
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status) as u32
    } else {
        // Stopped/continued are never reported without WUNTRACED/WCONTINUED.
        255
    }
}

/// Sends `signal` to `pid`.
pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, signal) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one descriptor sent with SCM_RIGHTS on `sock` (runc's console
/// socket protocol: the payload is the pty's name, the control message its master).
pub fn recv_fd(sock: RawFd) -> io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::io::IoSliceMut;
    let mut name = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut received: Vec<RawFd> = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            received.extend(fds);
        }
    }
    let mut owned = received.into_iter().map(|fd| {
        // SAFETY: the kernel just installed this descriptor in our table for us
        // (SCM_RIGHTS); nothing else refers to it, so we take sole ownership.
        unsafe { OwnedFd::from_raw_fd(fd) }
    });
    let first = owned
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no descriptor in console message"))?;
    // Extra descriptors (never sent by runc) are closed as `owned` drops.
    Ok(first)
}

/// Makes each `(fd, target)` appear at `target` in `cmd`'s child, safely even when
/// sources and targets overlap (everything is first moved above the targets).
pub fn pass_fds(cmd: &mut Command, fds: Vec<(RawFd, RawFd)>) {
    // SAFETY: the closure runs between fork and exec and only calls fcntl/dup2/close,
    // which are async-signal-safe; the vector was allocated before fork and is only read.
    unsafe {
        cmd.pre_exec(move || {
            let mut moved = [0 as RawFd; 8];
            for (i, (fd, _)) in fds.iter().enumerate().take(moved.len()) {
                let high = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 100);
                if high < 0 {
                    return Err(io::Error::last_os_error());
                }
                moved[i] = high;
            }
            for (i, (_, target)) in fds.iter().enumerate().take(moved.len()) {
                if libc::dup2(moved[i], *target) < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::close(moved[i]);
            }
            Ok(())
        });
    }
}
