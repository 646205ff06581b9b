//! ExecSync, and Exec/Attach through containerd's streaming server (WebSocket,
//! `v4.channel.k8s.io`), all served by the pod's shim.
#![cfg(feature = "cri")]

use e2e::cri::api::*;
use e2e::cri::{stream, CriDaemon, StreamSession};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn exec_sync_returns_stdout_stderr_exit_code_and_honours_its_timeout() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("execsync");
    let pod = d.run_pod(&pod_cfg);
    let c = d.start_container(&pod, &pod_cfg, &d.container_config(&pod_cfg, "c", &["sleep", "1000"]));
    d.wait_container_state(&c, ContainerState::ContainerRunning, T);

    let r = d.exec_sync(&c, &["sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(
        (text(&r.stdout).as_str(), text(&r.stderr).as_str(), r.exit_code),
        ("out\n", "err\n", 7)
    );
    let r = d.exec_sync(&c, &["true"]);
    assert_eq!((r.stdout.len(), r.stderr.len(), r.exit_code), (0, 0, 0));
    // 256 KiB of output arrives whole.
    let r = d.exec_sync(
        &c,
        &["sh", "-c", "dd if=/dev/zero bs=1024 count=256 2>/dev/null | tr '\\0' a"],
    );
    assert_eq!(r.exit_code, 0, "stderr {:?}", text(&r.stderr));
    assert_eq!(r.stdout.len(), 256 * 1024);
    assert!(r.stdout.iter().all(|b| *b == b'a'));
    // A command that does not exist: runc fails the exec; CRI reports an error or exit code.
    let r = d.cri().exec_sync(&c, &["/no/such/binary"], 10);
    match r {
        Ok(r) => assert_ne!(r.exit_code, 0, "{r:?}"),
        Err(e) => assert!(e.message.contains("no such file"), "{e}"),
    }

    // Timeout: CRI kills the exec and returns an error at once (kubelet: probe timeout).
    let t0 = Instant::now();
    let r = d.cri().exec_sync(&c, &["sleep", "37"], 1);
    let took = t0.elapsed();
    let e = r.expect_err("ExecSync of `sleep 37` with a 1s timeout must fail");
    assert_eq!(e.code, tonic::Code::DeadlineExceeded, "{e}");
    assert!(e.message.contains("timeout 1s exceeded"), "{e}");
    assert!(
        took < Duration::from_secs(10),
        "ExecSync with a 1s timeout took {took:?}"
    );
    let gone = e2e::util::poll(Duration::from_secs(10), Duration::from_millis(100), || {
        let left: Vec<_> = d
            .processes()
            .into_iter()
            .filter(|p| p.argv == ["sleep", "37"])
            .collect();
        left.is_empty().then_some(())
    });
    assert!(gone.is_some(), "the timed-out exec still exists: {:#?}", d.processes());
    // The container and its shim are fine afterwards.
    assert_eq!(d.exec_ok(&c, &["echo", "again"]), "again\n");
    assert_eq!(d.container_status(&c).state, ContainerState::ContainerRunning as i32);
    d.wait_shims(1, T);
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}

