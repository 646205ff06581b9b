//! Task API, terminals: `ctr run -t` and `ctr task exec -t` driven from a pseudo-terminal,
//! ResizePty as `stty size` sees it, CloseIO ending `cat`, and 10 MiB through a tty.

use e2e::fifo::{FifoReader, FifoWriter};
use e2e::launch::{connect_pids, create_req, create_task, shutdown_and_wait};
use e2e::requests::{close_stdin_req, describe_err, exec_req, with_terminal, Calls};
use e2e::shim::{make_bundle, rpc_ctx, HandShim};
use e2e::Daemon;
use protos::types::Status;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// Prints its tty, waits until the window has a size (ctr sends it only after the task
/// started), prints `size1=R C`, waits for the size to change, prints `size2=R C`, exits 3.
const SIZE_SCRIPT: &str = "tty; \
    s=$(stty size 2>/dev/null); \
    while [ -z \"$s\" ] || [ \"$s\" = '0 0' ]; do sleep 0.05; s=$(stty size 2>/dev/null); done; \
    echo \"size1=$s\"; \
    while [ \"$(stty size 2>/dev/null)\" = \"$s\" ]; do sleep 0.05; done; \
    echo \"size2=$(stty size)\"; exit 3";

/// Drives `p` (a ctr running [`SIZE_SCRIPT`] in a 40x120 pty): checks the tty, the initial
/// size, a resize to 50x100, and ctr's exit status 3.
fn check_size_script(d: &Daemon, mut p: e2e::pty::PtyChild, what: &str) {
    assert!(
        p.wait_for_text(T, "size1=40 120"),
        "{what}: `stty size` inside never showed the 40x120 window\n{p}\n{}",
        d.log_tail(30)
    );
    let out = p.output_str();
    assert!(
        out.contains("/dev/pts/"),
        "{what}: `tty` inside must print a /dev/pts device\n{p}"
    );
    p.resize(50, 100);
    assert!(
        p.wait_for_text(T, "size2=50 100"),
        "{what}: after the resize `stty size` never showed 50x100\n{p}\n{}",
        d.log_tail(30)
    );
    let st = p.wait(T);
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(3),
        "{what}: ctr must exit with the process's status 3\n{p}"
    );
}

#[test]
fn ctr_run_t_gives_the_container_a_tty_whose_size_follows_ctrs_terminal() {
    let d = Daemon::start();
    let id = d.id("runtty");
    let rootfs = d.rootfs().to_str().expect("utf-8");
    let p = d.ctr_in_pty(
        &[
            "run",
            "-t",
            "--rm",
            "--runtime",
            d.runtime(),
            "--rootfs",
            rootfs,
            &id,
            "/bin/sh",
            "-c",
            SIZE_SCRIPT,
        ],
        40,
        120,
    );
    check_size_script(&d, p, "ctr run -t");
    d.assert_clean();
}

#[test]
fn ctr_task_exec_t_gives_the_exec_a_tty_whose_size_follows_ctrs_terminal() {
    let d = Daemon::start();
    let id = d.id("exectty");
    d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let p = d.ctr_in_pty(
        &[
            "task",
            "exec",
            "-t",
            "--exec-id",
            "t1",
            &id,
            "/bin/sh",
            "-c",
            SIZE_SCRIPT,
        ],
        40,
        120,
    );
    check_size_script(&d, p, "ctr task exec -t");
    assert_eq!(
        d.task(&id).map(|t| t.status),
        Some("RUNNING".to_string()),
        "the container outlives its tty exec"
    );
    d.remove_container(&id);
    d.assert_clean();
}

