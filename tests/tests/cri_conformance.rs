//! What Kubernetes' own suites check of a runtime and that depends on the shim, where
//! `cri_*.rs` did not cover it yet: cri-tools' `critest` validation suite (pkg/validate) and
//! containerd's CRI integration tests (integration/*.go). Each test names the upstream tests it
//! mirrors.
#![cfg(feature = "cri")]

use e2e::cgroup::{self, Knob};
use e2e::cri::api::*;
use e2e::cri::log::{log_line, parse_cri_log, read_log, LogLine};
use e2e::cri::raw_client::{EventWatch, RawCri};
use e2e::cri::{CriDaemon, StreamSession};
use e2e::procfs;
use std::path::Path;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Targets of the open file descriptors of `pid`.
fn fd_targets(pid: i32) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.display().to_string())
        .collect()
}

fn count_fds(pid: i32, what: &str) -> usize {
    fd_targets(pid).iter().filter(|t| t.contains(what)).count()
}

/// Waits until `f()` equals `want`; returns the last value.
fn settle<T: PartialEq + Copy>(timeout: Duration, want: T, mut f: impl FnMut() -> T) -> T {
    let mut last = f();
    let _ = e2e::util::poll(timeout, Duration::from_millis(100), || {
        last = f();
        (last == want).then_some(())
    });
    last
}

fn exec_stream(d: &CriDaemon, id: &str, cmd: &[&str], stdin: bool, tty: bool) -> StreamSession {
    let url = d.ok(
        "Exec",
        d.cri().exec(ExecRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            stdin,
            stdout: true,
            stderr: !tty,
            tty,
        }),
    );
    StreamSession::open(&url).unwrap_or_else(|e| panic!("{e}"))
}

fn attach_stream(d: &CriDaemon, id: &str, tty: bool) -> StreamSession {
    let url = d.ok(
        "Attach",
        d.cri().attach(AttachRequest {
            container_id: id.into(),
            stdin: true,
            tty,
            stdout: true,
            stderr: !tty,
        }),
    );
    StreamSession::open(&url).unwrap_or_else(|e| panic!("{e}"))
}

/// Processes of this daemon whose argv is exactly `argv`.
fn count_procs(d: &CriDaemon, argv: &[&str]) -> usize {
    d.processes()
        .into_iter()
        .filter(|p| p.state != 'Z' && p.argv.iter().map(String::as_str).eq(argv.iter().copied()))
        .count()
}

fn with_pid_mode(cfg: &mut PodSandboxConfig, mode: NamespaceMode) {
    if let Some(ns) = cfg
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        ns.pid = mode as i32;
    }
}

/// critest "runtime should support attach": a shell with stdin + stdin_once answers what is
/// written to it and nothing else; when the client is done its stdin sees EOF and it exits.
#[test]
fn attach_to_a_stdin_once_shell_answers_input_and_detach_ends_it() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("attachsh");
    let pod = d.run_pod(&pod_cfg);
    let mut cfg = d.container_config(&pod_cfg, "shell", &["sh"]);
    cfg.stdin = true;
    cfg.stdin_once = true;
    let c = d.start_container(&pod, &pod_cfg, &cfg);
    d.wait_container_state(&c, ContainerState::ContainerRunning, T);

    let mut s = attach_stream(&d, &c, false);
    s.read_until(Duration::from_secs(1), |_| false);
    assert!(s.stdout.is_empty(), "output without input: {s:?}");
    s.send_stdin(b"echo hello\n").expect("send stdin");
    assert!(s.read_until(T, |s| s.stdout_str() == "hello\n"), "no answer: {s:?}");
    s.read_until(Duration::from_secs(2), |_| false);
    assert_eq!(s.stdout_str(), "hello\n", "more than the answer: {s:?}");
    assert_eq!(s.stderr_str(), "", "{s:?}");
    s.close();
    // The first attach that ends closes the stdin of a stdin_once container: sh reads EOF.
    let st = d.wait_container_state(&c, ContainerState::ContainerExited, T);
    assert_eq!((st.exit_code, st.reason.as_str()), (0, "Completed"), "{st:#?}");
    let lines = parse_cri_log(&read_log(&st.log_path));
    assert_eq!(lines, [log_line("stdout", "F", "hello")], "{}", st.log_path);
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}

/// critest attach with a terminal: the tty echoes what is typed, the shell's output comes back
/// on stdout, the container's exit ends the attach, and the log holds the terminal's output.
#[test]
fn attach_to_a_tty_container_echoes_input_and_ends_when_it_exits() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("attachtty");
    let pod = d.run_pod(&pod_cfg);
    let mut cfg = d.container_config(&pod_cfg, "tty-sh", &["sh"]);
    cfg.stdin = true;
    cfg.tty = true;
    let c = d.start_container(&pod, &pod_cfg, &cfg);
    d.wait_container_state(&c, ContainerState::ContainerRunning, T);

    let mut s = attach_stream(&d, &c, true);
    s.send_stdin(b"echo tty-$((6*7))\r").expect("send stdin");
    assert!(
        s.read_until(T, |s| {
            let o = s.stdout_str();
            o.contains("echo tty-$((6*7))") && o.contains("tty-42\r\n")
        }),
        "no echo and answer on the terminal: {s:?}"
    );
    assert!(s.stderr.is_empty(), "stderr on a tty attach: {s:?}");
    s.send_stdin(b"exit 3\r").expect("send stdin");
    let st = d.wait_container_state(&c, ContainerState::ContainerExited, T);
    assert_eq!(st.exit_code, 3, "{st:#?}");
    assert!(s.wait_closed(T), "the attach did not end with the container: {s:?}");
    let log = read_log(&st.log_path);
    let lines = parse_cri_log(&log);
    assert!(
        lines.iter().all(|l| l.stream == "stdout"),
        "a tty has one stream: {log}"
    );
    assert!(log.contains("tty-42"), "{log}");
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}