#[test]
fn streaming_exec_and_attach_over_websocket() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("stream");
    let pod = d.run_pod(&pod_cfg);
    let mut cfg = d.container_config(
        &pod_cfg,
        "echoer",
        &[
            "sh",
            "-c",
            "echo ready; while read l; do echo got:$l; echo err:$l >&2; done",
        ],
    );
    cfg.stdin = true;
    let c = d.start_container(&pod, &pod_cfg, &cfg);
    d.wait_container_state(&c, ContainerState::ContainerRunning, T);

    // Exec with stdin, stdout, stderr and a non-zero exit.
    let url = d.ok(
        "Exec",
        d.cri().exec(ExecRequest {
            container_id: c.clone(),
            cmd: ["sh", "-c", "read l; echo got:$l; echo e >&2; exit 5"]
                .map(String::from)
                .to_vec(),
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        }),
    );
    let mut s = StreamSession::open(&url).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.protocol, stream::PROTOCOL);
    s.send_stdin(b"hello\n").expect("send stdin");
    assert!(s.wait_closed(T), "exec stream not closed: {s:?}");
    assert_eq!(s.stdout_str(), "got:hello\n", "{s:?}");
    assert_eq!(s.stderr_str(), "e\n", "{s:?}");
    assert_eq!(s.exit_code(), Some(5), "{s:?}");

    // Exec with a terminal: stdout is the tty, a resize reaches it.
    let url = d.ok(
        "Exec(tty)",
        d.cri().exec(ExecRequest {
            container_id: c.clone(),
            cmd: [
                "sh",
                "-c",
                "tty; while read l; do if [ \"$l\" = q ]; then exit 0; fi; stty size; done",
            ]
            .map(String::from)
            .to_vec(),
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        }),
    );
    let mut s = StreamSession::open(&url).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        s.read_until(T, |s| s.stdout_str().contains("/dev/pts/")),
        "no tty name: {s:?}"
    );
    // The resize travels WebSocket -> CRI -> shim apart from stdin: ask until it shows.
    s.send_resize(101, 33).expect("resize");
    let mut resized = false;
    for _ in 0..50 {
        s.send_stdin(b"x\r").expect("send stdin");
        if s.read_until(Duration::from_millis(200), |s| s.stdout_str().contains("33 101")) {
            resized = true;
            break;
        }
    }
    assert!(resized, "stty size never saw the resize: {s:?}");
    s.send_stdin(b"q\r").expect("send stdin");
    assert!(s.wait_closed(T), "tty exec stream not closed: {s:?}");
    assert_eq!(s.exit_code(), Some(0), "{s:?}");

    // Attach to the container's stdio; detach; attach again.
    for round in ["one", "two"] {
        let url = d.ok(
            "Attach",
            d.cri().attach(AttachRequest {
                container_id: c.clone(),
                stdin: true,
                tty: false,
                stdout: true,
                stderr: true,
            }),
        );
        let mut s = StreamSession::open(&url).unwrap_or_else(|e| panic!("{e}"));
        s.send_stdin(format!("{round}\n").as_bytes()).expect("send stdin");
        let want_out = format!("got:{round}\n");
        let want_err = format!("err:{round}\n");
        assert!(
            s.read_until(T, |s| s.stdout_str().contains(&want_out)
                && s.stderr_str().contains(&want_err)),
            "attach round {round}: {s:?}"
        );
        s.close();
    }
    let st = d.container_status(&c);
    assert_eq!(st.state, ContainerState::ContainerRunning as i32, "{st:#?}");

    // stdin_once (`kubectl run -i`): the first attach that ends closes the container's stdin.
    let mut once_cfg = d.container_config(&pod_cfg, "once", &["sh", "-c", "cat; echo eof-seen"]);
    once_cfg.stdin = true;
    once_cfg.stdin_once = true;
    let once = d.start_container(&pod, &pod_cfg, &once_cfg);
    d.wait_container_state(&once, ContainerState::ContainerRunning, T);
    let url = d.ok(
        "Attach(stdin_once)",
        d.cri().attach(AttachRequest {
            container_id: once.clone(),
            stdin: true,
            tty: false,
            stdout: true,
            stderr: true,
        }),
    );
    let mut s = StreamSession::open(&url).unwrap_or_else(|e| panic!("{e}"));
    s.send_stdin(b"abc\n").expect("send stdin");
    assert!(
        s.read_until(T, |s| s.stdout_str().contains("abc")),
        "cat did not echo: {s:?}"
    );
    s.close();
    let ost = d.wait_container_state(&once, ContainerState::ContainerExited, T);
    assert_eq!(ost.exit_code, 0, "{ost:#?}");
    let olog = std::fs::read_to_string(&ost.log_path).unwrap_or_default();
    assert!(olog.contains(" stdout F eof-seen"), "{olog}");
    let log = std::fs::read_to_string(&st.log_path).unwrap_or_default();
    for want in [" stdout F ready", " stdout F got:one", " stderr F err:two"] {
        assert!(log.contains(want), "log {} lacks {want:?}: {log}", st.log_path);
    }
    d.wait_shims(1, T);
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}