#[test]
fn ten_mib_written_to_a_tty_reach_ctrs_terminal_whole() {
    const SIZE: usize = 10 * 1024 * 1024;
    let d = Daemon::start();
    let id = d.id("bigtty");
    let rootfs = d.rootfs().to_str().expect("utf-8");
    // The trailing sleep gives ctr time to drain its fifo before the exit: containerd 1.6's
    // client (`task.Delete`, which `ctr run` calls right after the exit) closes its fifo
    // readers before waiting for its copy, losing what a loaded ctr had not read yet
    // (tests/COMPAT.md). Loss in the shim's copy at exit is tested with a reader of our own
    // (`output_of_a_terminal_*_reaches_a_slow_reader_whole_*`).
    let script = format!(
        "dd if=/dev/zero bs=65536 count={} 2>/dev/null | tr '\\000' x; echo; echo END; sleep 2",
        SIZE / 65536
    );
    let mut p = d.ctr_in_pty(
        &[
            "run",
            "-t",
            "--rm",
            "--runtime",
            d.runtime(),
            "--rootfs",
            rootfs,
            &id,
            "/bin/sh",
            "-c",
            &script,
        ],
        24,
        80,
    );
    let st = p.wait(Duration::from_secs(120));
    let out = p.output();
    let xs = out.iter().filter(|&&b| b == b'x').count();
    let tail = String::from_utf8_lossy(&out[out.len().saturating_sub(20)..]).into_owned();
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(0),
        "ctr run -t must exit 0 ({xs} x received)\n{}",
        p.stderr_str()
    );
    assert_eq!(xs, SIZE, "bytes of output lost or added through the tty; tail {tail:?}");
    assert!(
        tail.contains("END"),
        "the last line after the 10 MiB is missing; tail {tail:?}"
    );
    d.assert_clean();
}

fn close_io(d: &Daemon, c: &Calls, id: &str, exec_id: &str) {
    c.client
        .close_io(rpc_ctx(d.ns()), &close_stdin_req(id, exec_id))
        .unwrap_or_else(|e| panic!("CloseIO({id}/{exec_id}): {}", describe_err(&e)));
}

/// The client closes its stdin writer: `cat` keeps running (the shim holds the fifo open)
/// until CloseIO, then sees EOF and exits 0. Without a terminal, and with one.
#[test]
fn close_io_after_the_client_closed_stdin_makes_cat_end_with_and_without_a_terminal() {
    let d = Daemon::start();
    let id = d.id("closeio");
    d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let client = d.shim_client(&id);
    let c = Calls {
        client: &client,
        ns: d.ns(),
    };
    let dir = d.tmp().join("closeio-fifos");
    std::fs::create_dir_all(&dir).expect("mkdir fifos");

    for (exec_id, terminal) in [("cat-pipe", false), ("cat-tty", true)] {
        let mut stdin = FifoWriter::create(&dir.join(format!("{exec_id}-stdin")));
        let stdout = FifoReader::create(&dir.join(format!("{exec_id}-stdout")));
        let stderr = (!terminal).then(|| FifoReader::create(&dir.join(format!("{exec_id}-stderr"))));
        let mut req = exec_req(&d, &id, exec_id, &["/bin/cat"]);
        if terminal {
            with_terminal(&mut req);
        }
        req.stdin = stdin.uri();
        req.stdout = stdout.uri();
        req.stderr = stderr.as_ref().map(FifoReader::uri).unwrap_or_default();
        c.exec(&req);
        c.start(&id, exec_id);
        stdin.open(T);
        stdin.write_all(b"hello\n");
        assert!(
            stdout.wait_text(T, |t| t.contains("hello")),
            "{exec_id}: cat's echo never arrived: {:?}",
            stdout.text()
        );
        stdin.close();
        // The shim's own writer keeps the fifo open: no EOF for cat yet.
        let ended_early = e2e::util::poll(Duration::from_millis(500), Duration::from_millis(50), || {
            (c.state(&id, exec_id).status.enum_value() == Ok(Status::STOPPED)).then_some(())
        });
        assert!(
            ended_early.is_none(),
            "{exec_id}: cat ended when the client closed its writer, before CloseIO"
        );
        close_io(&d, &c, &id, exec_id);
        let waited = std::thread::scope(|s| {
            let w = s.spawn(|| c.wait(&id, exec_id));
            let done = e2e::util::poll(T, Duration::from_millis(50), || w.is_finished().then_some(()));
            if done.is_none() {
                // Unblock the Wait before failing.
                c.kill(&id, exec_id, 9, false);
                panic!(
                    "{exec_id}: cat did not end within {T:?} after CloseIO\n{}",
                    d.log_tail(30)
                );
            }
            w.join().expect("wait thread")
        });
        if !terminal {
            assert_eq!(waited.exit_status, 0, "{exec_id}: cat at EOF exits 0: {waited:?}");
        }
        assert!(stdout.wait_eof(T), "{exec_id}: stdout fifo got no EOF after cat ended");
        c.delete(&id, exec_id);
    }
    drop(client);
    d.remove_container(&id);
    d.assert_clean();
}