/// critest "exec with tty=true and stdin=true" and "tty=false and stdin=false"; containerd's
/// TestContainerTTYLeakAfterExit exec step: an exec with a terminal ends when its command
/// exits although the client never closes stdin.
#[test]
fn exec_with_a_terminal_ends_when_its_command_exits_with_stdin_still_open() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("exectty");
    let pod = d.run_pod(&pod_cfg);
    let c = d.start_container(&pod, &pod_cfg, &d.container_config(&pod_cfg, "c", &["sleep", "100000"]));
    d.wait_container_state(&c, ContainerState::ContainerRunning, T);

    let mut s = exec_stream(&d, &c, &["echo", "hello"], false, false);
    assert!(s.wait_closed(T), "{s:?}");
    assert_eq!(
        (s.stdout_str().as_str(), s.stderr_str().as_str()),
        ("hello\n", ""),
        "{s:?}"
    );
    assert_eq!(s.exit_code(), Some(0), "{s:?}");

    for stdin in [true, false] {
        let t0 = Instant::now();
        let mut s = exec_stream(&d, &c, &["sh", "-c", "echo hello; tty; exit 7"], stdin, true);
        assert!(
            s.wait_closed(Duration::from_secs(15)),
            "tty exec (stdin {stdin}) not closed after its command exited: {s:?}"
        );
        let out = s.stdout_str();
        if stdin {
            assert!(
                out.contains("hello\r\n") && out.contains("/dev/pts/"),
                "stdin {stdin}: {s:?}"
            );
        } else {
            // containerd relays the output of a tty exec without stdin only some of the time, with
            // the Go shim too (seen on 1.6, 1.7 and 2.1): only the exit code is checked here.
            eprintln!("[cri_conformance] tty exec without stdin printed {out:?}");
        }
        assert_eq!(s.exit_code(), Some(7), "stdin {stdin}: {s:?}");
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "stdin {stdin}: took {:?}",
            t0.elapsed()
        );
    }
    assert_eq!(d.container_status(&c).state, ContainerState::ContainerRunning as i32);
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}

/// containerd TestContainerTTYLeakAfterExit: the shim holds one pty master per tty container,
/// none is left by a finished tty exec, and none once the container is removed.
#[test]
fn shim_releases_pty_masters_of_tty_execs_and_removed_containers() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("ttyleak");
    let pod = d.run_pod(&pod_cfg);
    let shim = d.wait_shims(1, T)[0].pid;
    let ptmx = || count_fds(shim, "ptmx");
    // (stage, pty masters held by the shim), compared whole at the end.
    let mut seen: Vec<(String, usize)> = vec![("no tty container".into(), ptmx())];
    let mut want: Vec<(String, usize)> = vec![("no tty container".into(), 0)];
    for (name, stdin) in [("tty-only", false), ("interactive", true)] {
        let mut cfg = d.container_config(&pod_cfg, name, &["sh", "-c", "sleep 100000"]);
        cfg.tty = true;
        cfg.stdin = stdin;
        let c = d.start_container(&pod, &pod_cfg, &cfg);
        d.wait_container_state(&c, ContainerState::ContainerRunning, T);
        seen.push((format!("{name}: running"), settle(T, 1, ptmx)));
        want.push((format!("{name}: running"), 1));
        let mut s = exec_stream(&d, &c, &["sh", "-c", "echo tty"], stdin, true);
        assert!(s.wait_closed(T), "{name}: {s:?}");
        seen.push((format!("{name}: after a tty exec"), settle(T, 1, ptmx)));
        want.push((format!("{name}: after a tty exec"), 1));
        d.ok("StopContainer", d.cri().stop_container(&c, 1));
        d.ok("RemoveContainer", d.cri().remove_container(&c));
        seen.push((format!("{name}: removed"), settle(T, 0, ptmx)));
        want.push((format!("{name}: removed"), 0));
    }
    assert_eq!(
        seen,
        want,
        "pty masters (/dev/pts/ptmx) held by the shim; fds now: {:?}",
        fd_targets(shim)
    );
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}

/// containerd TestContainerIOLeakAfterStartFailed: a container whose start fails leaves no
/// pipe open in the shim.
#[test]
fn failed_start_leaves_no_pipes_in_the_shim() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("ioleak");
    let pod = d.run_pod(&pod_cfg);
    let shim = d.wait_shims(1, T)[0].pid;
    let pipes = || count_fds(shim, "pipe:");
    let before = pipes();
    for i in 0..3 {
        let cfg = d.container_config(&pod_cfg, &format!("bad{i}"), &["something-that-doesnt-exist"]);
        let c = d.ok("CreateContainer", d.cri().create_container(&pod, &cfg, &pod_cfg));
        let e = d
            .cri()
            .start_container(&c)
            .expect_err("start of a missing binary must fail");
        assert!(
            e.message.contains("executable file not found") || e.message.contains("no such file"),
            "{e}"
        );
        d.ok("RemoveContainer", d.cri().remove_container(&c));
    }
    let after = settle(Duration::from_secs(10), before, pipes);
    assert_eq!(
        after,
        before,
        "pipes of the shim before the failed starts {before}, after {after}: {:?}",
        fd_targets(shim)
    );
    eprintln!("[cri_conformance] pipes of the shim: {before} before and after the failed starts");
    assert_eq!(d.wait_shims(1, T)[0].pid, shim);
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}

