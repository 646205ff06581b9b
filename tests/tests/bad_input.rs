//! Bad input gets a clear error, leaves nothing behind, and the shim keeps serving its other
//! containers.

use e2e::requests::Calls;
use e2e::shim::{make_bundle, make_empty_bundle, rpc_ctx, run_start, HandShim, LogFifo};
use e2e::{procfs, Daemon, DaemonOptions};
use protobuf::MessageField;
use protos::any::pack_bytes;
use protos::task::{
    CreateTaskRequest, DeleteRequest, KillRequest, ShutdownRequest, StartRequest, StateRequest, WaitRequest,
};
use protos::task_ttrpc::TaskClient;
use protos::types::Status;
use std::time::Duration;

const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";
/// Not a protobuf message: field 31 with the invalid wire type 7.
const GARBAGE: &[u8] = b"\xff\xff\xff\xff garbage, not protobuf";

fn create_req(id: &str, bundle: &std::path::Path, options: Option<protos::Any>) -> CreateTaskRequest {
    let mut r = CreateTaskRequest::new();
    r.id = id.to_string();
    r.bundle = bundle.to_string_lossy().into_owned();
    r.options = MessageField::from_option(options);
    r
}

fn state(c: &TaskClient, ns: &str, id: &str) -> protos::task::StateResponse {
    let mut r = StateRequest::new();
    r.id = id.to_string();
    c.state(rpc_ctx(ns), &r)
        .unwrap_or_else(|e| panic!("State({id}): {e:?}"))
}

/// Creates and starts `id` (a long sleep) on the shim; returns its pid.
fn create_and_start_sleeper(d: &Daemon, c: &TaskClient, id: &str, bundle: &std::path::Path) -> u32 {
    let created = c
        .create(
            rpc_ctx(d.ns()),
            &create_req(id, bundle, Some(pack_bytes(RUNC_OPTIONS, Vec::new()))),
        )
        .unwrap_or_else(|e| panic!("valid Create({id}) failed: {e:?}\n{}", d.log_tail(20)));
    assert!(created.pid > 0, "Create({id}) returned no pid");
    let mut s = StartRequest::new();
    s.id = id.to_string();
    let started = c
        .start(rpc_ctx(d.ns()), &s)
        .unwrap_or_else(|e| panic!("Start({id}): {e:?}"));
    assert_eq!(started.pid, created.pid, "Start pid must equal Create pid");
    started.pid
}

/// SIGKILLs, waits for, deletes `id`; checks the statuses are 137.
fn kill_wait_delete(d: &Daemon, c: &TaskClient, id: &str) {
    let mut k = KillRequest::new();
    k.id = id.to_string();
    k.signal = 9;
    c.kill(rpc_ctx(d.ns()), &k)
        .unwrap_or_else(|e| panic!("Kill({id}): {e:?}"));
    let mut w = WaitRequest::new();
    w.id = id.to_string();
    let waited = c
        .wait(rpc_ctx(d.ns()), &w)
        .unwrap_or_else(|e| panic!("Wait({id}): {e:?}"));
    assert_eq!(waited.exit_status, 137, "Wait({id}) after SIGKILL");
    let mut del = DeleteRequest::new();
    del.id = id.to_string();
    let deleted = c
        .delete(rpc_ctx(d.ns()), &del)
        .unwrap_or_else(|e| panic!("Delete({id}): {e:?}"));
    assert_eq!(deleted.exit_status, 137, "Delete({id}) after SIGKILL");
}

/// Asks the shim to exit (no containers left) and waits until its process is gone.
fn shutdown(d: &Daemon, c: &TaskClient, id: &str) {
    let shims: Vec<i32> = d.shim_processes(id).iter().map(|p| p.pid).collect();
    let mut r = ShutdownRequest::new();
    r.id = id.to_string();
    // The shim may exit before it answers: the reply is not checked.
    let _ = c.shutdown(rpc_ctx(d.ns()), &r);
    for pid in shims {
        e2e::util::poll(Duration::from_secs(10), Duration::from_millis(50), || {
            e2e::reaper::reap_orphans();
            procfs::stat(pid).is_none().then_some(())
        })
        .unwrap_or_else(|| panic!("shim {pid} did not exit after Shutdown"));
    }
}

