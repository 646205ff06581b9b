//! Task API, exec processes: `ctr task exec`, Exec/Start/State/Wait/Kill/Delete/ResizePty/CloseIO
//! for exec ids over ttrpc, exec events, kill-all, execs killed with the init, and 100
//! concurrent execs.

use e2e::events::Event;
use e2e::requests::{close_stdin_req, describe_err, exec_req, expect_code, pids_req, Calls};
use e2e::scenario::wait_gone;
use e2e::shim::rpc_ctx;
use e2e::{procfs, Daemon, EventWatcher};
use protos::task::ResizePtyRequest;
use protos::types::Status;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// Go's zero `time.Time` (0001-01-01T00:00:00Z) in Unix seconds: `exited_at` of a live process.
const GO_ZERO_TIME: i64 = -62135596800;

fn exec_events<'a>(ev: &'a [Event], topic: &str, exec_id: &str) -> Vec<&'a Event> {
    ev.iter()
        .filter(|e| {
            e.topic == topic
                && (e.str_field("exec_id") == exec_id || (topic == "/tasks/exit" && e.str_field("id") == exec_id))
        })
        .collect()
}

/// Waits for the `/tasks/exit` of process `exec_id` (the container id for the init).
fn wait_exit(ev: &EventWatcher, id: &str, exec_id: &str) -> Event {
    ev.wait_for(&format!("/tasks/exit of {id}/{exec_id}"), T, |e| {
        e.topic == "/tasks/exit" && e.container_id() == Some(id) && e.str_field("id") == exec_id
    })
}

#[test]
fn ctr_task_exec_prints_both_streams_returns_5_and_publishes_added_started_exit() {
    let d = Daemon::start();
    let id = d.id("exec5");
    d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let ev = d.events();

    let out = d
        .ctr(&[
            "task",
            "exec",
            "--exec-id",
            "e1",
            &id,
            "/bin/sh",
            "-c",
            "echo out; echo err >&2; exit 5",
        ])
        .run();
    assert_eq!(
        out.code(),
        Some(5),
        "ctr task exec must return the exec's status 5: {out}"
    );
    assert_eq!(out.stdout_str(), "out\n", "exec stdout: {out}");
    assert!(
        out.stderr_str().contains("err\n") && !out.stdout_str().contains("err"),
        "exec stderr must arrive on ctr's stderr only: {out}"
    );

    let exit = wait_exit(&ev, &id, "e1");
    let seen = ev.for_container(&id);
    let added = exec_events(&seen, "/tasks/exec-added", "e1");
    let started = exec_events(&seen, "/tasks/exec-started", "e1");
    assert_eq!(added.len(), 1, "one /tasks/exec-added for e1\n{}", ev.describe());
    assert_eq!(started.len(), 1, "one /tasks/exec-started for e1\n{}", ev.describe());
    let pid = started[0].u64_field("pid");
    assert!(pid > 0, "/tasks/exec-started without pid\n{}", ev.describe());
    assert_eq!(
        exit.u64_field("pid"),
        pid,
        "exit pid = exec-started pid\n{}",
        ev.describe()
    );
    assert_eq!(exit.u64_field("exit_status"), 5, "exec exit status\n{}", ev.describe());
    assert!(
        added[0].seq < started[0].seq && started[0].seq < exit.seq,
        "order must be exec-added, exec-started, exit\n{}",
        ev.describe()
    );
    assert_eq!(
        d.task(&id).map(|t| t.status),
        Some("RUNNING".to_string()),
        "the container keeps running after its exec exited"
    );
    d.remove_container(&id);
    d.assert_clean();
}

