//! What belongs to a daemon, the leak check, and teardown.

use crate::cgroup;
use crate::command;
use crate::daemon::Daemon;
use crate::procfs;
use crate::reaper;
use crate::util::{self, list_dir, remove_empty_dirs, CTR_FIFO_DIR, TASKS_DIR};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long [`Daemon::assert_clean`] gives shims and containers to go away.
pub const CLEAN_TIMEOUT: Duration = Duration::from_secs(10);

/// A process that belongs to a daemon (other than containerd itself).
#[derive(Debug, Clone)]
pub struct OwnedProcess {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
    pub argv: Vec<String>,
    /// Why it is counted as ours.
    pub why: String,
}

impl std::fmt::Display for OwnedProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let argv = if self.argv.is_empty() {
            "(no cmdline)".to_string()
        } else {
            self.argv.join(" ")
        };
        write!(
            f,
            "pid {} (ppid {}, state {}, {}): {}",
            self.pid,
            self.ppid,
            self.state,
            self.why,
            util::tail(&argv, 300)
        )
    }
}

/// Live processes that belong to a test daemon: those `why` claims (never the test process,
/// containerd `ctd`, or the test's own registered children) and all their descendants, each
/// with the reason it counts as ours.
pub fn owned_processes(
    ctd: Option<i32>,
    why: impl Fn(&procfs::Stat, &[String]) -> Option<String>,
) -> Vec<OwnedProcess> {
    let me = std::process::id() as i32;
    let mut all: BTreeMap<i32, procfs::Stat> = BTreeMap::new();
    for pid in procfs::pids() {
        if let Some(st) = procfs::stat(pid) {
            all.insert(pid, st);
        }
    }
    let mut found: BTreeMap<i32, String> = BTreeMap::new();
    for st in all.values() {
        if st.pid == me || Some(st.pid) == ctd || reaper::is_registered(st.pid) {
            continue;
        }
        if let Some(reason) = why(st, &procfs::cmdline(st.pid)) {
            found.insert(st.pid, reason);
        }
    }
    // Descendants of what we found (helpers, grandchildren).
    loop {
        let more: Vec<(i32, String)> = all
            .values()
            .filter(|s| !found.contains_key(&s.pid) && s.pid != me && Some(s.pid) != ctd)
            .filter(|s| found.contains_key(&s.ppid))
            .map(|s| (s.pid, format!("child of {}", s.ppid)))
            .collect();
        if more.is_empty() {
            break;
        }
        found.extend(more);
    }
    found
        .into_iter()
        .filter_map(|(pid, why)| {
            let st = procfs::stat(pid)?;
            Some(OwnedProcess {
                pid,
                ppid: st.ppid,
                state: st.state,
                argv: procfs::cmdline(pid),
                why,
            })
        })
        .collect()
}

/// Polls `leaks` until it finds nothing; panics with the last findings and `log_tail` if
/// something is still left after `timeout`.
pub fn assert_no_leaks(timeout: Duration, mut leaks: impl FnMut() -> Vec<String>, log_tail: impl Fn() -> String) {
    let mut last = Vec::new();
    let clean = util::poll(timeout, Duration::from_millis(100), || {
        last = leaks();
        last.is_empty().then_some(())
    });
    if clean.is_none() {
        panic!("leaked after {timeout:?}:\n  - {}\n{}", last.join("\n  - "), log_tail());
    }
}

impl Daemon {
    /// Live processes of this daemon, except containerd and our own ctr/helper children:
    /// shims (`-address`/`-namespace` flags), runc (`--root /run/containerd/runc/<ns>`),
    /// container processes (cgroup `/<ns>/...`), anything whose cwd is in our temp dir, and all
    /// their descendants. Zombies of ours are reaped first, so a zombie listed here is one that
    /// a shim (or someone else) failed to reap.
    pub fn processes(&self) -> Vec<OwnedProcess> {
        reaper::reap_orphans();
        let me = std::process::id() as i32;
        let runc_root = self.runc_root();
        let runc_root = runc_root.to_string_lossy();
        let cg_prefix = format!("/{}/", self.ns());
        let cg_exact = format!("/{}", self.ns());
        owned_processes(self.containerd_pid(), |st, argv| {
            if procfs::flag_value(argv, "address") == Some(self.address()) {
                Some("-address is ours".to_string())
            } else if procfs::flag_value(argv, "namespace") == Some(self.ns()) {
                Some("-namespace is ours".to_string())
            } else if procfs::flag_value(argv, "root") == Some(&*runc_root) {
                Some("runc --root is ours".to_string())
            } else if let Some(cg) = procfs::cgroup_paths(st.pid)
                .into_iter()
                .find(|c| c.starts_with(&cg_prefix) || *c == cg_exact)
            {
                Some(format!("cgroup {cg}"))
            } else if let Some(cwd) = procfs::link(st.pid, "cwd").filter(|c| c.starts_with(self.tmp())) {
                Some(format!("cwd {}", cwd.display()))
            } else if st.ppid == me
                && st.is_zombie()
                && procfs::stat(st.pid).is_some_and(|n| n.is_zombie() && n.ppid == me)
            {
                // An orphan (exited shim) that `reap_orphans` above should have taken.
                Some("unreaped zombie child of the test process".into())
            } else {
                None
            }
        })
    }

