//! Task events as containerd's clients see them (`ctr events`).

use e2e::ctr::deleted_exit_status;
use e2e::{procfs, Daemon};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

#[test]
fn events_create_start_exit_delete_arrive_in_order_with_bare_type_urls() {
    let d = Daemon::start();
    let ev = d.events();
    let id = d.id("order");
    let out = d.run_rootfs(&["--rm"], &id, &["/bin/sh", "-c", "exit 3"]).run();
    assert_eq!(out.code(), Some(3), "{out}");
    ev.wait_topic("/containers/delete", &id, T);

    let seen = ev.for_container(&id);
    let topics: Vec<&str> = seen.iter().map(|e| e.topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            "/containers/create",
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete",
            "/containers/delete"
        ],
        "event order\n{}",
        ev.describe()
    );
    let by = |t: &str| seen.iter().find(|e| e.topic == t).expect("topic present");
    let pid = by("/tasks/create").u64_field("pid");
    assert!(pid > 0, "/tasks/create without pid\n{}", ev.describe());
    for t in ["/tasks/start", "/tasks/exit", "/tasks/delete"] {
        assert_eq!(
            by(t).u64_field("pid"),
            pid,
            "{t} pid differs from /tasks/create\n{}",
            ev.describe()
        );
    }
    assert_eq!(by("/tasks/exit").u64_field("exit_status"), 3, "{}", ev.describe());
    assert_eq!(
        by("/tasks/exit").str_field("id"),
        id,
        "TaskExit.id of an init is the container id"
    );
    assert_eq!(by("/tasks/delete").u64_field("exit_status"), 3, "{}", ev.describe());
    for e in &seen {
        assert_eq!(e.namespace, d.ns(), "event in the wrong namespace: {}", e.line);
    }

    // ctr decodes each event by its type URL and skips (with a warning) what it cannot decode;
    // containerd 1.6 also logs the type URL of everything shims forward (1.7 and 2.x do not
    // log forwarded events: there ctr's decoding above is the proof).
    let warnings: Vec<String> = ev
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("unmarshal") || l.contains("level=warn"))
        .collect();
    assert!(warnings.is_empty(), "ctr events could not decode events: {warnings:#?}");
    let log = d.log_text();
    let logs_forwarded = !d.version().at_least(1, 7);
    for (topic, ty) in [
        ("/tasks/create", "containerd.events.TaskCreate"),
        ("/tasks/start", "containerd.events.TaskStart"),
        ("/tasks/exit", "containerd.events.TaskExit"),
        ("/tasks/delete", "containerd.events.TaskDelete"),
    ] {
        let want = format!("msg=\"event forwarded\" ns={} topic={topic} type={ty}\n", d.ns());
        assert!(
            !logs_forwarded || log.contains(&want),
            "containerd did not log `{}`\n{}",
            want.trim(),
            d.log_tail(40)
        );
    }
    d.assert_clean();
}

/// containerd's ttrpc socket is gone while the shim has an exit to report: the shim keeps the
/// event, retries, does not crash, and delivers it once containerd is back.
///
/// The restarted containerd keeps its ttrpc socket hidden from the shim until our `ctr events`
/// is subscribed (`restart_containerd_ttrpc_withheld`), so the result does not depend on how
/// fast the shim retries. The Go shim retries 1+2+3+4+5 s after the first failure, then drops
/// the event: the socket comes back ~4 s after the exit.
#[test]
fn exit_while_containerd_is_down_is_delivered_after_restart_and_task_delete_reports_it() {
    let mut d = Daemon::start();
    let ev = d.events();
    let id = d.id("outage");
    d.run_rootfs(&["-d"], &id, &[e2e::rootfs::TRAP_TERM_SCRIPT, "7"]).ok();
    let task = d.wait_task_status(&id, "RUNNING", T);
    let shims = d.shim_processes(&id);
    assert_eq!(shims.len(), 1, "one shim for {id}: {shims:#?}");
    let shim = shims[0].pid;
    e2e::util::poll(T, Duration::from_millis(20), || {
        procfs::catches_signal(task.pid as i32, libc::SIGTERM).then_some(())
    })
    .expect("the container's shell never trapped SIGTERM");

    d.kill_containerd();
    // The container exits while containerd is down (we signal it from the host).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(task.pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM the container");
    e2e::util::poll(T, Duration::from_millis(20), || {
        procfs::stat(task.pid as i32).is_none().then_some(())
    })
    .unwrap_or_else(|| panic!("container pid {} was not reaped by its shim", task.pid));
    // Let the shim fail to deliver for a while (the outage itself, not a wait for something).
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        procfs::stat(shim).is_some_and(|s| !s.is_zombie()),
        "the shim died while containerd was down"
    );

    d.restart_containerd_ttrpc_withheld();
    ev.wait_subscribed(T);
    let before_open = ev.events().len();
    assert!(
        ev.for_container(&id).iter().all(|e| e.topic != "/tasks/exit"),
        "/tasks/exit arrived while the ttrpc socket was still withheld\n{}",
        ev.describe()
    );
    d.open_ttrpc();
    let exit = ev.wait_topic("/tasks/exit", &id, Duration::from_secs(30));
    assert!(
        exit.seq >= before_open,
        "the exit must arrive after the socket came back"
    );
    assert_eq!(
        exit.u64_field("exit_status"),
        7,
        "exit status of the queued exit: {}",
        exit.line
    );
    assert_eq!(
        exit.u64_field("pid"),
        task.pid as u64,
        "pid of the queued exit: {}",
        exit.line
    );
    assert!(
        procfs::stat(shim).is_some_and(|s| !s.is_zombie()),
        "the shim is gone after delivering"
    );

    let row = d.wait_task_status(&id, "STOPPED", T);
    assert_eq!(row.pid, task.pid, "ctr task ls after the restart: {row:?}");
    let del = d.ctr(&["task", "delete", &id]).run();
    assert_eq!(
        deleted_exit_status(&del),
        Some(7),
        "`ctr task delete` must report 7: {del}"
    );
    ev.wait_topic("/tasks/delete", &id, T);
    d.ctr(&["container", "delete", &id]).ok();
    d.assert_clean();
}