/// containerd TestContainerDrainExecIOAfterExit: an ExecSync whose command leaves a child
/// behind returns once the command exited and its output is complete: at once when the child
/// let go of stdio, when the child exits when it kept it.
#[test]
fn exec_sync_returns_when_the_command_exits_although_a_child_lives_on() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("drain");
    let pod = d.run_pod(&pod_cfg);
    let c = d.start_container(&pod, &pod_cfg, &d.container_config(&pod_cfg, "c", &["sleep", "100000"]));
    d.wait_container_state(&c, ContainerState::ContainerRunning, T);

    let t0 = Instant::now();
    let r = d.cri().exec_sync(
        &c,
        &["sh", "-c", "sleep 100001 </dev/null >/dev/null 2>&1 & echo started"],
        10,
    );
    let took = t0.elapsed();
    let r = d.ok("ExecSync leaving a detached child", r);
    assert_eq!((text(&r.stdout).as_str(), r.exit_code), ("started\n", 0), "{r:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(count_procs(&d, &["sleep", "100001"]), 1, "the detached child is gone");

    let t0 = Instant::now();
    let r = d.cri().exec_sync(&c, &["sh", "-c", "sleep 2 & echo bg"], 10);
    let took = t0.elapsed();
    let r = d.ok("ExecSync leaving a child with stdio", r);
    assert_eq!((text(&r.stdout).as_str(), r.exit_code), ("bg\n", 0), "{r:?}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert_eq!(d.exec_ok(&c, &["echo", "ok"]), "ok\n");
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}

/// Several MiB through ExecSync on stdout and stderr at once (kubelet probes and `crictl exec
/// -s`): every byte on the right stream.
#[test]
fn exec_sync_carries_megabytes_on_stdout_and_stderr_at_once() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("bigexec");
    let pod = d.run_pod(&pod_cfg);
    let c = d.start_container(&pod, &pod_cfg, &d.container_config(&pod_cfg, "c", &["sleep", "100000"]));
    d.wait_container_state(&c, ContainerState::ContainerRunning, T);
    let script = "(dd if=/dev/zero bs=65536 count=16 2>/dev/null | tr '\\0' e >&2) & \
                  dd if=/dev/zero bs=65536 count=64 2>/dev/null | tr '\\0' o; wait";
    let r = d.cri().exec_sync(&c, &["sh", "-c", script], 60);
    let r = d.ok("ExecSync with 4 MiB + 1 MiB", r);
    assert_eq!(r.exit_code, 0);
    assert_eq!((r.stdout.len(), r.stderr.len()), (4 << 20, 1 << 20));
    assert!(r.stdout.iter().all(|b| *b == b'o'), "foreign bytes on stdout");
    assert!(r.stderr.iter().all(|b| *b == b'e'), "foreign bytes on stderr");
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}

/// containerd TestLongContainerLog (lines of max-1, max and max+1 bytes) and critest "starting
/// container with log": output without a trailing newline is logged as a full line when the
/// container exits.
#[test]
fn log_lines_at_the_size_limit_and_without_a_trailing_newline() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("longlog");
    let pod = d.run_pod(&pod_cfg);
    const MAX: usize = 16384; // max_container_log_line_size
    let line = |n: usize, ch: char| format!("dd if=/dev/zero bs={n} count=1 2>/dev/null | tr '\\0' {ch}");
    let script = format!(
        "{}; echo; {}; echo; printf no-newline-err >&2; {}",
        line(MAX - 1, 'a'),
        line(MAX, 'b'),
        line(MAX + 1, 'c')
    );
    let c = d.start_container(
        &pod,
        &pod_cfg,
        &d.container_config(&pod_cfg, "long", &["sh", "-c", &script]),
    );
    let st = d.wait_container_state(&c, ContainerState::ContainerExited, T);
    assert_eq!(st.exit_code, 0, "{st:#?}");
    let mut lines = Vec::new();
    let _ = e2e::util::poll(Duration::from_secs(10), Duration::from_millis(100), || {
        lines = parse_cri_log(&read_log(&st.log_path));
        (lines.len() >= 5).then_some(())
    });
    let out: Vec<LogLine> = lines.iter().filter(|l| l.stream == "stdout").cloned().collect();
    let err: Vec<LogLine> = lines.iter().filter(|l| l.stream == "stderr").cloned().collect();
    // The tag of the last fragment, cut by EOF rather than a newline, is containerd's choice
    // (1.6 writes P with either shim; TestLongContainerLog of newer releases expects F).
    let last_tag = out.last().map(|l| l.tag.clone()).unwrap_or_default();
    let want = [
        log_line("stdout", "F", &"a".repeat(MAX - 1)),
        log_line("stdout", "F", &"b".repeat(MAX)),
        log_line("stdout", "P", &"c".repeat(MAX)),
        log_line("stdout", &last_tag, "c"),
    ];
    assert!(
        out == want,
        "stdout lines (stream, tag, length): {:?}",
        out.iter()
            .map(|l| (l.tag.clone(), l.text.len(), l.text.chars().next()))
            .collect::<Vec<_>>()
    );
    let err_tag = err.first().map(|l| l.tag.clone()).unwrap_or_default();
    assert_eq!(err, [log_line("stderr", &err_tag, "no-newline-err")]);
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}

