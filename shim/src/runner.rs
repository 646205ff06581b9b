//! runc calls without blocking the loop.
//!
//! A handler spawns runc and files a `Pending` under the child's pid, with what to
//! do next (`After`). The reaper, which owns every `waitpid`, hands the child's exit
//! status back here; the captured output (kept in memfds, so runc can never block on
//! a full pipe) becomes the error message when runc failed.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

use nix::sys::memfd::{memfd_create, MFdFlags};
use runc_wrapper::Invocation;

use crate::container::Responder;
use crate::daemon::{Daemon, Timer};
use crate::stdio::ChildStdio;
use crate::sys;

/// What to do when a runc child exits.
#[derive(Debug)]
pub enum After {
    Create {
        container: String,
        responder: Responder,
    },
    StartInit {
        container: String,
        responder: Responder,
    },
    StartExec {
        container: String,
        exec: String,
        responder: Responder,
    },
    Kill {
        responder: Responder,
    },
    /// A clean-up call whose outcome only gets logged.
    Ignore {
        what: &'static str,
    },
    /// `runc kill --all` after an init without its own pid namespace exited.
    KillAllOnExit {
        container: String,
    },
    /// `runc resume` of a container whose init exited while it was frozen. The init is held
    /// busy until it is done; then comes the Delete it ran ahead of, if any (responder and
    /// deadline).
    ThawAfterExit {
        container: String,
        then_delete: Option<(Responder, Option<Instant>)>,
    },
    Delete {
        container: String,
        responder: Responder,
    },
    Pause {
        container: String,
        responder: Responder,
    },
    Resume {
        container: String,
        responder: Responder,
    },
    Pids {
        container: String,
        responder: Responder,
    },
    Update {
        container: String,
        responder: Responder,
    },
    Checkpoint {
        container: String,
        responder: Responder,
        work: PathBuf,
        /// The work dir is ours (not named by the request) and is removed after.
        remove_work: bool,
    },
}

/// A runc child in flight.
pub struct Pending {
    pub invocation: Invocation,
    stdout: File,
    /// Separate stderr capture when stdout carries a result (ps, state, features).
    stderr: Option<File>,
    pub after: After,
    timer: Option<(Instant, u64)>,
    /// How many exits had been reaped when this call was spawned.
    pub reaped_at_spawn: u64,
}

/// How a runc call gets its stdio.
pub enum RuncIo {
    /// Everything captured (stdin from /dev/null).
    Capture,
    /// stdout captured apart from stderr, because it is the call's result.
    CaptureStdout,
    /// Bytes fed on stdin; output captured.
    Input(Vec<u8>),
    /// The container's stdio (create, exec, restore in fifo mode): runc passes
    /// these descriptors on to the container.
    Container(ChildStdio),
}

/// A runc call with everything needed to spawn it later.
pub struct RuncCall {
    pub invocation: Invocation,
    pub io: RuncIo,
    pub extra: Option<ExtraFd>,
    pub deadline: Option<Instant>,
    pub after: After,
}

/// An extra descriptor for the child, e.g. the exec process spec at fd 3.
pub struct ExtraFd {
    pub fd: OwnedFd,
    pub target: RawFd,
}

fn memfd(name: &str) -> std::io::Result<File> {
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC)?;
    Ok(File::from(fd))
}

/// A memfd holding `data`, positioned at its start.
pub fn memfd_with(name: &str, data: &[u8]) -> std::io::Result<File> {
    let mut f = memfd(name)?;
    f.write_all(data)?;
    f.seek(SeekFrom::Start(0))?;
    Ok(f)
}

fn read_all(f: &mut File) -> Vec<u8> {
    let mut out = Vec::new();
    if f.seek(SeekFrom::Start(0)).is_ok() {
        let _ = f.read_to_end(&mut out);
    }
    out
}

impl Daemon {
    pub fn spawn_call(&mut self, call: RuncCall) {
        self.spawn_runc(call.invocation, call.io, call.extra, call.deadline, call.after);
    }

    /// Spawns a runc call. On failure to spawn, `after` runs at once with the error.
    pub fn spawn_runc(
        &mut self,
        invocation: Invocation,
        io: RuncIo,
        extra: Option<ExtraFd>,
        deadline: Option<Instant>,
        after: After,
    ) {
        match self.try_spawn(&invocation, io, extra.as_ref()) {
            Ok((pid, stdout, stderr)) => {
                let timer = deadline.map(|at| self.add_timer(at, Timer::RuncDeadline { pid }));
                let reaped_at_spawn = self.unclaimed.reaped();
                self.pending.insert(
                    pid,
                    Pending {
                        invocation,
                        stdout,
                        stderr,
                        after,
                        timer,
                        reaped_at_spawn,
                    },
                );
            }
            Err(e) => {
                log::error!("{e}");
                // Nothing was started, so no buffered exit can be this call's.
                self.complete_claiming_after(u64::MAX, after, Err(e));
            }
        }
    }

