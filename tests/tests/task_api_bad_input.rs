//! Task API, bad input: each request gets the error (and status code) the Go shim gives, and
//! the shim keeps serving afterwards.

use e2e::requests::{
    close_stdin_req, delete_req, describe_err, exec_req, expect_code, kill_req, pause_req, resume_req, start_req,
    state_req, update_req, wait_req, Calls, RUNC_OPTIONS_TYPE_URL,
};
use e2e::shim::{make_bundle, rpc_ctx, HandShim};
use e2e::Daemon;
use protobuf::MessageField;
use protos::any::pack_bytes;
use protos::task::{CheckpointTaskRequest, CreateTaskRequest, ResizePtyRequest, ShutdownRequest};
use protos::task_ttrpc::TaskClient;
use protos::types::Status;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// The init of `id` still answers State as RUNNING with `pid`, and an exec still works.
fn still_serving(d: &Daemon, client: &TaskClient, id: &str, pid: u32, after: &str) {
    let c = Calls { client, ns: d.ns() };
    let st = c.state(id, "");
    assert_eq!(
        (st.status.enum_value(), st.pid),
        (Ok(Status::RUNNING), pid),
        "after {after}: the container must still run"
    );
    let x = format!("probe-{}", after.len());
    c.exec(&exec_req(d, id, &x, &["/bin/true"]));
    c.start(id, &x);
    assert_eq!(c.wait(id, &x).exit_status, 0, "after {after}: an exec must still work");
    c.delete(id, &x);
}

#[test]
fn exec_with_a_duplicate_exec_id_is_already_exists_over_ttrpc_and_in_ctr() {
    let d = Daemon::start();
    let id = d.id("dupexec");
    let task = d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let client = d.shim_client(&id);
    let c = Calls {
        client: &client,
        ns: d.ns(),
    };
    c.exec(&exec_req(&d, &id, "dup", &["/bin/sleep", "1000"]));
    expect_code(
        client.exec(rpc_ctx(d.ns()), &exec_req(&d, &id, "dup", &["/bin/true"])),
        ttrpc::Code::ALREADY_EXISTS,
        "Exec with the id of a created exec",
    );
    c.start(&id, "dup");
    expect_code(
        client.exec(rpc_ctx(d.ns()), &exec_req(&d, &id, "dup", &["/bin/true"])),
        ttrpc::Code::ALREADY_EXISTS,
        "Exec with the id of a running exec",
    );
    let out = d.ctr(&["task", "exec", "--exec-id", "dup", &id, "/bin/true"]).run();
    assert!(
        out.code() != Some(0) && out.stderr_str().contains("already exists"),
        "ctr task exec with a duplicate exec id must fail with `already exists`: {out}"
    );
    assert_eq!(
        c.state(&id, "dup").status.enum_value(),
        Ok(Status::RUNNING),
        "the first exec is untouched"
    );
    still_serving(&d, &client, &id, task.pid, "duplicate exec ids");
    c.kill(&id, "dup", 9, false);
    c.wait(&id, "dup");
    c.delete(&id, "dup");
    drop(client);
    d.remove_container(&id);
    d.assert_clean();
}