/// critest "runtime should support reopening container log", while the container writes
/// hundreds of lines a second, three rotations in a row: after each ReopenContainerLog the old
/// file no longer grows and the new one continues where it stopped (nothing lost or doubled).
#[test]
fn reopen_container_log_while_writing_fast_loses_and_doubles_nothing() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("rotate");
    let pod = d.run_pod(&pod_cfg);
    let script = "i=0; while :; do echo line$i; i=$((i+1)); usleep 2000; done";
    let c = d.start_container(
        &pod,
        &pod_cfg,
        &d.container_config(&pod_cfg, "writer", &["sh", "-c", script]),
    );
    let st = d.wait_container_state(&c, ContainerState::ContainerRunning, T);
    let path = st.log_path.clone();
    let numbers = |p: &str| -> Vec<u64> {
        parse_cri_log(&read_log(p))
            .iter()
            .filter_map(|l| l.text.strip_prefix("line").and_then(|n| n.parse().ok()))
            .collect()
    };
    let grew = e2e::util::poll(T, Duration::from_millis(50), || {
        (numbers(&path).len() > 100).then_some(())
    });
    assert!(grew.is_some(), "the writer does not log: {}", read_log(&path));
    let mut all: Vec<u64> = Vec::new();
    for round in 1..=3 {
        let rotated = format!("{path}.{round}");
        std::fs::rename(&path, &rotated).expect("rotate log");
        d.ok("ReopenContainerLog", d.cri().reopen_container_log(&c));
        assert!(Path::new(&path).exists(), "round {round}: no new log file after reopen");
        let fresh = e2e::util::poll(T, Duration::from_millis(50), || {
            (!numbers(&path).is_empty()).then_some(())
        });
        assert!(fresh.is_some(), "round {round}: nothing logged to the reopened file");
        let old = numbers(&rotated).len();
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            numbers(&rotated).len(),
            old,
            "round {round}: the rotated file still grows"
        );
        all.extend(numbers(&rotated));
    }
    std::thread::sleep(Duration::from_millis(300));
    all.extend(numbers(&path));
    let first = all.first().copied().unwrap_or(0);
    let want: Vec<u64> = (first..first + all.len() as u64).collect();
    if all != want {
        let bad = all.iter().zip(&want).position(|(a, b)| a != b);
        panic!(
            "lines across 3 rotations are not consecutive: first mismatch at {bad:?}: {:?}",
            bad.map(|i| &all[i.saturating_sub(2)..(i + 3).min(all.len())])
        );
    }
    assert_eq!(first, 0, "the first line is missing");
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}

/// containerd TestShortLivedContainerPreservesExitCode and critest exit states: containers
/// whose init exits at once, one after another in one pod (a crash loop), report their exit
/// code and reason, stably, and the pod's shim serves them all.
#[test]
fn containers_whose_init_exits_at_once_report_exit_code_and_reason() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("shortlived");
    let pod = d.run_pod(&pod_cfg);
    let shim = d.wait_shims(1, T)[0].pid;
    let keeper = d.start_container(
        &pod,
        &pod_cfg,
        &d.container_config(&pod_cfg, "keeper", &["sleep", "100000"]),
    );
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["/bin/false"], 1, "Error"),
        (vec!["/bin/false"], 1, "Error"),
        (vec!["/bin/false"], 1, "Error"),
        (vec!["/bin/false"], 1, "Error"),
        (vec!["/bin/false"], 1, "Error"),
        (vec!["true"], 0, "Completed"),
        (vec!["sh", "-c", "exit 255"], 255, "Error"),
        (vec!["sh", "-c", "echo bye; exit 130"], 130, "Error"),
    ];
    for (i, (cmd, code, reason)) in cases.iter().enumerate() {
        let mut cfg = d.container_config(&pod_cfg, "crasher", cmd);
        cfg.metadata.as_mut().expect("metadata").attempt = i as u32;
        cfg.log_path = format!("crasher_{i}.log");
        let c = d.start_container(&pod, &pod_cfg, &cfg);
        let st = d.wait_container_state(&c, ContainerState::ContainerExited, T);
        assert_eq!((st.exit_code, st.reason.as_str()), (*code, *reason), "{cmd:?}: {st:#?}");
        // finished_at may precede started_at by a little for such containers, with the Go shim
        // too (containerd stamps started_at after Start returned): only check both are set.
        assert!(st.started_at > 0 && st.finished_at > 0, "{cmd:?}: {st:#?}");
        let again = d.container_status(&c);
        assert_eq!(
            (again.state, again.exit_code, again.finished_at),
            (ContainerState::ContainerExited as i32, *code, st.finished_at),
            "{cmd:?}: status changed between reads"
        );
        d.ok("RemoveContainer", d.cri().remove_container(&c));
    }
    assert_eq!(
        d.container_status(&keeper).state,
        ContainerState::ContainerRunning as i32
    );
    assert_eq!(d.wait_shims(1, T)[0].pid, shim, "one shim for the pod throughout");
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}

/// containerd TestSharedPidMultiProcessContainerStop (podpid and hostpid): StopContainer with
/// timeout 0 returns with the container exited, and the processes its init left behind in the
/// shared pid namespace are killed too.
#[test]
fn stop_with_timeout_zero_in_shared_pid_namespaces_kills_every_process() {
    let d = CriDaemon::start();
    for (mode, n) in [(NamespaceMode::Pod, 10011), (NamespaceMode::Node, 10021)] {
        let mut pod_cfg = d.pod_config(&format!("stop0-{}", n));
        with_pid_mode(&mut pod_cfg, mode);
        let pod = d.run_pod(&pod_cfg);
        let (bg, fg) = (n.to_string(), (n + 1).to_string());
        let script = format!("sleep {bg} & sleep {fg}");
        let c = d.start_container(
            &pod,
            &pod_cfg,
            &d.container_config(&pod_cfg, "multi", &["sh", "-c", &script]),
        );
        d.wait_container_state(&c, ContainerState::ContainerRunning, T);
        let both = e2e::util::poll(T, Duration::from_millis(50), || {
            (count_procs(&d, &["sleep", &bg]) == 1 && count_procs(&d, &["sleep", &fg]) == 1).then_some(())
        });
        assert!(both.is_some(), "{mode:?}: the sleeps never ran");
        let t0 = Instant::now();
        d.ok("StopContainer(0)", d.cri().stop_container(&c, 0));
        let took = t0.elapsed();
        let st = d.container_status(&c);
        assert_eq!(
            st.state,
            ContainerState::ContainerExited as i32,
            "{mode:?}: not exited when StopContainer returned: {st:#?}"
        );
        assert_eq!(st.exit_code, 137, "{mode:?}: {st:#?}");
        assert!(
            took < Duration::from_secs(10),
            "{mode:?}: StopContainer(0) took {took:?}"
        );
        let gone = e2e::util::poll(Duration::from_secs(10), Duration::from_millis(100), || {
            (count_procs(&d, &["sleep", &bg]) == 0).then_some(())
        });
        assert!(
            gone.is_some(),
            "{mode:?}: the background process outlived the container: {:#?}",
            d.processes()
        );
        d.remove_pod(&pod);
    }
    d.wait_shims(0, T);
    d.assert_clean();
}

