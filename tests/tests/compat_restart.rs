//! containerd restarts, on every containerd of the matrix: with containers running, containerd
//! is stopped (SIGTERM, and SIGKILL) and started again. The tasks are listed again, exec, kill
//! and delete work, exits that happened while containerd was down are reported (events, Wait,
//! `ctr task delete`), and nothing leaks.

use e2e::ctr::deleted_exit_status;
use e2e::shim::rpc_ctx;
use e2e::{procfs, Daemon};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use protos::task::{WaitRequest, WaitResponse};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);
const TRAP_TERM: &str = e2e::rootfs::TRAP_TERM_SCRIPT;

#[derive(Clone, Copy, Debug)]
enum Stop {
    Term,
    Kill,
}

fn stop(d: &mut Daemon, how: Stop) {
    match how {
        // containerd exits on SIGTERM without touching its shims.
        Stop::Term => d.stop_containerd(Duration::from_secs(15)),
        Stop::Kill => d.kill_containerd(),
    }
}

fn wait_handler(d: &Daemon, pid: u32, sig: i32) {
    e2e::util::poll(T, Duration::from_millis(20), || {
        procfs::catches_signal(pid as i32, sig).then_some(())
    })
    .unwrap_or_else(|| panic!("pid {pid} never trapped signal {sig}\n{}", d.log_tail(30)));
}

fn wait_gone(d: &Daemon, pid: i32, what: &str) {
    e2e::util::poll(T, Duration::from_millis(20), || {
        e2e::reaper::reap_orphans();
        procfs::stat(pid).is_none().then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "{what} (pid {pid}) still exists: {:?}\n{}",
            procfs::stat(pid),
            d.log_tail(30)
        )
    });
}

fn shim_pid(d: &Daemon, id: &str) -> i32 {
    let shims = d.shim_processes(id);
    assert_eq!(shims.len(), 1, "one shim for {id}: {shims:#?}");
    shims[0].pid
}

/// `Wait` straight on the shim's socket: `containerd.task.v2.Task`, or `containerd.task.v3.Task`
/// when the shim does not serve v2 (the Go shims of containerd 2.x).
fn shim_wait(d: &Daemon, id: &str, exec_id: &str) -> WaitResponse {
    let sock = d.shim_socket(id);
    let addr = format!("unix://{}", sock.display());
    let mut req = WaitRequest::new();
    req.id = id.to_string();
    req.exec_id = exec_id.to_string();
    let client = ttrpc::Client::connect(&addr).unwrap_or_else(|e| panic!("connect {addr}: {e:?}"));
    let v2 = protos::task_ttrpc::TaskClient::new(client.clone());
    match v2.wait(rpc_ctx(d.ns()), &req) {
        Ok(r) => r,
        Err(ttrpc::Error::RpcStatus(s)) if s.code() == ttrpc::Code::UNIMPLEMENTED => {
            protos::task_v3_ttrpc::TaskClient::new(client)
                .wait(rpc_ctx(d.ns()), &req)
                .unwrap_or_else(|e| panic!("Wait({id}, {exec_id:?}) over task v3: {e:?}"))
        }
        Err(e) => panic!("Wait({id}, {exec_id:?}) on {addr}: {e:?}"),
    }
}

fn row_of(d: &Daemon, id: &str) -> Option<e2e::TaskRow> {
    d.task(id)
}