#[test]
fn exec_over_ttrpc_follows_the_exec_state_machine_for_state_wait_kill_resize_closeio_delete() {
    let d = Daemon::start();
    let id = d.id("execsm");
    let init = d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let ev = d.events();
    let client = d.shim_client(&id);
    let c = Calls {
        client: &client,
        ns: d.ns(),
    };

    c.exec(&exec_req(&d, &id, "x1", &["/bin/sleep", "1000"]));
    ev.wait_for("/tasks/exec-added x1", T, |e| {
        e.topic == "/tasks/exec-added" && e.container_id() == Some(id.as_str()) && e.str_field("exec_id") == "x1"
    });
    let st = c.state(&id, "x1");
    assert_eq!(
        st.status.enum_value(),
        Ok(Status::CREATED),
        "State of a new exec: {st:?}"
    );
    assert_eq!(st.id, "x1", "State.id of an exec is the exec id: {st:?}");
    assert_eq!(st.pid, 0, "a created exec has no pid: {st:?}");
    expect_code(
        client.kill(rpc_ctx(d.ns()), &e2e::requests::kill_req(&id, "x1", 9, false)),
        ttrpc::Code::FAILED_PRECONDITION,
        "Kill of a created, not started exec",
    );
    let mut rz = ResizePtyRequest::new();
    rz.id = id.clone();
    rz.exec_id = "x1".into();
    rz.width = 80;
    rz.height = 25;
    client
        .resize_pty(rpc_ctx(d.ns()), &rz)
        .unwrap_or_else(|e| panic!("ResizePty of an exec without terminal: {}", describe_err(&e)));

    let pid = c.start(&id, "x1");
    assert!(pid > 0, "Start(x1) returned no pid");
    let cg = format!("/{}/{id}", d.ns());
    assert!(
        procfs::cgroup_paths(pid as i32).contains(&cg),
        "exec pid {pid} is not in the container's cgroup {cg}: {:?}",
        procfs::cgroup_paths(pid as i32)
    );
    let started = ev.wait_for("/tasks/exec-started x1", T, |e| {
        e.topic == "/tasks/exec-started" && e.str_field("exec_id") == "x1"
    });
    assert_eq!(
        started.u64_field("pid"),
        pid as u64,
        "exec-started pid\n{}",
        ev.describe()
    );
    let st = c.state(&id, "x1");
    assert_eq!(
        (st.status.enum_value(), st.pid),
        (Ok(Status::RUNNING), pid),
        "State of the started exec: {st:?}"
    );
    assert_eq!(
        st.exited_at.as_ref().map(|t| (t.seconds, t.nanos)),
        Some((GO_ZERO_TIME, 0)),
        "a running process reports Go's zero time as exited_at: {st:?}"
    );
    let pid_file = d.bundle_dir(&id).join("x1.pid");
    assert!(pid_file.is_file(), "no {} for the started exec", pid_file.display());
    client
        .resize_pty(rpc_ctx(d.ns()), &rz)
        .unwrap_or_else(|e| panic!("ResizePty of a running exec without terminal: {}", describe_err(&e)));
    client
        .close_io(rpc_ctx(d.ns()), &close_stdin_req(&id, "x1"))
        .unwrap_or_else(|e| panic!("CloseIO of an exec without stdin: {}", describe_err(&e)));

    std::thread::scope(|s| {
        let waiter = s.spawn(|| c.wait(&id, "x1"));
        // Other calls are served while Wait blocks.
        let t0 = std::time::Instant::now();
        let st = c.state(&id, "");
        assert_eq!(
            st.status.enum_value(),
            Ok(Status::RUNNING),
            "init while an exec is waited for"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "State took {:?} while a Wait blocked",
            t0.elapsed()
        );
        assert!(!waiter.is_finished(), "Wait(x1) returned while x1 runs");
        c.kill(&id, "x1", 9, false);
        let w = waiter.join().expect("wait thread");
        assert_eq!(w.exit_status, 137, "Wait(x1) after SIGKILL: {w:?}");
        assert!(
            w.exited_at.as_ref().is_some_and(|t| t.seconds > 0),
            "Wait must return exited_at: {w:?}"
        );
    });
    let exit = wait_exit(&ev, &id, "x1");
    assert_eq!(
        (exit.u64_field("pid"), exit.u64_field("exit_status")),
        (pid as u64, 137),
        "/tasks/exit of x1\n{}",
        ev.describe()
    );
    let st = c.state(&id, "x1");
    assert_eq!(
        (st.status.enum_value(), st.exit_status),
        (Ok(Status::STOPPED), 137),
        "State of the killed exec: {st:?}"
    );
    expect_code(
        client.kill(rpc_ctx(d.ns()), &e2e::requests::kill_req(&id, "x1", 9, false)),
        ttrpc::Code::NOT_FOUND,
        "Kill of an exited exec",
    );
    let del = c.delete(&id, "x1");
    assert_eq!((del.pid, del.exit_status), (pid, 137), "Delete(x1): {del:?}");
    assert!(
        !pid_file.exists(),
        "Delete of the exec must remove {}",
        pid_file.display()
    );
    expect_code(
        client.state(rpc_ctx(d.ns()), &e2e::requests::state_req(&id, "x1")),
        ttrpc::Code::NOT_FOUND,
        "State of a deleted exec",
    );
    expect_code(
        client.delete(rpc_ctx(d.ns()), &e2e::requests::delete_req(&id, "x1")),
        ttrpc::Code::NOT_FOUND,
        "second Delete of an exec",
    );
    expect_code(
        client.wait(rpc_ctx(d.ns()), &e2e::requests::wait_req(&id, "x1")),
        ttrpc::Code::NOT_FOUND,
        "Wait of a deleted exec",
    );
    let st = c.state(&id, "");
    assert_eq!(
        (st.status.enum_value(), st.pid),
        (Ok(Status::RUNNING), init.pid),
        "the init is untouched by its exec's life"
    );
    drop(client);
    d.remove_container(&id);
    d.assert_clean();
}