/// The error's text unless it mentions `must_mention` (case-insensitive).
fn unclear_error(err: &ttrpc::Error, must_mention: &str) -> Option<String> {
    let text = match err {
        ttrpc::Error::RpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        e => format!("{e:?}"),
    };
    (!text.to_lowercase().contains(&must_mention.to_lowercase())).then_some(text)
}

#[test]
fn start_with_garbage_or_unknown_options_on_stdin_fails_clearly_and_leaves_nothing() {
    let d = Daemon::start();
    let unknown = protobuf::Message::write_to_bytes(&pack_bytes("example.com/no.such.Options", b"\x0a\x01x".to_vec()))
        .expect("encode Any");
    let mut messages = Vec::new();
    for (name, stdin) in [("garbage", GARBAGE.to_vec()), ("unknown", unknown)] {
        let id = d.id(&format!("start-{name}"));
        let bundle = make_bundle(&d, &id, &["/bin/true"]);
        let log = LogFifo::create(&bundle);
        let out = run_start(&d, &id, &bundle, &stdin);
        assert!(
            out.code().is_some_and(|c| c != 0),
            "start with {name} options must fail: {out}\n{}",
            log.text()
        );
        assert!(
            !out.pipes_held_open,
            "start's output pipe stayed open (a daemon inherited it): {out}"
        );
        let msg = format!("{}{}", out.stdout_str(), out.stderr_str());
        assert!(
            !msg.contains("unix://"),
            "a failed start must not print an address: {out}"
        );
        assert!(!msg.trim().is_empty(), "a failed start must say why: {out}");
        assert!(
            !msg.contains("panic") && !msg.contains("goroutine"),
            "start crashed: {out}"
        );
        d.assert_clean();
        messages.push((name, out));
    }
    // Checked last, so that everything above is known to hold when only this fails.
    let unclear: Vec<String> = messages
        .iter()
        .filter(|(_, out)| {
            !format!("{}{}", out.stdout_str(), out.stderr_str())
                .to_lowercase()
                .contains("option")
        })
        .map(|(name, out)| format!("{name} stdin: {out}"))
        .collect();
    assert!(
        unclear.is_empty(),
        "the error must say the options are bad:\n{}",
        unclear.join("\n")
    );
}

#[test]
fn create_with_garbage_or_unknown_options_fails_and_the_shim_keeps_serving() {
    let d = Daemon::start();
    let first = d.id("serving");
    let first_bundle = make_bundle(&d, &first, &["/bin/sleep", "1000"]);
    let shim = HandShim::start(&d, &first, &first_bundle, b"");
    let c = shim.client();
    let pid = create_and_start_sleeper(&d, &c, &first, &first_bundle);

    let bad = d.id("badopts");
    let bad_bundle = make_bundle(&d, &bad, &["/bin/true"]);
    let mut errors = Vec::new();
    for (name, any) in [
        ("garbage", pack_bytes(RUNC_OPTIONS, GARBAGE.to_vec())),
        (
            "unknown",
            pack_bytes("example.com/no.such.Options", b"\x0a\x01x".to_vec()),
        ),
    ] {
        let err = c
            .create(rpc_ctx(d.ns()), &create_req(&bad, &bad_bundle, Some(any)))
            .expect_err(&format!("Create with {name} options must fail"));
        errors.push((name, err));
        let st = state(&c, d.ns(), &first);
        assert_eq!(
            (st.pid, st.status.enum_value()),
            (pid, Ok(Status::RUNNING)),
            "the other container after {name}"
        );
    }
    assert!(
        !d.runc_root().join(&bad).exists(),
        "runc state left for the failed Create"
    );

    // A valid Create for another container on the same shim still works.
    let next = d.id("next");
    let next_bundle = make_bundle(&d, &next, &["/bin/sleep", "1000"]);
    create_and_start_sleeper(&d, &c, &next, &next_bundle);
    kill_wait_delete(&d, &c, &next);
    kill_wait_delete(&d, &c, &first);
    shutdown(&d, &c, &first);
    d.assert_clean();
    // Checked last, so that everything above is known to hold when only this fails.
    let unclear: Vec<String> = errors
        .iter()
        .filter_map(|(name, err)| {
            let must = if *name == "garbage" {
                "option"
            } else {
                "no.such.Options"
            };
            unclear_error(err, must).map(|e| format!("Create with {name} options: should mention {must:?}: {e}"))
        })
        .collect();
    assert!(unclear.is_empty(), "unclear errors:\n{}", unclear.join("\n"));
}