/// Running containers survive the restart and stay fully manageable; an exec that exits while
/// containerd is down is reported afterwards.
fn running_containers_survive(how: Stop) {
    let mut d = Daemon::start();
    let ev = d.events();
    let a = d.id("keep");
    let b = d.id("trap");
    d.run_rootfs(&["-d"], &a, &["/bin/sleep", "1000"]).ok();
    d.run_rootfs(&["-d"], &b, &[TRAP_TERM]).ok();
    let ta = d.wait_task_status(&a, "RUNNING", T);
    let tb = d.wait_task_status(&b, "RUNNING", T);
    wait_handler(&d, tb.pid, libc::SIGTERM);
    let (shim_a, shim_b) = (shim_pid(&d, &a), shim_pid(&d, &b));

    // An exec in `a` that will be SIGKILLed while containerd is down.
    d.ctr(&["task", "exec", "-d", "--exec-id", "ex1", &a, "/bin/sleep", "1000"])
        .ok();
    let ps = e2e::util::poll(T, Duration::from_millis(50), || {
        let pids = e2e::parse_task_ps(&d.ctr(&["task", "ps", &a]).ok().stdout_str());
        (pids.len() == 2).then_some(pids)
    })
    .unwrap_or_else(|| panic!("exec ex1 of {a} never showed up in ctr task ps"));
    let exec_pid = *ps.iter().find(|p| **p != ta.pid).expect("exec pid");

    stop(&mut d, how);
    for (pid, what) in [
        (shim_a, "shim of a"),
        (shim_b, "shim of b"),
        (ta.pid as i32, "init of a"),
        (tb.pid as i32, "init of b"),
    ] {
        assert!(
            procfs::stat(pid).is_some_and(|s| !s.is_zombie()),
            "{what} (pid {pid}) died with containerd ({how:?})"
        );
    }
    kill(Pid::from_raw(exec_pid as i32), Signal::SIGKILL).expect("SIGKILL the exec");
    wait_gone(&d, exec_pid as i32, "the exec killed while containerd was down");

    d.restart_containerd_ttrpc_withheld();
    ev.wait_subscribed(T);
    d.open_ttrpc();

    // Both tasks are listed again, with the same pids and the same shims.
    for (id, t) in [(&a, &ta), (&b, &tb)] {
        let row = row_of(&d, id).unwrap_or_else(|| {
            panic!(
                "task {id} is not listed after the restart ({how:?})\n{}",
                d.log_tail(40)
            )
        });
        assert_eq!(
            (row.pid, row.status.as_str()),
            (t.pid, "RUNNING"),
            "ctr task ls after the restart ({how:?})"
        );
    }
    assert_eq!(shim_pid(&d, &a), shim_a, "a's shim changed");
    assert_eq!(shim_pid(&d, &b), shim_b, "b's shim changed");

    // The exec's exit happened while containerd was down: event, Wait, and delete report it.
    let exit = ev.wait_for("/tasks/exit of exec ex1", Duration::from_secs(30), |e| {
        e.topic == "/tasks/exit" && e.container_id() == Some(a.as_str()) && e.str_field("id") == "ex1"
    });
    assert_eq!(exit.u64_field("exit_status"), 137, "{}", exit.line);
    assert_eq!(exit.u64_field("pid"), exec_pid as u64, "{}", exit.line);
    let w = shim_wait(&d, &a, "ex1");
    assert_eq!(w.exit_status, 137, "Wait(ex1) after the restart: {w:?}");

    // exec works through the reloaded shim.
    let out = d
        .ctr(&[
            "task",
            "exec",
            "--exec-id",
            "ex2",
            &a,
            "/bin/sh",
            "-c",
            "echo after-restart; exit 4",
        ])
        .run();
    assert_eq!(
        (out.code(), out.stdout_str().as_str()),
        (Some(4), "after-restart\n"),
        "ctr task exec after the restart ({how:?}): {out}"
    );

    // kill and delete work.
    d.ctr(&["task", "kill", "-s", "KILL", &a]).ok();
    d.ctr(&["task", "kill", &b]).ok(); // SIGTERM: the trap exits 42
    let ea = ev.wait_for("/tasks/exit of a", T, |e| {
        e.topic == "/tasks/exit" && e.container_id() == Some(a.as_str()) && e.str_field("id") == a
    });
    let eb = ev.wait_topic("/tasks/exit", &b, T);
    assert_eq!(ea.u64_field("exit_status"), 137, "{}", ea.line);
    assert_eq!(eb.u64_field("exit_status"), 42, "{}", eb.line);
    d.wait_task_status(&a, "STOPPED", T);
    d.wait_task_status(&b, "STOPPED", T);
    for (id, status) in [(&a, 137), (&b, 42)] {
        let del = d.ctr(&["task", "delete", id]).run();
        assert_eq!(
            deleted_exit_status(&del),
            Some(status),
            "ctr task delete {id} after the restart ({how:?}): {del}"
        );
        d.ctr(&["container", "delete", id]).ok();
    }
    wait_gone(&d, shim_a, "a's shim after delete");
    wait_gone(&d, shim_b, "b's shim after delete");
    d.assert_clean();
}

