//! Task API requests a test sends to a shim itself (where ctr cannot express them), and the
//! status codes of their errors.

use crate::daemon::Daemon;
use crate::shim::rpc_ctx;
use protobuf::MessageField;
use protos::any::pack_bytes;
use protos::task::{
    CloseIORequest, DeleteRequest, DeleteResponse, ExecProcessRequest, KillRequest, PauseRequest, PidsRequest,
    ResumeRequest, StartRequest, StateRequest, StateResponse, StatsRequest, UpdateTaskRequest, WaitRequest,
    WaitResponse,
};
use protos::task_ttrpc::TaskClient;
use serde_json::{json, Value};
use std::path::Path;

/// Type URL of an OCI `Process` (JSON) in `ExecProcessRequest.spec`.
pub const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/// Type URL of OCI `LinuxResources` (JSON) in `UpdateTaskRequest.resources`.
pub const RESOURCES_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";
/// Type URL of the runc shim's options.
pub const RUNC_OPTIONS_TYPE_URL: &str = "containerd.runc.v1.Options";

/// The container's own `process` from `<bundle>/config.json` with `args` (and no terminal),
/// as `ctr task exec` builds an exec's process.
pub fn process_spec(bundle: &Path, args: &[&str]) -> Value {
    let path = bundle.join("config.json");
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let spec: Value = serde_json::from_slice(&raw).expect("config.json is JSON");
    let mut p = spec["process"].clone();
    p["args"] = json!(args);
    p["terminal"] = json!(false);
    p
}

/// An `Exec` of `args` as `exec_id` in container `id` (bundle of a ctr-made container), with
/// null IO unless stdio is set on the result.
pub fn exec_req(d: &Daemon, id: &str, exec_id: &str, args: &[&str]) -> ExecProcessRequest {
    exec_req_in(&d.bundle_dir(id), id, exec_id, args)
}

/// Like [`exec_req`] for a container whose bundle is `bundle`.
pub fn exec_req_in(bundle: &Path, id: &str, exec_id: &str, args: &[&str]) -> ExecProcessRequest {
    let spec = process_spec(bundle, args);
    let mut r = ExecProcessRequest::new();
    r.id = id.to_string();
    r.exec_id = exec_id.to_string();
    r.spec = MessageField::some(pack_bytes(
        PROCESS_TYPE_URL,
        serde_json::to_vec(&spec).expect("process JSON"),
    ));
    r
}

/// Makes an exec request ask for a terminal (in the request and in its process spec).
pub fn with_terminal(req: &mut ExecProcessRequest) {
    let mut spec: Value = serde_json::from_slice(&req.spec.value).expect("process JSON");
    spec["terminal"] = json!(true);
    req.spec.as_mut().expect("spec").value = serde_json::to_vec(&spec).expect("JSON");
    req.terminal = true;
}

pub fn start_req(id: &str, exec_id: &str) -> StartRequest {
    let mut r = StartRequest::new();
    r.id = id.to_string();
    r.exec_id = exec_id.to_string();
    r
}

pub fn state_req(id: &str, exec_id: &str) -> StateRequest {
    let mut r = StateRequest::new();
    r.id = id.to_string();
    r.exec_id = exec_id.to_string();
    r
}

pub fn wait_req(id: &str, exec_id: &str) -> WaitRequest {
    let mut r = WaitRequest::new();
    r.id = id.to_string();
    r.exec_id = exec_id.to_string();
    r
}

pub fn kill_req(id: &str, exec_id: &str, signal: u32, all: bool) -> KillRequest {
    let mut r = KillRequest::new();
    r.id = id.to_string();
    r.exec_id = exec_id.to_string();
    r.signal = signal;
    r.all = all;
    r
}

pub fn delete_req(id: &str, exec_id: &str) -> DeleteRequest {
    let mut r = DeleteRequest::new();
    r.id = id.to_string();
    r.exec_id = exec_id.to_string();
    r
}

pub fn pause_req(id: &str) -> PauseRequest {
    let mut r = PauseRequest::new();
    r.id = id.to_string();
    r
}

