//! Container lifecycle through a private containerd and `ctr`: run, create/start, kill,
//! delete, exit statuses, `ctr shim`, Pids, the shim socket, and no leaks.

use e2e::ctr::deleted_exit_status;
use e2e::procfs;
use e2e::requests::pids_req;
use e2e::shim::{connect, rpc_ctx};
use e2e::Daemon;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// A shell script in the rootfs that exits 42 on SIGTERM and otherwise runs forever (a script,
/// because `ctr container create` reorders arguments that start with a dash).
const TRAP_TERM: &str = e2e::rootfs::TRAP_TERM_SCRIPT;

/// Polls until `pid` has a handler for `sig` (the shell installed its trap).
fn wait_handler(d: &Daemon, pid: u32, sig: i32) {
    e2e::util::poll(T, Duration::from_millis(20), || {
        procfs::catches_signal(pid as i32, sig).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "pid {pid} never installed a handler for signal {sig}\n{}",
            d.log_tail(30)
        )
    });
}

/// The one shim process of container `id` (panics unless exactly one).
fn shim_pid(d: &Daemon, id: &str) -> i32 {
    let shims = d.shim_processes(id);
    assert_eq!(shims.len(), 1, "expected one shim process for {id}, got: {shims:#?}");
    shims[0].pid
}

fn assert_gone(d: &Daemon, pid: i32, what: &str) {
    let gone = e2e::util::poll(Duration::from_secs(10), Duration::from_millis(50), || {
        e2e::reaper::reap_orphans();
        procfs::stat(pid).is_none().then_some(())
    });
    assert!(
        gone.is_some(),
        "{what} (pid {pid}) still exists: {:?}\n{}",
        procfs::stat(pid),
        d.log_tail(30)
    );
}

#[test]
fn run_rm_prints_output_and_ctr_exits_with_status_3_and_0() {
    let d = Daemon::start();
    let id = d.id("exit3");
    let out = d
        .run_rootfs(&["--rm"], &id, &["/bin/sh", "-c", "echo hi; exit 3"])
        .run();
    assert_eq!(
        out.code(),
        Some(3),
        "ctr run must exit with the container's status 3: {out}"
    );
    assert_eq!(out.stdout_str(), "hi\n", "container stdout: {out}");

    let id0 = d.id("exit0");
    let out = d
        .run_rootfs(&["--rm"], &id0, &["/bin/sh", "-c", "echo hi; exit 0"])
        .run();
    assert_eq!(out.code(), Some(0), "ctr run must exit 0: {out}");
    assert_eq!(out.stdout_str(), "hi\n", "container stdout: {out}");
    d.assert_clean();
}

#[test]
fn run_rm_of_a_sigkilled_container_exits_137() {
    let d = Daemon::start();
    let id = d.id("killed");
    std::thread::scope(|s| {
        let run = s.spawn(|| d.run_rootfs(&["--rm"], &id, &["/bin/sleep", "1000"]).run());
        let task = d.wait_task_status(&id, "RUNNING", T);
        assert!(task.pid > 0, "no pid in task ls: {task:?}");
        d.ctr(&["task", "kill", "--signal", "SIGKILL", &id]).ok();
        let out = run.join().expect("ctr run thread");
        assert_eq!(
            out.code(),
            Some(137),
            "ctr run of a SIGKILLed container must exit 137: {out}"
        );
    });
    d.assert_clean();
}

#[test]
fn container_create_task_start_detached_sigterm_delete_reports_status_and_leaves_nothing() {
    let d = Daemon::start();
    let ev = d.events();
    let id = d.id("created");
    let rootfs = d.rootfs().to_str().expect("utf-8");
    d.ctr(&[
        "container",
        "create",
        "--runtime",
        d.runtime(),
        "--rootfs",
        rootfs,
        &id,
        TRAP_TERM,
    ])
    .ok();
    assert!(d.task(&id).is_none(), "no task may exist before `task start`");

    d.ctr(&["task", "start", "-d", &id]).ok();
    let task = d.wait_task_status(&id, "RUNNING", T);
    assert!(task.pid > 0, "ctr task ls shows no pid: {task:?}");
    let cgroups = procfs::cgroup_paths(task.pid as i32);
    assert!(
        cgroups.iter().any(|c| c == &format!("/{}/{id}", d.ns())),
        "pid {} from `ctr task ls` is not the container's process (cgroups {cgroups:?})",
        task.pid
    );
    let shim = shim_pid(&d, &id);
    wait_handler(&d, task.pid, libc::SIGTERM);

    d.ctr(&["task", "kill", &id]).ok(); // default signal: SIGTERM
    let exit = ev.wait_topic("/tasks/exit", &id, T);
    assert_eq!(
        exit.u64_field("exit_status"),
        42,
        "the trap's exit status: {}",
        exit.line
    );
    assert_eq!(d.wait_task_status(&id, "STOPPED", T).id, id);

    let del = d.ctr(&["task", "delete", &id]).run();
    assert_eq!(
        deleted_exit_status(&del),
        Some(42),
        "`ctr task delete` must report exit status 42: {del}"
    );
    d.ctr(&["container", "delete", &id]).ok();
    assert_gone(&d, shim, "the shim after container delete");
    d.assert_clean();
}