/// Containers whose init exits while containerd is down: after the restart they are listed
/// STOPPED, `/tasks/exit` arrives with the right status, Wait returns it, and
/// `ctr task delete` reports it.
///
/// containerd 1.7 and 2.x ask every reloaded shim for `Pids` and, when the list is empty and
/// the task is no sandbox, clean it up as "leaked" ("cleaning leaked shim process", containerd
/// #6860) before their ttrpc socket is even up: with a shim that answers an empty `Pids` for a
/// stopped init (all Go shims) the task silently disappears there.
fn exits_while_down_are_reported(how: Stop) {
    let mut d = Daemon::start();
    let ev = d.events();
    let killed = d.id("killed");
    let trapped = d.id("exit7");
    d.run_rootfs(&["-d"], &killed, &["/bin/sleep", "1000"]).ok();
    d.run_rootfs(&["-d"], &trapped, &[TRAP_TERM, "7"]).ok();
    let tk = d.wait_task_status(&killed, "RUNNING", T);
    let tt = d.wait_task_status(&trapped, "RUNNING", T);
    wait_handler(&d, tt.pid, libc::SIGTERM);
    let (shim_k, shim_t) = (shim_pid(&d, &killed), shim_pid(&d, &trapped));

    stop(&mut d, how);
    kill(Pid::from_raw(tk.pid as i32), Signal::SIGKILL).expect("SIGKILL a container");
    kill(Pid::from_raw(tt.pid as i32), Signal::SIGTERM).expect("SIGTERM a container");
    wait_gone(&d, tk.pid as i32, "the SIGKILLed container");
    wait_gone(&d, tt.pid as i32, "the SIGTERMed container");
    for (pid, what) in [(shim_k, "shim of killed"), (shim_t, "shim of exit7")] {
        assert!(
            procfs::stat(pid).is_some_and(|s| !s.is_zombie()),
            "{what} (pid {pid}) exited while containerd was down ({how:?})"
        );
    }

    d.restart_containerd_ttrpc_withheld();
    ev.wait_subscribed(T);
    d.open_ttrpc();

    for (id, t, status) in [(&killed, &tk, 137u32), (&trapped, &tt, 7u32)] {
        let leaked = format!("msg=\"cleaning leaked shim process\" id={id} ");
        let listed = e2e::util::poll(T, Duration::from_millis(100), || {
            let log = d.log_text();
            if let Some(line) = log.lines().find(|l| l.contains(&leaked)) {
                panic!(
                    "{} dropped task {id}, whose init exited while it was down ({how:?}): the \
                     shim's Pids answer was empty after the reconnect, so containerd cleaned it \
                     up as a leaked shim and no exit is ever reported:\n    {line}\n{}",
                    d.version().label(),
                    d.log_tail(40)
                );
            }
            row_of(&d, id).filter(|r| r.status == "STOPPED")
        })
        .unwrap_or_else(|| {
            panic!(
                "task {id}, whose init exited while containerd was down ({how:?}), is not listed \
                 STOPPED after the restart; ctr task ls:\n{}\n{}",
                d.ctr(&["task", "ls"]).run().stdout_str(),
                d.log_tail(40)
            )
        });
        assert_eq!(listed.pid, t.pid, "pid of the stopped task {id}");
        let exit = ev.wait_topic("/tasks/exit", id, Duration::from_secs(30));
        assert_eq!(
            (exit.u64_field("exit_status"), exit.u64_field("pid")),
            (status as u64, t.pid as u64),
            "/tasks/exit of {id} ({how:?}): {}",
            exit.line
        );
        let w = shim_wait(&d, id, "");
        assert_eq!(w.exit_status, status, "Wait({id}) after the restart: {w:?}");
        let del = d.ctr(&["task", "delete", id]).run();
        assert_eq!(
            deleted_exit_status(&del),
            Some(status),
            "ctr task delete {id} ({how:?}): {del}"
        );
        ev.wait_topic("/tasks/delete", id, T);
        d.ctr(&["container", "delete", id]).ok();
    }
    wait_gone(&d, shim_k, "shim of killed after delete");
    wait_gone(&d, shim_t, "shim of exit7 after delete");
    d.assert_clean();
}

#[test]
fn containerd_sigterm_restart_running_containers_stay_manageable() {
    running_containers_survive(Stop::Term);
}

#[test]
fn containerd_sigkill_restart_running_containers_stay_manageable() {
    running_containers_survive(Stop::Kill);
}

#[test]
fn containerd_sigterm_restart_reports_exits_that_happened_while_it_was_down() {
    exits_while_down_are_reported(Stop::Term);
}

#[test]
fn containerd_sigkill_restart_reports_exits_that_happened_while_it_was_down() {
    exits_while_down_are_reported(Stop::Kill);
}
