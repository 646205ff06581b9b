//! OOM watchers: one descriptor each for the daemon's epoll loop.
//!
//! - v1 ([`OomV1`]): an eventfd registered with the memory cgroup's
//!   `cgroup.event_control` for `memory.oom_control`; the kernel adds to it on
//!   every OOM in the cgroup, and once more when the cgroup is removed.
//! - v2 ([`OomV2`]): inotify on `memory.events` and `cgroup.events`; each
//!   change re-reads `memory.events` and compares `oom_kill` with the last
//!   count seen.
//!
//! Register [`OomWatch::fd`] for `EPOLLIN` (level-triggered); on readiness call
//! [`OomWatch::on_readable`], publish `/tasks/oom` on [`OomEvent::Oom`] and
//! drop the watcher on [`OomEvent::Gone`] (dropping closes the descriptor,
//! which also removes it from epoll and, on v1, unregisters the event).

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::files::{kv, parse_uint, with_path};
use super::Cgroup;

/// What a watcher saw when its descriptor became readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomEvent {
    /// Nothing to report (spurious wake-up, or another counter changed).
    Nothing,
    /// One or more OOM kills since the last report: publish one `/tasks/oom`.
    Oom,
    /// The cgroup is gone: drop the watcher.
    Gone,
}

/// The interface the event loop uses, with a v1 and a v2 implementation.
pub trait OomWatch {
    /// The descriptor to register for `EPOLLIN`.
    fn fd(&self) -> BorrowedFd<'_>;
    /// Consumes the readiness and says what happened.
    fn on_readable(&mut self) -> io::Result<OomEvent>;
    /// A last look without waiting for readiness, before publishing the init's
    /// exit, so that an OOM kill that ended the container is reported first.
    fn final_check(&mut self) -> io::Result<OomEvent>;
}

/// cgroup v1: eventfd notifications from `memory.oom_control`.
#[derive(Debug)]
pub struct OomV1 {
    efd: EventFd,
    memory_dir: PathBuf,
}

impl OomV1 {
    /// Registers an OOM eventfd with the memory cgroup at `memory_dir`.
    pub fn register(memory_dir: &Path) -> io::Result<OomV1> {
        let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        let control_path = memory_dir.join("memory.oom_control");
        let control = File::open(&control_path).map_err(|e| with_path(&control_path, e))?;
        let event_control = memory_dir.join("cgroup.event_control");
        fs::write(&event_control, format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()))
            .map_err(|e| with_path(&event_control, e))?;
        // The registration keeps its own reference to oom_control.
        drop(control);
        Ok(OomV1 {
            efd,
            memory_dir: memory_dir.to_path_buf(),
        })
    }

    fn check(&mut self) -> io::Result<OomEvent> {
        match self.efd.read() {
            Ok(_) => {}
            Err(Errno::EAGAIN) => return Ok(OomEvent::Nothing),
            Err(e) => return Err(e.into()),
        }
        match self.memory_dir.symlink_metadata() {
            Ok(_) => Ok(OomEvent::Oom),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(OomEvent::Gone),
            Err(e) => Err(with_path(&self.memory_dir, e)),
        }
    }
}

impl OomWatch for OomV1 {
    fn fd(&self) -> BorrowedFd<'_> {
        self.efd.as_fd()
    }

    fn on_readable(&mut self) -> io::Result<OomEvent> {
        self.check()
    }

    fn final_check(&mut self) -> io::Result<OomEvent> {
        self.check()
    }
}

/// cgroup v2: `oom_kill` of `memory.events`, re-read on inotify changes.
#[derive(Debug)]
pub struct OomV2 {
    inotify: Inotify,
    dir: PathBuf,
    last_oom_kill: u64,
}

impl OomV2 {
    /// Watches the cgroup at `dir`; kills counted before this call are not
    /// reported.
    pub fn watch(dir: &Path) -> io::Result<OomV2> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        for name in ["memory.events", "cgroup.events"] {
            let path = dir.join(name);
            inotify
                .add_watch(&path, AddWatchFlags::IN_MODIFY)
                .map_err(|e| with_path(&path, e.into()))?;
        }
        let events = dir.join("memory.events");
        let text = fs::read_to_string(&events).map_err(|e| with_path(&events, e))?;
        Ok(OomV2 {
            inotify,
            dir: dir.to_path_buf(),
            last_oom_kill: oom_kill(&text),
        })
    }

    /// Empties the inotify queue (the events only say "look again").
    fn drain(&self) -> io::Result<()> {
        loop {
            match self.inotify.read_events() {
                Ok(events) if !events.is_empty() => continue,
                Ok(_) | Err(Errno::EAGAIN) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn check(&mut self) -> io::Result<OomEvent> {
        let path = self.dir.join("memory.events");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            // A removed cgroup may fail the read with ENODEV rather than
            // ENOENT: gone if the file is no longer there.
            Err(e) => {
                return match path.symlink_metadata() {
                    Err(s) if s.kind() == io::ErrorKind::NotFound => Ok(OomEvent::Gone),
                    _ => Err(with_path(&path, e)),
                };
            }
        };
        let count = oom_kill(&text);
        let increased = count > self.last_oom_kill;
        self.last_oom_kill = count;
        Ok(if increased { OomEvent::Oom } else { OomEvent::Nothing })
    }
}

fn oom_kill(memory_events: &str) -> u64 {
    memory_events
        .lines()
        .filter_map(kv)
        .find(|(k, _)| *k == "oom_kill")
        .and_then(|(_, v)| parse_uint(v))
        .unwrap_or(0)
}

impl OomWatch for OomV2 {
    fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    fn on_readable(&mut self) -> io::Result<OomEvent> {
        self.drain()?;
        self.check()
    }

    fn final_check(&mut self) -> io::Result<OomEvent> {
        self.drain()?;
        self.check()
    }
}

/// Either watcher, for the loop to hold without boxing.
#[derive(Debug)]
pub enum OomWatcher {
    V1(OomV1),
    V2(OomV2),
}

impl OomWatcher {
    /// The watcher for `cgroup`: v1 needs a memory hierarchy. On v2, call
    /// [`super::enable_v2_controllers`] first (as the Go shim does) so that
    /// `memory.events` exists.
    pub fn for_cgroup(cgroup: &Cgroup) -> io::Result<OomWatcher> {
        match cgroup {
            Cgroup::V1 { .. } => {
                let dir = cgroup
                    .memory_dir()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no memory cgroup"))?;
                Ok(OomWatcher::V1(OomV1::register(&dir)?))
            }
            Cgroup::V2 { dir } => Ok(OomWatcher::V2(OomV2::watch(dir)?)),
        }
    }

    fn inner(&mut self) -> &mut dyn OomWatch {
        match self {
            OomWatcher::V1(w) => w,
            OomWatcher::V2(w) => w,
        }
    }
}

impl OomWatch for OomWatcher {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            OomWatcher::V1(w) => w.fd(),
            OomWatcher::V2(w) => w.fd(),
        }
    }

    fn on_readable(&mut self) -> io::Result<OomEvent> {
        self.inner().on_readable()
    }

    fn final_check(&mut self) -> io::Result<OomEvent> {
        self.inner().final_check()
    }
}

impl AsFd for OomWatcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd()
    }
}

#[cfg(test)]
mod tests;