/// containerd TestContainerStopCancellation: a StopContainer the client abandons before the
/// grace period ends leaves the container running; a later StopContainer stops it.
#[test]
fn abandoned_stop_leaves_the_container_running() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("stopcancel");
    let pod = d.run_pod(&pod_cfg);
    let c = d.start_container(
        &pod,
        &pod_cfg,
        &d.container_config(
            &pod_cfg,
            "stubborn",
            &["sh", "-c", "trap 'echo ignore TERM' TERM; sleep 1000"],
        ),
    );
    d.wait_container_state(&c, ContainerState::ContainerRunning, T);
    let raw = d.ok("connect", RawCri::connect(Path::new(d.address())));
    let r = raw.stop_container_within(&c, 3, Duration::from_secs(1));
    assert!(
        r.is_err(),
        "StopContainer with a 3s grace period answered within 1s: {r:?}"
    );
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        let st = d.container_status(&c);
        assert_eq!(
            st.state,
            ContainerState::ContainerRunning as i32,
            "the container stopped after an abandoned StopContainer ({:?} later): {st:#?}",
            t0.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    d.ok("StopContainer", d.cri().stop_container(&c, 1));
    let st = d.container_status(&c);
    assert_eq!(st.state, ContainerState::ContainerExited as i32, "{st:#?}");
    assert_eq!(st.exit_code, 137, "{st:#?}");
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}

/// A container killed while an ExecSync and a streaming exec run in it: both execs end, the
/// container exits 137, and the pod's shim serves the next container.
#[test]
fn execs_end_when_their_container_is_killed() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("killexec");
    let pod = d.run_pod(&pod_cfg);
    let shim = d.wait_shims(1, T)[0].pid;
    let c = d.start_container(
        &pod,
        &pod_cfg,
        &d.container_config(&pod_cfg, "victim", &["sleep", "100000"]),
    );
    d.wait_container_state(&c, ContainerState::ContainerRunning, T);
    let other = d.new_client();
    let c2 = c.clone();
    let sync = std::thread::spawn(move || {
        let t0 = Instant::now();
        let r = other.exec_sync(&c2, &["sh", "-c", "echo sync; sleep 1001"], 120);
        (r, t0.elapsed())
    });
    let mut s = exec_stream(&d, &c, &["sh", "-c", "echo stream; sleep 1002"], false, false);
    assert!(s.read_until(T, |s| s.stdout_str() == "stream\n"), "{s:?}");
    let running = e2e::util::poll(T, Duration::from_millis(50), || {
        (count_procs(&d, &["sleep", "1001"]) == 1).then_some(())
    });
    assert!(running.is_some(), "the ExecSync never ran");

    let t0 = Instant::now();
    d.ok("StopContainer(0)", d.cri().stop_container(&c, 0));
    let st = d.wait_container_state(&c, ContainerState::ContainerExited, T);
    assert_eq!(st.exit_code, 137, "{st:#?}");
    assert!(s.wait_closed(T), "the streaming exec outlived its container: {s:?}");
    let (r, _) = sync.join().expect("exec thread");
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "the execs ended {:?} after the kill",
        t0.elapsed()
    );
    if let Ok(r) = &r {
        assert_ne!(r.exit_code, 0, "ExecSync in a killed container succeeded: {r:?}");
    }
    eprintln!(
        "[cri_conformance] ExecSync in the killed container: {:?}; stream exit {:?}",
        r.as_ref().map(|r| (r.exit_code, text(&r.stdout))),
        s.status()
    );
    assert!(
        d.cri().exec_sync(&c, &["true"], 5).is_err(),
        "exec into an exited container"
    );
    let next = d.start_container(
        &pod,
        &pod_cfg,
        &d.container_config(&pod_cfg, "next", &["sleep", "100000"]),
    );
    d.wait_container_state(&next, ContainerState::ContainerRunning, T);
    assert_eq!(d.exec_ok(&next, &["echo", "ok"]), "ok\n");
    assert_eq!(d.wait_shims(1, T)[0].pid, shim);
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}

