//! Task API, pause/resume and signals: `ctr task pause/resume`, PAUSED/RUNNING in State,
//! `/tasks/paused` and `/tasks/resumed`, killing a paused task, any signal number, and Kill of
//! a stopped task.

use e2e::cgroup::{self, Knob};
use e2e::ctr::deleted_exit_status;
use e2e::requests::{describe_err, exec_req, expect_code, kill_req, update_req, Calls};
use e2e::scenario::wait_handler;
use e2e::shim::rpc_ctx;
use e2e::{Daemon, DaemonOptions};
use protos::types::Status;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// Whether the container's cgroup is frozen: `freezer.state` FROZEN/THAWED on cgroup v1,
/// `cgroup.freeze` 1/0 on cgroup v2. Panics on any other value.
fn frozen(d: &Daemon, id: &str) -> bool {
    let cg = format!("/{}/{id}", d.ns());
    let state = cgroup::read(&cg, Knob::Freeze);
    match (cgroup::is_v2(), state.as_str()) {
        (false, "FROZEN") | (true, "1") => true,
        (false, "THAWED") | (true, "0") => false,
        _ => panic!("{} is {state:?}", cgroup::file(&cg, Knob::Freeze).display()),
    }
}

#[test]
fn ctr_task_pause_and_resume_freeze_and_thaw_report_paused_running_and_publish_events() {
    let d = Daemon::start();
    let id = d.id("pause");
    d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let client = d.shim_client(&id);
    let c = Calls {
        client: &client,
        ns: d.ns(),
    };
    c.exec(&exec_req(&d, &id, "x1", &["/bin/sleep", "1000"]));
    c.start(&id, "x1");
    let ev = d.events();

    d.ctr(&["task", "pause", &id]).ok();
    assert_eq!(
        d.task(&id).map(|t| t.status),
        Some("PAUSED".to_string()),
        "ctr task ls after pause"
    );
    assert_eq!(
        c.state(&id, "").status.enum_value(),
        Ok(Status::PAUSED),
        "State of the paused init"
    );
    assert_eq!(
        c.state(&id, "x1").status.enum_value(),
        Ok(Status::PAUSED),
        "State of an exec of the paused container"
    );
    assert!(frozen(&d, &id), "the container's cgroup must be frozen after pause");
    let paused = ev.wait_topic("/tasks/paused", &id, T);

    d.ctr(&["task", "resume", &id]).ok();
    assert_eq!(
        d.task(&id).map(|t| t.status),
        Some("RUNNING".to_string()),
        "ctr task ls after resume"
    );
    assert_eq!(
        c.state(&id, "").status.enum_value(),
        Ok(Status::RUNNING),
        "State of the resumed init"
    );
    assert_eq!(
        c.state(&id, "x1").status.enum_value(),
        Ok(Status::RUNNING),
        "State of the exec after resume"
    );
    assert!(!frozen(&d, &id), "the container's cgroup must be thawed after resume");
    let resumed = ev.wait_topic("/tasks/resumed", &id, T);
    assert!(
        paused.seq < resumed.seq,
        "/tasks/paused must come before /tasks/resumed\n{}",
        ev.describe()
    );
    c.kill(&id, "x1", 9, false);
    c.wait(&id, "x1");
    c.delete(&id, "x1");
    drop(client);
    d.remove_container(&id);
    d.assert_clean();
}

#[test]
fn sigkill_to_a_paused_task_ends_it_with_137() {
    let d = Daemon::start();
    let id = d.id("killpaused");
    d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let ev = d.events();
    d.ctr(&["task", "pause", &id]).ok();
    d.wait_task_status(&id, "PAUSED", T);
    d.ctr(&["task", "kill", "-s", "KILL", &id]).ok();
    let exit = ev.wait_topic("/tasks/exit", &id, T);
    assert_eq!(
        exit.u64_field("exit_status"),
        137,
        "exit of the killed paused task\n{}",
        ev.describe()
    );
    d.wait_task_status(&id, "STOPPED", T);
    let del = d.ctr(&["task", "delete", &id]).run();
    assert_eq!(deleted_exit_status(&del), Some(137), "ctr task delete: {del}");
    d.ctr(&["container", "delete", &id]).ok();
    d.assert_clean();
}

/// A `runc` wrapper for `--runc-binary` whose `verb` makes the container's init die while
/// its cgroup is frozen, the race a random walk over the Task API met: it thaws the cgroup,
/// SIGKILLs the init (pid in `pid_file`), waits until the shim has reaped it, freezes the
/// cgroup again and succeeds. Other verbs run the real runc.
fn runc_killing_the_init_while_frozen(d: &Daemon, id: &str, verb: &str, pid_file: &Path) -> String {
    let freeze = cgroup::file(&format!("/{}/{id}", d.ns()), Knob::Freeze);
    let (frozen, thawed) = if cgroup::is_v2() {
        ("1", "0")
    } else {
        ("FROZEN", "THAWED")
    };
    let wrapper = d.tmp().join(format!("runc-init-dies-in-{verb}"));
    let script = format!(
        "#!/bin/sh\ncase \" $* \" in *\" {verb} \"*)\n  cat > /dev/null\n  pid=$(cat {pids})\n  \
         echo {thawed} > {freeze}\n  kill -9 \"$pid\"\n  while [ -e /proc/$pid ]; do sleep 0.01; done\n  \
         echo {frozen} > {freeze}\n  exit 0;;\nesac\nexec {runc} \"$@\"\n",
        pids = pid_file.display(),
        freeze = freeze.display(),
        runc = e2e::launch::runc_path().display(),
    );
    e2e::util::write_executable(&wrapper, &script);
    wrapper.to_str().expect("utf-8").to_string()
}