    /// Shim processes serving container `id` of this daemon (`start`/`delete` actions excluded).
    pub fn shim_processes(&self, id: &str) -> Vec<OwnedProcess> {
        self.processes()
            .into_iter()
            .filter(|p| {
                procfs::flag_value(&p.argv, "id") == Some(id)
                    && procfs::flag_value(&p.argv, "namespace") == Some(self.ns())
                    && !p.argv.iter().any(|a| a == "start" || a == "delete")
            })
            .collect()
    }

    /// Everything this daemon's tests left behind, described precisely; empty when clean.
    pub fn leaks(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in self.processes() {
            out.push(format!("process {p}"));
        }
        let own: BTreeSet<&PathBuf> = self.harness_mounts.iter().collect();
        for m in procfs::mounts_under(self.tmp()) {
            if !own.contains(&m) {
                out.push(format!("mount {}", m.display()));
            }
        }
        let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for id in &ids {
            let sock = self.shim_socket(id);
            if sock.symlink_metadata().is_ok() {
                out.push(format!("shim socket {} (container {id})", sock.display()));
            }
        }
        for f in ctr_fifos(&ids) {
            out.push(format!("fifo {}", f.display()));
        }
        let mut dirs = vec![self.runc_root()];
        dirs.push(self.state_dir().join(TASKS_DIR).join(self.ns()));
        dirs.push(self.root_dir().join(TASKS_DIR).join(self.ns()));
        for d in dirs {
            for e in list_dir(&d) {
                out.push(format!("leftover {}", e.display()));
            }
        }
        for top in self.ns_cgroup_dirs() {
            for e in list_dir(&top).into_iter().filter(|p| p.is_dir()) {
                out.push(format!("cgroup {}", e.display()));
            }
        }
        if self.containerd.is_some() {
            for (what, args) in [("task", ["task", "ls", "-q"]), ("container", ["container", "ls", "-q"])] {
                let o = self.ctr(&args).timeout(Duration::from_secs(20)).run();
                for id in o.stdout_str().split_whitespace() {
                    out.push(format!("containerd still has {what} {id}"));
                }
            }
        }
        out
    }

    /// Asserts that nothing of this daemon's containers is left: no shim or container process,
    /// no mount under the temp dir, no ctr fifo or shim socket for our ids, no runc state, no
    /// bundle or work dir, no container cgroup. Shims get [`CLEAN_TIMEOUT`] to exit.
    pub fn assert_clean(&self) {
        assert_no_leaks(CLEAN_TIMEOUT, || self.leaks(), || self.log_tail(40));
    }

    fn ns_cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for hier in cgroup::hierarchies() {
            let d = hier.join(self.ns());
            if d.is_dir() {
                v.push(d);
            }
        }
        v
    }

    /// Tears everything down; idempotent. Called by `Drop`.
    pub(crate) fn teardown(&mut self) {
        self.alive.store(false, Ordering::SeqCst);
        if self.containerd.is_some() {
            self.remove_all_containers();
        }
        self.stop_containerd(Duration::from_secs(10));
        // Kill whatever is left (shims, containers, runc), reap the orphans.
        for round in 0..20 {
            let procs = self.processes();
            if procs.is_empty() {
                break;
            }
            for p in &procs {
                if p.state != 'Z' {
                    if round == 0 {
                        eprintln!("[e2e] teardown: killing leftover {p}");
                    }
                    let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let runc_root = self.runc_root();
        for e in list_dir(&runc_root) {
            let id = e
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut c = Command::new(util::runc_bin());
            c.arg("--root").arg(&runc_root).args(["delete", "--force", &id]);
            let _ = command::run(&mut c, None, Duration::from_secs(15));
        }
        let _ = std::fs::remove_dir_all(&runc_root);
        for m in procfs::mounts_under(self.tmp()) {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        for top in self.ns_cgroup_dirs() {
            remove_empty_dirs(&top);
        }
        let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for id in &ids {
            let _ = std::fs::remove_file(self.shim_socket(id));
        }
        for f in ctr_fifos(&ids) {
            let _ = std::fs::remove_file(&f);
            if let Some(dir) = f.parent() {
                let _ = std::fs::remove_dir(dir); // only if now empty
            }
        }
        let remaining = procfs::mounts_under(self.tmp());
        if remaining.is_empty() {
            let _ = std::fs::remove_dir_all(self.tmp());
        } else {
            eprintln!(
                "[e2e] teardown: mounts remain under {}, not removing it: {remaining:?}",
                self.tmp().display()
            );
        }
    }

    /// Force-deletes every task and container of the namespace.
    fn remove_all_containers(&self) {
        let t = Duration::from_secs(30);
        let tasks = self.ctr(&["task", "ls", "-q"]).timeout(t).run().stdout_str();
        for id in tasks.split_whitespace() {
            let _ = self.ctr(&["task", "kill", "--signal", "SIGKILL", id]).timeout(t).run();
            let _ = self.ctr(&["task", "delete", "--force", id]).timeout(t).run();
        }
        let containers = self.ctr(&["container", "ls", "-q"]).timeout(t).run().stdout_str();
        for id in containers.split_whitespace() {
            let _ = self.ctr(&["container", "delete", id]).timeout(t).run();
        }
    }
}

/// Fifos ctr created for these container ids: `/run/containerd/fifo/*/<id>-{stdin,stdout,stderr}`.
fn ctr_fifos(ids: &BTreeSet<String>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in list_dir(Path::new(CTR_FIFO_DIR)) {
        for f in list_dir(&dir) {
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if ids.iter().any(|id| {
                name.strip_prefix(id.as_str())
                    .is_some_and(|r| matches!(r, "-stdin" | "-stdout" | "-stderr"))
            }) {
                out.push(f);
            }
        }
    }
    out
}