pub fn resume_req(id: &str) -> ResumeRequest {
    let mut r = ResumeRequest::new();
    r.id = id.to_string();
    r
}

pub fn stats_req(id: &str) -> StatsRequest {
    let mut r = StatsRequest::new();
    r.id = id.to_string();
    r
}

/// An `Update` of `id` to `resources` (OCI LinuxResources JSON).
pub fn update_req(id: &str, resources: &[u8]) -> UpdateTaskRequest {
    let mut r = UpdateTaskRequest::new();
    r.id = id.to_string();
    r.resources = MessageField::some(pack_bytes(RESOURCES_TYPE_URL, resources.to_vec()));
    r
}

/// A `CloseIO` of the process's stdin.
pub fn close_stdin_req(id: &str, exec_id: &str) -> CloseIORequest {
    let mut r = CloseIORequest::new();
    r.id = id.to_string();
    r.exec_id = exec_id.to_string();
    r.stdin = true;
    r
}

pub fn pids_req(id: &str) -> PidsRequest {
    let mut r = PidsRequest::new();
    r.id = id.to_string();
    r
}

/// The ttrpc status code of an error (`None` for transport errors).
pub fn code_of(err: &ttrpc::Error) -> Option<ttrpc::Code> {
    match err {
        ttrpc::Error::RpcStatus(s) => Some(s.code()),
        _ => None,
    }
}

/// `code: message` of an error, for assertion messages.
pub fn describe_err(err: &ttrpc::Error) -> String {
    match err {
        ttrpc::Error::RpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        e => format!("{e:?}"),
    }
}

/// Asserts that `res` failed with `code`; returns the error's message.
pub fn expect_code<T: std::fmt::Debug>(res: ttrpc::Result<T>, code: ttrpc::Code, what: &str) -> String {
    match res {
        Ok(v) => panic!("{what}: expected {code:?}, got success: {v:?}"),
        Err(ttrpc::Error::RpcStatus(s)) if s.code() == code => s.message().to_string(),
        Err(e) => panic!("{what}: expected {code:?}, got {}", describe_err(&e)),
    }
}

/// Convenience calls that panic with the request on error.
pub struct Calls<'a> {
    pub client: &'a TaskClient,
    pub ns: &'a str,
}

impl Calls<'_> {
    pub fn exec(&self, req: &ExecProcessRequest) {
        self.client
            .exec(rpc_ctx(self.ns), req)
            .unwrap_or_else(|e| panic!("Exec({}/{}): {}", req.id, req.exec_id, describe_err(&e)));
    }

    pub fn start(&self, id: &str, exec_id: &str) -> u32 {
        self.client
            .start(rpc_ctx(self.ns), &start_req(id, exec_id))
            .unwrap_or_else(|e| panic!("Start({id}/{exec_id}): {}", describe_err(&e)))
            .pid
    }

    pub fn state(&self, id: &str, exec_id: &str) -> StateResponse {
        self.client
            .state(rpc_ctx(self.ns), &state_req(id, exec_id))
            .unwrap_or_else(|e| panic!("State({id}/{exec_id}): {}", describe_err(&e)))
    }

    pub fn wait(&self, id: &str, exec_id: &str) -> WaitResponse {
        self.client
            .wait(rpc_ctx(self.ns), &wait_req(id, exec_id))
            .unwrap_or_else(|e| panic!("Wait({id}/{exec_id}): {}", describe_err(&e)))
    }

    pub fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) {
        self.client
            .kill(rpc_ctx(self.ns), &kill_req(id, exec_id, signal, all))
            .unwrap_or_else(|e| panic!("Kill({id}/{exec_id}, {signal}): {}", describe_err(&e)));
    }

    pub fn delete(&self, id: &str, exec_id: &str) -> DeleteResponse {
        self.client
            .delete(rpc_ctx(self.ns), &delete_req(id, exec_id))
            .unwrap_or_else(|e| panic!("Delete({id}/{exec_id}): {}", describe_err(&e)))
    }
}