/// An exec id names files in the bundle (`<exec id>.pid`): one that containerd would refuse
/// (a path, `..`, too long) is INVALID_ARGUMENT from the shim as well, nothing is written for
/// it, and a well-formed exec still runs.
#[test]
fn exec_ids_that_containerd_would_refuse_are_invalid_argument_and_write_nothing() {
    let d = Daemon::start();
    if e2e::launch::skip_for_go_shims(d.shim_bin(), "the Go shims leave exec id checks to containerd") {
        return;
    }
    let id = d.id("badexecid");
    let task = d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let client = d.shim_client(&id);
    let c = Calls {
        client: &client,
        ns: d.ns(),
    };
    let bundle = d.bundle_dir(&id);
    let escape = format!("../../{}-escaped", d.ns());
    let long = "e".repeat(77);
    for bad in [escape.as_str(), "a/b", "..", "e1/../../x", long.as_str()] {
        expect_code(
            client.exec(rpc_ctx(d.ns()), &exec_req(&d, &id, bad, &["/bin/true"])),
            ttrpc::Code::INVALID_ARGUMENT,
            &format!("Exec with exec id {bad:?}"),
        );
        expect_code(
            client.start(rpc_ctx(d.ns()), &start_req(&id, bad)),
            ttrpc::Code::NOT_FOUND,
            &format!("Start of refused exec id {bad:?}"),
        );
    }
    let escaped = bundle.join(format!("{escape}.pid"));
    assert!(
        !escaped.exists(),
        "a pid file was written outside the bundle: {}",
        escaped.display()
    );
    c.exec(&exec_req(&d, &id, "ok.exec_1-a", &["/bin/sh", "-c", "exit 4"]));
    c.start(&id, "ok.exec_1-a");
    assert_eq!(c.wait(&id, "ok.exec_1-a").exit_status, 4, "the well-formed exec runs");
    c.delete(&id, "ok.exec_1-a");
    still_serving(&d, &client, &id, task.pid, "malformed exec ids");
    drop(client);
    d.remove_container(&id);
    d.assert_clean();
}

#[test]
fn requests_for_unknown_container_or_exec_ids_are_not_found() {
    let d = Daemon::start();
    let id = d.id("unknown");
    let task = d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let client = d.shim_client(&id);
    let ctx = || rpc_ctx(d.ns());
    for (cid, eid) in [("e2e-no-such-container", ""), (id.as_str(), "no-such-exec")] {
        let what = |rpc: &str| format!("{rpc}({cid}/{eid})");
        expect_code(
            client.start(ctx(), &start_req(cid, eid)),
            ttrpc::Code::NOT_FOUND,
            &what("Start"),
        );
        expect_code(
            client.kill(ctx(), &kill_req(cid, eid, 9, false)),
            ttrpc::Code::NOT_FOUND,
            &what("Kill"),
        );
        expect_code(
            client.delete(ctx(), &delete_req(cid, eid)),
            ttrpc::Code::NOT_FOUND,
            &what("Delete"),
        );
        expect_code(
            client.state(ctx(), &state_req(cid, eid)),
            ttrpc::Code::NOT_FOUND,
            &what("State"),
        );
        expect_code(
            client.wait(ctx(), &wait_req(cid, eid)),
            ttrpc::Code::NOT_FOUND,
            &what("Wait"),
        );
        let mut rz = ResizePtyRequest::new();
        rz.id = cid.to_string();
        rz.exec_id = eid.to_string();
        rz.width = 80;
        rz.height = 24;
        expect_code(
            client.resize_pty(ctx(), &rz),
            ttrpc::Code::NOT_FOUND,
            &what("ResizePty"),
        );
        // The Go shim wraps this one for unknown exec ids: UNKNOWN "process does not exist
        // <id>: not found". NOT_FOUND is as good.
        match client.close_io(ctx(), &close_stdin_req(cid, eid)) {
            Err(ttrpc::Error::RpcStatus(s))
                if s.code() == ttrpc::Code::NOT_FOUND
                    || (s.code() == ttrpc::Code::UNKNOWN && s.message().contains("not found")) => {}
            other => panic!("{}: expected NOT_FOUND, got {other:?}", what("CloseIO")),
        }
    }
    still_serving(&d, &client, &id, task.pid, "requests for unknown ids");
    drop(client);
    d.remove_container(&id);
    d.assert_clean();
}