/// critest "listing container stats" (nil filter, id, labels) and containerd
/// TestContainerListStats*: every running container of a pod has CPU and memory figures from
/// its shim, also while an exited container is in the pod; PodSandboxStats and
/// ListPodSandboxStats carry the same containers' figures.
#[test]
fn list_container_stats_has_cpu_and_memory_of_every_container() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("stats");
    let pod = d.run_pod(&pod_cfg);
    let burn = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; exec sleep 100000";
    let mut ids = Vec::new();
    for i in 0..3 {
        let mut cfg = d.container_config(&pod_cfg, &format!("s{i}"), &["sh", "-c", burn]);
        cfg.labels.insert("stats".into(), format!("n{i}"));
        ids.push(d.start_container(&pod, &pod_cfg, &cfg));
    }
    let exited = d.start_container(&pod, &pod_cfg, &d.container_config(&pod_cfg, "done", &["true"]));
    d.wait_container_state(&exited, ContainerState::ContainerExited, T);
    for id in &ids {
        d.wait_container_state(id, ContainerState::ContainerRunning, T);
    }
    let raw = d.ok("connect", RawCri::connect(Path::new(d.address())));
    let complete = |s: &ContainerStats| {
        let cpu = s.cpu.as_ref();
        let mem = s.memory.as_ref();
        cpu.is_some_and(|c| c.timestamp > 0 && c.usage_core_nano_seconds.as_ref().is_some_and(|v| v.value > 0))
            && mem.is_some_and(|m| m.timestamp > 0 && m.working_set_bytes.as_ref().is_some_and(|v| v.value > 0))
    };
    let id_of = |s: &ContainerStats| s.attributes.as_ref().map(|a| a.id.clone()).unwrap_or_default();
    let mut last = Vec::new();
    let all = e2e::util::poll(T, Duration::from_millis(500), || {
        last = d.ok("ListContainerStats", raw.list_container_stats(None));
        ids.iter()
            .all(|id| last.iter().any(|s| id_of(s) == *id && complete(s)))
            .then_some(())
    });
    assert!(all.is_some(), "incomplete stats of running containers: {last:#?}");
    let by_pod = d.ok(
        "ListContainerStats(pod)",
        raw.list_container_stats(Some(ContainerStatsFilter {
            pod_sandbox_id: pod.clone(),
            ..Default::default()
        })),
    );
    for id in &ids {
        assert!(
            by_pod.iter().any(|s| id_of(s) == *id),
            "{id} missing with the pod filter"
        );
    }
    let one = d.ok(
        "ListContainerStats(id)",
        raw.list_container_stats(Some(ContainerStatsFilter {
            id: ids[1].clone(),
            ..Default::default()
        })),
    );
    assert_eq!(one.iter().map(id_of).collect::<Vec<_>>(), [ids[1].clone()]);
    let labelled = d.ok(
        "ListContainerStats(label)",
        raw.list_container_stats(Some(ContainerStatsFilter {
            label_selector: [("stats".to_string(), "n2".to_string())].into(),
            ..Default::default()
        })),
    );
    assert_eq!(labelled.iter().map(id_of).collect::<Vec<_>>(), [ids[2].clone()]);
    let single = d.ok("ContainerStats", d.cri().container_stats(&ids[0]));
    assert!(complete(&single), "{single:#?}");
    // PodSandboxStats (kubelet's PodAndContainerStatsFromCRI): the pod's own figures, and its
    // containers' from their shim.
    let pod_complete = |p: &PodSandboxStats| {
        let linux = p.linux.as_ref();
        linux.is_some_and(|l| {
            l.cpu
                .as_ref()
                .is_some_and(|c| c.usage_core_nano_seconds.as_ref().is_some_and(|v| v.value > 0))
                && l.memory
                    .as_ref()
                    .is_some_and(|m| m.working_set_bytes.as_ref().is_some_and(|v| v.value > 0))
                && ids
                    .iter()
                    .all(|id| l.containers.iter().any(|s| id_of(s) == *id && complete(s)))
        })
    };
    let stats = d.ok("PodSandboxStats", raw.pod_sandbox_stats(&pod));
    assert!(stats.as_ref().is_some_and(pod_complete), "{stats:#?}");
    let listed = d.ok(
        "ListPodSandboxStats(id)",
        raw.list_pod_sandbox_stats(Some(PodSandboxStatsFilter {
            id: pod.clone(),
            ..Default::default()
        })),
    );
    assert!(listed.len() == 1 && pod_complete(&listed[0]), "{listed:#?}");
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}

/// containerd TestContainerdRestart: across a containerd restart a pod's created, running and
/// exited containers keep their states, and the created one can still be started.
#[test]
fn containerd_restart_keeps_created_running_and_exited_containers() {
    let mut d = CriDaemon::start();
    let pod_cfg = d.pod_config("rstates");
    let pod = d.run_pod(&pod_cfg);
    let created = d.ok(
        "CreateContainer",
        d.cri().create_container(
            &pod,
            &d.container_config(&pod_cfg, "created", &["sleep", "100001"]),
            &pod_cfg,
        ),
    );
    let running = d.start_container(
        &pod,
        &pod_cfg,
        &d.container_config(&pod_cfg, "running", &["sleep", "100002"]),
    );
    let exited = d.start_container(
        &pod,
        &pod_cfg,
        &d.container_config(&pod_cfg, "exited", &["sleep", "100003"]),
    );
    d.wait_container_state(&running, ContainerState::ContainerRunning, T);
    d.wait_container_state(&exited, ContainerState::ContainerRunning, T);
    d.ok("StopContainer", d.cri().stop_container(&exited, 0));
    d.wait_container_state(&exited, ContainerState::ContainerExited, T);
    let shim = d.wait_shims(1, T)[0].pid;

    d.kill_containerd();
    std::thread::sleep(Duration::from_secs(1));
    d.restart_containerd();

    assert_eq!(d.wait_shims(1, T)[0].pid, shim, "the shim was replaced");
    let pods = d.ok("ListPodSandbox", d.cri().list_pod_sandbox());
    assert_eq!(
        pods.iter().map(|p| (p.id.clone(), p.state)).collect::<Vec<_>>(),
        [(pod.clone(), PodSandboxState::SandboxReady as i32)]
    );
    let states = |d: &CriDaemon| {
        [&created, &running, &exited]
            .map(|id| {
                let st = d.container_status(id);
                (st.state, st.exit_code)
            })
            .to_vec()
    };
    assert_eq!(
        states(&d),
        [
            (ContainerState::ContainerCreated as i32, 0),
            (ContainerState::ContainerRunning as i32, 0),
            (ContainerState::ContainerExited as i32, 137),
        ]
    );
    assert_eq!(d.exec_ok(&running, &["echo", "back"]), "back\n");
    d.ok("StartContainer after the restart", d.cri().start_container(&created));
    d.wait_container_state(&created, ContainerState::ContainerRunning, T);
    assert_eq!(d.exec_ok(&created, &["echo", "late"]), "late\n");
    d.ok("StopContainer", d.cri().stop_container(&created, 0));
    let st = d.wait_container_state(&created, ContainerState::ContainerExited, T);
    assert_eq!(st.exit_code, 137, "{st:#?}");
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}