#[test]
fn pids_and_ctr_task_ps_list_every_process_with_the_exec_id_of_execs() {
    let d = Daemon::start();
    let id = d.id("ps");
    let init = d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let client = d.shim_client(&id);
    let c = Calls {
        client: &client,
        ns: d.ns(),
    };
    let mut execs = BTreeMap::new();
    for x in ["p1", "p2"] {
        c.exec(&exec_req(&d, &id, x, &["/bin/sleep", "1000"]));
        execs.insert(c.start(&id, x), x.to_string());
    }
    let ps = d.ctr(&["task", "ps", &id]).ok();
    let text = ps.stdout_str();
    let mut listed = e2e::parse_task_ps(&text);
    listed.sort();
    let mut want: Vec<u32> = execs.keys().copied().chain([init.pid]).collect();
    want.sort();
    assert_eq!(listed, want, "ctr task ps must list the init and both execs: {ps}");
    for (pid, x) in &execs {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&pid.to_string()))
            .unwrap_or_default();
        assert!(
            (line.contains(&format!("ExecID:{x}")) || line.contains(&format!("exec_id:\"{x}\""))),
            "ctr task ps line of exec {x} lacks its exec id: {line:?}\n{ps}"
        );
    }

    let pids = client.pids(rpc_ctx(d.ns()), &pids_req(&id)).expect("Pids");
    for p in &pids.processes {
        let info = p.info.as_ref();
        match execs.get(&p.pid) {
            Some(x) => {
                let info = info.unwrap_or_else(|| panic!("exec {x} (pid {}) without info: {pids:?}", p.pid));
                assert_eq!(
                    info.type_url, "containerd.runc.v1.ProcessDetails",
                    "info type of exec {x}"
                );
                let det: protos::runc_options::ProcessDetails =
                    protos::any::unpack(info, "containerd.runc.v1.ProcessDetails").expect("decode ProcessDetails");
                assert_eq!(det.exec_id, *x, "ProcessDetails of pid {}", p.pid);
            }
            None => {
                assert_eq!(p.pid, init.pid, "unexpected pid in Pids: {pids:?}");
                assert!(none_or_empty(info), "the init has no ProcessDetails: {pids:?}");
            }
        }
    }
    assert_eq!(pids.processes.len(), 3, "Pids: {pids:?}");
    drop(client);
    d.remove_container(&id);
    d.assert_clean();
}

fn none_or_empty(info: Option<&protos::Any>) -> bool {
    match info {
        None => true,
        Some(a) => a.type_url.is_empty() && a.value.is_empty(),
    }
}

#[test]
fn ctr_task_kill_all_kills_init_and_execs_and_exec_exits_are_published_before_the_init_exit() {
    let d = Daemon::start();
    let id = d.id("killall");
    let init = d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let ev = d.events();
    let client = d.shim_client(&id);
    let c = Calls {
        client: &client,
        ns: d.ns(),
    };
    let mut pids = Vec::new();
    for x in ["k1", "k2", "k3"] {
        c.exec(&exec_req(&d, &id, x, &["/bin/sleep", "1000"]));
        pids.push((x, c.start(&id, x)));
    }
    d.ctr(&["task", "kill", "-a", "-s", "KILL", &id]).ok();
    let init_exit = wait_exit(&ev, &id, &id);
    assert_eq!(init_exit.u64_field("exit_status"), 137, "init exit\n{}", ev.describe());
    for (x, pid) in &pids {
        let e = wait_exit(&ev, &id, x);
        assert_eq!(
            (e.u64_field("pid"), e.u64_field("exit_status")),
            (*pid as u64, 137),
            "exit of exec {x}\n{}",
            ev.describe()
        );
        assert!(wait_gone(*pid as i32, T), "exec {x} (pid {pid}) survived kill -a");
    }
    assert!(wait_gone(init.pid as i32, T), "init survived kill -a");
    let late: Vec<String> = pids
        .iter()
        .filter(|(x, _)| wait_exit(&ev, &id, x).seq > init_exit.seq)
        .map(|(x, _)| x.to_string())
        .collect();
    for (x, _) in &pids {
        c.delete(&id, x);
    }
    drop(client);
    d.remove_container(&id);
    d.assert_clean();
    assert!(
        late.is_empty(),
        "the exits of execs {late:?} were published after the init's exit\n{}",
        ev.describe()
    );
}