    fn try_spawn(
        &mut self,
        invocation: &Invocation,
        io: RuncIo,
        extra: Option<&ExtraFd>,
    ) -> Result<(i32, File, Option<File>), runc_wrapper::Error> {
        let spawn_err = |source: std::io::Error| runc_wrapper::Error::Spawn {
            op: invocation.op,
            program: invocation.program.clone(),
            source,
        };
        let mut cmd = invocation.command();
        let out = memfd("runc-output").map_err(spawn_err)?;
        let mut err_file = None;
        match io {
            RuncIo::Capture => {
                cmd.stdin(Stdio::null());
                cmd.stdout(out.try_clone().map_err(spawn_err)?);
                cmd.stderr(out.try_clone().map_err(spawn_err)?);
            }
            RuncIo::CaptureStdout => {
                let e = memfd("runc-stderr").map_err(spawn_err)?;
                cmd.stdin(Stdio::null());
                cmd.stdout(out.try_clone().map_err(spawn_err)?);
                cmd.stderr(e.try_clone().map_err(spawn_err)?);
                err_file = Some(e);
            }
            RuncIo::Input(data) => {
                cmd.stdin(memfd_with("runc-input", &data).map_err(spawn_err)?);
                cmd.stdout(out.try_clone().map_err(spawn_err)?);
                cmd.stderr(out.try_clone().map_err(spawn_err)?);
            }
            RuncIo::Container(child) => {
                cmd.stdin(child.stdin);
                cmd.stdout(child.stdout);
                cmd.stderr(child.stderr);
            }
        }
        if let Some(extra) = extra {
            sys::pass_fd(&mut cmd, extra.fd.as_raw_fd(), extra.target);
        }
        sys::kill_child_with_parent(&mut cmd);
        log::debug!(
            "runc {}",
            invocation
                .args
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let child = cmd.spawn().map_err(spawn_err)?;
        // `cmd` drops here and closes our copies of the child's descriptors.
        Ok((child.id() as i32, out, err_file))
    }

    /// Called by the reaper when a runc child exits.
    pub fn runc_exited(&mut self, mut pending: Pending, status: u32) {
        if let Some(key) = pending.timer.take() {
            self.cancel_timer(key);
        }
        let stdout = read_all(&mut pending.stdout);
        let result = match pending.stderr.as_mut() {
            None => pending.invocation.check(status as i32, &stdout).map(|_| stdout),
            Some(e) => {
                let mut combined = stdout.clone();
                combined.extend_from_slice(&read_all(e));
                pending.invocation.check(status as i32, &combined).map(|_| stdout)
            }
        };
        self.complete_claiming_after(pending.reaped_at_spawn, pending.after, result);
    }

    /// Runs `after` with claims of buffered exits limited to those reaped after `floor`.
    fn complete_claiming_after(&mut self, floor: u64, after: After, result: Result<Vec<u8>, runc_wrapper::Error>) {
        let outer = std::mem::replace(&mut self.claim_floor, floor);
        self.complete(after, result);
        self.claim_floor = outer;
    }

    pub fn complete(&mut self, after: After, result: Result<Vec<u8>, runc_wrapper::Error>) {
        match after {
            After::Create { container, responder } => {
                self.create_done(&container, responder, result.map_err(Into::into))
            }
            After::Ignore { what } => {
                if let Err(e) = result {
                    log::warn!("{what}: {e}");
                }
            }
            After::StartInit { container, responder } => self.start_init_done(&container, responder, result),
            After::StartExec {
                container,
                exec,
                responder,
            } => self.start_exec_done(&container, &exec, responder, result.map_err(Into::into)),
            After::Kill { responder } => self.kill_done(responder, result),
            After::KillAllOnExit { container } => {
                if let Err(e) = result {
                    if !e.is_already_finished() && !e.is_not_exist() {
                        log::error!("failed to kill init's children of {container}: {e}");
                    }
                }
            }
            After::ThawAfterExit { container, then_delete } => {
                self.thaw_after_exit_done(&container, then_delete, result)
            }
            After::Delete { container, responder } => self.delete_init_done(&container, responder, result),
            After::Pause { container, responder } => self.pause_done(&container, responder, result),
            After::Resume { container, responder } => self.resume_done(&container, responder, result),
            After::Pids { container, responder } => self.pids_done(&container, responder, result),
            After::Update { container, responder } => self.update_done(&container, responder, result),
            After::Checkpoint {
                container,
                responder,
                work,
                remove_work,
            } => self.checkpoint_done(&container, responder, &work, remove_work, result),
        }
    }
}