#[test]
fn create_with_a_bundle_without_config_json_fails_naming_it_and_the_shim_keeps_serving() {
    let d = Daemon::start();
    let first = d.id("serving");
    let first_bundle = make_bundle(&d, &first, &["/bin/sleep", "1000"]);
    let shim = HandShim::start(&d, &first, &first_bundle, b"");
    let c = shim.client();
    let pid = create_and_start_sleeper(&d, &c, &first, &first_bundle);

    let bad = d.id("nospec");
    let bad_bundle = make_empty_bundle(&d, &bad);
    let err = c
        .create(
            rpc_ctx(d.ns()),
            &create_req(&bad, &bad_bundle, Some(pack_bytes(RUNC_OPTIONS, Vec::new()))),
        )
        .expect_err("Create with a bundle without config.json must fail");
    if let Some(e) = unclear_error(&err, "config.json") {
        panic!("Create without config.json: the error should mention config.json: {e}");
    }
    let st = state(&c, d.ns(), &first);
    assert_eq!(
        (st.pid, st.status.enum_value()),
        (pid, Ok(Status::RUNNING)),
        "the other container"
    );
    assert!(
        !d.runc_root().join(&bad).exists(),
        "runc state left for the failed Create"
    );

    let next = d.id("next");
    let next_bundle = make_bundle(&d, &next, &["/bin/sleep", "1000"]);
    create_and_start_sleeper(&d, &c, &next, &next_bundle);
    kill_wait_delete(&d, &c, &next);
    kill_wait_delete(&d, &c, &first);
    shutdown(&d, &c, &first);
    d.assert_clean();
}

#[test]
fn missing_runc_binary_is_named_in_ctr_error_and_nothing_is_left() {
    let d = Daemon::start_with(DaemonOptions { shim_in_path: true });
    let rootfs = d.rootfs().to_str().expect("utf-8");
    // A path that does not exist, and a bare name found nowhere on $PATH. containerd's
    // own client tests expect the latter quoted, as Go's exec error words it.
    for (n, missing, expect) in [
        (1, "/nonexistent/e2e-runc", "/nonexistent/e2e-runc".to_string()),
        (2, "e2e-no-runc", "\"e2e-no-runc\"".to_string()),
    ] {
        let id = d.id(&format!("norunc{n}"));
        let out = d
            .ctr(&[
                "run",
                "--rm",
                "--runtime",
                d.runtime(),
                "--runc-binary",
                missing,
                "--rootfs",
                rootfs,
                &id,
                "/bin/true",
            ])
            .run();
        assert!(out.code().is_some_and(|c| c != 0), "ctr run must fail: {out}");
        assert!(
            out.stderr_str().contains(&expect),
            "ctr's error must name {expect}: {out}"
        );
    }
    d.assert_clean();
}

#[test]
fn command_missing_in_rootfs_fails_with_runcs_message() {
    let d = Daemon::start();
    let id = d.id("nocmd");
    let out = d.run_rootfs(&["--rm"], &id, &["/bin/e2e-no-such-command"]).run();
    assert!(out.code().is_some_and(|c| c != 0), "ctr run must fail: {out}");
    let err = out.stderr_str();
    assert!(
        err.contains("exec: \"/bin/e2e-no-such-command\"") && err.contains("no such file or directory"),
        "ctr must show runc's message about the missing executable: {out}"
    );
    d.assert_clean();
}

/// A raw ttrpc frame: length, stream id, type (1 = request), flags.
fn frame(stream: u32, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(10 + body.len());
    f.extend_from_slice(&(body.len() as u32).to_be_bytes());
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(&[1, 0]);
    f.extend_from_slice(body);
    f
}

/// Reads one response frame: (stream id, decoded Response).
fn read_response(s: &mut std::os::unix::net::UnixStream) -> (u32, ttrpc::Response) {
    use protobuf::Message;
    use std::io::Read;
    let mut head = [0u8; 10];
    s.read_exact(&mut head).expect("response header");
    let len = u32::from_be_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    let stream = u32::from_be_bytes(head[4..8].try_into().expect("4 bytes"));
    assert_eq!(head[8], 2, "frame type of a response");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("response body");
    (
        stream,
        ttrpc::Response::parse_from_bytes(&body).expect("decode Response"),
    )
}

