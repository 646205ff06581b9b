//! Attaching process stdio to the event loop: pumps (pty and chowned pipes),
//! waiting for a binary logger to signal ready, and stopping loggers.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{EpollEvent, EpollFlags};

use std::path::Path;
use std::rc::Rc;

use protos::any;
use protos::events::TaskOOM;

use crate::cgroups::{self, enable_v2_controllers, Cgroup, OomEvent, OomWatch, OomWatcher};
use crate::daemon::{Daemon, OomSlot, Timer};
use crate::error::Error;
use crate::pump::{Progress, Pump};
use crate::runner::RuncCall;
use crate::stdio::set_nonblock;
use crate::sys;

pub const KIND_PUMP_SRC: u64 = 6;
pub const KIND_PUMP_DST: u64 = 7;
pub const KIND_READY: u64 = 8;
pub const KIND_OOM: u64 = 9;

/// How long a logger may take to exit after SIGTERM before it is killed.
const LOGGER_GRACE: Duration = Duration::from_secs(12);

pub fn token(kind: u64, slot: u32, gen: u32) -> u64 {
    (kind << 56) | (u64::from(gen & 0xff_ffff) << 32) | u64::from(slot)
}

pub fn untoken(t: u64) -> (u64, u32, u32) {
    (t >> 56, (t & 0xffff_ffff) as u32, ((t >> 32) & 0xff_ffff) as u32)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Client → container (stdin). Its end means EOF for the container.
    Input,
    /// Container → client.
    Output,
}

pub struct PumpSlot {
    pub pump: Pump,
    pub gen: u32,
    pub container: String,
    pub exec: String,
    pub role: Role,
    /// Whether the pump reads from or writes to a pty master.
    pub console: bool,
    /// The other pump on the same pty master (slot, generation): the master is
    /// registered with epoll once, under one of the two, and events wake both.
    pub peer: Option<(u32, u32)>,
    /// Whether this pump registered its source / destination with epoll.
    pub registered: (bool, bool),
}

/// Interest in a pty master shared by an output and an input pump.
fn master_interest() -> EpollFlags {
    EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET
}

/// A runc call waiting for a binary logger to signal that it is ready.
pub struct ReadyWait {
    pub fd: OwnedFd,
    pub gen: u32,
    pub v2: bool,
    pub logger: u32,
    pub call: RuncCall,
}