/// The init dies while runc freezes the container. runc then calls the container paused
/// although its init is gone, and would refuse to delete it. As the Go shim does, ours thaws
/// it once the init's exit and the Pause are both done (so the cgroup is not left frozen);
/// and when the init dies during another call on a paused container (an Update here), Delete
/// thaws it first. Either way `ctr task delete` answers 137 and nothing is left behind.
#[test]
fn an_init_that_dies_while_the_container_is_frozen_is_still_deleted() {
    // (`ctr --runc-binary` wants the runtime named io.containerd.runc.v2.)
    let d = Daemon::start_with(DaemonOptions { shim_in_path: true });
    for verb in ["pause", "update"] {
        let id = d.id(&format!("diefrozen-{verb}"));
        let pid_file = d.tmp().join(format!("{id}.pid"));
        let wrapper = runc_killing_the_init_while_frozen(&d, &id, verb, &pid_file);
        let task = d.run_detached(&["--runc-binary", &wrapper], &id, &["/bin/sleep", "1000"]);
        std::fs::write(&pid_file, task.pid.to_string()).expect("write pid");
        if verb == "pause" {
            let pause = d.ctr(&["task", "pause", &id]).run();
            assert_eq!(pause.code(), Some(0), "ctr task pause: {pause}");
            d.wait_task_status(&id, "STOPPED", T);
            assert!(
                e2e::util::poll_until(T, || !frozen(&d, &id)),
                "the cgroup of the container whose init died stays frozen"
            );
        } else {
            d.ctr(&["task", "pause", &id]).ok();
            let client = d.shim_client(&id);
            client
                .update(rpc_ctx(d.ns()), &update_req(&id, br#"{"pids":{"limit":50}}"#))
                .unwrap_or_else(|e| panic!("Update of the paused container: {}", describe_err(&e)));
            d.wait_task_status(&id, "STOPPED", T);
        }
        let del = d.ctr(&["task", "delete", &id]).run();
        assert_eq!(deleted_exit_status(&del), Some(137), "{verb}: ctr task delete: {del}");
        d.ctr(&["container", "delete", &id]).ok();
    }
    d.assert_clean();
}

/// A trap for signal `sig` exits with `code`; `ctr task kill -s <spelling>` must reach it.
fn signal_reaches_the_container(d: &Daemon, name: &str, sig: i32, spelling: &str, code: u64) {
    let id = d.id(name);
    let script = format!("trap 'exit {code}' {sig}; while :; do sleep 1 & wait $!; done");
    let task = d.run_detached(&[], &id, &["/bin/sh", "-c", &script]);
    wait_handler(task.pid, sig);
    let ev = d.events();
    d.ctr(&["task", "kill", "-s", spelling, &id]).ok();
    let exit = ev.wait_topic("/tasks/exit", &id, T);
    assert_eq!(
        exit.u64_field("exit_status"),
        code,
        "signal {spelling} must reach the container's trap\n{}",
        ev.describe()
    );
    d.remove_container(&id);
}

#[test]
fn ctr_task_kill_delivers_signals_by_name_and_by_any_number_including_realtime() {
    let d = Daemon::start();
    signal_reaches_the_container(&d, "usr1", libc::SIGUSR1, "SIGUSR1", 11);
    signal_reaches_the_container(&d, "sig12", libc::SIGUSR2, "12", 12);
    signal_reaches_the_container(&d, "rt40", 40, "40", 40);
    d.assert_clean();
}

/// protocol doc 7.6: Kill of a stopped init answers NOT_FOUND ("process already finished");
/// ctr reports it as not found. With `all` the Go shim (runc 1.1) answers success.
#[test]
fn kill_of_a_stopped_task_answers_not_found_and_the_shim_keeps_serving() {
    let d = Daemon::start();
    let id = d.id("killstopped");
    d.run_rootfs(&["-d"], &id, &["/bin/sh", "-c", "exit 4"]).ok();
    d.wait_task_status(&id, "STOPPED", T);
    let out = d.ctr(&["task", "kill", "-s", "KILL", &id]).run();
    assert!(
        out.code() != Some(0) && out.stderr_str().contains("not found"),
        "ctr task kill of a stopped task must fail with a not-found error: {out}"
    );
    let client = d.shim_client(&id);
    expect_code(
        client.kill(rpc_ctx(d.ns()), &kill_req(&id, "", 15, false)),
        ttrpc::Code::NOT_FOUND,
        "Kill of a stopped init",
    );
    // With `all`, runc 1.1 signals whatever is left in the cgroup (nothing) and succeeds; the
    // Go shim passes that success on.
    client
        .kill(rpc_ctx(d.ns()), &kill_req(&id, "", 15, true))
        .unwrap_or_else(|e| {
            panic!(
                "Kill(all) of a stopped init must succeed as with the Go shim: {}",
                describe_err(&e)
            )
        });
    let c = Calls {
        client: &client,
        ns: d.ns(),
    };
    let st = c.state(&id, "");
    assert_eq!(
        (st.status.enum_value(), st.exit_status),
        (Ok(Status::STOPPED), 4),
        "State after the failed kills: {st:?}"
    );
    drop(client);
    let del = d.ctr(&["task", "delete", &id]).run();
    assert_eq!(deleted_exit_status(&del), Some(4), "ctr task delete: {del}");
    d.ctr(&["container", "delete", &id]).ok();
    d.assert_clean();
}
