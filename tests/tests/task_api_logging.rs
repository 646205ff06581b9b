//! Task API, log schemes for stdout/stderr: fifo (default, see stdio.rs), `file://` (append),
//! `binary://` (a logger on fds 3/4/5 that must signal ready before the container starts, gets
//! SIGTERM on delete) and `binary-v2://` (the ready signal must be a byte).

use e2e::logger::TestLogger;
use e2e::Daemon;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

#[test]
fn log_uri_file_appends_stdout_and_stderr_of_two_runs_to_one_file_creating_its_dir() {
    let d = Daemon::start();
    let log = d.tmp().join("logs").join("sub").join("c.log");
    let uri = format!("file://{}", log.display());
    for (name, word) in [("file1", "one"), ("file2", "two")] {
        let id = d.id(name);
        let script = format!("echo {word}-out; echo {word}-err >&2; exit 0");
        let out = d
            .run_rootfs(&["--rm", "--log-uri", &uri], &id, &["/bin/sh", "-c", &script])
            .run();
        assert_eq!(out.code(), Some(0), "ctr run with --log-uri file://: {out}");
        assert!(
            !out.stdout_str().contains(word),
            "the output must go to the file, not to ctr: {out}"
        );
    }
    let text =
        std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("the log file {} was not written: {e}", log.display()));
    let lines: Vec<&str> = text.lines().collect();
    for l in ["one-out", "one-err", "two-out", "two-err"] {
        assert!(lines.contains(&l), "{l} missing from the log file: {text:?}");
    }
    let pos = |l: &str| lines.iter().position(|x| *x == l).expect("present");
    assert!(
        pos("one-out").max(pos("one-err")) < pos("two-out").min(pos("two-err")),
        "the second run must be appended after the first: {text:?}"
    );
    d.assert_clean();
}

#[test]
fn log_uri_binary_runs_the_logger_first_feeds_it_fds_3_and_4_and_sigterms_it_on_delete() {
    let d = Daemon::start();
    let ev = d.events();
    let id = d.id("binlog");
    let logger = TestLogger::install(&d.tmp().join("logger"), "init");
    let gate = d.tmp().join("logger").join("gate-init");
    let uri = logger.uri("binary", &[("gate", gate.to_str().expect("utf-8"))]);

    std::thread::scope(|s| {
        let run = s.spawn(|| {
            d.run_rootfs(
                &["--rm", "--log-uri", &uri],
                &id,
                &["/bin/sh", "-c", "echo to-out; echo to-err >&2; exit 0"],
            )
            .timeout(Duration::from_secs(60))
            .run()
        });
        assert!(
            logger.wait_file("fds", T, |_| true),
            "the logger was not started\n{}",
            d.log_tail(30)
        );
        // Not ready yet: the container must not be created, let alone started.
        let early = e2e::util::poll(Duration::from_millis(1500), Duration::from_millis(50), || {
            let created = ev.for_container(&id).iter().any(|e| e.topic.starts_with("/tasks/"));
            (created || !d.container_pids(&id).is_empty()).then_some(())
        });
        assert!(
            early.is_none(),
            "the container was created before the logger signalled ready\n{}",
            ev.describe()
        );
        std::fs::write(&gate, b"").expect("open the gate");
        let out = run.join().expect("ctr run thread");
        assert_eq!(out.code(), Some(0), "ctr run with a binary logger: {out}");
    });

    assert!(
        logger.wait_file("stdout", T, |t| t == "to-out\n"),
        "the logger's fd 3 must carry the container's stdout: {:?}",
        logger.file("stdout")
    );
    assert!(
        logger.wait_file("stderr", T, |t| t == "to-err\n"),
        "the logger's fd 4 must carry the container's stderr: {:?}",
        logger.file("stderr")
    );
    assert!(
        logger.wait_file("signals", T, |t| t.contains("TERM")),
        "the logger got no SIGTERM when the task was deleted\n{}",
        d.log_tail(30)
    );
    let mut args = logger.args();
    args.sort();
    let mut want = vec![
        "dir".to_string(),
        logger.record.display().to_string(),
        "gate".to_string(),
        gate.display().to_string(),
    ];
    want.sort();
    assert_eq!(args, want, "logger arguments: one `key value` pair per query parameter");
    assert_eq!(
        logger.environ(),
        vec![format!("CONTAINER_ID={id}"), format!("CONTAINER_NAMESPACE={}", d.ns())],
        "the logger's environment must be exactly CONTAINER_ID and CONTAINER_NAMESPACE"
    );
    for fd in [3, 4, 5] {
        let t = logger.fd_target(fd);
        assert!(
            t.as_deref().is_some_and(|t| t.starts_with("pipe:")),
            "logger fd {fd} must be a pipe, is {t:?}\n{}",
            logger.file("fds").unwrap_or_default()
        );
    }
    let seen: Vec<String> = ev.for_container(&id).iter().map(|e| e.topic.clone()).collect();
    assert!(
        seen.iter().any(|t| t == "/tasks/delete"),
        "the task was deleted: {seen:?}"
    );
    d.assert_clean();
}

