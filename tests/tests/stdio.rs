//! Container stdio through ctr's fifos.

use e2e::Daemon;

#[test]
fn stdin_piped_into_ctr_run_reaches_the_container() {
    let d = Daemon::start();
    let id = d.id("stdin");
    // `ctr run` never closes the container's stdin at EOF, so read one line, not until EOF.
    let out = d
        .run_rootfs(&["--rm"], &id, &["/bin/head", "-n", "1"])
        .stdin("data\nmore\n")
        .run();
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(
        out.stdout_str(),
        "data\n",
        "head -n 1 must echo the first stdin line: {out}"
    );
    d.assert_clean();
}

#[test]
fn stdout_and_stderr_reach_ctr_separately() {
    let d = Daemon::start();
    let id = d.id("streams");
    let out = d
        .run_rootfs(&["--rm"], &id, &["/bin/sh", "-c", "echo to-out; echo to-err >&2"])
        .run();
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(out.stdout_str(), "to-out\n", "stdout: {out}");
    assert!(
        out.stderr_str().contains("to-err\n"),
        "stderr must carry the container's stderr: {out}"
    );
    assert!(!out.stdout_str().contains("to-err"), "stderr leaked into stdout: {out}");
    d.assert_clean();
}

/// `ctr run` (the fifos' only reader) is SIGKILLed while its container floods stdout. The
/// container must not die of SIGPIPE/EPIPE (it blocks once the fifo is full, as with the Go
/// shim), and the shim must keep serving: exec, kill and delete work and nothing leaks.
fn client_dies_while_the_container_writes(tty: bool) {
    use e2e::pty::PtyChild;
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    const T: Duration = Duration::from_secs(20);
    let d = Daemon::start();
    let id = d.id(if tty { "deadreadert" } else { "deadreader" });
    let mut cmd = Command::new(e2e::util::ctr_bin());
    cmd.arg("--address").arg(d.address()).arg("-n").arg(d.ns()).arg("run");
    if tty {
        cmd.arg("-t");
    }
    cmd.arg("--runtime")
        .arg(d.runtime())
        .arg("--rootfs")
        .arg(d.rootfs())
        .arg(&id)
        .args(["/bin/sh", "-c", "while :; do echo flooding-stdout; done"]);
    if tty {
        let ctr = PtyChild::spawn(cmd, 24, 80);
        assert!(
            ctr.wait_for_text(T, "flooding-stdout"),
            "no output through the tty: {}",
            ctr.stderr_str()
        );
        ctr.signal(nix::sys::signal::Signal::SIGKILL);
        drop(ctr);
    } else {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut ctr = e2e::reaper::spawn(&mut cmd).expect("start ctr run");
        let mut out = ctr.take_stdout().expect("ctr stdout");
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        while got.len() < 64 * 1024 {
            let n = out.read(&mut buf).expect("read ctr stdout");
            assert!(n > 0, "ctr's stdout ended early");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(String::from_utf8_lossy(&got).contains("flooding-stdout\n"));
        assert!(ctr.kill_and_wait().is_some(), "ctr did not die of SIGKILL");
    }

    // With nobody reading, the container fills the fifo and blocks; it must stay alive.
    std::thread::sleep(Duration::from_secs(1));
    let row = d.task(&id).expect("task listed");
    assert_eq!(
        row.status, "RUNNING",
        "the container died when its reader went away: {row:?}"
    );
    let out = d
        .ctr(&["task", "exec", "--exec-id", "probe", &id, "/bin/echo", "still-served"])
        .timeout(T)
        .run();
    assert_eq!(
        (out.code(), out.stdout_str().as_str()),
        (Some(0), "still-served\n"),
        "exec after the reader died: {out}"
    );
    d.ctr(&["task", "kill", "-s", "KILL", &id]).ok();
    d.wait_task_status(&id, "STOPPED", T);
    d.ctr(&["task", "delete", &id]).ok();
    d.ctr(&["container", "delete", &id]).ok();
    d.assert_clean();
}

#[test]
fn a_dead_fifo_reader_neither_kills_the_container_nor_stops_the_shim() {
    client_dies_while_the_container_writes(false);
}

#[test]
fn a_dead_reader_of_a_terminal_neither_kills_the_container_nor_stops_the_shim() {
    client_dies_while_the_container_writes(true);
}