fn add_or_assume_ready(d: &Daemon, fd: &OwnedFd, flags: EpollFlags, tok: u64) -> io::Result<bool> {
    match d.poll().add(fd, EpollEvent::new(flags | EpollFlags::EPOLLET, tok)) {
        Ok(()) => Ok(true),
        // Regular files and /dev/null cannot be polled: they are always ready.
        Err(Errno::EPERM) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

impl Daemon {
    // ---------------------------------------------------------------- pumps

    fn free_pump_slot(&mut self) -> u32 {
        (match self.pumps.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.pumps.push(None);
                self.pumps.len() - 1
            }
        }) as u32
    }

    /// Puts a pump into its slot and the process's list of pumps.
    fn install_pump(&mut self, slot: u32, ps: PumpSlot) {
        if let Some(p) = self
            .containers
            .get_mut(&ps.container)
            .and_then(|c| c.process_mut(&ps.exec))
        {
            p.io.pumps.push(slot);
        }
        self.pumps[slot as usize] = Some(ps);
    }

    /// Starts moving bytes from `src` to `dst` for a process (pipes, no terminal).
    pub fn add_pump(&mut self, container: &str, exec: &str, src: OwnedFd, dst: OwnedFd, role: Role) -> io::Result<()> {
        set_nonblock(&src)?;
        set_nonblock(&dst)?;
        let slot = self.free_pump_slot();
        let gen = self.next_gen();
        add_or_assume_ready(
            self,
            &src,
            EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP,
            token(KIND_PUMP_SRC, slot, gen),
        )?;
        if let Err(e) = add_or_assume_ready(self, &dst, EpollFlags::EPOLLOUT, token(KIND_PUMP_DST, slot, gen)) {
            let _ = self.poll().delete(&src);
            return Err(e);
        }
        self.install_pump(
            slot,
            PumpSlot {
                pump: Pump::new(Rc::new(src), Rc::new(dst)),
                gen,
                container: container.to_string(),
                exec: exec.to_string(),
                role,
                console: false,
                peer: None,
                registered: (true, true),
            },
        );
        // Data may already be waiting; edge-triggered registration would not report it.
        self.run_pump(slot, gen);
        Ok(())
    }

    /// Starts the copies of a terminal: master → `out` and, if given, `input` → master.
    /// The master is one descriptor, registered once, under the output pump.
    fn add_console_pumps(
        &mut self,
        container: &str,
        exec: &str,
        master: &Rc<OwnedFd>,
        out: OwnedFd,
        input: Option<OwnedFd>,
    ) -> io::Result<()> {
        set_nonblock(&out)?;
        if let Some(i) = &input {
            set_nonblock(i)?;
        }
        let out_slot = self.free_pump_slot();
        let out_gen = self.next_gen();
        add_or_assume_ready(self, master, master_interest(), token(KIND_PUMP_SRC, out_slot, out_gen))?;
        if let Err(e) = add_or_assume_ready(
            self,
            &out,
            EpollFlags::EPOLLOUT,
            token(KIND_PUMP_DST, out_slot, out_gen),
        ) {
            let _ = self.poll().delete(master.as_fd());
            return Err(e);
        }
        self.install_pump(
            out_slot,
            PumpSlot {
                pump: Pump::new(master.clone(), Rc::new(out)),
                gen: out_gen,
                container: container.to_string(),
                exec: exec.to_string(),
                role: Role::Output,
                console: true,
                peer: None,
                registered: (true, true),
            },
        );
        let mut input_pump = None;
        if let Some(input) = input {
            let in_slot = self.free_pump_slot();
            let in_gen = self.next_gen();
            add_or_assume_ready(
                self,
                &input,
                EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP,
                token(KIND_PUMP_SRC, in_slot, in_gen),
            )?;
            self.install_pump(
                in_slot,
                PumpSlot {
                    pump: Pump::new(Rc::new(input), master.clone()),
                    gen: in_gen,
                    container: container.to_string(),
                    exec: exec.to_string(),
                    role: Role::Input,
                    console: true,
                    peer: Some((out_slot, out_gen)),
                    registered: (true, false),
                },
            );
            if let Some(Some(out)) = self.pumps.get_mut(out_slot as usize) {
                out.peer = Some((in_slot, in_gen));
            }
            input_pump = Some((in_slot, in_gen));
        }
        self.run_pump(out_slot, out_gen);
        if let Some((slot, gen)) = input_pump {
            self.run_pump(slot, gen);
        }
        Ok(())
    }

    pub fn on_pump_event(&mut self, t: u64) {
        let (_, slot, gen) = untoken(t);
        let peer = self
            .pumps
            .get(slot as usize)
            .and_then(Option::as_ref)
            .filter(|p| p.gen == gen)
            .and_then(|p| p.peer);
        self.run_pump(slot, gen);
        if let Some((slot, gen)) = peer {
            self.run_pump(slot, gen);
        }
    }

    fn run_pump(&mut self, slot: u32, gen: u32) {
        let Some(Some(ps)) = self.pumps.get_mut(slot as usize) else {
            return;
        };
        if ps.gen != gen {
            return;
        }
        let scratch = &mut self.scratch;
        let outcome = ps.pump.run(scratch);
        match outcome {
            Ok(Progress::Blocked) => {}
            Ok(Progress::Done) | Ok(Progress::DestinationGone) => self.pump_finished(slot),
            Err(e) => {
                log::warn!("stdio copy for {} {} failed: {e}", ps.container, ps.exec);
                self.pump_finished(slot);
            }
        }
    }

    fn remove_pump(&mut self, slot: u32) -> Option<PumpSlot> {
        let ps = self.pumps.get_mut(slot as usize)?.take()?;
        // A live peer shares the pty master: it keeps (or takes over) its registration.
        let peer = ps.peer.and_then(|(s, g)| {
            let peer = self.pumps.get_mut(s as usize)?.as_mut().filter(|p| p.gen == g)?;
            peer.peer = None;
            Some((s, g))
        });
        let (src_registered, dst_registered) = ps.registered;
        // For a console pump: the master is the output pump's source, the input pump's destination.
        let master_is_src = ps.role == Role::Output;
        // The master stays registered while the peer lives.
        let keep_src = peer.is_some() && master_is_src;
        let keep_dst = peer.is_some() && !master_is_src;
        if src_registered && !keep_src {
            let _ = self.poll().delete(ps.pump.src.as_fd());
        }
        if dst_registered && !keep_dst {
            let _ = self.poll().delete(ps.pump.dst.as_fd());
        }
        let master_registered = if master_is_src { src_registered } else { dst_registered };
        if let (Some((s, g)), true) = (peer, master_registered) {
            let master = if master_is_src { &ps.pump.src } else { &ps.pump.dst };
            // Any pump kind routes to `on_pump_event`.
            let mut ev = EpollEvent::new(master_interest(), token(KIND_PUMP_SRC, s, g));
            if self.poll().modify(master.as_fd(), &mut ev).is_ok() {
                if let Some(Some(p)) = self.pumps.get_mut(s as usize) {
                    if master_is_src {
                        p.registered.1 = true;
                    } else {
                        p.registered.0 = true;
                    }
                }
            }
        }
        if let Some(p) = self
            .containers
            .get_mut(&ps.container)
            .and_then(|c| c.process_mut(&ps.exec))
        {
            p.io.pumps.retain(|s| *s != slot);
        }
        if self.pumps.iter().all(Option::is_none) {
            self.pumps.clear();
            self.scratch = Vec::new();
        }
        Some(ps)
    }

    fn pump_finished(&mut self, slot: u32) {
        let Some(ps) = self.remove_pump(slot) else {
            return;
        };
        log::debug!(
            "stdio copy for {} {} ended after {} bytes",
            ps.container,
            ps.exec,
            ps.pump.moved
        );
        if ps.role == Role::Input && ps.console {
            // stdin ended on a terminal: hang the console up, as the Go shim does.
            self.shutdown_console(&ps.container, &ps.exec);
        }
        if ps.role == Role::Output && !self.has_output_pumps(&ps.container, &ps.exec) {
            self.finish_drain(&ps.container, &ps.exec);
        }
    }

    /// Whether output of the process is still being copied to its client.
    pub fn has_output_pumps(&self, container: &str, exec: &str) -> bool {
        let Some(p) = self.containers.get(container).and_then(|c| c.process(exec)) else {
            return false;
        };
        p.io.pumps.iter().any(|&slot| {
            self.pumps
                .get(slot as usize)
                .and_then(Option::as_ref)
                .is_some_and(|p| p.role == Role::Output)
        })
    }

    /// Closes a process's pty: output already in the master is copied out first.
    pub fn shutdown_console(&mut self, container: &str, exec: &str) {
        let slots = self.process_pumps(container, exec);
        for slot in slots {
            let is_console = self
                .pumps
                .get(slot as usize)
                .and_then(Option::as_ref)
                .is_some_and(|p| p.console);
            if !is_console {
                continue;
            }
            self.drain_pump(slot);
            self.remove_pump(slot);
        }
        if let Some(p) = self.containers.get_mut(container).and_then(|c| c.process_mut(exec)) {
            p.io.console = None;
        }
    }

    fn process_pumps(&self, container: &str, exec: &str) -> Vec<u32> {
        self.containers
            .get(container)
            .and_then(|c| c.process(exec))
            .map(|p| p.io.pumps.clone())
            .unwrap_or_default()
    }

    /// Moves whatever an output pump can move right now, without waiting.
    fn drain_pump(&mut self, slot: u32) {
        let Some(Some(ps)) = self.pumps.get_mut(slot as usize) else {
            return;
        };
        if ps.role != Role::Output {
            return;
        }
        let scratch = &mut self.scratch;
        let _ = ps.pump.run(scratch);
    }

    /// Drops every pump of a process, first moving output that is already there.
    pub fn close_process_io(&mut self, container: &str, exec: &str) {
        for slot in self.process_pumps(container, exec) {
            self.drain_pump(slot);
            self.remove_pump(slot);
        }
        let logger = self
            .containers
            .get_mut(container)
            .and_then(|c| c.process_mut(exec))
            .and_then(|p| {
                p.io.console = None;
                p.io.stdin_keepalive = None;
                p.io.logger.take()
            });
        if let Some(pid) = logger {
            self.stop_logger(pid);
        }
    }

    /// Starts the pumps of a process whose runc call just succeeded: receives the
    /// pty master (terminal) or connects the chowned pipes.
    pub fn attach_io(&mut self, container: &str, exec: &str) -> Result<(), Error> {
        let Some(p) = self.containers.get_mut(container).and_then(|c| c.process_mut(exec)) else {
            return Ok(());
        };
        let socket = p.io.console_socket.take();
        let input = p.io.master_input.take();
        let output = p.io.master_output.take();
        let pipes = std::mem::take(&mut p.io.pipe_pumps);
        if let Some(socket) = socket {
            let master = socket
                .receive_master()
                .map_err(|e| Error::unknown(format!("failed to retrieve console master: {e}")))?;
            drop(socket);
            set_nonblock(&master).map_err(|e| Error::unknown(format!("console: {e}")))?;
            let out_dst = match output {
                Some(o) => o,
                None => std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/null")
                    .map(OwnedFd::from)
                    .map_err(|e| Error::unknown(format!("open /dev/null: {e}")))?,
            };
            let master = Rc::new(master);
            if let Some(p) = self.containers.get_mut(container).and_then(|c| c.process_mut(exec)) {
                p.io.console = Some(master.clone());
            }
            self.add_console_pumps(container, exec, &master, out_dst, input)
                .map_err(|e| Error::unknown(format!("failed to start console copy: {e}")))?;
        }
        for (src, dst, role) in pipes {
            self.add_pump(container, exec, src, dst, role)
                .map_err(|e| Error::unknown(format!("failed to start io pipe copy: {e}")))?;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- cgroups

    /// Finds the init's cgroup and starts watching it for OOM kills. Failures are
    /// only logged: the container runs without Stats/OOM reports.
    pub fn watch_cgroup(&mut self, container: &str, pid: u32) {
        let cg = match Cgroup::for_pid(pid) {
            Ok(cg) => cg,
            Err(e) => {
                log::warn!("cannot find the cgroup of {container} (pid {pid}): {e}");
                return;
            }
        };
        if let Cgroup::V2 { dir } = &cg {
            if let Err(e) = enable_v2_controllers(Path::new(cgroups::ROOT), dir) {
                log::warn!("failed to enable cgroup controllers for {container}: {e}");
            }
        }
        let watcher = match OomWatcher::for_cgroup(&cg) {
            Ok(w) => Some(w),
            Err(e) => {
                log::warn!("cannot watch {container} for OOM kills: {e}");
                None
            }
        };
        let slot = watcher.and_then(|watcher| {
            let slot = match self.ooms.iter().position(Option::is_none) {
                Some(i) => i,
                None => {
                    self.ooms.push(None);
                    self.ooms.len() - 1
                }
            } as u32;
            let gen = self.next_gen();
            let ev = EpollEvent::new(EpollFlags::EPOLLIN, token(KIND_OOM, slot, gen));
            if let Err(e) = self.poll().add(watcher.fd(), ev) {
                log::warn!("cannot watch {container} for OOM kills: {e}");
                return None;
            }
            self.ooms[slot as usize] = Some(OomSlot {
                watcher,
                gen,
                container: container.to_string(),
            });
            Some((slot, gen))
        });
        if let Some(c) = self.containers.get_mut(container) {
            c.cgroup = Some(cg);
            c.oom = slot;
        }
    }

    pub fn on_oom_event(&mut self, t: u64) {
        let (_, slot, gen) = untoken(t);
        let Some(Some(o)) = self.ooms.get_mut(slot as usize) else {
            return;
        };
        if o.gen != gen {
            return;
        }
        let container = o.container.clone();
        self.check_oom(slot, container);
    }

    /// A look for an OOM kill before an exec's exit is published: on cgroup v2 the kill is
    /// counted in `memory.events` before the victim dies, but its inotify wake-up comes after
    /// the exit, so without this `/tasks/oom` would follow the exec's `/tasks/exit`.
    pub fn oom_check_before_exit(&mut self, container: &str) {
        let Some((slot, gen)) = self.containers.get(container).and_then(|c| c.oom) else {
            return;
        };
        if matches!(self.ooms.get(slot as usize), Some(Some(o)) if o.gen == gen) {
            self.check_oom(slot, container.to_string());
        }
    }

    fn check_oom(&mut self, slot: u32, container: String) {
        let Some(Some(o)) = self.ooms.get_mut(slot as usize) else {
            return;
        };
        match o.watcher.on_readable() {
            Ok(OomEvent::Nothing) => {}
            Ok(OomEvent::Oom) => self.publish_oom(&container),
            Ok(OomEvent::Gone) => self.unwatch_oom(&container),
            Err(e) => {
                log::warn!("OOM watch of {container} failed: {e}");
                self.unwatch_oom(&container);
            }
        }
    }

    fn publish_oom(&mut self, container: &str) {
        log::info!("OOM kill in {container}");
        let mut ev = TaskOOM::new();
        ev.container_id = container.to_string();
        self.publish("/tasks/oom", any::TASK_OOM, &ev);
    }

    /// A last look for an OOM kill before the init's exit is published, so
    /// `/tasks/oom` always comes first; then the watch ends.
    pub fn final_oom_check(&mut self, container: &str) {
        let Some((slot, gen)) = self.containers.get(container).and_then(|c| c.oom) else {
            return;
        };
        let Some(Some(o)) = self.ooms.get_mut(slot as usize) else {
            return;
        };
        if o.gen == gen && matches!(o.watcher.final_check(), Ok(OomEvent::Oom)) {
            self.publish_oom(container);
        }
        self.unwatch_oom(container);
    }

    pub fn unwatch_oom(&mut self, container: &str) {
        let Some((slot, gen)) = self.containers.get_mut(container).and_then(|c| c.oom.take()) else {
            return;
        };
        let Some(entry) = self.ooms.get_mut(slot as usize) else {
            return;
        };
        if entry.as_ref().is_some_and(|o| o.gen == gen) {
            if let Some(o) = entry.take() {
                let _ = self.poll().delete(o.watcher.fd());
            }
        }
    }

    // ---------------------------------------------------------------- loggers

    /// Spawns runc now, or once the process's binary logger signalled ready.
    pub fn spawn_when_ready(&mut self, container: &str, exec: &str, call: RuncCall) {
        let ready = self
            .containers
            .get_mut(container)
            .and_then(|c| c.process_mut(exec))
            .and_then(|p| {
                p.io.logger_ready
                    .take()
                    .map(|fd| (fd, p.io.logger_v2, p.io.logger.unwrap_or(0)))
            });
        let Some((fd, v2, logger)) = ready else {
            self.spawn_call(call);
            return;
        };
        let slot = match self.ready_waits.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.ready_waits.push(None);
                self.ready_waits.len() - 1
            }
        } as u32;
        let gen = self.next_gen();
        if let Err(e) = self.poll().add(
            &fd,
            EpollEvent::new(
                EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP,
                token(KIND_READY, slot, gen),
            ),
        ) {
            self.fail_after(call.after, Error::unknown(format!("cannot wait for the logger: {e}")));
            return;
        }
        if let Some(at) = call.deadline {
            self.add_timer(at, Timer::ReadyDeadline { slot, gen });
        }
        self.ready_waits[slot as usize] = Some(ReadyWait {
            fd,
            gen,
            v2,
            logger,
            call,
        });
    }

    pub fn on_ready_event(&mut self, t: u64) {
        let (_, slot, gen) = untoken(t);
        let Some(w) = self.take_ready_wait(slot, gen) else {
            return;
        };
        let mut byte = [0u8; 1];
        let got = loop {
            match nix::unistd::read(&w.fd, &mut byte) {
                Err(Errno::EINTR) => continue,
                other => break other,
            }
        };
        match got {
            Ok(1) => {}
            Ok(_) if !w.v2 => {}
            Ok(_) => {
                self.stop_logger(w.logger);
                self.fail_after(
                    w.call.after,
                    Error::unknown("logging binary exited without signalling readiness"),
                );
                return;
            }
            Err(Errno::EAGAIN) => {
                // Spurious wake-up: keep waiting.
                self.rearm_ready_wait(slot, w);
                return;
            }
            Err(e) => {
                self.stop_logger(w.logger);
                self.fail_after(
                    w.call.after,
                    Error::unknown(format!("waiting for the logging binary: {e}")),
                );
                return;
            }
        }
        let _ = self.poll().delete(&w.fd);
        self.spawn_call(w.call);
    }

    fn rearm_ready_wait(&mut self, slot: u32, w: ReadyWait) {
        self.ready_waits[slot as usize] = Some(w);
    }

    fn take_ready_wait(&mut self, slot: u32, gen: u32) -> Option<ReadyWait> {
        let entry = self.ready_waits.get_mut(slot as usize)?;
        if entry.as_ref().map(|w| w.gen) != Some(gen) {
            return None;
        }
        entry.take()
    }

    pub fn ready_deadline(&mut self, slot: u32, gen: u32) {
        let Some(w) = self.take_ready_wait(slot, gen) else {
            return;
        };
        let _ = self.poll().delete(&w.fd);
        self.stop_logger(w.logger);
        self.fail_after(
            w.call.after,
            Error::DeadlineExceeded("waiting for the logging binary".into()),
        );
    }

    /// SIGTERM now, SIGKILL if it is still running after a grace period.
    pub fn stop_logger(&mut self, pid: u32) {
        if pid == 0 || !self.loggers.contains(&pid) {
            return;
        }
        let _ = sys::kill(pid as i32, libc::SIGTERM);
        self.add_timer(Instant::now() + LOGGER_GRACE, Timer::KillLogger { pid });
    }

    pub fn kill_logger(&mut self, pid: u32) {
        if self.loggers.contains(&pid) {
            log::warn!("logging binary {pid} ignored SIGTERM; killing it");
            let _ = sys::kill(pid as i32, libc::SIGKILL);
        }
    }
}