/// A terminal exec's output still on its way (in the pty and the fifo) when it exits
/// reaches a slow client whole: `Delete` lets the copy finish (bounded) before closing.
#[test]
fn output_of_a_terminal_exec_reaches_a_slow_reader_whole_when_deleted_right_after_its_exit() {
    let d = Daemon::start();
    let id = d.id("ttydrain");
    d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let client = d.shim_client(&id);
    let c = Calls {
        client: &client,
        ns: d.ns(),
    };
    let dir = d.tmp().join("ttydrain-fifos");
    std::fs::create_dir_all(&dir).expect("mkdir fifos");
    for round in 0..3 {
        let exec_id = format!("seq{round}");
        // 4 KiB every 10 ms: the output outlives the exec by a fraction of a second.
        let stdout =
            FifoReader::create_throttled(&dir.join(format!("{exec_id}-stdout")), 4096, Duration::from_millis(10));
        let mut req = exec_req(&d, &id, &exec_id, &["/bin/seq", "-s", " ", "1", "100000"]);
        with_terminal(&mut req);
        req.stdout = stdout.uri();
        c.exec(&req);
        c.start(&id, &exec_id);
        let waited = c.wait(&id, &exec_id);
        assert_eq!(waited.exit_status, 0, "{exec_id}: seq exits 0");
        c.delete(&id, &exec_id);
        assert!(stdout.wait_eof(T), "{exec_id}: stdout fifo got no EOF after Delete");
        let text = stdout.text();
        assert!(
            text.trim_end().ends_with("99999 100000"),
            "{exec_id}: output lost its tail: {} bytes, ending {:?}",
            text.len(),
            &text[text.len().saturating_sub(40)..]
        );
    }
    drop(client);
    d.remove_container(&id);
    d.assert_clean();
}

/// The same for a container whose init has the terminal (a hand-started shim, since `ctr run -t`
/// reads its fifo at full speed): all of `seq`'s output reaches a reader that takes about
/// 1.5 s for it, although Delete comes as soon as Wait returned.
#[test]
fn output_of_a_terminal_init_reaches_a_slow_reader_whole_when_deleted_right_after_its_exit() {
    let d = Daemon::start();
    let id = d.id("inittty");
    let bundle = make_bundle(&d, &id, &["/bin/seq", "-s", " ", "1", "100000"]);
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read config.json")).expect("JSON");
    spec["process"]["terminal"] = serde_json::json!(true);
    std::fs::write(&path, serde_json::to_vec(&spec).expect("JSON")).expect("write config.json");
    let shim = HandShim::start(&d, &id, &bundle, b"");
    let client = shim.client();
    let c = Calls {
        client: &client,
        ns: d.ns(),
    };
    let dir = d.tmp().join("inittty-fifos");
    std::fs::create_dir_all(&dir).expect("mkdir fifos");
    let stdout = FifoReader::create_throttled(&dir.join("stdout"), 4096, Duration::from_millis(10));
    let mut r = create_req(&id, &bundle, None);
    r.stdout = stdout.uri();
    r.terminal = true;
    create_task(&d, &client, &r);
    c.start(&id, "");
    assert_eq!(c.wait(&id, "").exit_status, 0, "seq exits 0");
    c.delete(&id, "");
    assert!(stdout.wait_eof(T), "stdout fifo got no EOF after Delete");
    let text = stdout.text();
    assert!(
        text.trim_end().ends_with("99999 100000"),
        "output lost its tail: {} bytes, ending {:?}",
        text.len(),
        &text[text.len().saturating_sub(40)..]
    );
    let daemon = connect_pids(&d, &client, &id).0 as i32;
    shutdown_and_wait(&d, client, &id, daemon);
    drop(shim);
    d.assert_clean();
}

