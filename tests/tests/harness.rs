//! The harness itself: the leak checker sees leaks, teardown removes them, ctr timeouts fire.

use e2e::{procfs, Daemon};
use std::time::Duration;

#[test]
fn leak_checker_reports_a_running_container_and_teardown_removes_everything() {
    let d = Daemon::start();
    let id = d.id("leaky");
    d.run_rootfs(&["-d"], &id, &["/bin/sleep", "1000"]).ok();
    let task = d.wait_task_status(&id, "RUNNING", Duration::from_secs(20));
    let leaks = d.leaks().join("\n");
    let shim_pids: Vec<i32> = d.shim_processes(&id).iter().map(|p| p.pid).collect();
    assert_eq!(shim_pids.len(), 1, "one shim process: {leaks}");
    for want in [
        format!("process pid {} ", shim_pids[0]),
        format!("process pid {} ", task.pid),
        format!("shim socket {}", d.shim_socket(&id).display()),
        format!("leftover {}", d.runc_root().join(&id).display()),
        format!("leftover {}", d.bundle_dir(&id).display()),
        format!("containerd still has task {id}"),
        format!("containerd still has container {id}"),
    ] {
        assert!(leaks.contains(&want), "leak report lacks {want:?}:\n{leaks}");
    }

    let (sock, runc, tmp) = (d.shim_socket(&id), d.runc_root(), d.tmp().to_path_buf());
    drop(d);
    for pid in shim_pids.iter().copied().chain([task.pid as i32]) {
        assert!(
            procfs::stat(pid).is_none(),
            "pid {pid} survived teardown: {:?}",
            procfs::stat(pid)
        );
    }
    for p in [&sock, &runc, &tmp] {
        assert!(!p.exists(), "{} survived teardown", p.display());
    }
}

#[test]
fn ctr_timeout_sigkills_ctr_and_reports_what_it_captured() {
    let d = Daemon::start();
    let id = d.id("hang");
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        d.run_rootfs(&["--rm"], &id, &["/bin/sh", "-c", "echo started; exec sleep 1000"])
            .timeout(Duration::from_secs(3))
            .run()
    }));
    let msg = match caught {
        Ok(out) => panic!("ctr returned although its container runs forever: {out}"),
        Err(p) => p.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    assert!(
        msg.contains("did not finish in 3s") && msg.contains("SIGKILL"),
        "timeout message: {msg}"
    );
    assert!(
        msg.contains("started"),
        "the message must include what ctr printed: {msg}"
    );
    // The container outlives the killed ctr; clean it up the normal way.
    d.ctr(&["task", "kill", "-s", "KILL", &id]).ok();
    d.wait_task_status(&id, "STOPPED", Duration::from_secs(20));
    d.ctr(&["task", "delete", &id]).ok();
    d.ctr(&["container", "delete", &id]).ok();
    d.assert_clean();
}