/// kubelet runs probes of many containers at once: concurrent ExecSyncs through one shim.
#[test]
fn concurrent_exec_syncs_through_one_shim() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("probes");
    let pod = d.run_pod(&pod_cfg);
    let ids: Vec<String> = ["p0", "p1"]
        .iter()
        .map(|n| d.start_container(&pod, &pod_cfg, &d.container_config(&pod_cfg, n, &["sleep", "1000"])))
        .collect();
    for id in &ids {
        d.wait_container_state(id, ContainerState::ContainerRunning, T);
    }
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let client = d.new_client();
            let id = ids[w % ids.len()].clone();
            std::thread::spawn(move || {
                for i in 0..5 {
                    let want = format!("w{w}-{i}");
                    let r = client
                        .exec_sync(
                            &id,
                            &["sh", "-c", "echo $0; echo $0 >&2; exit $1", &want, &(i + 1).to_string()],
                            20,
                        )
                        .unwrap_or_else(|e| panic!("worker {w} exec {i}: {e}"));
                    assert_eq!(
                        (text(&r.stdout), text(&r.stderr), r.exit_code),
                        (format!("{want}\n"), format!("{want}\n"), i + 1),
                        "worker {w} exec {i}"
                    );
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("exec worker");
    }
    d.wait_shims(1, T);
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}

/// containerd's TestIssue10589 on our shim: a burst of ExecSyncs into a container while its
/// init is SIGKILLed. Each round the container still turns EXITED with 137 within 30 s, every
/// ExecSync answers (output or error) within its own 5 s timeout plus containerd's overhead,
/// no exec'd process is left behind, and the pod's one shim goes when the pod does.
#[test]
fn init_killed_during_a_burst_of_exec_syncs_still_exits() {
    const WORKERS: usize = 12;
    const EXECS: usize = 10;
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("execburst");
    let pod = d.run_pod(&pod_cfg);
    for round in 0..3 {
        let c = d.start_container(
            &pod,
            &pod_cfg,
            &d.container_config(&pod_cfg, &format!("c{round}"), &["sleep", "1000"]),
        );
        d.wait_container_state(&c, ContainerState::ContainerRunning, T);
        let pid = d.container_pid(&c);
        let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let (client, c, started) = (d.new_client(), c.clone(), started.clone());
                std::thread::spawn(move || {
                    let mut answered = 0;
                    for _ in 0..EXECS {
                        started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let t0 = Instant::now();
                        let r = client.exec_sync(&c, &["date"], 5);
                        let took = t0.elapsed();
                        assert!(
                            took < Duration::from_secs(20),
                            "an ExecSync with a 5s timeout took {took:?}: {r:?}"
                        );
                        answered += usize::from(r.is_ok_and(|r| r.exit_code == 0));
                    }
                    answered
                })
            })
            .collect();
        // Kill the init once the burst is under way (a different moment each round).
        let after = WORKERS * (1 + round * 3);
        assert!(
            e2e::util::poll_until(T, || started.load(std::sync::atomic::Ordering::SeqCst) >= after),
            "the ExecSync burst did not start"
        );
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)
            .expect("kill the container's init");
        let ok: usize = workers.into_iter().map(|w| w.join().expect("exec worker")).sum();
        let st = d.wait_container_state(&c, ContainerState::ContainerExited, T);
        assert_eq!(st.exit_code, 137, "round {round}: {st:?}");
        eprintln!(
            "round {round}: {ok} of {} ExecSyncs ran before the init died",
            WORKERS * EXECS
        );
        d.ok("RemoveContainer", d.cri().remove_container(&c));
        let left: Vec<_> = d.processes().into_iter().filter(|p| p.argv == ["date"]).collect();
        assert!(left.is_empty(), "exec'd processes left: {left:#?}");
    }
    d.wait_shims(1, T);
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}

/// Megabytes through a streaming exec, both ways, unchanged.
#[test]
fn streaming_exec_carries_megabytes_both_ways() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("bulk");
    let pod = d.run_pod(&pod_cfg);
    let c = d.start_container(&pod, &pod_cfg, &d.container_config(&pod_cfg, "c", &["sleep", "1000"]));
    d.wait_container_state(&c, ContainerState::ContainerRunning, T);
    let exec = |cmd: &[&str], stdin: bool| {
        let url = d.ok(
            "Exec",
            d.cri().exec(ExecRequest {
                container_id: c.clone(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                stdin,
                stdout: true,
                stderr: true,
                tty: false,
            }),
        );
        StreamSession::open(&url).unwrap_or_else(|e| panic!("{e}"))
    };

    // 2 MiB of pseudo-random bytes in: the container hashes exactly what it got.
    const IN: usize = 2 << 20;
    let mut data = Vec::with_capacity(IN);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < IN {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    let mut s = exec(&["sh", "-c", &format!("head -c {IN} | sha256sum")], true);
    for chunk in data.chunks(32 * 1024) {
        s.send_stdin(chunk).expect("send stdin");
    }
    assert!(s.wait_closed(Duration::from_secs(60)), "stdin exec not closed: {s:?}");
    let want = e2e::util::sha256_hex(&data);
    assert_eq!(s.stdout_str().split_whitespace().next(), Some(want.as_str()), "{s:?}");
    assert_eq!(s.exit_code(), Some(0), "{s:?}");

    // 8 MiB out.
    let mut s = exec(
        &[
            "sh",
            "-c",
            "dd if=/dev/zero bs=65536 count=128 2>/dev/null; echo end >&2",
        ],
        false,
    );
    assert!(s.wait_closed(Duration::from_secs(60)), "stdout exec not closed");
    assert_eq!(s.stdout.len(), 8 << 20);
    assert!(s.stdout.iter().all(|b| *b == 0));
    assert_eq!(s.stderr_str(), "end\n");
    assert_eq!(s.exit_code(), Some(0));
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}