#[test]
fn pause_of_a_stopped_task_and_resume_of_a_running_one_fail_like_the_go_shim() {
    let d = Daemon::start();
    let id = d.id("badpause");
    let task = d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let client = d.shim_client(&id);
    let msg = expect_code(
        client.resume(rpc_ctx(d.ns()), &resume_req(&id)),
        ttrpc::Code::UNKNOWN,
        "Resume of a running task",
    );
    assert!(
        msg.contains("cannot resume a running process"),
        "Resume of a running task: {msg}"
    );
    still_serving(&d, &client, &id, task.pid, "resume of a running task");

    let stopped = d.id("stoppedpause");
    d.run_rootfs(&["-d"], &stopped, &["/bin/sh", "-c", "exit 0"]).ok();
    d.wait_task_status(&stopped, "STOPPED", T);
    let out = d.ctr(&["task", "pause", &stopped]).run();
    assert!(
        out.code() != Some(0) && out.stderr_str().contains("cannot pause a stopped container"),
        "ctr task pause of a stopped task must fail as with the Go shim: {out}"
    );
    let sclient = d.shim_client(&stopped);
    let msg = expect_code(
        sclient.pause(rpc_ctx(d.ns()), &pause_req(&stopped)),
        ttrpc::Code::UNKNOWN,
        "Pause of a stopped task",
    );
    assert!(
        msg.contains("cannot pause a stopped container"),
        "Pause of a stopped task: {msg}"
    );
    let st = Calls {
        client: &sclient,
        ns: d.ns(),
    }
    .state(&stopped, "");
    assert_eq!(
        st.status.enum_value(),
        Ok(Status::STOPPED),
        "the stopped task after Pause: {st:?}"
    );
    drop(sclient);
    drop(client);
    d.remove_container(&stopped);
    d.remove_container(&id);
    d.assert_clean();
}

#[test]
fn resize_pty_of_a_process_without_a_terminal_succeeds() {
    let d = Daemon::start();
    let id = d.id("resizenotty");
    let task = d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let client = d.shim_client(&id);
    let mut rz = ResizePtyRequest::new();
    rz.id = id.clone();
    rz.width = 100;
    rz.height = 40;
    client.resize_pty(rpc_ctx(d.ns()), &rz).unwrap_or_else(|e| {
        panic!(
            "ResizePty without a terminal must succeed as with Go: {}",
            describe_err(&e)
        )
    });
    still_serving(&d, &client, &id, task.pid, "resize without a terminal");
    drop(client);
    d.remove_container(&id);
    d.assert_clean();
}

#[test]
fn unknown_log_scheme_fails_with_a_clear_error_and_the_shim_keeps_serving_its_other_container() {
    let d = Daemon::start();
    // Through ctr: the error names the scheme.
    let id = d.id("badscheme");
    let out = d
        .run_rootfs(&["--rm", "--log-uri", "e2e-nosuch:///x"], &id, &["/bin/true"])
        .run();
    assert!(out.code() != Some(0), "an unknown log scheme must fail: {out}");
    let err = out.stderr_str();
    assert!(
        err.contains("e2e-nosuch") && err.to_lowercase().contains("scheme"),
        "the error must name the unknown scheme: {out}"
    );
    d.ctr(&["container", "delete", &id]).run();

    // On a shim that serves another container: that one is unaffected.
    let first = d.id("serving");
    let bundle = make_bundle(&d, &first, &["/bin/sleep", "1000"]);
    let shim = HandShim::start(&d, &first, &bundle, b"");
    let client = shim.client();
    let c = Calls {
        client: &client,
        ns: d.ns(),
    };
    let create = |cid: &str, bundle: &std::path::Path, stdout: &str| {
        let mut r = CreateTaskRequest::new();
        r.id = cid.to_string();
        r.bundle = bundle.to_string_lossy().into_owned();
        r.stdout = stdout.to_string();
        r.stderr = stdout.to_string();
        r.options = MessageField::some(pack_bytes(RUNC_OPTIONS_TYPE_URL, Vec::new()));
        client.create(rpc_ctx(d.ns()), &r)
    };
    let pid = create(&first, &bundle, "")
        .unwrap_or_else(|e| panic!("Create: {}", describe_err(&e)))
        .pid;
    c.start(&first, "");
    let bad = d.id("badscheme2");
    let bad_bundle = make_bundle(&d, &bad, &["/bin/true"]);
    let err = create(&bad, &bad_bundle, "e2e-nosuch:///x").expect_err("Create with an unknown stdio scheme");
    let text = describe_err(&err);
    assert!(text.contains("e2e-nosuch"), "the error must name the scheme: {text}");
    assert!(
        !d.runc_root().join(&bad).exists(),
        "runc state left for the failed Create"
    );
    let st = c.state(&first, "");
    assert_eq!(
        (st.status.enum_value(), st.pid),
        (Ok(Status::RUNNING), pid),
        "the other container after the failed Create"
    );
    c.kill(&first, "", 9, false);
    c.wait(&first, "");
    c.delete(&first, "");
    let mut r = ShutdownRequest::new();
    r.id = first.clone();
    let _ = client.shutdown(rpc_ctx(d.ns()), &r);
    drop(client);
    d.assert_clean();
}

