//! Child processes and orphans.
//!
//! The test process makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`): a shim daemon is
//! an orphan of its `start` process and is re-parented to us, as are the containers of a shim
//! that died. PID 1 on these machines does not reliably reap orphans, so we must.
//!
//! Reaping must never steal an exit status from our own `std::process` children (containerd,
//! ctr, tar, a shim `start` run by hand), which are waited for by pid. Hence:
//!
//! * every child is spawned through [`spawn`], which holds [`REGISTRY`]'s lock across
//!   `Command::spawn` and the registration of the new pid, so no window exists in which our own
//!   child is a zombie that is not registered;
//! * [`Spawned`] waits with `try_wait` under the same lock and unregisters the pid in the same
//!   critical section, so a recycled pid can never be confused with a finished child;
//! * the reaper ([`reap_orphans`], run by a background thread and by the leak checker) looks
//!   for zombies whose parent is us (`/proc/<pid>/stat`), and under the lock reaps exactly
//!   those pids that are not registered, each with `waitpid(pid, WNOHANG)` (never `waitpid(-1)`).
//!
//! Never use `Command::output`/`status`/`spawn` directly in this crate: use [`spawn`].

use crate::procfs;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use std::collections::HashSet;
use std::io;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

/// Pids of our own `std::process` children that have not been waited for yet.
static REGISTRY: Mutex<Option<HashSet<i32>>> = Mutex::new(None);
static START: Once = Once::new();

/// How often the background thread looks for orphaned zombies.
const REAP_INTERVAL: Duration = Duration::from_millis(200);

fn registry() -> MutexGuard<'static, Option<HashSet<i32>>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes the process a child subreaper and starts the orphan reaper thread (once).
pub fn init() {
    START.call_once(|| {
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            panic!("prctl(PR_SET_CHILD_SUBREAPER): {e}");
        }
        std::thread::Builder::new()
            .name("e2e-orphan-reaper".into())
            .spawn(|| loop {
                std::thread::sleep(REAP_INTERVAL);
                reap_orphans();
            })
            .expect("spawn reaper thread");
    });
}

/// Reaps zombies that are our children but not registered `std::process` children.
/// Returns how many were reaped.
pub fn reap_orphans() -> usize {
    let me = std::process::id() as i32;
    let candidates: Vec<i32> = procfs::pids()
        .into_iter()
        .filter(|&p| procfs::stat(p).is_some_and(|s| s.ppid == me && s.is_zombie()))
        .collect();
    if candidates.is_empty() {
        return 0;
    }
    let reg = registry();
    let mut n = 0;
    for pid in candidates {
        if reg.as_ref().is_some_and(|r| r.contains(&pid)) {
            continue; // its owner waits for it
        }
        if let Ok(st) = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            if st != nix::sys::wait::WaitStatus::StillAlive {
                n += 1;
            }
        }
    }
    n
}

/// True if `pid` is one of our own not-yet-waited `std::process` children.
pub fn is_registered(pid: i32) -> bool {
    registry().as_ref().is_some_and(|r| r.contains(&pid))
}

/// Spawns `cmd` as a registered child (see the module doc).
pub fn spawn(cmd: &mut Command) -> io::Result<Spawned> {
    init();
    let mut reg = registry();
    let child = cmd.spawn()?;
    reg.get_or_insert_with(HashSet::new).insert(child.id() as i32);
    drop(reg);
    Ok(Spawned { child, status: None })
}

/// A registered child process. Dropping it without waiting unregisters it, and the orphan
/// reaper collects it once it exits.
#[derive(Debug)]
pub struct Spawned {
    child: Child,
    status: Option<ExitStatus>,
}

impl Spawned {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// The exit status if the child has exited (reaping it), without blocking.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        let mut reg = registry();
        let r = self.child.try_wait();
        match &r {
            Ok(Some(s)) => {
                self.status = Some(*s);
                if let Some(set) = reg.as_mut() {
                    set.remove(&(self.child.id() as i32));
                }
            }
            Ok(None) => {}
            Err(_) => {
                if let Some(set) = reg.as_mut() {
                    set.remove(&(self.child.id() as i32));
                }
            }
        }
        r
    }

    /// Waits at most `timeout` for the child to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(2);
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(Some(s));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Sends `sig` unless the child was already reaped (its pid cannot have been recycled
    /// before that: only we reap it).
    pub fn signal(&self, sig: Signal) {
        if self.status.is_none() {
            let _ = kill(Pid::from_raw(self.pid()), sig);
        }
    }

    /// SIGKILL, then wait (bounded: a SIGKILLed process exits unless stuck in the kernel).
    pub fn kill_and_wait(&mut self) -> Option<ExitStatus> {
        self.signal(Signal::SIGKILL);
        self.wait_timeout(Duration::from_secs(30)).ok().flatten()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.status.is_none() {
            if let Some(set) = registry().as_mut() {
                set.remove(&(self.child.id() as i32));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many short-lived children in parallel with an eager orphan reaper: every child's own
    /// exit status is still seen by its owner, and the orphans are reaped.
    #[test]
    fn reaper_never_steals_a_childs_exit_status_and_reaps_orphans() {
        init();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let eager = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    reap_orphans();
                }
            })
        };
        let workers: Vec<_> = (0..4)
            .map(|w| {
                std::thread::spawn(move || {
                    for i in 0..40 {
                        let code = (w * 40 + i) % 200;
                        // The background subshell outlives sh: an orphan re-parented to us.
                        let mut c = Command::new("/bin/sh");
                        c.arg("-c").arg(format!("(exit 0) & exit {code}"));
                        let mut child = spawn(&mut c).expect("spawn sh");
                        let st = child
                            .wait_timeout(Duration::from_secs(20))
                            .expect("wait")
                            .expect("exited");
                        assert_eq!(st.code(), Some(code), "exit status of child {w}/{i}");
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker");
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        eager.join().expect("reaper thread");
        let me = std::process::id() as i32;
        let left = crate::util::poll(Duration::from_secs(10), Duration::from_millis(50), || {
            reap_orphans();
            let z: Vec<i32> = procfs::pids()
                .into_iter()
                .filter(|&p| procfs::stat(p).is_some_and(|s| s.ppid == me && s.is_zombie() && !is_registered(p)))
                .collect();
            z.is_empty().then_some(())
        });
        assert!(left.is_some(), "orphaned zombies were not reaped");
    }
}
