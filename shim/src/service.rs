//! The Task service: decoding requests, checking state, starting runc calls, and
//! finishing them when runc exits. Served as both `containerd.task.v2.Task` and
//! `containerd.task.v3.Task` (wire-identical).
//!
//! Requests that change a process wait in that process's queue while an earlier
//! operation on it is in flight, as the Go shim's per-process lock makes them do.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use protobuf::{Message, MessageField};
use protos::any;
use protos::events::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskPaused, TaskResumed, TaskStart,
};
use protos::runc_options::{CheckpointOptions, ProcessDetails};
use protos::task::*;
use protos::types::ProcessInfo;
use protos::Empty;
use runc_wrapper::{CheckpointOpts, CreateOpts, ExecOpts, RestoreOpts, Runc};
use ttrpc::Code;

use crate::container::{Container, DrainWait, Exit, Process, Queued, Responder, Restore, Waiter};
use crate::daemon::{Daemon, Timer};
use crate::error::{kill_error, Error};
use crate::mount::{self, MountSpec};
use crate::runner::{memfd_with, After, ExtraFd, RuncCall, RuncIo};
use crate::spec::Spec;
use crate::state::{self, Kind, Op, Status};
use crate::stdio::{self, IoOwner, LoggerEnv, StdioNames};
use crate::{options, sys};

pub const TASK_V2: &str = "containerd.task.v2.Task";
pub const TASK_V3: &str = "containerd.task.v3.Task";

/// The fd at which `runc exec` finds its process spec (`/proc/self/fd/3`).
const EXEC_SPEC_FD: i32 = 3;
/// How long `Delete` waits for a process's output copies to end (the Go shim's bound).
const DRAIN_BOUND: std::time::Duration = std::time::Duration::from_secs(2);

fn timestamp(at: Option<SystemTime>) -> MessageField<protos::Timestamp> {
    MessageField::some(match at {
        Some(t) => protos::time::from_system(t),
        None => protos::time::go_zero(),
    })
}

fn read_pid_file(path: &Path) -> Result<u32, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::unknown(format!("failed to read pid file {}: {e}", path.display())))?;
    text.trim()
        .parse()
        .map_err(|e| Error::unknown(format!("bad pid in {}: {e}", path.display())))
}

impl Daemon {
    /// Routes one request. Every path answers `r` exactly once, now or later.
    pub fn dispatch(&mut self, service: &str, method: &str, payload: &[u8], r: Responder, deadline: Option<Instant>) {
        if service != TASK_V2 && service != TASK_V3 {
            self.answer::<Empty>(r, Err(Error::Unimplemented(format!("service {service}"))));
            return;
        }
        macro_rules! decode {
            ($t:ty) => {
                match <$t>::parse_from_bytes(payload) {
                    Ok(m) => m,
                    Err(e) => {
                        self.reply(
                            r,
                            Err((
                                Code::INVALID_ARGUMENT,
                                format!("cannot decode {method} request: {e}"),
                            )),
                        );
                        return;
                    }
                }
            };
        }
        match method {
            "State" => {
                let req = decode!(StateRequest);
                let res = self.state(&req);
                self.answer(r, res);
            }
            "Create" => {
                let req = decode!(CreateTaskRequest);
                self.create(req, r, deadline);
            }
            "Start" => {
                let req = decode!(StartRequest);
                self.start(req, r, deadline);
            }
            "Delete" => {
                let req = decode!(DeleteRequest);
                self.delete(req, r, deadline);
            }
            "Pids" => {
                let req = decode!(PidsRequest);
                self.pids_request(req, r, deadline);
            }
            "Pause" => {
                let req = decode!(PauseRequest);
                self.pause(req, r, deadline);
            }
            "Resume" => {
                let req = decode!(ResumeRequest);
                self.resume(req, r, deadline);
            }
            "Kill" => {
                let req = decode!(KillRequest);
                self.kill(req, r, deadline);
            }
            "Exec" => {
                let req = decode!(ExecProcessRequest);
                self.exec(req, r, deadline);
            }
            "ResizePty" => {
                let req = decode!(ResizePtyRequest);
                let res = self.resize_pty(&req);
                self.answer(r, res);
            }
            "CloseIO" => {
                let req = decode!(CloseIORequest);
                let res = self.close_io(&req);
                self.answer(r, res);
            }
            "Update" => {
                let req = decode!(UpdateTaskRequest);
                self.update(req, r, deadline);
            }
            "Wait" => {
                let req = decode!(WaitRequest);
                self.wait(req, r, deadline);
            }
            "Connect" => {
                let req = decode!(ConnectRequest);
                let mut resp = ConnectResponse::new();
                resp.shim_pid = std::process::id();
                resp.task_pid = self.containers.get(&req.id).map_or(0, |c| c.init.pid);
                self.answer(r, Ok(resp));
            }
            "Shutdown" => {
                let _req = decode!(ShutdownRequest);
                self.answer(r, Ok(Empty::new()));
                if self.containers.is_empty() {
                    self.begin_shutdown();
                }
            }
            "Checkpoint" => {
                let req = decode!(CheckpointTaskRequest);
                self.checkpoint(req, r, deadline);
            }
            "Stats" => {
                let req = decode!(StatsRequest);
                let res = self.stats(&req);
                self.answer(r, res);
            }
            other => {
                self.answer::<Empty>(r, Err(Error::Unimplemented(format!("/{service}/{other}"))));
            }
        }
    }

    // ---------------------------------------------------------------- helpers

    fn container(&self, id: &str) -> Result<&Container, Error> {
        self.containers.get(id).ok_or_else(Error::container_not_created)
    }

    fn process_of(&self, id: &str, exec_id: &str) -> Result<&Process, Error> {
        self.container(id)?
            .process(exec_id)
            .ok_or_else(|| Error::process_not_found(exec_id))
    }

    /// If the process is busy, queues the request and returns true.
    fn queue_if_busy<M: Message>(
        &mut self,
        id: &str,
        exec_id: &str,
        method: &str,
        req: &M,
        r: Responder,
        deadline: Option<Instant>,
    ) -> bool {
        let Some(p) = self.containers.get_mut(id).and_then(|c| c.process_mut(exec_id)) else {
            return false;
        };
        if !p.busy {
            return false;
        }
        p.queue.push_back(Queued {
            method: method.to_string(),
            payload: req.write_to_bytes().unwrap_or_default(),
            responder: r,
            deadline,
        });
        true
    }

    fn set_busy(&mut self, id: &str, exec_id: &str, busy: bool) {
        if let Some(p) = self.containers.get_mut(id).and_then(|c| c.process_mut(exec_id)) {
            p.busy = busy;
        }
    }