/// runc reports an exec with a terminal started but never sends its console (a runc wrapper
/// drops `--console-socket` and the terminal here; the random walk met it when a container's
/// init died during `runc exec`). The shim cannot connect the process's stdio: it stops the
/// process and, as the Go shim does, the exec counts as never started. Start fails naming
/// the console, State says CREATED, Wait answers 0 at once, no `/tasks/exit` is published
/// for it, and the container goes on serving execs.
#[test]
fn an_exec_whose_console_never_arrives_fails_to_start_and_publishes_no_exit() {
    let d = Daemon::start();
    let ev = d.events();
    let id = d.id("noconsole");
    let bundle = make_bundle(&d, &id, &["/bin/sleep", "1000"]);
    let wrapper = d.tmp().join("runc-without-console");
    // (The process comes as a path that may be a descriptor of the shim's: the wrapper
    // writes a copy without the terminal and passes that.)
    let copy = d.tmp().join("process-without-terminal.json");
    let script = format!(
        "#!/bin/sh\ncase \" $* \" in *\" exec \"*)\n  skip=0\n  for a in \"$@\"; do\n    shift\n    \
         if [ $skip = console ]; then skip=0; continue; fi\n    \
         if [ $skip = process ]; then skip=0; sed 's/\"terminal\": *true/\"terminal\":false/' \"$a\" > {copy}; \
         set -- \"$@\" {copy}; continue; fi\n    \
         if [ \"$a\" = --console-socket ]; then skip=console; continue; fi\n    \
         if [ \"$a\" = --process ]; then skip=process; fi\n    \
         set -- \"$@\" \"$a\"\n  done;;\nesac\nexec {runc} \"$@\"\n",
        copy = copy.display(),
        runc = e2e::launch::runc_path().display()
    );
    e2e::util::write_executable(&wrapper, &script);
    let opts = protos::runc_options::Options {
        binary_name: wrapper.to_string_lossy().into_owned(),
        ..Default::default()
    };
    let shim = HandShim::start(&d, &id, &bundle, b"");
    let client = shim.client();
    let c = Calls {
        client: &client,
        ns: d.ns(),
    };
    create_task(&d, &client, &create_req(&id, &bundle, Some(&opts)));
    c.start(&id, "");

    let dir = d.tmp().join("noconsole-fifos");
    std::fs::create_dir_all(&dir).expect("mkdir fifos");
    let stdout = FifoReader::create(&dir.join("tty-stdout"));
    let mut req = e2e::requests::exec_req_in(&bundle, &id, "tty", &["/bin/sleep", "301"]);
    with_terminal(&mut req);
    req.stdout = stdout.uri();
    c.exec(&req);
    let err = client
        .start(rpc_ctx(d.ns()), &e2e::requests::start_req(&id, "tty"))
        .expect_err("Start of an exec whose console never came must fail");
    assert!(
        describe_err(&err).contains("failed to retrieve console master"),
        "Start error: {}",
        describe_err(&err)
    );
    let st = c.state(&id, "tty");
    assert_eq!(
        (st.status.enum_value(), st.pid),
        (Ok(Status::CREATED), 0),
        "State of the exec that did not start"
    );
    assert_eq!(c.wait(&id, "tty").exit_status, 0, "Wait on the exec that did not start");
    let stopped = e2e::util::poll_until(T, || {
        e2e::procfs::pids()
            .into_iter()
            .all(|p| e2e::procfs::cmdline(p) != ["/bin/sleep", "301"])
    });
    assert!(stopped, "the exec's process is still running");
    c.delete(&id, "tty");

    // The container still serves execs.
    c.exec(&e2e::requests::exec_req_in(
        &bundle,
        &id,
        "after",
        &["/bin/sh", "-c", "exit 4"],
    ));
    c.start(&id, "after");
    assert_eq!(c.wait(&id, "after").exit_status, 4);
    c.delete(&id, "after");
    c.kill(&id, "", 9, false);
    assert_eq!(c.wait(&id, "").exit_status, 137);
    c.delete(&id, "");
    let exits: Vec<String> = ev
        .for_container(&id)
        .into_iter()
        .filter(|e| e.topic == "/tasks/exit")
        .map(|e| e.str_field("id").to_string())
        .collect();
    assert_eq!(exits, ["after".to_string(), id.clone()], "exits published");
    let daemon = connect_pids(&d, &client, &id).0 as i32;
    shutdown_and_wait(&d, client, &id, daemon);
    drop(shim);
    d.assert_clean();
}
