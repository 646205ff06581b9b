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