/// Peak resident memory of a process (`VmHWM`), in KiB.
fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// A frame that declares 4 GiB and streams 64 MiB, and a client that sends 100 000 requests
/// without reading a reply: the shim answers RESOURCE_EXHAUSTED to the first and every one of
/// the others once they are read, its peak memory stays small (it skips what it cannot accept
/// and stops reading a client whose replies pile up), and it serves its container throughout.
#[test]
fn oversized_or_unread_requests_neither_grow_the_shims_memory_nor_stop_it_serving() {
    use protobuf::Message;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    let d = Daemon::start();
    if e2e::launch::skip_for_go_shims(
        d.shim_bin(),
        "the Go shims neither answer oversized frames at once nor stop reading",
    ) {
        return;
    }
    let id = d.id("flood");
    d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let shims = d.shim_processes(&id);
    assert_eq!(shims.len(), 1, "{shims:?}");
    let shim_pid = shims[0].pid;
    let client = d.shim_client(&id);
    let c = Calls {
        client: &client,
        ns: d.ns(),
    };
    let state = |what: &str| {
        assert_eq!(
            c.state(&id, "").status.enum_value(),
            Ok(Status::RUNNING),
            "State {what}"
        );
    };
    state("before");
    let before = peak_rss_kib(shim_pid);

    // 1. The oversized frame, its body streamed as fast as the shim takes it.
    let mut big = UnixStream::connect(d.shim_socket(&id)).expect("connect");
    let mut head = Vec::new();
    head.extend_from_slice(&0xffff_0000u32.to_be_bytes());
    head.extend_from_slice(&1u32.to_be_bytes());
    head.extend_from_slice(&[1, 0]);
    big.write_all(&head).expect("write header");
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..64 {
        big.write_all(&chunk).expect("stream the oversized body");
    }
    big.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let (stream, resp) = read_response(&mut big);
    assert_eq!(stream, 1);
    let status = resp.status.as_ref().expect("status");
    assert_eq!(status.code(), ttrpc::Code::RESOURCE_EXHAUSTED, "{status:?}");
    drop(big);
    state("after the oversized frame");

    // 2. 100 000 State requests sent without reading a reply.
    const N: u32 = 100_000;
    let mut req = ttrpc::Request::new();
    req.service = "containerd.task.v2.Task".into();
    req.method = "State".into();
    let mut sr = StateRequest::new();
    sr.id = "no-such-task".into();
    req.payload = sr.write_to_bytes().expect("encode");
    let body = req.write_to_bytes().expect("encode");
    let mut all = Vec::new();
    for i in 0..N {
        all.extend_from_slice(&frame(2 * i + 1, &body));
    }
    let flood = UnixStream::connect(d.shim_socket(&id)).expect("connect");
    let mut writer = flood.try_clone().expect("clone");
    let sent = std::thread::spawn(move || writer.write_all(&all).is_ok());
    // Let the shim fill its reply backlog, then see it still serve others with little memory.
    std::thread::sleep(Duration::from_secs(2));
    state("while a client does not read its replies");
    let mut reader = flood;
    reader.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    // ttrpc does not order replies; each stream id must be answered exactly once.
    let mut answered = vec![false; N as usize];
    for i in 0..N {
        let (stream, resp) = read_response(&mut reader);
        let slot = (stream / 2) as usize;
        assert!(
            stream % 2 == 1 && slot < answered.len(),
            "reply {i} to unknown stream {stream}"
        );
        assert!(!answered[slot], "stream {stream} answered twice");
        answered[slot] = true;
        let status = resp.status.as_ref().expect("status");
        assert_eq!(status.code(), ttrpc::Code::NOT_FOUND, "reply {i}: {status:?}");
    }
    assert!(sent.join().expect("writer"), "the shim stopped reading the flood");
    state("after");

    let peak = peak_rss_kib(shim_pid);
    eprintln!("shim peak RSS {before} KiB before, {peak} KiB after");
    assert!(
        peak < before + 4 * 1024,
        "the shim's peak memory grew from {before} KiB to {peak} KiB"
    );
    drop(client);
    d.remove_container(&id);
    d.assert_clean();
}
