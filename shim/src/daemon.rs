//! The long-running shim: one thread, one epoll loop.
//!
//! The loop owns every descriptor that waits: the signal pipes (SIGCHLD drives the
//! one reaper), the ttrpc listener and connections, and the event outbox. Requests
//! never block it: a handler either answers at once or starts a runc child and
//! records what to do when that child's exit is reaped (see `runner`). `Wait`
//! parks its responder on the process until the exit arrives.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{getsockopt, sockopt};
use protobuf::Message;
use ttrpc::{Code, Request};

use crate::attach::{PumpSlot, ReadyWait, KIND_OOM, KIND_PUMP_DST, KIND_PUMP_SRC, KIND_READY};
use crate::cgroups::OomWatcher;
use crate::container::{Container, Exit, Responder, UnclaimedExits};
use crate::error::Error;
use crate::outbox::{Interest, Outbox};
use crate::runner::Pending;
use crate::sys;
use crate::wire::{self, Frame, FrameReader};

const TOKEN_SIGCHLD: u64 = 1;
const TOKEN_SIGTERM: u64 = 2;
const TOKEN_LISTENER: u64 = 3;
const TOKEN_OUTBOX: u64 = 4;
const KIND_CONN: u64 = 5;

fn conn_token(slot: u32, gen: u32) -> u64 {
    (KIND_CONN << 56) | (u64::from(gen & 0xff_ffff) << 32) | u64::from(slot)
}

/// How long the shim waits for queued events to reach containerd when it exits.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Exits of unknown pids kept while an operation may still claim them.
const MAX_UNCLAIMED: usize = 4096;
/// Socket reads per readiness report of one connection, so that a client that never stops
/// sending cannot keep the loop from everything else (epoll reports it again).
const READS_PER_WAKEUP: usize = 64;
/// Unsent replies beyond which a connection is not read any more until its client has taken
/// them: a client that sends requests but never reads cannot grow the shim's memory.
const OUT_HIGH_WATER: usize = 1 << 20;

struct Conn {
    stream: UnixStream,
    gen: u32,
    reader: FrameReader,
    out: Vec<u8>,
    want_write: bool,
    /// Reading paused because `out` is above [`OUT_HIGH_WATER`].
    paused: bool,
}

/// Things that happen at a time rather than on a descriptor.
#[derive(Debug, Clone)]
pub enum Timer {
    /// A runc child outlived its request's deadline: kill it.
    RuncDeadline { pid: i32 },
    /// A binary logger did not signal ready before the request's deadline.
    ReadyDeadline { slot: u32, gen: u32 },
    /// A logger sent SIGTERM has had its grace period.
    KillLogger { pid: u32 },
    /// A Delete waiting for output copies has waited long enough.
    DrainDeadline { container: String, exec: String },
    /// A parked Wait's deadline passed.
    WaitDeadline {
        container: String,
        exec: String,
        responder: Responder,
    },
}

pub struct Daemon {
    pub namespace: String,
    poll: Epoll,
    listener: Option<UnixListener>,
    socket_path: Option<PathBuf>,
    sigchld: UnixStream,
    sigterm: UnixStream,
    conns: Vec<Option<Conn>>,
    next_gen: u32,
    pub containers: BTreeMap<String, Container>,
    /// Pid of every live container process → (container id, exec id or "").
    pub pids: HashMap<u32, (String, String)>,
    /// runc children in flight, by pid.
    pub pending: HashMap<i32, Pending>,
    /// Operations in flight that will learn a process's pid when runc returns;
    /// while any is, exits of unknown pids are kept in `unclaimed`, each with its
    /// place in the order of reaping.
    pub learning: usize,
    pub unclaimed: UnclaimedExits,
    /// While a runc call's completion runs: `unclaimed.reaped()` when that call was
    /// spawned. Only exits reaped after it can be of a process the call started; an older
    /// exit of the same pid was an earlier process's, whose pid the kernel has reused.
    pub claim_floor: u64,
    pub outbox: Outbox,
    outbox_interest: Interest,
    timers: BTreeMap<(Instant, u64), Timer>,
    timer_seq: u64,
    drain_until: Option<Instant>,
    served: u64,
    /// Stdio pumps (pty and chowned pipes) and their shared scratch buffer.
    pub pumps: Vec<Option<PumpSlot>>,
    pub scratch: Vec<u8>,
    /// runc calls waiting for a binary logger's ready signal.
    pub ready_waits: Vec<Option<ReadyWait>>,
    /// Pids of running binary loggers (our children; reaped like everything else).
    pub loggers: HashSet<u32>,
    /// OOM watchers, one per container with a memory cgroup.
    pub ooms: Vec<Option<OomSlot>>,
}