    /// Ends an operation and runs the requests that queued behind it.
    fn release(&mut self, id: &str, exec_id: &str) {
        self.set_busy(id, exec_id, false);
        loop {
            let Some(p) = self.containers.get_mut(id).and_then(|c| c.process_mut(exec_id)) else {
                return;
            };
            if p.busy {
                return;
            }
            let Some(q) = p.queue.pop_front() else {
                return;
            };
            if q.deadline.is_some_and(|d| d <= Instant::now()) {
                self.answer::<Empty>(q.responder, Err(Error::DeadlineExceeded(q.method)));
                continue;
            }
            self.dispatch(TASK_V2, &q.method, &q.payload, q.responder, q.deadline);
        }
    }

    /// Answers requests queued on a process that went away.
    fn fail_queue(&mut self, queue: impl IntoIterator<Item = Queued>, err: Error) {
        for q in queue {
            self.answer::<Empty>(q.responder, Err(err.clone()));
        }
    }

    // ---------------------------------------------------------------- State

    fn state(&self, req: &StateRequest) -> Result<StateResponse, Error> {
        let c = self.container(&req.id)?;
        let p = c
            .process(&req.exec_id)
            .ok_or_else(|| Error::process_not_found(&req.exec_id))?;
        let status = match (p.kind, c.init.status) {
            (Kind::Exec, s @ (Status::Paused | Status::Pausing)) => s,
            _ => p.status,
        };
        let mut resp = StateResponse::new();
        resp.id = p.id.clone();
        resp.bundle = c.bundle.display().to_string();
        resp.pid = p.pid;
        resp.status = status.wire().into();
        resp.stdin = p.stdio.stdin.clone();
        resp.stdout = p.stdio.stdout.clone();
        resp.stderr = p.stdio.stderr.clone();
        resp.terminal = p.stdio.terminal;
        resp.exit_status = p.exit.map_or(0, |e| e.status);
        resp.exited_at = timestamp(p.exit.map(|e| e.at));
        Ok(resp)
    }

    // ---------------------------------------------------------------- Create

    fn create(&mut self, req: CreateTaskRequest, r: Responder, deadline: Option<Instant>) {
        if let Err(e) = self.try_create(req, r, deadline) {
            self.answer::<Empty>(r, Err(e));
        }
    }