#[test]
fn ctr_task_exec_with_a_binary_logger_gives_it_the_exec_id_and_the_execs_output() {
    let d = Daemon::start();
    let id = d.id("execlog");
    d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let logger = TestLogger::install(&d.tmp().join("logger"), "exec");
    let uri = logger.uri("binary", &[]);
    let out = d
        .ctr(&[
            "task",
            "exec",
            "--exec-id",
            "lx",
            "--log-uri",
            &uri,
            &id,
            "/bin/sh",
            "-c",
            "echo exec-out; echo exec-err >&2; exit 6",
        ])
        .run();
    assert_eq!(
        out.code(),
        Some(6),
        "ctr task exec with a logger returns the status: {out}"
    );
    assert!(
        logger.wait_file("stdout", T, |t| t == "exec-out\n"),
        "exec stdout at the logger: {:?}",
        logger.file("stdout")
    );
    assert!(
        logger.wait_file("stderr", T, |t| t == "exec-err\n"),
        "exec stderr at the logger: {:?}",
        logger.file("stderr")
    );
    assert!(
        logger.wait_file("signals", T, |t| t.contains("TERM")),
        "the exec's logger got no SIGTERM when the exec was deleted"
    );
    assert_eq!(
        logger.environ(),
        vec!["CONTAINER_ID=lx".to_string(), format!("CONTAINER_NAMESPACE={}", d.ns())],
        "an exec's logger gets the exec id as CONTAINER_ID"
    );
    d.remove_container(&id);
    d.assert_clean();
}

/// containerd 2.2+: `binary-v2://` works like `binary://` when the logger writes a byte on
/// fd 5; closing fd 5 without a byte is an error (Create fails, nothing is left).
#[test]
fn log_uri_binary_v2_needs_a_ready_byte() {
    let d = Daemon::start();
    let id = d.id("binv2");
    let logger = TestLogger::install(&d.tmp().join("logger"), "v2");
    let out = d
        .run_rootfs(
            &["--rm", "--log-uri", &logger.uri("binary-v2", &[])],
            &id,
            &["/bin/sh", "-c", "echo v2-out; exit 0"],
        )
        .run();
    assert_eq!(out.code(), Some(0), "ctr run with a binary-v2 logger: {out}");
    assert!(
        logger.wait_file("stdout", T, |t| t == "v2-out\n"),
        "binary-v2 logger's fd 3: {:?}",
        logger.file("stdout")
    );

    let bad = d.id("binv2eof");
    let silent = TestLogger::install(&d.tmp().join("logger"), "v2eof");
    let out = d
        .run_rootfs(
            &["--rm", "--log-uri", &silent.uri("binary-v2", &[("ready", "eof")])],
            &bad,
            &["/bin/sh", "-c", "echo never; exit 0"],
        )
        .run();
    assert!(
        out.code() != Some(0),
        "a binary-v2 logger that closes fd 5 without a byte must fail the create: {out}"
    );
    assert!(
        silent.file("stdout").unwrap_or_default().is_empty(),
        "the container ran although its logger never became ready"
    );
    // ctr run --rm leaves the container record behind when the task could not be created.
    d.ctr(&["container", "delete", &bad]).run();
    d.assert_clean();
}