pub struct OomSlot {
    pub watcher: OomWatcher,
    pub gen: u32,
    pub container: String,
}

fn signal_pipe(signals: &[i32]) -> io::Result<UnixStream> {
    let (read, write) = UnixStream::pair()?;
    read.set_nonblocking(true)?;
    write.set_nonblocking(true)?;
    for &sig in signals {
        let w = write.try_clone()?;
        signal_hook::low_level::pipe::register(sig, OwnedFd::from(w))?;
    }
    Ok(read)
}

impl Daemon {
    pub fn new(namespace: &str, grpc_address: &str, listener: UnixListener) -> io::Result<Daemon> {
        let poll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let sigchld = signal_pipe(&[libc::SIGCHLD])?;
        let sigterm = signal_pipe(&[libc::SIGTERM, libc::SIGINT])?;
        listener.set_nonblocking(true)?;
        let socket_path = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| p.to_path_buf()));
        poll.add(&sigchld, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_SIGCHLD))?;
        poll.add(&sigterm, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_SIGTERM))?;
        poll.add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_LISTENER))?;
        let ttrpc_address = std::env::var("TTRPC_ADDRESS").unwrap_or_else(|_| format!("{grpc_address}.ttrpc"));
        Ok(Daemon {
            namespace: namespace.to_string(),
            poll,
            listener: Some(listener),
            socket_path,
            sigchld,
            sigterm,
            conns: Vec::new(),
            next_gen: 1,
            containers: BTreeMap::new(),
            pids: HashMap::new(),
            pending: HashMap::new(),
            learning: 0,
            unclaimed: UnclaimedExits::default(),
            claim_floor: u64::MAX,
            outbox: Outbox::new(&ttrpc_address, namespace),
            outbox_interest: Interest::None,
            timers: BTreeMap::new(),
            timer_seq: 0,
            drain_until: None,
            served: 0,
            pumps: Vec::new(),
            scratch: Vec::new(),
            ready_waits: Vec::new(),
            loggers: HashSet::new(),
            ooms: Vec::new(),
        })
    }

    /// Runs until shutdown; returns the process exit code.
    pub fn run(&mut self) -> i32 {
        log::info!("shim started, pid {}", std::process::id());
        let mut events = vec![EpollEvent::empty(); 64];
        loop {
            if let Some(until) = self.drain_until {
                if self.outbox.is_empty() || Instant::now() >= until {
                    if !self.outbox.is_empty() {
                        log::error!("exiting with undelivered events");
                    }
                    self.flush_all_conns();
                    return 0;
                }
            }
            let timeout = self.next_timeout();
            let n = match self.poll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => 0,
                Err(e) => {
                    log::error!("epoll_wait: {e}");
                    return 1;
                }
            };
            // Only stdio copying touched no heap worth returning to the kernel.
            let mut trim = false;
            for ev in events.iter().take(n) {
                let flags = ev.events();
                let token = ev.data();
                trim |= !matches!(token >> 56, KIND_PUMP_SRC | KIND_PUMP_DST);
                match token {
                    TOKEN_SIGCHLD => {
                        drain(&mut self.sigchld);
                        self.reap();
                    }
                    TOKEN_SIGTERM => {
                        drain(&mut self.sigterm);
                        log::info!("received termination signal, shutting down");
                        self.begin_shutdown();
                    }
                    TOKEN_LISTENER => self.accept(),
                    TOKEN_OUTBOX => {
                        let i = self.outbox.on_ready();
                        self.set_outbox_interest(i);
                    }
                    t if t >> 56 == KIND_CONN => self.on_conn(t, flags),
                    t if t >> 56 == KIND_PUMP_SRC || t >> 56 == KIND_PUMP_DST => self.on_pump_event(t),
                    t if t >> 56 == KIND_READY => self.on_ready_event(t),
                    t if t >> 56 == KIND_OOM => self.on_oom_event(t),
                    _ => {}
                }
            }
            // Every exit is seen: the SIGCHLD pipe is drained before reaping, so a child
            // that exits after the reap loop's last waitpid leaves a byte for the next wake-up.
            trim |= self.run_timers();
            if trim {
                sys::trim_heap();
            }
        }
    }

    fn next_timeout(&self) -> EpollTimeout {
        let mut next = self.timers.keys().next().map(|(t, _)| *t);
        if let Some(t) = self.outbox.deadline() {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        if let Some(t) = self.drain_until {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        match next {
            None => EpollTimeout::NONE,
            Some(t) => {
                let ms = t.saturating_duration_since(Instant::now()).as_millis() + 1;
                EpollTimeout::try_from(ms.min(60_000) as u32).unwrap_or(EpollTimeout::NONE)
            }
        }
    }

    pub fn poll(&self) -> &Epoll {
        &self.poll
    }

    /// A fresh generation number for a reusable slot (tokens carry 24 bits of it).
    pub fn next_gen(&mut self) -> u32 {
        let g = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1) & 0xff_ffff;
        g
    }

    // ---------------------------------------------------------------- timers

    pub fn add_timer(&mut self, at: Instant, timer: Timer) -> (Instant, u64) {
        self.timer_seq += 1;
        let key = (at, self.timer_seq);
        self.timers.insert(key, timer);
        key
    }

    pub fn cancel_timer(&mut self, key: (Instant, u64)) {
        self.timers.remove(&key);
    }

    /// Fires due timers; returns whether any did.
    fn run_timers(&mut self) -> bool {
        let now = Instant::now();
        let mut fired = false;
        while let Some((&key, _)) = self.timers.iter().next() {
            if key.0 > now {
                break;
            }
            let Some(timer) = self.timers.remove(&key) else {
                break;
            };
            fired = true;
            match timer {
                Timer::RuncDeadline { pid } => {
                    if self.pending.contains_key(&pid) {
                        log::warn!("runc (pid {pid}) outlived its request deadline; killing it");
                        let _ = sys::kill(pid, libc::SIGKILL);
                    }
                }
                Timer::ReadyDeadline { slot, gen } => self.ready_deadline(slot, gen),
                Timer::KillLogger { pid } => self.kill_logger(pid),
                Timer::DrainDeadline { container, exec } => self.finish_drain(&container, &exec),
                Timer::WaitDeadline {
                    container,
                    exec,
                    responder,
                } => self.expire_waiter(&container, &exec, responder),
            }
        }
        if self.outbox.deadline().is_some_and(|d| d <= now) {
            let i = self.outbox.on_timer(now);
            self.set_outbox_interest(i);
            fired = true;
        }
        fired
    }

    // ---------------------------------------------------------------- reaping

    /// Collects every exited child and routes each exit.
    fn reap(&mut self) {
        loop {
            match sys::reap_one() {
                Ok(Some((pid, raw))) => {
                    let exit = Exit {
                        pid: pid as u32,
                        status: sys::exit_code(raw),
                        at: SystemTime::now(),
                    };
                    self.on_exit(exit);
                }
                Ok(None) => break,
                Err(e) => {
                    log::error!("waitpid: {e}");
                    break;
                }
            }
        }
        if self.learning == 0 {
            self.unclaimed.clear();
        } else {
            // No call spawned later can claim an exit reaped before it was spawned.
            let oldest = self.pending.values().map(|p| p.reaped_at_spawn).min();
            self.unclaimed.forget_up_to(oldest.unwrap_or(u64::MAX));
        }
    }

    fn on_exit(&mut self, exit: Exit) {
        self.unclaimed.count_reaped();
        let pid = exit.pid as i32;
        if let Some(p) = self.pending.remove(&pid) {
            self.runc_exited(p, exit.status);
        } else if let Some((cid, eid)) = self.pids.get(&exit.pid).cloned() {
            self.process_exited(&cid, &eid, exit);
        } else if self.loggers.remove(&exit.pid) {
            log::debug!("logging binary {} exited with status {}", exit.pid, exit.status);
        } else if self.learning > 0 {
            self.unclaimed.keep(exit, MAX_UNCLAIMED);
        } else {
            log::debug!("reaped unknown pid {} (status {})", exit.pid, exit.status);
        }
    }

    /// Takes a buffered exit of `pid`, if it was reaped before its owner knew it (and
    /// after the runc call that started it was spawned: see `claim_floor`).
    pub fn claim_exit(&mut self, pid: u32) -> Option<Exit> {
        self.unclaimed.claim(pid, self.claim_floor)
    }

    // ---------------------------------------------------------------- outbox

    pub fn publish(&mut self, topic: &'static str, type_url: &str, msg: &impl Message) {
        match protos::any::pack(type_url, msg) {
            Ok(any) => {
                log::debug!("publishing {topic}");
                self.outbox.push(topic, any);
                let i = self.outbox.pump();
                self.set_outbox_interest(i);
            }
            Err(e) => log::error!("cannot encode {topic} event: {e}"),
        }
    }

    fn set_outbox_interest(&mut self, want: Interest) {
        let fd = self.outbox.fd().map(|f| f.as_raw_fd());
        let flags = match want {
            Interest::None => None,
            Interest::Read => Some(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP),
            Interest::ReadWrite => Some(EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP),
        };
        let was = self.outbox_interest;
        match (fd, flags) {
            (Some(_), Some(f)) => {
                let fd = self.outbox.fd().expect("checked");
                let mut ev = EpollEvent::new(f, TOKEN_OUTBOX);
                let r = if was == Interest::None {
                    self.poll.add(fd, ev)
                } else {
                    self.poll.modify(fd, &mut ev)
                };
                if let Err(e) = r {
                    // A fresh socket after a reconnect reuses no registration.
                    if e == nix::errno::Errno::EEXIST {
                        let _ = self.poll.modify(fd, &mut ev);
                    } else if e == nix::errno::Errno::ENOENT {
                        let _ = self.poll.add(fd, ev);
                    }
                }
                self.outbox_interest = want;
            }
            _ => {
                // The socket was closed by the outbox; closing removed it from epoll.
                self.outbox_interest = Interest::None;
            }
        }
    }

    // ---------------------------------------------------------------- connections

    fn accept(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            let stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::error!("accept: {e}");
                    return;
                }
            };
            // Only peers with our own credentials may drive the shim.
            match getsockopt(&stream, sockopt::PeerCredentials) {
                Ok(cred)
                    if cred.uid() == nix::unistd::geteuid().as_raw()
                        && cred.gid() == nix::unistd::getegid().as_raw() => {}
                Ok(cred) => {
                    log::warn!("rejecting connection from uid {} gid {}", cred.uid(), cred.gid());
                    continue;
                }
                Err(e) => {
                    log::warn!("cannot read peer credentials: {e}");
                    continue;
                }
            }
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let slot = match self.conns.iter().position(Option::is_none) {
                Some(i) => i,
                None => {
                    self.conns.push(None);
                    self.conns.len() - 1
                }
            };
            let gen = self.next_gen();
            let token = conn_token(slot as u32, gen);
            if let Err(e) = self.poll.add(
                &stream,
                EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP, token),
            ) {
                log::error!("epoll add connection: {e}");
                continue;
            }
            self.conns[slot] = Some(Conn {
                stream,
                gen,
                reader: FrameReader::default(),
                out: Vec::new(),
                want_write: false,
                paused: false,
            });
        }
    }

    fn on_conn(&mut self, token: u64, flags: EpollFlags) {
        let slot = (token & 0xffff_ffff) as u32;
        let gen = ((token >> 32) & 0xff_ffff) as u32;
        let Some(Some(conn)) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if conn.gen != gen {
            return;
        }
        if conn.paused && flags.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
            // It cannot take its replies any more, and a paused connection is not read.
            self.close_conn(slot);
            return;
        }
        if flags.contains(EpollFlags::EPOLLOUT) {
            self.flush_conn(slot);
        }
        if flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR)
        {
            self.read_conn(slot, gen);
        }
    }

    /// Reads what the client sent and serves each complete request as soon as it is in, so
    /// that at most one frame is ever buffered (an oversized one is skipped, not stored).
    fn read_conn(&mut self, slot: u32, gen: u32) {
        let mut buf = [0u8; 16 * 1024];
        for _ in 0..READS_PER_WAKEUP {
            let Some(Some(conn)) = self.conns.get_mut(slot as usize) else {
                return;
            };
            if conn.gen != gen || conn.paused {
                return;
            }
            let closed = match conn.stream.read(&mut buf) {
                Ok(0) => true,
                Ok(n) => {
                    conn.reader.feed(&buf[..n]);
                    false
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => true,
            };
            self.serve_frames(slot, gen);
            if closed {
                self.close_conn(slot);
                return;
            }
        }
    }

    fn serve_frames(&mut self, slot: u32, gen: u32) {
        loop {
            let Some(Some(conn)) = self.conns.get_mut(slot as usize) else {
                return;
            };
            if conn.gen != gen {
                return;
            }
            let Some(frame) = conn.reader.next_frame() else {
                return;
            };
            let responder = |stream| Responder { slot, gen, stream };
            match frame {
                Frame::TooLarge { header } => self.reply(
                    responder(header.stream),
                    Err((
                        Code::RESOURCE_EXHAUSTED,
                        format!(
                            "message length {} exceeds maximum message size of {}",
                            header.len,
                            wire::MAX_DATA
                        ),
                    )),
                ),
                Frame::Message { header, body } => {
                    if header.kind != wire::TYPE_REQUEST {
                        continue;
                    }
                    match Request::parse_from_bytes(&body) {
                        Ok(req) => {
                            self.served += 1;
                            let deadline = (req.timeout_nano > 0)
                                .then(|| Instant::now() + Duration::from_nanos(req.timeout_nano as u64));
                            self.dispatch(
                                &req.service,
                                &req.method,
                                &req.payload,
                                responder(header.stream),
                                deadline,
                            );
                        }
                        Err(e) => self.reply(
                            responder(header.stream),
                            Err((Code::INVALID_ARGUMENT, format!("cannot decode request: {e}"))),
                        ),
                    }
                }
            }
        }
    }

    fn close_conn(&mut self, slot: u32) {
        if let Some(conn) = self.conns.get_mut(slot as usize).and_then(Option::take) {
            let _ = self.poll.delete(&conn.stream);
        }
    }

    fn flush_conn(&mut self, slot: u32) {
        let Some(Some(conn)) = self.conns.get_mut(slot as usize) else {
            return;
        };
        let mut failed = false;
        while !conn.out.is_empty() {
            match conn.stream.write(&conn.out) {
                Ok(0) => {
                    failed = true;
                    break;
                }
                Ok(n) => {
                    conn.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            self.close_conn(slot);
            return;
        }
        if conn.out.capacity() > 64 * 1024 && conn.out.is_empty() {
            conn.out = Vec::new();
        }
        let want = !conn.out.is_empty();
        // Every complete request is served as soon as it is read, so nothing waits in the
        // reader while paused: resuming only needs the socket watched again.
        let paused = conn.out.len() >= OUT_HIGH_WATER;
        if want != conn.want_write || paused != conn.paused {
            conn.want_write = want;
            conn.paused = paused;
            // While paused only writability is of interest (a hang-up is always reported, and
            // then the write fails); level-triggered EPOLLIN/EPOLLRDHUP would spin.
            let mut flags = if paused {
                EpollFlags::empty()
            } else {
                EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP
            };
            if want {
                flags |= EpollFlags::EPOLLOUT;
            }
            let token = conn_token(slot, conn.gen);
            let mut ev = EpollEvent::new(flags, token);
            let _ = self.poll.modify(conn.stream.as_fd(), &mut ev);
        }
    }

    fn flush_all_conns(&mut self) {
        for slot in 0..self.conns.len() {
            if let Some(conn) = self.conns[slot].as_mut() {
                // Best effort, blocking briefly: these are the last replies (Shutdown).
                let _ = conn.stream.set_nonblocking(false);
                let _ = conn.stream.set_write_timeout(Some(Duration::from_millis(500)));
                let _ = conn.stream.write_all(&conn.out);
                conn.out.clear();
            }
        }
    }

    /// Sends a response if its connection is still the one that asked.
    pub fn reply(&mut self, r: Responder, result: Result<Vec<u8>, (Code, String)>) {
        let Some(Some(conn)) = self.conns.get_mut(r.slot as usize) else {
            return;
        };
        if conn.gen != r.gen {
            return;
        }
        wire::push_response(&mut conn.out, r.stream, result);
        self.flush_conn(r.slot);
    }

    /// Replies with a message or a shim error.
    pub fn answer<M: Message>(&mut self, r: Responder, result: Result<M, Error>) {
        let result = match result {
            Ok(m) => m
                .write_to_bytes()
                .map_err(|e| (Code::INTERNAL, format!("encode response: {e}"))),
            Err(e) => {
                log::debug!("request failed: {e}");
                Err((e.code(), e.to_string()))
            }
        };
        self.reply(r, result);
    }

    // ---------------------------------------------------------------- shutdown

    /// Stops serving: removes the socket, then exits once queued events are out.
    pub fn begin_shutdown(&mut self) {
        if self.drain_until.is_some() {
            return;
        }
        if let Some(l) = self.listener.take() {
            let _ = self.poll.delete(&l);
        }
        if let Some(p) = self.socket_path.take() {
            let _ = std::fs::remove_file(p);
        }
        log::info!(
            "shim exiting after {} requests, {} events delivered",
            self.served,
            self.outbox.delivered()
        );
        self.drain_until = Some(Instant::now() + DRAIN_TIMEOUT);
    }
}

fn drain(s: &mut UnixStream) {
    let mut buf = [0u8; 64];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}