    fn try_create(&mut self, req: CreateTaskRequest, r: Responder, deadline: Option<Instant>) -> Result<(), Error> {
        if req.id.is_empty() {
            return Err(Error::InvalidArgument("task id cannot be empty".into()));
        }
        if self.containers.contains_key(&req.id) {
            return Err(Error::AlreadyExists(format!("container {}", req.id)));
        }
        let bundle = PathBuf::from(&req.bundle);
        if !bundle.is_absolute() {
            return Err(Error::InvalidArgument(format!(
                "bundle path must be absolute: {:?}",
                req.bundle
            )));
        }
        let opts = options::decode(req.options.as_ref())?;
        let names = StdioNames {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let scheme = names.scheme()?;
        let mounts: Vec<MountSpec> = req.rootfs.iter().map(MountSpec::from).collect();
        let rootfs = bundle.join("rootfs");
        mount::mount_all(&mounts, &rootfs).map_err(|e| Error::unknown(e.to_string()))?;
        let undo_mounts = |mounts: &[MountSpec]| {
            if !mounts.is_empty() {
                if let Err(e) = mount::unmount_all(&rootfs) {
                    log::error!("failed to unmount {}: {e}", rootfs.display());
                }
            }
        };
        if let Err(e) = options::write_bundle_files(&bundle, &opts) {
            undo_mounts(&mounts);
            return Err(Error::unknown(format!("failed to write runtime options: {e}")));
        }
        let kill_all_on_exit = match Spec::load(&bundle) {
            Ok(spec) => !spec.has_private_pid_namespace(),
            Err(_) => true,
        };
        let owner = IoOwner {
            uid: opts.io_uid,
            gid: opts.io_gid,
        };
        let env = LoggerEnv {
            id: &req.id,
            namespace: &self.namespace,
            cwd: &bundle,
        };
        let prepared = match stdio::prepare(&names, &scheme, owner, &env) {
            Ok(v) => v,
            Err(e) => {
                undo_mounts(&mounts);
                return Err(e);
            }
        };
        if let Some(pid) = prepared.io.logger {
            self.loggers.insert(pid);
        }
        let console_socket = prepared.io.console_socket.as_ref().map(|s| s.path());
        let runc = Runc {
            root: Some(options::runc_root(&opts.root, &self.namespace)),
            log: Some(bundle.join("log.json")),
            criu: (!opts.criu_path.is_empty()).then(|| PathBuf::from(&opts.criu_path)),
            systemd_cgroup: opts.systemd_cgroup,
            ..Runc::new(options::runc_binary(&opts.binary_name))
        };
        if !req.checkpoint.is_empty() {
            // Nothing runs yet: `Start` restores the checkpoint.
            let mut init = Process::new(&req.id, Kind::InitFromCheckpoint, names);
            init.io = prepared.io;
            init.restore = Some(Restore {
                image: PathBuf::from(&req.checkpoint),
                parent: (!req.parent_checkpoint.is_empty()).then(|| PathBuf::from(&req.parent_checkpoint)),
                child: prepared.child,
            });
            let mut c = Container::new(bundle, runc, opts, mounts, init, kill_all_on_exit);
            c.created = true;
            self.containers.insert(req.id.clone(), c);
            self.publish_task_create(&req.id, &req.checkpoint);
            self.answer(r, Ok(CreateTaskResponse::new()));
            return Ok(());
        }
        let invocation = runc.create(
            &req.id,
            &CreateOpts {
                bundle: bundle.clone(),
                pid_file: bundle.join("init.pid"),
                console_socket,
                no_pivot: opts.no_pivot_root,
                no_new_keyring: opts.no_new_keyring,
                detach: false,
            },
        );
        let mut init = Process::new(&req.id, Kind::Init, names);
        init.io = prepared.io;
        init.busy = true;
        let io = prepared.child.map_or(RuncIo::Capture, RuncIo::Container);
        let c = Container::new(bundle, runc, opts, mounts, init, kill_all_on_exit);
        self.containers.insert(req.id.clone(), c);
        self.learning += 1;
        let id = req.id.clone();
        self.spawn_when_ready(
            &id,
            "",
            RuncCall {
                invocation,
                io,
                extra: None,
                deadline,
                after: After::Create {
                    container: req.id,
                    responder: r,
                },
            },
        );
        Ok(())
    }

    pub fn create_done(&mut self, id: &str, r: Responder, result: Result<Vec<u8>, Error>) {
        self.learning -= 1;
        let runc_created = result.is_ok();
        let outcome = result.and_then(|_| {
            let bundle = self.container(id)?.bundle.clone();
            let pid = read_pid_file(&bundle.join("init.pid"))?;
            self.attach_io(id, "")?;
            Ok(pid)
        });
        let pid = match outcome {
            Ok(pid) => pid,
            Err(e) => {
                self.create_failed(id, r, e, runc_created);
                return;
            }
        };
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        c.init.pid = pid;
        c.created = true;
        self.pids.insert(pid, (id.to_string(), String::new()));
        self.watch_cgroup(id, pid);
        self.publish_task_create(id, "");
        let mut resp = CreateTaskResponse::new();
        resp.pid = pid;
        self.answer(r, Ok(resp));
        log::info!("created container {id}, init pid {pid}");
        if let Some(exit) = self.claim_exit(pid) {
            self.process_exited(id, "", exit);
        }
        self.release(id, "");
    }

    fn publish_task_create(&mut self, id: &str, checkpoint: &str) {
        let Some(c) = self.containers.get(id) else {
            return;
        };
        let pid = c.init.pid;
        let mut ev = TaskCreate::new();
        ev.container_id = id.to_string();
        ev.bundle = c.bundle.display().to_string();
        ev.rootfs = c
            .rootfs
            .iter()
            .map(|m| {
                let mut w = protos::types::Mount::new();
                w.type_ = m.kind.clone();
                w.source = m.source.clone();
                w.target = m.target.clone();
                w.options = m.options.clone();
                w
            })
            .collect();
        let mut tio = TaskIO::new();
        tio.stdin = c.init.stdio.stdin.clone();
        tio.stdout = c.init.stdio.stdout.clone();
        tio.stderr = c.init.stdio.stderr.clone();
        tio.terminal = c.init.stdio.terminal;
        ev.io = MessageField::some(tio);
        ev.pid = pid;
        ev.checkpoint = checkpoint.to_string();
        self.publish("/tasks/create", any::TASK_CREATE, &ev);
    }

    fn create_failed(&mut self, id: &str, r: Responder, e: Error, runc_created: bool) {
        self.close_process_io(id, "");
        self.unwatch_oom(id);
        let Some(c) = self.containers.remove(id) else {
            return;
        };
        if runc_created {
            let invocation = c.runc.delete(id, true);
            self.spawn_runc(
                invocation,
                RuncIo::Capture,
                None,
                None,
                After::Ignore {
                    what: "runc delete --force",
                },
            );
        }
        if !c.rootfs.is_empty() {
            if let Err(e) = mount::unmount_all(&c.bundle.join("rootfs")) {
                log::error!("failed to unmount rootfs of {id}: {e}");
            }
        }
        log::warn!("create of {id} failed: {e}");
        self.answer::<Empty>(r, Err(e));
        self.fail_queue(c.init.queue, Error::container_not_created());
    }

    /// Fails an operation whose runc call never started (e.g. its logger failed).
    pub fn fail_after(&mut self, after: After, e: Error) {
        match after {
            After::Create { container, responder } => self.create_done(&container, responder, Err(e)),
            After::StartExec {
                container,
                exec,
                responder,
            } => self.start_exec_done(&container, &exec, responder, Err(e)),
            other => log::error!("{other:?} failed: {e}"),
        }
    }

    // ---------------------------------------------------------------- Start

    fn start(&mut self, req: StartRequest, r: Responder, deadline: Option<Instant>) {
        if self.queue_if_busy(&req.id, &req.exec_id, "Start", &req, r, deadline) {
            return;
        }
        let res = if req.exec_id.is_empty() {
            self.start_init(&req.id, r, deadline)
        } else {
            self.start_exec(&req.id, &req.exec_id, r, deadline)
        };
        if let Err(e) = res {
            self.answer::<Empty>(r, Err(e));
        }
    }

    fn start_init(&mut self, id: &str, r: Responder, deadline: Option<Instant>) -> Result<(), Error> {
        let c = self.containers.get_mut(id).ok_or_else(Error::container_not_created)?;
        state::check(c.init.kind, c.init.status, Op::Start)?;
        c.init.busy = true;
        c.init.starting = true;
        let Some(restore) = c.init.restore.take() else {
            let invocation = c.runc.start(id);
            self.spawn_runc(
                invocation,
                RuncIo::Capture,
                None,
                deadline,
                After::StartInit {
                    container: id.to_string(),
                    responder: r,
                },
            );
            return Ok(());
        };
        let work = if c.options.criu_work_path.is_empty() {
            c.bundle.join("work")
        } else {
            PathBuf::from(&c.options.criu_work_path)
        };
        let invocation = c.runc.restore(
            id,
            &RestoreOpts {
                bundle: c.bundle.clone(),
                image_path: restore.image,
                work_path: Some(work),
                parent_path: restore.parent,
                pid_file: c.bundle.join("init.pid"),
                console_socket: c.init.io.console_socket.as_ref().map(|s| s.path()),
                no_pivot: c.options.no_pivot_root,
                detach: true,
                no_subreaper: true,
                ..Default::default()
            },
        );
        let io = restore.child.map_or(RuncIo::Capture, RuncIo::Container);
        // The restored init's pid is learned from the pid file when runc returns.
        self.learning += 1;
        self.spawn_when_ready(
            id,
            "",
            RuncCall {
                invocation,
                io,
                extra: None,
                deadline,
                after: After::StartInit {
                    container: id.to_string(),
                    responder: r,
                },
            },
        );
        Ok(())
    }

    pub fn start_init_done(&mut self, id: &str, r: Responder, result: Result<Vec<u8>, runc_wrapper::Error>) {
        let restored = self
            .containers
            .get(id)
            .is_some_and(|c| c.init.kind == Kind::InitFromCheckpoint);
        let result = if restored {
            self.learning -= 1;
            self.restore_done(id, result)
        } else {
            result.map_err(Error::from)
        };
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        c.init.starting = false;
        let held_exit = c.init.exit_during_start.take();
        match result {
            Ok(_) => {
                if c.init.status == Status::Created {
                    c.init.status = Status::Running;
                }
                let pid = c.init.pid;
                let mut ev = TaskStart::new();
                ev.container_id = id.to_string();
                ev.pid = pid;
                self.publish("/tasks/start", any::TASK_START, &ev);
                let mut resp = StartResponse::new();
                resp.pid = pid;
                self.answer(r, Ok(resp));
            }
            Err(e) => self.answer::<Empty>(r, Err(e)),
        }
        if let Some(exit) = held_exit {
            self.process_exited(id, "", exit);
        }
        if restored {
            let pid = self.containers.get(id).map_or(0, |c| c.init.pid);
            if let Some(exit) = self.claim_exit(pid) {
                self.process_exited(id, "", exit);
            }
        }
        self.release(id, "");
    }

    /// After `runc restore`: learn the pid and connect stdio.
    fn restore_done(&mut self, id: &str, result: Result<Vec<u8>, runc_wrapper::Error>) -> Result<Vec<u8>, Error> {
        let out = result.map_err(|e| Error::unknown(e.to_string()))?;
        let bundle = self.container(id)?.bundle.clone();
        let pid = read_pid_file(&bundle.join("init.pid"))?;
        if let Some(c) = self.containers.get_mut(id) {
            c.init.pid = pid;
            c.init.kind = Kind::Init;
        }
        self.pids.insert(pid, (id.to_string(), String::new()));
        self.watch_cgroup(id, pid);
        self.attach_io(id, "")?;
        Ok(out)
    }

    fn start_exec(&mut self, id: &str, exec_id: &str, r: Responder, deadline: Option<Instant>) -> Result<(), Error> {
        let c = self.containers.get_mut(id).ok_or_else(Error::container_not_created)?;
        let init_gone = c.init_reaped || matches!(c.init.status, Status::Stopped | Status::Deleted);
        let bundle = c.bundle.clone();
        let p = c
            .execs
            .get_mut(exec_id)
            .ok_or_else(|| Error::process_not_found(exec_id))?;
        state::check(Kind::Exec, p.status, Op::Start)?;
        if p.start_failed {
            return Err(Error::FailedPrecondition(format!(
                "exec {exec_id} already failed to start"
            )));
        }
        if init_gone {
            return Err(Error::FailedPrecondition(format!(
                "container {id} init process is not running"
            )));
        }
        let scheme = p.stdio.scheme()?;
        let owner = IoOwner {
            uid: c.options.io_uid,
            gid: c.options.io_gid,
        };
        let env = LoggerEnv {
            id: exec_id,
            namespace: &self.namespace,
            cwd: &bundle,
        };
        let prepared = stdio::prepare(&p.stdio, &scheme, owner, &env)?;
        let spec = memfd_with("exec-process", &p.spec)
            .map_err(|e| Error::unknown(format!("failed to write process spec: {e}")))?;
        let console_socket = prepared.io.console_socket.as_ref().map(|s| s.path());
        let logger = prepared.io.logger;
        p.io = prepared.io;
        p.busy = true;
        // From here until it fails or its exit is reaped, the exec defers the init's exit:
        // one that runc starts just as the init dies is reported before the init.
        c.running_execs += 1;
        let io = prepared.child.map_or(RuncIo::Capture, RuncIo::Container);
        let invocation = c.runc.exec(
            id,
            &ExecOpts {
                process: PathBuf::from(format!("/proc/self/fd/{EXEC_SPEC_FD}")),
                console_socket,
                detach: true,
                pid_file: Some(bundle.join(format!("{exec_id}.pid"))),
            },
        );
        if let Some(pid) = logger {
            self.loggers.insert(pid);
        }
        self.learning += 1;
        self.spawn_when_ready(
            id,
            exec_id,
            RuncCall {
                invocation,
                io,
                extra: Some(ExtraFd {
                    fd: spec.into(),
                    target: EXEC_SPEC_FD,
                }),
                deadline,
                after: After::StartExec {
                    container: id.to_string(),
                    exec: exec_id.to_string(),
                    responder: r,
                },
            },
        );
        Ok(())
    }

    pub fn start_exec_done(&mut self, id: &str, exec_id: &str, r: Responder, result: Result<Vec<u8>, Error>) {
        self.learning -= 1;
        let Some(c) = self.containers.get(id) else {
            // The container was deleted meanwhile (its init had exited): whatever runc
            // started was killed with it; the caller still gets an answer.
            self.answer::<Empty>(r, Err(Error::container_not_created()));
            return;
        };
        let pid_file = c.bundle.join(format!("{exec_id}.pid"));
        let started = result.and_then(|_| read_pid_file(&pid_file)).and_then(|pid| {
            self.attach_io(id, exec_id).map(|()| pid).inspect_err(|_| {
                // The process runs but its stdio could not be connected (runc sent no
                // console, say): it is killed, and the exec counts as never started, as
                // with the Go shim. Its exit goes unclaimed (unless it is already in, then
                // there is nothing left to kill).
                if self.claim_exit(pid).is_none() {
                    let _ = sys::kill(pid as i32, libc::SIGKILL);
                }
            })
        });
        match started {
            Ok(pid) => {
                self.register_exec(id, exec_id, pid);
                let mut ev = TaskExecStarted::new();
                ev.container_id = id.to_string();
                ev.exec_id = exec_id.to_string();
                ev.pid = pid;
                self.publish("/tasks/exec-started", any::TASK_EXEC_STARTED, &ev);
                let mut resp = StartResponse::new();
                resp.pid = pid;
                self.answer(r, Ok(resp));
                if let Some(exit) = self.claim_exit(pid) {
                    self.process_exited(id, exec_id, exit);
                }
            }
            Err(e) => {
                // The exec never ran (or was stopped at once). As with the Go shim it stays
                // CREATED, Wait returns (status 0, zero time), no exit is published; a second
                // Start is refused.
                self.close_process_io(id, exec_id);
                let Some(c) = self.containers.get_mut(id) else {
                    self.answer::<Empty>(r, Err(e));
                    return;
                };
                let finish_init = c.exec_over();
                let waiters = match c.execs.get_mut(exec_id) {
                    Some(p) => {
                        p.io = Default::default();
                        p.start_failed = true;
                        std::mem::take(&mut p.waiters)
                    }
                    None => Vec::new(),
                };
                self.answer::<Empty>(r, Err(e));
                self.release_waiters(waiters, None);
                if let Some(init_exit) = finish_init {
                    self.finish_init_exit(id, init_exit);
                }
            }
        }
        self.release(id, exec_id);
    }

    fn register_exec(&mut self, id: &str, exec_id: &str, pid: u32) {
        if let Some(c) = self.containers.get_mut(id) {
            if let Some(p) = c.execs.get_mut(exec_id) {
                p.pid = pid;
                p.status = Status::Running;
                self.pids.insert(pid, (id.to_string(), exec_id.to_string()));
            }
        }
    }

    // ---------------------------------------------------------------- Exec

    fn exec(&mut self, req: ExecProcessRequest, r: Responder, deadline: Option<Instant>) {
        if self.queue_if_busy(&req.id, "", "Exec", &req, r, deadline) {
            return;
        }
        let res = self.try_exec(req);
        self.answer(r, res);
    }

    fn try_exec(&mut self, req: ExecProcessRequest) -> Result<Empty, Error> {
        let c = self
            .containers
            .get_mut(&req.id)
            .ok_or_else(Error::container_not_created)?;
        // `ctr shim exec` sends no exec id (it then acts on the init, as with the Go shim).
        if !req.exec_id.is_empty() {
            state::check_exec_id(&req.exec_id)?;
        }
        if c.execs.contains_key(&req.exec_id) {
            return Err(Error::AlreadyExists(format!("id {}", req.exec_id)));
        }
        // While the init's exit waits for starting execs, the init still counts as running
        // (as with the Go shim): the exec is created, and its Start is refused.
        state::check(c.init.kind, c.init.status, Op::Exec)?;
        let names = StdioNames {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        names.scheme()?;
        let spec_any = req
            .spec
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("exec process spec is missing".into()))?;
        let mut spec: serde_json::Value = serde_json::from_slice(&spec_any.value)
            .map_err(|e| Error::InvalidArgument(format!("invalid exec process spec: {e}")))?;
        let Some(obj) = spec.as_object_mut() else {
            return Err(Error::InvalidArgument("exec process spec is not a JSON object".into()));
        };
        obj.insert("terminal".into(), serde_json::Value::Bool(req.terminal));
        let mut p = Process::new(&req.exec_id, Kind::Exec, names);
        p.spec = serde_json::to_vec(&spec).map_err(|e| Error::unknown(e.to_string()))?;
        c.execs.insert(req.exec_id.clone(), p);
        let mut ev = TaskExecAdded::new();
        ev.container_id = req.id.clone();
        ev.exec_id = req.exec_id.clone();
        self.publish("/tasks/exec-added", any::TASK_EXEC_ADDED, &ev);
        Ok(Empty::new())
    }

    // ---------------------------------------------------------------- Kill

    fn kill(&mut self, req: KillRequest, r: Responder, deadline: Option<Instant>) {
        if self.queue_if_busy(&req.id, &req.exec_id, "Kill", &req, r, deadline) {
            return;
        }
        let res = self.try_kill(&req, r, deadline);
        match res {
            Ok(true) => {}
            Ok(false) => self.answer(r, Ok(Empty::new())),
            Err(e) => self.answer::<Empty>(r, Err(e)),
        }
    }

    /// Returns true when the answer comes later (a runc call was started).
    fn try_kill(&mut self, req: &KillRequest, r: Responder, deadline: Option<Instant>) -> Result<bool, Error> {
        let p = self.process_of(&req.id, &req.exec_id)?;
        state::check(p.kind, p.status, Op::Kill)?;
        if p.kind == Kind::Exec {
            return match sys::kill(p.pid as i32, req.signal as i32) {
                Ok(()) => Ok(false),
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Err(Error::already_finished()),
                Err(e) => Err(Error::unknown(format!("exec kill error: {e}"))),
            };
        }
        let c = self.container(&req.id)?;
        let invocation = c.runc.kill(&req.id, req.signal, req.all);
        self.spawn_runc(
            invocation,
            RuncIo::Capture,
            None,
            deadline,
            After::Kill { responder: r },
        );
        Ok(true)
    }

    pub fn kill_done(&mut self, r: Responder, result: Result<Vec<u8>, runc_wrapper::Error>) {
        let res = result.map(|_| Empty::new()).map_err(kill_error);
        self.answer(r, res);
    }

    // ---------------------------------------------------------------- Delete

    fn delete(&mut self, req: DeleteRequest, r: Responder, deadline: Option<Instant>) {
        if self.queue_if_busy(&req.id, &req.exec_id, "Delete", &req, r, deadline) {
            return;
        }
        // As the Go shim does, give the copies of a stopped process's output (terminal,
        // chowned pipes) a bounded time to reach the client before its io is closed.
        let drain = match self.process_of(&req.id, &req.exec_id) {
            Ok(p) => state::check(p.kind, p.status, Op::Delete).is_ok() && self.has_output_pumps(&req.id, &req.exec_id),
            Err(_) => false,
        };
        if drain {
            let at = Instant::now() + DRAIN_BOUND;
            let at = deadline.map_or(at, |d| d.min(at));
            let timer = self.add_timer(
                at,
                Timer::DrainDeadline {
                    container: req.id.clone(),
                    exec: req.exec_id.clone(),
                },
            );
            if let Some(p) = self
                .containers
                .get_mut(&req.id)
                .and_then(|c| c.process_mut(&req.exec_id))
            {
                p.busy = true;
                p.drain = Some(DrainWait {
                    responder: r,
                    deadline,
                    timer,
                });
            }
            return;
        }
        self.delete_now(&req.id, &req.exec_id, r, deadline);
    }

    fn delete_now(&mut self, id: &str, exec_id: &str, r: Responder, deadline: Option<Instant>) {
        let res = if exec_id.is_empty() {
            self.delete_init(id, r, deadline).map(|_| None)
        } else {
            self.delete_exec(id, exec_id).map(Some)
        };
        match res {
            Ok(None) => {}
            Ok(Some(resp)) => self.answer(r, Ok(resp)),
            Err(e) => self.answer::<Empty>(r, Err(e)),
        }
    }

    /// The output copies of a process whose `Delete` waits have ended (or took too
    /// long): goes on with the delete, then with whatever queued behind it.
    pub fn finish_drain(&mut self, id: &str, exec_id: &str) {
        let Some(p) = self.containers.get_mut(id).and_then(|c| c.process_mut(exec_id)) else {
            return;
        };
        let Some(wait) = p.drain.take() else {
            return;
        };
        p.busy = false;
        self.cancel_timer(wait.timer);
        self.delete_now(id, exec_id, wait.responder, wait.deadline);
        if self
            .containers
            .get(id)
            .and_then(|c| c.process(exec_id))
            .is_some_and(|p| !p.busy)
        {
            self.release(id, exec_id);
        }
    }

    fn delete_init(&mut self, id: &str, r: Responder, deadline: Option<Instant>) -> Result<(), Error> {
        let c = self.containers.get_mut(id).ok_or_else(Error::container_not_created)?;
        state::check(c.init.kind, c.init.status, Op::Delete)?;
        c.init.busy = true;
        if c.may_be_frozen {
            // The thaw after the exit could not run: runc refuses to delete a frozen
            // container, so it thaws first and the delete follows.
            self.thaw_after_exit(id, deadline, Some((r, deadline)));
        } else {
            self.spawn_delete_init(id, r, deadline);
        }
        Ok(())
    }

    /// `runc resume` of a container whose init exited while it was frozen: runc still calls
    /// such a container paused (and will not delete it), and thaws it. The init is busy
    /// until it is done, then `then_delete` runs.
    fn thaw_after_exit(
        &mut self,
        id: &str,
        deadline: Option<Instant>,
        then_delete: Option<(Responder, Option<Instant>)>,
    ) {
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        c.init.busy = true;
        let invocation = c.runc.resume(id);
        self.spawn_runc(
            invocation,
            RuncIo::Capture,
            None,
            deadline,
            After::ThawAfterExit {
                container: id.to_string(),
                then_delete,
            },
        );
    }

    pub fn thaw_after_exit_done(
        &mut self,
        id: &str,
        then_delete: Option<(Responder, Option<Instant>)>,
        result: Result<Vec<u8>, runc_wrapper::Error>,
    ) {
        match result {
            Ok(_) => {
                if let Some(c) = self.containers.get_mut(id) {
                    c.may_be_frozen = false;
                }
            }
            // Before a Delete the container may have been thawed already (by a Resume).
            Err(e) if then_delete.is_some() => log::debug!("resume of {id} before its delete: {e}"),
            Err(e) => log::warn!("failed to thaw {id}, whose init exited while it was paused: {e}"),
        }
        match then_delete {
            Some((r, deadline)) => self.spawn_delete_init(id, r, deadline),
            None => self.release(id, ""),
        }
    }

    /// Bound of the thaw after an init's exit (a Delete may be waiting for it).
    fn thaw_deadline() -> Option<Instant> {
        Some(Instant::now() + std::time::Duration::from_secs(30))
    }

    /// `runc delete` of a stopped init (whose process is already marked busy).
    pub fn spawn_delete_init(&mut self, id: &str, r: Responder, deadline: Option<Instant>) {
        let Some(c) = self.containers.get_mut(id) else {
            return self.answer::<Empty>(r, Err(Error::container_not_created()));
        };
        let invocation = c.runc.delete(id, false);
        self.spawn_runc(
            invocation,
            RuncIo::Capture,
            None,
            deadline,
            After::Delete {
                container: id.to_string(),
                responder: r,
            },
        );
    }

    pub fn delete_init_done(&mut self, id: &str, r: Responder, result: Result<Vec<u8>, runc_wrapper::Error>) {
        if let Err(e) = result {
            if !e.is_not_exist() {
                self.answer::<Empty>(r, Err(e.into()));
                self.release(id, "");
                return;
            }
        }
        let exec_ids: Vec<String> = self
            .containers
            .get(id)
            .map(|c| c.execs.keys().cloned().collect())
            .unwrap_or_default();
        for eid in exec_ids {
            // An exec Delete still waiting for its output completes now.
            self.finish_drain(id, &eid);
            self.close_process_io(id, &eid);
        }
        self.close_process_io(id, "");
        self.unwatch_oom(id);
        let Some(mut c) = self.containers.remove(id) else {
            return;
        };
        if !c.rootfs.is_empty() {
            if let Err(e) = mount::unmount_all(&c.bundle.join("rootfs")) {
                log::error!("failed to unmount rootfs of {id}: {e}");
            }
        }
        self.pids.retain(|_, (cid, _)| cid != id);
        c.init.status = Status::Deleted;
        let exit = c.init.exit.unwrap_or(Exit {
            pid: c.init.pid,
            status: 0,
            at: SystemTime::now(),
        });
        let mut ev = TaskDelete::new();
        ev.container_id = id.to_string();
        ev.pid = c.init.pid;
        ev.exit_status = exit.status;
        ev.exited_at = timestamp(Some(exit.at));
        self.publish("/tasks/delete", any::TASK_DELETE, &ev);
        let mut resp = DeleteResponse::new();
        resp.pid = c.init.pid;
        resp.exit_status = exit.status;
        resp.exited_at = timestamp(Some(exit.at));
        self.answer(r, Ok(resp));
        log::info!("deleted container {id}");
        // A never-started init's waiters, and everything queued on the container.
        self.release_waiters(std::mem::take(&mut c.init.waiters), Some(exit));
        let mut queued: Vec<Queued> = c.init.queue.drain(..).collect();
        for (_, mut p) in std::mem::take(&mut c.execs) {
            self.release_waiters(std::mem::take(&mut p.waiters), p.exit.or(Some(exit)));
            queued.extend(p.queue.drain(..));
        }
        self.fail_queue(queued, Error::container_not_created());
    }

    fn delete_exec(&mut self, id: &str, exec_id: &str) -> Result<DeleteResponse, Error> {
        let p = self.process_of(id, exec_id)?;
        state::check(Kind::Exec, p.status, Op::Delete)?;
        self.close_process_io(id, exec_id);
        let c = self.containers.get_mut(id).ok_or_else(Error::container_not_created)?;
        let mut p = c.execs.remove(exec_id).expect("checked above");
        let _ = std::fs::remove_file(c.bundle.join(format!("{exec_id}.pid")));
        if p.pid != 0 {
            self.pids.remove(&p.pid);
        }
        // An exec that never ran answers Go's status 0 and zero time.
        let exit = p.exit;
        self.release_waiters(std::mem::take(&mut p.waiters), exit);
        let queued: Vec<Queued> = p.queue.drain(..).collect();
        self.fail_queue(queued, Error::process_not_found(exec_id));
        let mut resp = DeleteResponse::new();
        resp.pid = p.pid;
        resp.exit_status = exit.map_or(0, |e| e.status);
        resp.exited_at = timestamp(exit.map(|e| e.at));
        Ok(resp)
    }

    // ---------------------------------------------------------------- Wait

    fn wait(&mut self, req: WaitRequest, r: Responder, deadline: Option<Instant>) {
        let exit = match self.process_of(&req.id, &req.exec_id) {
            Err(e) => {
                self.answer::<Empty>(r, Err(e));
                return;
            }
            Ok(p) if matches!(p.status, Status::Stopped | Status::Deleted) => Some(p.exit),
            Ok(p) if p.start_failed => Some(None),
            Ok(_) => None,
        };
        if let Some(exit) = exit {
            self.release_waiters(
                vec![Waiter {
                    responder: r,
                    timer: None,
                }],
                exit,
            );
            return;
        }
        let timer = deadline.map(|at| {
            self.add_timer(
                at,
                Timer::WaitDeadline {
                    container: req.id.clone(),
                    exec: req.exec_id.clone(),
                    responder: r,
                },
            )
        });
        if let Some(p) = self
            .containers
            .get_mut(&req.id)
            .and_then(|c| c.process_mut(&req.exec_id))
        {
            p.waiters.push(Waiter { responder: r, timer });
        }
    }

    fn release_waiters(&mut self, waiters: Vec<Waiter>, exit: Option<Exit>) {
        for w in waiters {
            if let Some(key) = w.timer {
                self.cancel_timer(key);
            }
            let mut resp = WaitResponse::new();
            resp.exit_status = exit.map_or(0, |e| e.status);
            resp.exited_at = timestamp(exit.map(|e| e.at));
            self.answer(w.responder, Ok(resp));
        }
    }

    pub fn expire_waiter(&mut self, id: &str, exec_id: &str, r: Responder) {
        if let Some(p) = self.containers.get_mut(id).and_then(|c| c.process_mut(exec_id)) {
            p.waiters.retain(|w| w.responder != r);
        }
        self.answer::<Empty>(r, Err(Error::DeadlineExceeded("wait".into())));
    }

    // ---------------------------------------------------------------- exits

    /// A container process exited (routed here by the reaper).
    pub fn process_exited(&mut self, id: &str, exec_id: &str, exit: Exit) {
        if exec_id.is_empty() {
            self.init_exited(id, exit);
        } else {
            self.exec_exited(id, exec_id, exit);
        }
    }

    fn init_exited(&mut self, id: &str, exit: Exit) {
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        if c.init.starting {
            c.init.exit_during_start = Some(exit);
            return;
        }
        self.pids.remove(&exit.pid);
        c.init_reaped = true;
        if matches!(c.init.status, Status::Paused | Status::Pausing) {
            c.may_be_frozen = true;
            if c.init.status == Status::Paused && !c.init.busy {
                // As the Go shim does for an init that exits while paused: thaw the rest.
                // (While Pausing, the Pause's completion does it.)
                self.thaw_after_exit(id, Self::thaw_deadline(), None);
            }
        }
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        if c.kill_all_on_exit {
            let invocation = c.runc.kill(id, libc::SIGKILL as u32, true);
            let deferred = c.running_execs > 0;
            if deferred {
                c.init_exit_deferred = Some(exit);
            }
            self.spawn_runc(
                invocation,
                RuncIo::Capture,
                None,
                None,
                After::KillAllOnExit {
                    container: id.to_string(),
                },
            );
            if deferred {
                return;
            }
        } else if c.running_execs > 0 {
            c.init_exit_deferred = Some(exit);
            return;
        }
        self.finish_init_exit(id, exit);
    }

    fn finish_init_exit(&mut self, id: &str, exit: Exit) {
        self.final_oom_check(id);
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        c.init.exit = Some(exit);
        if c.init.status != Status::Deleted {
            c.init.status = Status::Stopped;
        }
        let waiters = std::mem::take(&mut c.init.waiters);
        let mut ev = TaskExit::new();
        ev.container_id = id.to_string();
        ev.id = id.to_string();
        ev.pid = exit.pid;
        ev.exit_status = exit.status;
        ev.exited_at = timestamp(Some(exit.at));
        self.publish("/tasks/exit", any::TASK_EXIT, &ev);
        log::info!("init of {id} (pid {}) exited with status {}", exit.pid, exit.status);
        self.release_waiters(waiters, Some(exit));
    }

    fn exec_exited(&mut self, id: &str, exec_id: &str, exit: Exit) {
        self.pids.remove(&exit.pid);
        self.oom_check_before_exit(id);
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        let Some(p) = c.execs.get_mut(exec_id) else {
            return;
        };
        p.exit = Some(exit);
        p.status = Status::Stopped;
        let waiters = std::mem::take(&mut p.waiters);
        let finish_init = c.exec_over();
        let mut ev = TaskExit::new();
        ev.container_id = id.to_string();
        ev.id = exec_id.to_string();
        ev.pid = exit.pid;
        ev.exit_status = exit.status;
        ev.exited_at = timestamp(Some(exit.at));
        self.publish("/tasks/exit", any::TASK_EXIT, &ev);
        self.release_waiters(waiters, Some(exit));
        if let Some(init_exit) = finish_init {
            self.finish_init_exit(id, init_exit);
        }
    }

    // ---------------------------------------------------------------- Pids

    fn pids_request(&mut self, req: PidsRequest, r: Responder, deadline: Option<Instant>) {
        let invocation = match self.container(&req.id) {
            Ok(c) => c.runc.ps(&req.id),
            Err(e) => {
                self.answer::<Empty>(r, Err(e));
                return;
            }
        };
        self.spawn_runc(
            invocation,
            RuncIo::CaptureStdout,
            None,
            deadline,
            After::Pids {
                container: req.id,
                responder: r,
            },
        );
    }

    pub fn pids_done(&mut self, id: &str, r: Responder, result: Result<Vec<u8>, runc_wrapper::Error>) {
        let exited_init = self
            .containers
            .get(id)
            .filter(|c| c.init_reaped && c.init.pid != 0)
            .map(|c| c.init.pid);
        let res = match (result.and_then(|out| runc_wrapper::parse_ps(&out)), exited_init) {
            // A stopped task still owns its exited init until it is deleted. containerd
            // 1.7+ drops a reloaded task whose Pids list is empty as a "leaked shim",
            // which would lose an exit that happened while it was down; listing the
            // exited init keeps the task and its exit status.
            (Ok(pids), Some(init)) if pids.is_empty() => Ok(vec![init]),
            (Err(_), Some(init)) => Ok(vec![init]),
            (other, _) => other,
        };
        let res = res.map_err(Error::from).and_then(|pids| {
            let c = self.container(id)?;
            let mut resp = PidsResponse::new();
            for pid in pids {
                let mut info = ProcessInfo::new();
                info.pid = pid;
                if let Some((eid, _)) = c.execs.iter().find(|(_, p)| p.pid == pid && p.pid != 0) {
                    let mut d = ProcessDetails::new();
                    d.exec_id = eid.clone();
                    if let Ok(a) = any::pack(any::RUNC_PROCESS_DETAILS, &d) {
                        info.info = MessageField::some(a);
                    }
                }
                resp.processes.push(info);
            }
            Ok(resp)
        });
        self.answer(r, res);
    }

    // ---------------------------------------------------------------- Pause / Resume

    fn pause(&mut self, req: PauseRequest, r: Responder, deadline: Option<Instant>) {
        if self.queue_if_busy(&req.id, "", "Pause", &req, r, deadline) {
            return;
        }
        let res = (|| {
            let c = self
                .containers
                .get_mut(&req.id)
                .ok_or_else(Error::container_not_created)?;
            state::check(c.init.kind, c.init.status, Op::Pause)?;
            c.init.busy = true;
            c.init.status = Status::Pausing;
            Ok(c.runc.pause(&req.id))
        })();
        match res {
            Ok(inv) => self.spawn_runc(
                inv,
                RuncIo::Capture,
                None,
                deadline,
                After::Pause {
                    container: req.id,
                    responder: r,
                },
            ),
            Err(e) => self.answer::<Empty>(r, Err(e)),
        }
    }

    pub fn pause_done(&mut self, id: &str, r: Responder, result: Result<Vec<u8>, runc_wrapper::Error>) {
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        match result {
            Ok(_) => {
                let exited = c.init_reaped;
                c.may_be_frozen |= exited;
                if c.init.status == Status::Pausing {
                    c.init.status = Status::Paused;
                    let mut ev = TaskPaused::new();
                    ev.container_id = id.to_string();
                    self.publish("/tasks/paused", any::TASK_PAUSED, &ev);
                }
                self.answer(r, Ok(Empty::new()));
                if exited {
                    // The init exited while runc froze the container; the thaw keeps the
                    // init busy and releases it when done.
                    return self.thaw_after_exit(id, Self::thaw_deadline(), None);
                }
            }
            Err(e) => {
                if c.init.status == Status::Pausing {
                    c.init.status = Status::Running;
                }
                self.answer::<Empty>(r, Err(e.into()));
            }
        }
        self.release(id, "");
    }

    fn resume(&mut self, req: ResumeRequest, r: Responder, deadline: Option<Instant>) {
        if self.queue_if_busy(&req.id, "", "Resume", &req, r, deadline) {
            return;
        }
        let res = (|| {
            let c = self
                .containers
                .get_mut(&req.id)
                .ok_or_else(Error::container_not_created)?;
            state::check(c.init.kind, c.init.status, Op::Resume)?;
            c.init.busy = true;
            Ok(c.runc.resume(&req.id))
        })();
        match res {
            Ok(inv) => self.spawn_runc(
                inv,
                RuncIo::Capture,
                None,
                deadline,
                After::Resume {
                    container: req.id,
                    responder: r,
                },
            ),
            Err(e) => self.answer::<Empty>(r, Err(e)),
        }
    }

    pub fn resume_done(&mut self, id: &str, r: Responder, result: Result<Vec<u8>, runc_wrapper::Error>) {
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        match result {
            Ok(_) => {
                if c.init.status == Status::Paused {
                    c.init.status = Status::Running;
                    let mut ev = TaskResumed::new();
                    ev.container_id = id.to_string();
                    self.publish("/tasks/resumed", any::TASK_RESUMED, &ev);
                }
                self.answer(r, Ok(Empty::new()));
            }
            Err(e) => self.answer::<Empty>(r, Err(e.into())),
        }
        self.release(id, "");
    }

    // ---------------------------------------------------------------- Update

    fn update(&mut self, req: UpdateTaskRequest, r: Responder, deadline: Option<Instant>) {
        if self.queue_if_busy(&req.id, "", "Update", &req, r, deadline) {
            return;
        }
        let res = (|| {
            let c = self
                .containers
                .get_mut(&req.id)
                .ok_or_else(Error::container_not_created)?;
            state::check(c.init.kind, c.init.status, Op::Update)?;
            let resources = req
                .resources
                .as_ref()
                .ok_or_else(|| Error::InvalidArgument("update without resources".into()))?;
            serde_json::from_slice::<serde_json::Value>(&resources.value)
                .ok()
                .filter(serde_json::Value::is_object)
                .ok_or_else(|| Error::unknown("resources are not a JSON LinuxResources object"))?;
            c.init.busy = true;
            Ok((c.runc.update(&req.id), resources.value.clone()))
        })();
        match res {
            Ok((inv, data)) => self.spawn_runc(
                inv,
                RuncIo::Input(data),
                None,
                deadline,
                After::Update {
                    container: req.id,
                    responder: r,
                },
            ),
            Err(e) => self.answer::<Empty>(r, Err(e)),
        }
    }

    pub fn update_done(&mut self, id: &str, r: Responder, result: Result<Vec<u8>, runc_wrapper::Error>) {
        let res = result.map(|_| Empty::new()).map_err(Error::from);
        self.answer(r, res);
        self.release(id, "");
    }

    // ---------------------------------------------------------------- Stats

    fn stats(&self, req: &StatsRequest) -> Result<StatsResponse, Error> {
        let c = self.container(&req.id)?;
        let cg = c
            .cgroup
            .as_ref()
            .ok_or_else(|| Error::NotFound("cgroup does not exist".into()))?;
        let stats = cg.stats().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound("cgroup does not exist".into())
            } else {
                Error::unknown(format!("failed to read cgroup stats: {e}"))
            }
        })?;
        let mut resp = StatsResponse::new();
        resp.stats = MessageField::some(stats);
        Ok(resp)
    }

    // ---------------------------------------------------------------- Checkpoint

    fn checkpoint(&mut self, req: CheckpointTaskRequest, r: Responder, deadline: Option<Instant>) {
        if self.queue_if_busy(&req.id, "", "Checkpoint", &req, r, deadline) {
            return;
        }
        let res = (|| {
            let opts: CheckpointOptions = match req.options.as_ref() {
                Some(a) if !a.type_url.is_empty() => any::unpack(a, any::RUNC_CHECKPOINT_OPTIONS)
                    .map_err(|e| Error::InvalidArgument(format!("checkpoint options: {e}")))?,
                _ => CheckpointOptions::default(),
            };
            if req.path.is_empty() {
                return Err(Error::InvalidArgument("checkpoint path is empty".into()));
            }
            let c = self
                .containers
                .get_mut(&req.id)
                .ok_or_else(Error::container_not_created)?;
            state::check(c.init.kind, c.init.status, Op::Checkpoint)?;
            let (work, remove_work) = if opts.work_path.is_empty() {
                (c.bundle.join("work").join("criu-work"), true)
            } else {
                (PathBuf::from(&opts.work_path), false)
            };
            c.init.busy = true;
            let invocation = c.runc.checkpoint(
                &req.id,
                &CheckpointOpts {
                    image_path: PathBuf::from(&req.path),
                    work_path: Some(work.clone()),
                    leave_running: !opts.exit,
                    tcp_established: opts.open_tcp,
                    ext_unix_sk: opts.external_unix_sockets,
                    shell_job: opts.terminal,
                    file_locks: opts.file_locks,
                    empty_ns: opts.empty_namespaces.clone(),
                    ..Default::default()
                },
            );
            Ok((invocation, work, remove_work))
        })();
        match res {
            Ok((invocation, work, remove_work)) => self.spawn_runc(
                invocation,
                RuncIo::Capture,
                None,
                deadline,
                After::Checkpoint {
                    container: req.id,
                    responder: r,
                    work,
                    remove_work,
                },
            ),
            Err(e) => self.answer::<Empty>(r, Err(e)),
        }
    }

    pub fn checkpoint_done(
        &mut self,
        id: &str,
        r: Responder,
        work: &Path,
        remove_work: bool,
        result: Result<Vec<u8>, runc_wrapper::Error>,
    ) {
        let res = match result {
            Ok(_) => Ok(Empty::new()),
            Err(e) => {
                // Keep criu's log where the user can find it, as the Go shim does.
                let bundle = self.containers.get(id).map(|c| c.bundle.clone()).unwrap_or_default();
                let dump_log = bundle.join("criu-dump.log");
                if let Err(ce) = std::fs::copy(work.join("dump.log"), &dump_log) {
                    log::warn!("failed to copy criu dump.log: {ce}");
                }
                let msg = e.to_string();
                let first = msg.lines().next().unwrap_or_default();
                Err(Error::unknown(format!("{first} path= {}", dump_log.display())))
            }
        };
        if remove_work {
            let _ = std::fs::remove_dir_all(work);
        }
        self.answer(r, res);
        self.release(id, "");
    }

    // ---------------------------------------------------------------- CloseIO / ResizePty

    fn close_io(&mut self, req: &CloseIORequest) -> Result<Empty, Error> {
        let c = self
            .containers
            .get_mut(&req.id)
            .ok_or_else(Error::container_not_created)?;
        let p = c
            .process_mut(&req.exec_id)
            .ok_or_else(|| Error::process_not_found(&req.exec_id))?;
        p.io.close_stdin();
        Ok(Empty::new())
    }

    fn resize_pty(&mut self, req: &ResizePtyRequest) -> Result<Empty, Error> {
        let p = self.process_of(&req.id, &req.exec_id)?;
        state::check(p.kind, p.status, Op::Resize)?;
        if let Some(master) = &p.io.console {
            let cols = u16::try_from(req.width).unwrap_or(u16::MAX);
            let rows = u16::try_from(req.height).unwrap_or(u16::MAX);
            sys::set_winsize(master.as_raw_fd(), cols, rows)
                .map_err(|e| Error::unknown(format!("resize console: {e}")))?;
        }
        Ok(Empty::new())
    }
}