#[test]
fn update_with_a_malformed_any_or_of_a_stopped_task_fails_and_the_shim_keeps_serving() {
    let d = Daemon::start();
    let id = d.id("badupdate");
    let task = d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let client = d.shim_client(&id);
    let update = |cid: &str, value: &[u8]| client.update(rpc_ctx(d.ns()), &update_req(cid, value));
    let err = update(&id, b"{not json").expect_err("Update with malformed LinuxResources JSON must fail");
    assert_eq!(
        e2e::requests::code_of(&err),
        Some(ttrpc::Code::UNKNOWN),
        "code of a malformed Update (Go: UNKNOWN): {}",
        describe_err(&err)
    );
    still_serving(&d, &client, &id, task.pid, "a malformed Update");
    update(&id, br#"{"pids":{"limit":50}}"#)
        .unwrap_or_else(|e| panic!("a valid Update after the malformed one: {}", describe_err(&e)));

    let stopped = d.id("stoppedupdate");
    d.run_rootfs(&["-d"], &stopped, &["/bin/sh", "-c", "exit 0"]).ok();
    d.wait_task_status(&stopped, "STOPPED", T);
    let sclient = d.shim_client(&stopped);
    let err = sclient
        .update(rpc_ctx(d.ns()), &update_req(&stopped, br#"{"pids":{"limit":50}}"#))
        .expect_err("Update of a stopped task must fail");
    assert!(
        describe_err(&err).contains("cannot update a stopped container"),
        "Update of a stopped task: {}",
        describe_err(&err)
    );
    drop(sclient);
    drop(client);
    d.remove_container(&stopped);
    d.remove_container(&id);
    d.assert_clean();
}

#[test]
fn checkpoint_to_a_path_that_cannot_be_written_fails_and_the_shim_keeps_serving() {
    let d = Daemon::start();
    let id = d.id("badckpt");
    let task = d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let client = d.shim_client(&id);
    let path = "/proc/e2e-not-writable/checkpoint";
    let mut r = CheckpointTaskRequest::new();
    r.id = id.clone();
    r.path = path.to_string();
    let err = client
        .checkpoint(rpc_ctx(d.ns()), &r)
        .expect_err("Checkpoint into /proc must fail");
    assert!(
        describe_err(&err).contains("/proc/e2e-not-writable"),
        "the error must name the path that cannot be made: {}",
        describe_err(&err)
    );
    assert_eq!(
        e2e::requests::code_of(&err),
        Some(ttrpc::Code::UNKNOWN),
        "code of a failed Checkpoint (Go: UNKNOWN): {}",
        describe_err(&err)
    );
    still_serving(&d, &client, &id, task.pid, "a failed checkpoint");
    drop(client);
    d.remove_container(&id);
    d.assert_clean();
}
