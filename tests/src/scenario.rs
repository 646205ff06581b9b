//! Container setups many tests share: a detached long-running container, and its removal.

use crate::ctr::TaskRow;
use crate::daemon::Daemon;
use crate::procfs;
use crate::shim::connect;
use protos::task_ttrpc::TaskClient;
use std::time::Duration;

/// Bound for a container to reach a state.
pub const STATE_TIMEOUT: Duration = Duration::from_secs(20);

impl Daemon {
    /// `ctr run -d <flags> ... <id> <cmd...>` and waits until the task is RUNNING.
    pub fn run_detached(&self, flags: &[&str], id: &str, cmd: &[&str]) -> TaskRow {
        let mut all = vec!["-d"];
        all.extend_from_slice(flags);
        self.run_rootfs(&all, id, cmd).ok();
        self.wait_task_status(id, "RUNNING", STATE_TIMEOUT)
    }

    /// A ttrpc Task client on the shim socket of container `id`.
    pub fn shim_client(&self, id: &str) -> TaskClient {
        connect(self.shim_socket(id).to_str().expect("utf-8 socket path"))
    }

    /// SIGKILL (if still running), `ctr task delete`, `ctr container delete`.
    pub fn remove_container(&self, id: &str) {
        if self.task(id).is_some_and(|t| t.status != "STOPPED") {
            self.ctr(&["task", "kill", "-s", "KILL", id]).run();
            self.wait_task_status(id, "STOPPED", STATE_TIMEOUT);
        }
        if self.task(id).is_some() {
            self.ctr(&["task", "delete", id]).ok();
        }
        self.ctr(&["container", "delete", id]).ok();
    }

    /// Pids of the processes in the container's cgroup (`/<ns>/<id>`, any hierarchy).
    pub fn container_pids(&self, id: &str) -> Vec<i32> {
        let cg = format!("/{}/{id}", self.ns());
        procfs::pids()
            .into_iter()
            .filter(|&p| procfs::cgroup_paths(p).contains(&cg))
            .collect()
    }
}

/// Polls until `pid` has a handler for signal `sig` (a shell installed its trap).
pub fn wait_handler(pid: u32, sig: i32) {
    crate::util::poll(STATE_TIMEOUT, Duration::from_millis(20), || {
        procfs::catches_signal(pid as i32, sig).then_some(())
    })
    .unwrap_or_else(|| panic!("pid {pid} never installed a handler for signal {sig}"));
}

/// Polls until process `pid` is gone (reaping our orphans meanwhile).
pub fn wait_gone(pid: i32, timeout: Duration) -> bool {
    crate::util::poll(timeout, Duration::from_millis(50), || {
        crate::reaper::reap_orphans();
        procfs::stat(pid).is_none().then_some(())
    })
    .is_some()
}
