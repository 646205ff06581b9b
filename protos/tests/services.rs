//! Service names and the default answer of unimplemented methods, checked
//! over a real ttrpc connection.

use std::sync::Arc;

use protos::task::{ConnectRequest, ConnectResponse, CreateTaskRequest, StateRequest};
use protos::{task_ttrpc, task_v3_ttrpc, ttrpc_events_ttrpc};
use ttrpc::context;

const METHODS: [&str; 17] = [
    "State",
    "Create",
    "Start",
    "Delete",
    "Pids",
    "Pause",
    "Resume",
    "Checkpoint",
    "Kill",
    "Exec",
    "ResizePty",
    "CloseIO",
    "Update",
    "Wait",
    "Stats",
    "Connect",
    "Shutdown",
];

/// Implements only Connect, on both task API versions.
struct ConnectOnly;

fn connect(req: ConnectRequest) -> ttrpc::Result<ConnectResponse> {
    let mut resp = ConnectResponse::new();
    resp.shim_pid = 7;
    resp.version = req.id;
    Ok(resp)
}

impl task_ttrpc::Task for ConnectOnly {
    fn connect(&self, _ctx: &ttrpc::TtrpcContext, req: ConnectRequest) -> ttrpc::Result<ConnectResponse> {
        connect(req)
    }
}

impl task_v3_ttrpc::Task for ConnectOnly {
    fn connect(&self, _ctx: &ttrpc::TtrpcContext, req: ConnectRequest) -> ttrpc::Result<ConnectResponse> {
        connect(req)
    }
}

struct NoEvents;

impl ttrpc_events_ttrpc::Events for NoEvents {}

#[test]
fn registered_method_paths() {
    let v2 = task_ttrpc::create_task(Arc::new(ConnectOnly));
    let v3 = task_v3_ttrpc::create_task(Arc::new(ConnectOnly));
    assert_eq!(v2.len(), METHODS.len());
    assert_eq!(v3.len(), METHODS.len());
    for m in METHODS {
        assert!(v2.contains_key(&format!("/containerd.task.v2.Task/{m}")), "{m}");
        assert!(v3.contains_key(&format!("/containerd.task.v3.Task/{m}")), "{m}");
    }
    let events = ttrpc_events_ttrpc::create_events(Arc::new(NoEvents));
    let keys: Vec<_> = events.keys().collect();
    assert_eq!(keys, ["/containerd.services.events.ttrpc.v1.Events/Forward"]);
}

#[test]
fn unimplemented_methods_answer_unimplemented() {
    let path = std::env::temp_dir().join(format!("protos-services-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let addr = format!("unix://{}", path.display());
    let mut server = ttrpc::Server::new()
        .bind(&addr)
        .unwrap()
        .register_service(task_ttrpc::create_task(Arc::new(ConnectOnly)))
        .register_service(task_v3_ttrpc::create_task(Arc::new(ConnectOnly)));
    server.start().unwrap();

    let client = ttrpc::Client::connect(&addr).unwrap();
    let v2 = task_ttrpc::TaskClient::new(client.clone());
    let v3 = task_v3_ttrpc::TaskClient::new(client);

    let mut req = ConnectRequest::new();
    req.id = "c".into();
    let resp = v2.connect(context::with_timeout(0), &req).unwrap();
    assert_eq!((resp.shim_pid, resp.version.as_str()), (7, "c"));
    let resp = v3.connect(context::with_timeout(0), &req).unwrap();
    assert_eq!(resp.shim_pid, 7);

    let err = v2.state(context::with_timeout(0), &StateRequest::new()).unwrap_err();
    assert_unimplemented(err);
    let err = v3
        .create(context::with_timeout(0), &CreateTaskRequest::new())
        .unwrap_err();
    assert_unimplemented(err);

    server.shutdown();
    let _ = std::fs::remove_file(&path);
}

fn assert_unimplemented(err: ttrpc::Error) {
    match err {
        ttrpc::Error::RpcStatus(status) => {
            assert_eq!(status.code(), ttrpc::Code::UNIMPLEMENTED, "{status:?}")
        }
        other => panic!("unexpected error {other:?}"),
    }
}
