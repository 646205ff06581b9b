//! The shim's own log reaches containerd's log through the bundle's `log` fifo, in logrus
//! format, and `-debug` (passed by containerd when its own level is debug) raises the level.

use e2e::{Daemon, DaemonOptions};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// Lines of containerd's log written by our shim (they carry `runtime=io.containerd.runc.v2`
/// and the test's namespace, and not containerd's own `id=` field).
fn shim_lines(d: &Daemon) -> Vec<String> {
    d.log_text()
        .lines()
        .filter(|l| l.contains("runtime=io.containerd.runc.v2") && l.contains(&format!("namespace={}", d.ns())))
        .map(str::to_string)
        .collect()
}

fn run_one(d: &Daemon, name: &str) {
    let id = d.id(name);
    d.run_rootfs(&["--rm"], &id, &["/bin/true"]).timeout(T).ok();
}

/// Polls until a line matching `pred` arrived (containerd copies the fifo asynchronously).
fn wait_line(d: &Daemon, what: &str, pred: impl Fn(&str) -> bool) -> String {
    e2e::util::poll(Duration::from_secs(10), Duration::from_millis(50), || {
        shim_lines(d).into_iter().find(|l| pred(l))
    })
    .unwrap_or_else(|| panic!("no shim log line {what} in containerd's log\n{}", d.log_tail(40)))
}

#[test]
fn shim_log_lines_reach_containerds_log_with_debug_lines_at_debug_level() {
    let d = Daemon::start();
    run_one(&d, "logdebug");
    let started = wait_line(&d, "\"shim started\"", |l| l.contains("msg=\"shim started, pid "));
    assert!(
        started.starts_with("time=\"") && started.contains(" level=info "),
        "not a logrus line: {started}"
    );
    wait_line(&d, "at debug level", |l| {
        l.contains(" level=debug ") && l.contains("msg=\"publishing /tasks/exit\"")
    });
    d.assert_clean();
}

#[test]
fn without_debug_the_shim_logs_at_info_level() {
    let d = Daemon::start_configured(DaemonOptions::default(), |c| c.log_level = "info");
    run_one(&d, "loginfo");
    // containerd at info level drops debug lines of its own, not of shims: ours must not write any.
    wait_line(&d, "\"shim started\"", |l| l.contains("msg=\"shim started, pid "));
    let debug: Vec<String> = shim_lines(&d)
        .into_iter()
        .filter(|l| l.contains(" level=debug "))
        .collect();
    assert!(debug.is_empty(), "debug lines without -debug: {debug:#?}");
    d.assert_clean();
}