/// containerd TestSandboxRemoveWithoutIPLeakage (and restart_test's NOTREADY sandbox): when
/// the pod's sandbox process dies the pod turns NOTREADY; it keeps its IP until it is stopped
/// and removed, and its shim goes away.
#[test]
fn sandbox_whose_pause_process_dies_turns_notready_and_is_removed_cleanly() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("pausedies");
    let pod = d.run_pod(&pod_cfg);
    let st = d.ok("PodSandboxStatus", d.cri().pod_sandbox_status(&pod, false));
    let ip = st.status.and_then(|s| s.network).map(|n| n.ip).unwrap_or_default();
    assert!(!ip.is_empty(), "no pod IP");
    let ip_reserved = || {
        fn walk(dir: &Path, name: &str) -> bool {
            std::fs::read_dir(dir).is_ok_and(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_str() == Some(name) || (e.path().is_dir() && walk(&e.path(), name)))
            })
        }
        walk(&d.net().ipam_dir, &ip)
    };
    assert!(
        ip_reserved(),
        "IP {ip} not in host-local's store {}",
        d.net().ipam_dir.display()
    );
    // A container with a pid namespace of its own outlives the sandbox process.
    let c = d.start_container(&pod, &pod_cfg, &d.container_config(&pod_cfg, "c", &["sleep", "100000"]));
    d.wait_container_state(&c, ContainerState::ContainerRunning, T);
    let pause = d.sandbox_pid(&pod);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pause), nix::sys::signal::Signal::SIGKILL).expect("kill pause");
    let notready = e2e::util::poll(T, Duration::from_millis(100), || {
        let s = d.cri().pod_sandbox_status(&pod, false).ok()?.status?;
        (s.state == PodSandboxState::SandboxNotready as i32).then_some(())
    });
    assert!(
        notready.is_some(),
        "the sandbox whose pause process died is still READY"
    );
    assert!(ip_reserved(), "IP {ip} released before the pod was removed");
    assert_eq!(d.wait_shims(1, T).len(), 1);
    d.ok("StopPodSandbox", d.cri().stop_pod_sandbox(&pod));
    assert_eq!(
        d.container_status(&c).state,
        ContainerState::ContainerExited as i32,
        "StopPodSandbox left the container running"
    );
    d.ok("RemovePodSandbox", d.cri().remove_pod_sandbox(&pod));
    assert!(!ip_reserved(), "IP {ip} still reserved after RemovePodSandbox");
    d.wait_shims(0, T);
    d.assert_clean();
}