#[test]
fn run_detached_then_sigkill_and_task_delete_reports_137_and_shim_exits() {
    let d = Daemon::start();
    let id = d.id("detached");
    d.run_rootfs(&["-d"], &id, &["/bin/sleep", "1000"]).ok();
    let task = d.wait_task_status(&id, "RUNNING", T);
    assert!(
        procfs::stat(task.pid as i32).is_some(),
        "task pid {} does not exist",
        task.pid
    );
    let shim = shim_pid(&d, &id);

    d.ctr(&["task", "kill", "-s", "KILL", &id]).ok();
    d.wait_task_status(&id, "STOPPED", T);
    let del = d.ctr(&["task", "delete", &id]).run();
    assert_eq!(
        deleted_exit_status(&del),
        Some(137),
        "`ctr task delete` after SIGKILL must report 137: {del}"
    );
    assert!(d.task(&id).is_none(), "task still listed after delete");
    d.ctr(&["container", "delete", &id]).ok();
    assert_gone(&d, shim, "the shim after task and container delete");
    d.assert_clean();
}

#[test]
fn ctr_shim_state_and_pids_via_task_ps_and_ttrpc_answer() {
    let d = Daemon::start();
    let id = d.id("shimstate");
    d.run_rootfs(&["-d"], &id, &["/bin/sleep", "1000"]).ok();
    let task = d.wait_task_status(&id, "RUNNING", T);

    let state = d.ctr(&["shim", "--id", &id, "state"]).ok();
    let json: serde_json::Value = serde_json::from_str(&state.stdout_str())
        .unwrap_or_else(|e| panic!("`ctr shim state` did not print JSON ({e}): {state}"));
    assert_eq!(json["id"], id.as_str(), "state id: {state}");
    assert_eq!(json["pid"], task.pid, "state pid must be the task pid: {state}");
    let status = &json["status"];
    assert!(
        status == 2 || status == "RUNNING",
        "state status must be RUNNING (2): {state}"
    );

    // ctr 1.6 has no `ctr shim pids`: Pids through containerd (`ctr task ps`) ...
    let ps = d.ctr(&["task", "ps", &id]).ok();
    assert_eq!(
        e2e::parse_task_ps(&ps.stdout_str()),
        vec![task.pid],
        "ctr task ps: {ps}"
    );
    // ... and straight from the shim's socket.
    let socket = d.shim_socket(&id);
    let client = connect(socket.to_str().expect("utf-8"));
    let pids = client
        .pids(rpc_ctx(d.ns()), &pids_req(&id))
        .expect("Pids on the shim socket");
    let listed: Vec<u32> = pids.processes.iter().map(|p| p.pid).collect();
    assert_eq!(listed, vec![task.pid], "Pids over ttrpc: {pids:?}");
    drop(client);

    d.ctr(&["task", "kill", "-s", "KILL", &id]).ok();
    d.wait_task_status(&id, "STOPPED", T);
    d.ctr(&["task", "delete", &id]).ok();
    d.ctr(&["container", "delete", &id]).ok();
    d.assert_clean();
}

#[test]
fn fifty_containers_in_a_row_leave_no_process_mount_fifo_socket_or_runc_state() {
    let d = Daemon::start();
    for i in 0..50 {
        let id = d.id(&format!("row{i}"));
        let out = d.run_rootfs(&["--rm"], &id, &["/bin/sh", "-c", "echo $0", "x"]).run();
        assert_eq!(
            (out.code(), out.stdout_str().as_str()),
            (Some(0), "x\n"),
            "run {i}: {out}"
        );
    }
    d.assert_clean();
}

#[test]
fn shim_socket_is_a_socket_with_mode_0600() {
    let d = Daemon::start();
    let id = d.id("sockmode");
    d.run_rootfs(&["-d"], &id, &["/bin/sleep", "1000"]).ok();
    let sock = d.shim_socket(&id);
    let meta = std::fs::symlink_metadata(&sock).unwrap_or_else(|e| panic!("shim socket {}: {e}", sock.display()));
    assert!(meta.file_type().is_socket(), "{} is not a socket", sock.display());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600, "mode of {}", sock.display());
    d.ctr(&["task", "kill", "-s", "KILL", &id]).ok();
    d.wait_task_status(&id, "STOPPED", T);
    d.ctr(&["task", "delete", &id]).ok();
    d.ctr(&["container", "delete", &id]).ok();
    d.assert_clean();
}

/// `/run/containerd/s` is shared by every shim on the host and may have been created by
/// another shim: the Go 1.6 shim creates it with mode 0600 and never fixes it. The test starts
/// from that state (harmless for root, the only user of the dir) so that it proves the shim
/// under test enforces 0700 rather than inheriting whatever was there.
#[test]
fn shim_socket_directory_has_mode_0700_even_if_it_existed_with_another_mode() {
    let d = Daemon::start();
    let id = d.id("sockdir");
    let dir = std::path::Path::new(e2e::util::SHIM_SOCKET_DIR);
    if dir.is_dir() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o600)).expect("chmod socket dir");
    }
    d.run_rootfs(&["-d"], &id, &["/bin/sleep", "1000"]).ok();
    let sock = d.shim_socket(&id);
    assert!(sock.exists(), "no shim socket {}", sock.display());
    assert_eq!(sock.parent(), Some(dir), "socket outside {}", dir.display());
    let mode = std::fs::metadata(dir).expect("socket dir").permissions().mode() & 0o7777;
    d.ctr(&["task", "kill", "-s", "KILL", &id]).ok();
    d.wait_task_status(&id, "STOPPED", T);
    d.ctr(&["task", "delete", &id]).ok();
    d.ctr(&["container", "delete", &id]).ok();
    assert_eq!(mode, 0o700, "mode of {} while a shim listens in it", dir.display());
    d.assert_clean();
}