/// `ctr oci spec` with the busybox rootfs, `args`, cgroup `/<ns>/<id>`, and no pid namespace.
fn host_pid_spec(d: &Daemon, id: &str, args: &[&str]) -> serde_json::Value {
    let out = e2e::command::run_ok(
        std::process::Command::new(e2e::util::ctr_bin()).args(["oci", "spec"]),
        T,
    );
    let mut spec: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ctr oci spec prints JSON");
    spec["root"] = serde_json::json!({ "path": d.rootfs(), "readonly": true });
    spec["process"]["args"] = serde_json::json!(args);
    spec["process"]["terminal"] = serde_json::json!(false);
    spec["process"]["env"] = serde_json::json!(["PATH=/bin"]);
    spec["linux"]["cgroupsPath"] = serde_json::json!(format!("/{}/{id}", d.ns()));
    let ns = spec["linux"]["namespaces"].as_array_mut().expect("namespaces");
    ns.retain(|n| n["type"] != "pid");
    spec
}

#[test]
fn init_exit_kills_the_remaining_execs_when_the_container_shares_the_host_pid_namespace() {
    let d = Daemon::start();
    let id = d.id("hostpid");
    // No pid namespace in the spec: the container's processes live in the host's.
    let spec = d.tmp().join("hostpid.json");
    let json = host_pid_spec(&d, &id, &["/bin/sleep", "1000"]);
    std::fs::write(&spec, serde_json::to_vec(&json).expect("spec")).expect("write spec");
    d.ctr(&[
        "run",
        "-d",
        "--runtime",
        d.runtime(),
        "--config",
        spec.to_str().expect("utf-8"),
        &id,
    ])
    .ok();
    let init = d.wait_task_status(&id, "RUNNING", T);
    assert_eq!(
        procfs::link(init.pid as i32, "ns/pid"),
        procfs::link(std::process::id() as i32, "ns/pid"),
        "the init (pid {}) must be in the host's pid namespace",
        init.pid
    );
    let ev = d.events();
    let client = d.shim_client(&id);
    let c = Calls {
        client: &client,
        ns: d.ns(),
    };
    c.exec(&exec_req(&d, &id, "left", &["/bin/sleep", "1000"]));
    let pid = c.start(&id, "left");
    // Only the init is signalled.
    d.ctr(&["task", "kill", "-s", "KILL", &id]).ok();
    let init_exit = wait_exit(&ev, &id, &id);
    assert_eq!(init_exit.u64_field("exit_status"), 137, "init exit\n{}", ev.describe());
    assert!(
        wait_gone(pid as i32, T),
        "exec pid {pid} of a host-pid-namespace container survived its init"
    );
    let e = wait_exit(&ev, &id, "left");
    assert_eq!(
        e.u64_field("exit_status"),
        137,
        "exit of the leftover exec\n{}",
        ev.describe()
    );
    assert!(wait_gone(init.pid as i32, T), "init pid survived");
    let order_ok = e.seq < init_exit.seq;
    c.delete(&id, "left");
    drop(client);
    d.remove_container(&id);
    d.assert_clean();
    assert!(
        order_ok,
        "the leftover exec's exit must be published before the init's exit\n{}",
        ev.describe()
    );
}