/// containerd TestContainerEvents (evented PLEG, containerd 1.7+): container events for the
/// sandbox and a container, including the STOPPED event of a container that exits by itself
/// (the shim's exit event) with its exit code.
#[test]
fn container_events_include_the_exit_of_a_container() {
    let d = CriDaemon::start();
    let watch = match EventWatch::start(Path::new(d.address())) {
        Ok(w) => w,
        Err(e) if e.code == tonic::Code::Unimplemented => {
            eprintln!("[cri_conformance] GetContainerEvents is not implemented by this containerd: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let pod_cfg = d.pod_config("events");
    let pod = d.run_pod(&pod_cfg);
    let c = d.start_container(
        &pod,
        &pod_cfg,
        &d.container_config(&pod_cfg, "quitter", &["sh", "-c", "sleep 1; exit 3"]),
    );
    let st = d.wait_container_state(&c, ContainerState::ContainerExited, T);
    assert_eq!(st.exit_code, 3);
    let of = |id: &str| -> Vec<ContainerEventResponse> {
        watch.events().into_iter().filter(|e| e.container_id == id).collect()
    };
    let kinds = |id: &str| of(id).iter().map(|e| e.container_event_type).collect::<Vec<_>>();
    let stopped = ContainerEventType::ContainerStoppedEvent as i32;
    let seen = e2e::util::poll(Duration::from_secs(10), Duration::from_millis(100), || {
        kinds(&c).contains(&stopped).then_some(())
    });
    assert!(
        seen.is_some(),
        "no STOPPED event for the container: {:?}; error {:?}",
        kinds(&c),
        watch.error()
    );
    assert_eq!(
        kinds(&c),
        [
            ContainerEventType::ContainerCreatedEvent as i32,
            ContainerEventType::ContainerStartedEvent as i32,
            stopped
        ]
    );
    let stop_event = of(&c)
        .into_iter()
        .find(|e| e.container_event_type == stopped)
        .expect("stop event");
    let statuses: Vec<(i32, i32)> = stop_event
        .containers_statuses
        .iter()
        .map(|s| (s.state, s.exit_code))
        .collect();
    assert_eq!(
        statuses,
        [(ContainerState::ContainerExited as i32, 3)],
        "{stop_event:#?}"
    );
    let sandbox = kinds(&pod);
    assert!(
        sandbox.starts_with(&[
            ContainerEventType::ContainerCreatedEvent as i32,
            ContainerEventType::ContainerStartedEvent as i32
        ]),
        "sandbox events {sandbox:?}"
    );
    d.ok("StopPodSandbox", d.cri().stop_pod_sandbox(&pod));
    let seen = e2e::util::poll(Duration::from_secs(10), Duration::from_millis(100), || {
        kinds(&pod).contains(&stopped).then_some(())
    });
    assert!(seen.is_some(), "no STOPPED event for the sandbox: {:?}", kinds(&pod));
    d.ok("RemovePodSandbox", d.cri().remove_pod_sandbox(&pod));
    drop(watch);
    d.wait_shims(0, T);
    d.assert_clean();
}

/// containerd TestUpdateContainerResources_MemoryLimit / _StatusUpdated: a memory limit
/// updated before start and twice while running (up, then down) reaches the cgroup (with the
/// memory+swap limit where the host accounts swap) and ContainerStatus.
#[test]
fn memory_limit_updates_before_start_and_while_running_reach_the_cgroup() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("updmem");
    let pod = d.run_pod(&pod_cfg);
    const MIB: i64 = 1 << 20;
    let mut cfg = d.container_config(&pod_cfg, "c", &["sleep", "100000"]);
    cfg.linux.get_or_insert_with(Default::default).resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 200 * MIB,
        ..Default::default()
    });
    let c = d.ok("CreateContainer", d.cri().create_container(&pod, &cfg, &pod_cfg));
    let update = |limit: i64| {
        d.ok(
            "UpdateContainerResources",
            d.cri().update_container_resources(
                &c,
                LinuxContainerResources {
                    memory_limit_in_bytes: limit,
                    ..Default::default()
                },
            ),
        )
    };
    let status_limit = |d: &CriDaemon| {
        d.container_status(&c)
            .resources
            .and_then(|r| r.linux)
            .map(|l| l.memory_limit_in_bytes)
    };
    update(400 * MIB);
    d.ok("StartContainer", d.cri().start_container(&c));
    d.wait_container_state(&c, ContainerState::ContainerRunning, T);
    let cg = d.container_cgroup(&c);
    // containerd sets the OCI swap limit (memory plus swap) to the memory limit, no swap, where
    // it sees a swap controller: on v1 memory.memsw.limit_in_bytes, on v2 memory.swap.max in its
    // own cgroup, which is ours (it is our child; the root cgroup has none). v2's
    // memory.swap.max counts swap alone (runc writes swap minus memory): 0 then, else "max".
    let own_cgroup = procfs::cgroup_paths(std::process::id() as i32)
        .first()
        .cloned()
        .unwrap_or_default();
    let v2_swap_set = cgroup::file(&own_cgroup, Knob::SwapLimit).exists();
    let swap = |limit: i64| match (cgroup::is_v2(), v2_swap_set) {
        (false, _) => limit.to_string(),
        (true, true) => "0".to_string(),
        (true, false) => "max".to_string(),
    };
    let check = |d: &CriDaemon, limit: i64| {
        assert_eq!(
            cgroup::read(&cg, Knob::MemoryLimit),
            limit.to_string(),
            "{}",
            cgroup::file(&cg, Knob::MemoryLimit).display()
        );
        let swap_file = cgroup::file(&cg, Knob::SwapLimit);
        if swap_file.exists() {
            assert_eq!(
                cgroup::read(&cg, Knob::SwapLimit),
                swap(limit),
                "{}",
                swap_file.display()
            );
        }
        if let Some(l) = status_limit(d) {
            assert_eq!(l, limit, "ContainerStatus.resources");
        }
    };
    check(&d, 400 * MIB);
    update(800 * MIB);
    check(&d, 800 * MIB);
    update(100 * MIB);
    check(&d, 100 * MIB);
    assert_eq!(d.exec_ok(&c, &["echo", "alive"]), "alive\n");
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}

/// critest "Container OOM" and containerd TestCriContainerOOM: containers killed by the OOM
/// killer right at start (a 20 MiB buffer under a 15 MiB limit), in several pods at once, all
/// report exit code 137 and reason OOMKilled.
#[test]
fn containers_oom_killed_at_start_report_oomkilled() {
    let d = CriDaemon::start();
    let mut started = Vec::new();
    for i in 0..4 {
        let pod_cfg = d.pod_config(&format!("oom{i}"));
        let pod = d.run_pod(&pod_cfg);
        let mut cfg = d.container_config(&pod_cfg, "oom", &["dd", "if=/dev/zero", "of=/dev/null", "bs=20M"]);
        cfg.linux.get_or_insert_with(Default::default).resources = Some(LinuxContainerResources {
            memory_limit_in_bytes: 15 << 20,
            memory_swap_limit_in_bytes: 15 << 20,
            ..Default::default()
        });
        let c = d.start_container(&pod, &pod_cfg, &cfg);
        started.push((pod, c));
    }
    for (_, c) in &started {
        let mut last = None;
        let oom = e2e::util::poll(Duration::from_secs(60), Duration::from_millis(200), || {
            let st = d.container_status(c);
            let done = st.state == ContainerState::ContainerExited as i32;
            last = Some(st.clone());
            done.then_some(st)
        });
        let mut st = oom.unwrap_or_else(|| panic!("{c} did not exit: {last:#?}"));
        // critest waits for the reason as well: the OOM event may follow the exit.
        let _ = e2e::util::poll(Duration::from_secs(10), Duration::from_millis(200), || {
            st = d.container_status(c);
            (st.reason == "OOMKilled").then_some(())
        });
        assert_eq!((st.exit_code, st.reason.as_str()), (137, "OOMKilled"), "{st:#?}");
    }
    for (pod, _) in &started {
        d.remove_pod(pod);
    }
    d.wait_shims(0, T);
    d.assert_clean();
}
