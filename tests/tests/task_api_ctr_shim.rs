//! `ctr shim` debugging commands against the shim's socket: `state`, `start`, `exec`, `delete`
//! (1.6 has no others). ctr sends no namespace metadata. `ctr shim exec` would send Exec with
//! an empty exec id and then Start of the init, so on a created container it starts the init;
//! every ctr here panics before sending it, so a test sends those two requests itself.

use e2e::requests::{describe_err, process_spec, Calls, PROCESS_TYPE_URL, RUNC_OPTIONS_TYPE_URL};
use e2e::scenario::wait_gone;
use e2e::shim::{make_bundle, rpc_ctx, HandShim};
use e2e::Daemon;
use protobuf::MessageField;
use protos::task::{CreateTaskRequest, ExecProcessRequest, ShutdownRequest, StartRequest};
use serde_json::Value;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// A hand-started shim with container `id` created (not started), null IO.
fn created(d: &Daemon, name: &str) -> (String, HandShim, u32) {
    let id = d.id(name);
    let bundle = make_bundle(d, &id, &["/bin/sleep", "1000"]);
    let shim = HandShim::start(d, &id, &bundle, b"");
    let mut r = CreateTaskRequest::new();
    r.id = id.clone();
    r.bundle = bundle.to_string_lossy().into_owned();
    r.options = MessageField::some(protos::any::pack_bytes(RUNC_OPTIONS_TYPE_URL, Vec::new()));
    let pid = shim
        .client()
        .create(rpc_ctx(d.ns()), &r)
        .unwrap_or_else(|e| panic!("Create({id}): {e:?}\n{}", shim.log.text()))
        .pid;
    (id, shim, pid)
}

/// `ctr shim --id <id> state` as JSON.
fn shim_state(d: &Daemon, id: &str) -> Value {
    let out = d.ctr(&["shim", "--id", id, "state"]).ok();
    serde_json::from_str(&out.stdout_str())
        .unwrap_or_else(|e| panic!("`ctr shim state` did not print JSON ({e}): {out}"))
}

fn status_is(v: &Value, name: &str, number: u64) -> bool {
    v["status"] == name || v["status"] == number
}

fn kill_delete_shutdown(d: &Daemon, id: &str, shim: &HandShim) {
    let client = shim.client();
    let c = Calls {
        client: &client,
        ns: d.ns(),
    };
    c.kill(id, "", 9, false);
    c.wait(id, "");
    let out = d.ctr(&["shim", "--id", id, "delete", id]).ok();
    assert!(
        out.stdout_str().contains("exit status 137"),
        "`ctr shim delete` must report exit status 137: {out}"
    );
    let pids: Vec<i32> = d.shim_processes(id).iter().map(|p| p.pid).collect();
    let mut r = ShutdownRequest::new();
    r.id = id.to_string();
    let _ = client.shutdown(rpc_ctx(d.ns()), &r);
    drop(client);
    for pid in pids {
        assert!(wait_gone(pid, T), "shim {pid} did not exit after Shutdown");
    }
}

#[test]
fn ctr_shim_state_and_start_then_delete_a_created_container() {
    let d = Daemon::start();
    let (id, shim, pid) = created(&d, "shimstart");
    let st = shim_state(&d, &id);
    assert!(status_is(&st, "CREATED", 1), "state of the created container: {st}");
    assert_eq!(st["id"], id.as_str(), "state id: {st}");
    assert_eq!(st["pid"], pid, "state pid = Create's pid: {st}");

    d.ctr(&["shim", "--id", &id, "start", &id]).ok();
    let st = shim_state(&d, &id);
    assert!(status_is(&st, "RUNNING", 2), "state after `ctr shim start`: {st}");
    assert_eq!(st["pid"], pid, "the started init keeps its pid: {st}");
    kill_delete_shutdown(&d, &id, &shim);
    d.assert_clean();
}

/// What `ctr shim exec --spec P <id>` sends (ctr 1.6.20, 1.7.24 and 2.1.9 all panic before
/// sending it: "v is not a pointer to a type", from `typeurl.TypeURL(specs.Process{})`): Exec
/// with the given id and an empty exec id, then Start of that id, without namespace metadata.
/// On a created container that starts its init, as with the Go shim.
#[test]
fn ctr_shim_exec_requests_on_a_created_container_start_its_init_as_with_the_go_shim() {
    let d = Daemon::start();
    let (id, shim, pid) = created(&d, "shimexec");
    let spec = process_spec(&shim.bundle, &["/bin/sleep", "1000"]);
    let mut req = ExecProcessRequest::new();
    req.id = id.clone();
    req.spec = MessageField::some(protos::any::pack_bytes(
        PROCESS_TYPE_URL,
        serde_json::to_vec(&spec).expect("JSON"),
    ));
    let client = shim.client();
    let no_ns = || ttrpc::context::with_timeout(T.as_nanos() as i64);
    client
        .exec(no_ns(), &req)
        .unwrap_or_else(|e| panic!("Exec with an empty exec id (as ctr shim exec): {}", describe_err(&e)));
    let mut start = StartRequest::new();
    start.id = id.clone();
    let started = client
        .start(no_ns(), &start)
        .unwrap_or_else(|e| panic!("Start (as ctr shim exec): {}", describe_err(&e)));
    assert_eq!(started.pid, pid, "the Start of `ctr shim exec` starts the init");
    drop(client);
    let st = shim_state(&d, &id);
    assert!(
        status_is(&st, "RUNNING", 2),
        "`ctr shim state` after the exec requests: {st}"
    );
    kill_delete_shutdown(&d, &id, &shim);
    d.assert_clean();
}