/// 100 execs run at the same time (each blocks reading a line from a fifo the test holds), all
/// are waited for concurrently on one connection, then released together: every Wait returns
/// that exec's own status, every exit is published, and the shim exits after the delete.
#[test]
fn hundred_concurrent_execs_each_wait_returns_its_own_status_and_no_exit_is_lost() {
    const N: usize = 100;
    let d = Daemon::start();
    let id = d.id("hundred");
    let gate_dir = d.tmp().join("gate");
    std::fs::create_dir_all(&gate_dir).expect("mkdir gate");
    let gate = gate_dir.join("go");
    nix::unistd::mkfifo(&gate, nix::sys::stat::Mode::from_bits_truncate(0o666)).expect("mkfifo gate");
    let mount = format!("type=bind,src={},dst=/tmp,options=rbind:rw", gate_dir.display());
    d.run_detached(&["--mount", &mount], &id, &["/bin/sleep", "1000"]);
    let shim = d.shim_processes(&id);
    assert_eq!(shim.len(), 1, "one shim: {shim:?}");
    let ev = d.events();
    let client = d.shim_client(&id);
    let ns = d.ns().to_string();

    // Exec + Start from 4 threads.
    let started: Vec<(usize, u32)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (client, ns, d, id) = (client.clone(), ns.clone(), &d, &id);
                s.spawn(move || {
                    let c = Calls {
                        client: &client,
                        ns: &ns,
                    };
                    (0..N)
                        .filter(|i| i % 4 == w)
                        .map(|i| {
                            let script = format!("read x < /tmp/go; exit {i}");
                            c.exec(&exec_req(d, id, &format!("c{i}"), &["/bin/sh", "-c", &script]));
                            (i, c.start(id, &format!("c{i}")))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("exec worker"))
            .collect()
    });
    assert_eq!(started.len(), N);

    // All N are alive at once.
    let cpids = d.container_pids(&id);
    let missing: Vec<usize> = started
        .iter()
        .filter(|(_, p)| !cpids.contains(&(*p as i32)))
        .map(|(i, _)| *i)
        .collect();
    assert!(missing.is_empty(), "execs {missing:?} are not running in the container");

    let results: Vec<(usize, Result<u32, String>)> = std::thread::scope(|s| {
        let waiters: Vec<_> = started
            .iter()
            .map(|&(i, _)| {
                let (client, ns, id) = (client.clone(), ns.clone(), &id);
                s.spawn(move || {
                    let r = client
                        .wait(rpc_ctx(&ns), &e2e::requests::wait_req(id, &format!("c{i}")))
                        .map(|w| w.exit_status)
                        .map_err(|e| describe_err(&e));
                    (i, r)
                })
            })
            .collect();
        // Give the Waits a moment to be in flight before the release; they are correct either way.
        std::thread::sleep(Duration::from_millis(300));
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&gate)
            .expect("open gate");
        f.write_all(&b"go\n".repeat(N)).expect("release the execs");
        let r = waiters.into_iter().map(|w| w.join().expect("wait thread")).collect();
        drop(f);
        r
    });
    let wrong: Vec<String> = results
        .iter()
        .filter(|(i, r)| r.as_ref().ok() != Some(&(*i as u32)))
        .map(|(i, r)| format!("c{i}: {r:?}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "Wait results that are not the exec's own status:\n{}",
        wrong.join("\n")
    );

    let exit_missing = |i: usize| {
        !ev.events().iter().any(|e| {
            e.topic == "/tasks/exit" && e.str_field("id") == format!("c{i}") && e.u64_field("exit_status") == i as u64
        })
    };
    let complete = e2e::util::poll(T, Duration::from_millis(100), || {
        (0..N).all(|i| !exit_missing(i)).then_some(())
    });
    let c = Calls {
        client: &client,
        ns: &ns,
    };
    for &(i, pid) in &started {
        let del = c.delete(&id, &format!("c{i}"));
        assert_eq!((del.pid, del.exit_status), (pid, i as u32), "Delete(c{i})");
    }
    if complete.is_none() {
        let missing: Vec<usize> = (0..N).filter(|&i| exit_missing(i)).collect();
        panic!("no correct /tasks/exit for execs {missing:?}\n{}", ev.describe());
    }
    drop(client);
    d.remove_container(&id);
    assert!(
        wait_gone(shim[0].pid, T),
        "the shim did not exit after the container was deleted"
    );
    d.assert_clean();
}

/// protocol doc 10.4 (Go shim 1.6.36+, 1.7.22+, 2.x): once the init's exit is reaped, starting
/// an exec that was added before is refused with FAILED_PRECONDITION.
#[test]
fn starting_an_exec_after_the_init_exited_is_failed_precondition() {
    let d = Daemon::start();
    let id = d.id("lateexec");
    let init = d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let client = d.shim_client(&id);
    let c = Calls {
        client: &client,
        ns: d.ns(),
    };
    c.exec(&exec_req(&d, &id, "late", &["/bin/true"]));
    c.kill(&id, "", 9, false);
    assert_eq!(c.wait(&id, "").exit_status, 137, "init exit");
    assert!(wait_gone(init.pid as i32, T), "init still there");
    let msg = expect_code(
        client.start(rpc_ctx(d.ns()), &e2e::requests::start_req(&id, "late")),
        ttrpc::Code::FAILED_PRECONDITION,
        "Start of an exec after its container's init exited",
    );
    assert!(!msg.is_empty(), "the error must say why");
    let _ = client.delete(rpc_ctx(d.ns()), &e2e::requests::delete_req(&id, "late"));
    drop(client);
    d.remove_container(&id);
    d.assert_clean();
}
