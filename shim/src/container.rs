//! What the daemon knows about each container and its processes.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use protos::runc_options::Options;
use runc_wrapper::Runc;

use crate::cgroups::Cgroup;
use crate::mount::MountSpec;
use crate::state::{Kind, Status};
use crate::stdio::{ChildStdio, ProcessIo, StdioNames};

/// A reaped exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: u32,
    pub status: u32,
    pub at: SystemTime,
}

/// Exits of pids nobody knew yet, kept while an operation may still learn them
/// (a container or exec that died before runc returned its pid).
#[derive(Debug, Default)]
pub struct UnclaimedExits {
    /// Each exit with its place in the order of reaping.
    exits: VecDeque<(u64, Exit)>,
    reaped: u64,
}

impl UnclaimedExits {
    /// Counts one reaped exit, known or not.
    pub fn count_reaped(&mut self) {
        self.reaped += 1;
    }

    /// How many exits have been reaped so far.
    pub fn reaped(&self) -> u64 {
        self.reaped
    }

    /// Keeps the exit just counted; the oldest goes when `max` are kept.
    pub fn keep(&mut self, exit: Exit, max: usize) {
        if self.exits.len() >= max {
            self.exits.pop_front();
        }
        self.exits.push_back((self.reaped, exit));
    }

    /// Takes the exit of `pid` reaped after the first `floor` exits: a process started
    /// once `floor` exits were reaped cannot have exited before, so an older exit of the
    /// same pid was another process's.
    pub fn claim(&mut self, pid: u32, floor: u64) -> Option<Exit> {
        let i = self.exits.iter().position(|(seq, e)| e.pid == pid && *seq > floor)?;
        self.exits.remove(i).map(|(_, e)| e)
    }

    pub fn clear(&mut self) {
        self.exits.clear();
    }

    /// Drops the exits among the first `floor` reaped, which no call can claim any more.
    pub fn forget_up_to(&mut self, floor: u64) {
        self.exits.retain(|(seq, _)| *seq > floor);
    }
}

/// Where a reply goes: a connection slot, its generation (so a reused slot never
/// receives an answer meant for a closed connection), and the request's stream id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Responder {
    pub slot: u32,
    pub gen: u32,
    pub stream: u32,
}

/// A request that waits because its process is busy with another operation.
#[derive(Debug)]
pub struct Queued {
    pub method: String,
    pub payload: Vec<u8>,
    pub responder: Responder,
    pub deadline: Option<Instant>,
}

/// A `Delete` that waits for the process's output copies to finish first.
#[derive(Debug, Clone, Copy)]
pub struct DrainWait {
    pub responder: Responder,
    /// The request's own deadline, for the runc call that follows.
    pub deadline: Option<Instant>,
    /// Timer key of the drain's bound.
    pub timer: (Instant, u64),
}

/// A parked `Wait` call.
#[derive(Debug, Clone, Copy)]
pub struct Waiter {
    pub responder: Responder,
    /// Timer key of its deadline, if the request carried one.
    pub timer: Option<(Instant, u64)>,
}

#[derive(Debug)]
pub struct Process {
    /// The container id for the init, the exec id otherwise.
    pub id: String,
    pub kind: Kind,
    pub status: Status,
    pub pid: u32,
    pub exit: Option<Exit>,
    pub stdio: StdioNames,
    pub io: ProcessIo,
    pub waiters: Vec<Waiter>,
    /// An operation (a runc call) is in flight; state-changing requests queue.
    pub busy: bool,
    pub queue: VecDeque<Queued>,
    /// `Start` is in flight: an exit reaped meanwhile is held until it completes,
    /// so that the start event is published first.
    pub starting: bool,
    pub exit_during_start: Option<Exit>,
    /// An exec whose `runc exec` failed: it stays CREATED and cannot be started again.
    pub start_failed: bool,
    /// The OCI `Process` JSON of an exec, with `terminal` already set.
    pub spec: Vec<u8>,
    /// An init created from a checkpoint: what `Start` restores.
    pub restore: Option<Restore>,
    /// A `Delete` parked until the output copies end (bounded).
    pub drain: Option<DrainWait>,
}

/// Restore parameters kept from `Create` until `Start`.
pub struct Restore {
    pub image: PathBuf,
    pub parent: Option<PathBuf>,
    /// The container's stdio (fifo/pipe modes), held until runc restore gets it.
    pub child: Option<ChildStdio>,
}

impl std::fmt::Debug for Restore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restore")
            .field("image", &self.image)
            .field("parent", &self.parent)
            .finish()
    }
}

impl Process {
    pub fn new(id: &str, kind: Kind, stdio: StdioNames) -> Process {
        Process {
            id: id.to_string(),
            kind,
            status: Status::Created,
            pid: 0,
            exit: None,
            stdio,
            io: ProcessIo::default(),
            waiters: Vec::new(),
            busy: false,
            queue: VecDeque::new(),
            starting: false,
            exit_during_start: None,
            start_failed: false,
            spec: Vec::new(),
            restore: None,
            drain: None,
        }
    }
}

#[derive(Debug)]
pub struct Container {
    pub bundle: PathBuf,
    pub runc: Runc,
    pub options: Options,
    pub rootfs: Vec<MountSpec>,
    pub init: Process,
    pub execs: BTreeMap<String, Process>,
    /// No private pid namespace: kill what is left when the init exits.
    pub kill_all_on_exit: bool,
    /// Execs started and not yet reaped.
    pub running_execs: usize,
    /// The init's exit has been reaped (new execs may no longer start).
    pub init_reaped: bool,
    /// The init exit, held back until every running exec's exit is published.
    pub init_exit_deferred: Option<Exit>,
    /// The init exited while the container was paused or being paused: its cgroup may still
    /// be frozen, and runc refuses to delete a frozen container, so Delete thaws it first.
    pub may_be_frozen: bool,
    /// Create has completed (until then the container is being set up).
    pub created: bool,
    /// The init's cgroup (Stats, OOM), found once its pid is known.
    pub cgroup: Option<Cgroup>,
    /// The OOM watcher's slot in the daemon's table.
    pub oom: Option<(u32, u32)>,
}

impl Container {
    /// A container whose init has not been created by runc yet.
    pub fn new(
        bundle: PathBuf,
        runc: Runc,
        options: Options,
        rootfs: Vec<MountSpec>,
        init: Process,
        kill_all_on_exit: bool,
    ) -> Container {
        Container {
            bundle,
            runc,
            options,
            rootfs,
            init,
            execs: BTreeMap::new(),
            kill_all_on_exit,
            running_execs: 0,
            init_reaped: false,
            init_exit_deferred: None,
            may_be_frozen: false,
            created: false,
            cgroup: None,
            oom: None,
        }
    }

    /// One started exec is over (exited, or its Start failed). Returns the init's exit
    /// when it was held back for the execs and this was the last of them.
    pub fn exec_over(&mut self) -> Option<Exit> {
        self.running_execs = self.running_execs.saturating_sub(1);
        if self.running_execs == 0 {
            self.init_exit_deferred.take()
        } else {
            None
        }
    }

    pub fn process(&self, exec_id: &str) -> Option<&Process> {
        if exec_id.is_empty() {
            Some(&self.init)
        } else {
            self.execs.get(exec_id)
        }
    }

    pub fn process_mut(&mut self, exec_id: &str) -> Option<&mut Process> {
        if exec_id.is_empty() {
            Some(&mut self.init)
        } else {
            self.execs.get_mut(exec_id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reaper's part: count an exit of an unknown pid and keep it.
    fn reap(u: &mut UnclaimedExits, pid: u32, status: u32, max: usize) {
        u.count_reaped();
        u.keep(
            Exit {
                pid,
                status,
                at: SystemTime::UNIX_EPOCH,
            },
            max,
        );
    }

    #[test]
    fn an_exit_is_claimed_only_by_a_call_spawned_before_it_was_reaped() {
        let mut u = UnclaimedExits::default();
        // An earlier process with pid 40 exits while some call is learning a pid.
        reap(&mut u, 40, 1, 16);
        // A call spawned now gets a process that the kernel gives the same pid 40.
        let floor = u.reaped();
        assert_eq!(u.claim(40, floor), None, "the old exit of pid 40 is not this process's");
        // Its own process exits before the call returns: that exit is its.
        reap(&mut u, 40, 137, 16);
        assert_eq!(u.claim(40, floor).map(|e| e.status), Some(137));
        // A call spawned before both would take the older one first.
        assert_eq!(u.claim(40, 0).map(|e| e.status), Some(1));
        assert_eq!(u.claim(40, 0), None);
    }

    #[test]
    fn the_oldest_unclaimed_exit_goes_first_when_full() {
        let mut u = UnclaimedExits::default();
        for pid in 1..=3 {
            reap(&mut u, pid, 0, 2);
        }
        assert_eq!(u.claim(1, 0), None);
        assert!(u.claim(2, 0).is_some() && u.claim(3, 0).is_some());
    }

    #[test]
    fn exits_older_than_every_call_in_flight_are_forgotten() {
        let mut u = UnclaimedExits::default();
        for pid in 1..=3 {
            reap(&mut u, pid, 0, 16);
        }
        u.forget_up_to(2);
        assert_eq!((u.claim(1, 0), u.claim(2, 0)), (None, None));
        assert!(u.claim(3, 0).is_some());
    }
}
