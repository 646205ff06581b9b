//! Hand-computed encodings: each field number and package name here goes on
//! the wire to containerd, so they are checked byte by byte.

use protos::bootstrap::{BootstrapParams, BootstrapResult, Capability, Extension, LogLevel};
use protos::cgroups_v1;
use protos::cgroups_v2;
use protos::events::{TaskCreate, TaskDelete, TaskExecStarted, TaskExit, TaskIO};
use protos::introspection::{RuntimeInfo, RuntimeVersion};
use protos::protobuf::{EnumOrUnknown, Message, MessageField, MessageFull};
use protos::runc_options::{CheckpointOptions, Options, ProcessDetails};
use protos::task::{
    ConnectResponse, CreateTaskRequest, DeleteResponse, StateResponse, UpdateTaskRequest, WaitResponse,
};
use protos::ttrpc_events::{Envelope, ForwardRequest};
use protos::types::{Mount, ProcessInfo, Status};
use protos::{any, time, Any, Timestamp};

/// Go's zero time as an embedded Timestamp: seconds (field 1) as a 10-byte varint.
const GO_ZERO_TS: [u8; 11] = [0x08, 0x80, 0x92, 0xb8, 0xc3, 0x98, 0xfe, 0xff, 0xff, 0xff, 0x01];

fn ts(seconds: i64, nanos: i32) -> Timestamp {
    let mut t = Timestamp::new();
    t.seconds = seconds;
    t.nanos = nanos;
    t
}

fn encode(msg: &impl Message) -> Vec<u8> {
    msg.write_to_bytes().unwrap()
}

#[test]
fn task_exit() {
    let mut exit = TaskExit::new();
    exit.container_id = "c".into();
    exit.id = "c".into();
    exit.pid = 5;
    exit.exit_status = 3;
    assert_eq!(
        encode(&exit),
        [0x0a, 0x01, b'c', 0x12, 0x01, b'c', 0x18, 0x05, 0x20, 0x03]
    );

    exit.exited_at = MessageField::some(time::go_zero());
    let mut want = vec![0x0a, 0x01, b'c', 0x12, 0x01, b'c', 0x18, 0x05, 0x20, 0x03];
    want.extend_from_slice(&[0x2a, 0x0b]);
    want.extend_from_slice(&GO_ZERO_TS);
    assert_eq!(encode(&exit), want);
    assert_eq!(TaskExit::parse_from_bytes(&want).unwrap(), exit);
}

#[test]
fn task_delete_and_exec_started() {
    let mut del = TaskDelete::new();
    del.container_id = "c".into();
    del.pid = 1;
    del.exit_status = 2;
    del.exited_at = MessageField::some(ts(3, 0));
    del.id = "e".into();
    assert_eq!(
        encode(&del),
        [0x0a, 0x01, b'c', 0x10, 0x01, 0x18, 0x02, 0x22, 0x02, 0x08, 0x03, 0x2a, 0x01, b'e']
    );

    let mut started = TaskExecStarted::new();
    started.container_id = "c".into();
    started.exec_id = "e".into();
    started.pid = 9;
    assert_eq!(encode(&started), [0x0a, 0x01, b'c', 0x12, 0x01, b'e', 0x18, 0x09]);
}

#[test]
fn task_create_with_mount_and_io() {
    let mut m = Mount::new();
    m.type_ = "t".into();
    m.source = "s".into();
    m.target = "d".into();
    m.options = vec!["o".into()];
    assert_eq!(
        encode(&m),
        [0x0a, 0x01, b't', 0x12, 0x01, b's', 0x1a, 0x01, b'd', 0x22, 0x01, b'o']
    );

    let mut io = TaskIO::new();
    io.stdout = "o".into();
    io.terminal = true;
    let mut create = TaskCreate::new();
    create.container_id = "c".into();
    create.bundle = "b".into();
    create.rootfs = vec![m];
    create.io = MessageField::some(io);
    create.checkpoint = "k".into();
    create.pid = 7;
    let mut want = vec![0x0a, 0x01, b'c', 0x12, 0x01, b'b', 0x1a, 0x0c];
    want.extend_from_slice(&[0x0a, 0x01, b't', 0x12, 0x01, b's', 0x1a, 0x01, b'd', 0x22, 0x01, b'o']);
    want.extend_from_slice(&[0x22, 0x05, 0x12, 0x01, b'o', 0x20, 0x01]);
    want.extend_from_slice(&[0x2a, 0x01, b'k', 0x30, 0x07]);
    assert_eq!(encode(&create), want);
}

#[test]
fn delete_and_wait_responses() {
    let mut resp = DeleteResponse::new();
    resp.pid = 42;
    resp.exit_status = 137;
    resp.exited_at = MessageField::some(ts(1, 2));
    assert_eq!(
        encode(&resp),
        [0x08, 0x2a, 0x10, 0x89, 0x01, 0x1a, 0x04, 0x08, 0x01, 0x10, 0x02]
    );

    let mut wait = WaitResponse::new();
    wait.exit_status = 3;
    wait.exited_at = MessageField::some(ts(1, 0));
    assert_eq!(encode(&wait), [0x08, 0x03, 0x12, 0x02, 0x08, 0x01]);
}

#[test]
fn state_response() {
    let mut state = StateResponse::new();
    state.id = "c".into();
    state.pid = 3;
    state.status = EnumOrUnknown::new(Status::PAUSED);
    state.terminal = true;
    state.exited_at = MessageField::some(time::go_zero());
    state.exec_id = "e".into();
    let mut want = vec![0x0a, 0x01, b'c', 0x18, 0x03, 0x20, 0x04, 0x40, 0x01, 0x52, 0x0b];
    want.extend_from_slice(&GO_ZERO_TS);
    want.extend_from_slice(&[0x5a, 0x01, b'e']);
    assert_eq!(encode(&state), want);

    for (status, n) in [
        (Status::UNKNOWN, 0),
        (Status::CREATED, 1),
        (Status::RUNNING, 2),
        (Status::STOPPED, 3),
        (Status::PAUSED, 4),
        (Status::PAUSING, 5),
    ] {
        assert_eq!(status as i32, n);
    }
}

#[test]
fn connect_response() {
    let mut resp = ConnectResponse::new();
    resp.shim_pid = 1;
    resp.task_pid = 2;
    resp.version = "v".into();
    assert_eq!(encode(&resp), [0x08, 0x01, 0x10, 0x02, 0x1a, 0x01, b'v']);
}

#[test]
fn create_and_update_requests() {
    let mut req = CreateTaskRequest::new();
    req.id = "c".into();
    req.stderr = "e".into();
    req.parent_checkpoint = "p".into();
    req.options = MessageField::some(any::pack_bytes("x", vec![]));
    assert_eq!(
        encode(&req),
        [0x0a, 0x01, b'c', 0x3a, 0x01, b'e', 0x4a, 0x01, b'p', 0x52, 0x03, 0x0a, 0x01, b'x']
    );

    let mut upd = UpdateTaskRequest::new();
    upd.annotations.insert("k".into(), "v".into());
    assert_eq!(encode(&upd), [0x1a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v']);
}

#[test]
fn process_info() {
    let mut details = ProcessDetails::new();
    details.exec_id = "e".into();
    assert_eq!(encode(&details), [0x0a, 0x01, b'e']);

    let mut info = ProcessInfo::new();
    info.pid = 10;
    info.info = MessageField::some(any::pack(any::RUNC_PROCESS_DETAILS, &details).unwrap());
    let mut want = vec![0x08, 0x0a, 0x12, 0x28, 0x0a, 0x21];
    want.extend_from_slice(b"containerd.runc.v1.ProcessDetails");
    want.extend_from_slice(&[0x12, 0x03, 0x0a, 0x01, b'e']);
    assert_eq!(encode(&info), want);
}

#[test]
fn envelope_and_forward_request() {
    let mut env = Envelope::new();
    env.timestamp = MessageField::some(ts(1, 0));
    env.namespace = "ns".into();
    env.topic = "/t".into();
    env.event = MessageField::some(any::pack_bytes("x", vec![1]));
    let want_env = [
        0x0a, 0x02, 0x08, 0x01, // timestamp = 1
        0x12, 0x02, b'n', b's', // namespace = 2
        0x1a, 0x02, b'/', b't', // topic = 3
        0x22, 0x06, 0x0a, 0x01, b'x', 0x12, 0x01, 0x01, // event = 4
    ];
    assert_eq!(encode(&env), want_env);

    let mut fwd = ForwardRequest::new();
    fwd.envelope = MessageField::some(env);
    let mut want = vec![0x0a, want_env.len() as u8];
    want.extend_from_slice(&want_env);
    assert_eq!(encode(&fwd), want);
}

#[test]
fn runc_options() {
    let mut o = Options::new();
    o.binary_name = "r".into();
    o.root = "/x".into();
    o.systemd_cgroup = true;
    assert_eq!(encode(&o), [0x32, 0x01, b'r', 0x3a, 0x02, b'/', b'x', 0x48, 0x01]);

    let mut o = Options::new();
    o.no_pivot_root = true;
    o.shim_cgroup = "g".into();
    o.io_gid = 5;
    o.criu_work_path = "w".into();
    o.task_api_address = "a".into();
    o.task_api_version = 3;
    assert_eq!(
        encode(&o),
        [0x08, 0x01, 0x1a, 0x01, b'g', 0x28, 0x05, 0x5a, 0x01, b'w', 0x62, 0x01, b'a', 0x68, 0x03]
    );

    let mut c = CheckpointOptions::new();
    c.exit = true;
    c.empty_namespaces = vec!["n".into()];
    c.work_path = "w".into();
    assert_eq!(encode(&c), [0x08, 0x01, 0x32, 0x01, b'n', 0x4a, 0x01, b'w']);
}

#[test]
fn bootstrap_result() {
    let mut r = BootstrapResult::new();
    r.version = 2;
    r.address = "a".into();
    r.protocol = "ttrpc".into();
    assert_eq!(
        encode(&r),
        [0x08, 0x02, 0x12, 0x01, b'a', 0x1a, 0x05, b't', b't', b'r', b'p', b'c']
    );

    let mut r = BootstrapResult::new();
    r.capabilities = vec![EnumOrUnknown::new(Capability::CAPABILITY_UNSPECIFIED)];
    r.metadata.insert("k".into(), "v".into());
    assert_eq!(
        encode(&r),
        [0x22, 0x01, 0x00, 0x2a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v']
    );
}

#[test]
fn bootstrap_params_decode() {
    let mut bytes = vec![0x0a, 0x02, b'c', b'1', 0x12, 0x02, b'n', b's'];
    // log_level = DEBUG (-4): negative int32 enums take 10 bytes.
    bytes.extend_from_slice(&[0x18, 0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    bytes.extend_from_slice(&[0x22, 0x03, b'2', b'.', b'3']);
    bytes.extend_from_slice(&[0x2a, 0x01, b't', 0x32, 0x01, b'g', 0x3a, 0x01, b'b']);
    let mut ext = vec![0x0a, 0x1a];
    ext.extend_from_slice(any::RUNC_OPTIONS.as_bytes());
    bytes.extend_from_slice(&[0x42, ext.len() as u8 + 2, 0x0a, ext.len() as u8]);
    bytes.extend_from_slice(&ext);
    bytes.extend_from_slice(&[0x4a, 0x03, b'/', b's', b'd']);

    let p = BootstrapParams::parse_from_bytes(&bytes).unwrap();
    assert_eq!(p.instance_id, "c1");
    assert_eq!(p.namespace, "ns");
    assert_eq!(p.log_level.enum_value(), Ok(LogLevel::DEBUG));
    assert_eq!(p.containerd_version, "2.3");
    assert_eq!(p.containerd_ttrpc_address, "t");
    assert_eq!(p.containerd_grpc_address, "g");
    assert_eq!(p.containerd_binary, "b");
    assert_eq!(p.extensions.len(), 1);
    assert_eq!(p.extensions[0].value.type_url, any::RUNC_OPTIONS);
    assert_eq!(p.socket_dir.as_deref(), Some("/sd"));
    assert_eq!(encode(&p), bytes);

    // An unknown level survives (open enum); an absent socket_dir is None.
    let p = BootstrapParams::parse_from_bytes(&[0x18, 0x02]).unwrap();
    assert_eq!(p.log_level.value(), 2);
    assert_eq!(p.socket_dir, None);

    for (level, n) in [
        (LogLevel::TRACE, -8),
        (LogLevel::DEBUG, -4),
        (LogLevel::INFO, 0),
        (LogLevel::WARN, 4),
        (LogLevel::ERROR, 8),
        (LogLevel::FATAL, 10),
        (LogLevel::PANIC, 12),
    ] {
        assert_eq!(level as i32, n);
    }
    let _ = Extension::new();
}

#[test]
fn runtime_info() {
    let mut v = RuntimeVersion::new();
    v.version = "1".into();
    v.revision = "r".into();
    let mut info = RuntimeInfo::new();
    info.name = "n".into();
    info.version = MessageField::some(v);
    info.options = MessageField::some(Any::new());
    info.features = MessageField::some(any::pack_bytes(any::OCI_FEATURES, b"{}".to_vec()));
    info.annotations.insert("k".into(), "v".into());
    let mut want = vec![0x0a, 0x01, b'n', 0x12, 0x06, 0x0a, 0x01, b'1', 0x12, 0x01, b'r'];
    want.extend_from_slice(&[0x1a, 0x00]);
    let feat = any::OCI_FEATURES.as_bytes();
    want.extend_from_slice(&[0x22, feat.len() as u8 + 6, 0x0a, feat.len() as u8]);
    want.extend_from_slice(feat);
    want.extend_from_slice(&[0x12, 0x02, b'{', b'}']);
    want.extend_from_slice(&[0x2a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v']);
    assert_eq!(encode(&info), want);
}

#[test]
fn cgroup_metrics() {
    let mut oom = cgroups_v1::MemoryOomControl::new();
    oom.oom_kill = 1;
    let mut usage = cgroups_v1::CPUUsage::new();
    usage.per_cpu = vec![1, 2];
    let mut cpu = cgroups_v1::CPUStat::new();
    cpu.usage = MessageField::some(usage);
    let mut mem = cgroups_v1::MemoryStat::new();
    mem.kernel_tcp = MessageField::some(cgroups_v1::MemoryEntry::new());
    mem.total_unevictable = 1;
    let mut m = cgroups_v1::Metrics::new();
    m.cpu = MessageField::some(cpu);
    m.memory = MessageField::some(mem);
    m.memory_oom_control = MessageField::some(oom);
    assert_eq!(
        encode(&m),
        [
            0x1a, 0x06, 0x0a, 0x04, 0x22, 0x02, 0x01, 0x02, // cpu = 3 { usage = 1 { per_cpu = 4 packed } }
            0x22, 0x06, 0x80, 0x02, 0x01, 0xa2, 0x02, 0x00, // memory = 4 { 32 = 1, kernel_tcp = 36 {} }
            0x4a, 0x02, 0x18, 0x01, // memory_oom_control = 9 { oom_kill = 3 }
        ][..]
    );

    let mut net = cgroups_v2::NetworkStat::new();
    net.name = "e".into();
    net.tx_dropped = 1;
    let mut mem = cgroups_v2::MemoryStat::new();
    mem.usage = 1;
    mem.swap_max_usage = 2;
    let mut events = cgroups_v2::MemoryEvents::new();
    events.oom_kill = 1;
    let mut m = cgroups_v2::Metrics::new();
    m.memory = MessageField::some(mem);
    m.memory_events = MessageField::some(events);
    m.network = vec![net];
    assert_eq!(
        encode(&m),
        [
            0x22, 0x06, 0x80, 0x02, 0x01, 0xa8, 0x02, 0x02, // memory = 4 { usage = 32, swap_max_usage = 37 }
            0x42, 0x02, 0x28, 0x01, // memory_events = 8 { oom_kill = 5 }
            0x4a, 0x05, 0x0a, 0x01, b'e', 0x48, 0x01, // network = 9 { name = 1, tx_dropped = 9 }
        ][..]
    );
}

/// The package names decide the type URLs containerd resolves.
#[test]
fn type_url_constants_match_descriptors() {
    fn name<M: MessageFull>() -> String {
        M::descriptor().full_name().to_owned()
    }
    assert_eq!(name::<Options>(), any::RUNC_OPTIONS);
    assert_eq!(name::<CheckpointOptions>(), any::RUNC_CHECKPOINT_OPTIONS);
    assert_eq!(name::<ProcessDetails>(), any::RUNC_PROCESS_DETAILS);
    assert_eq!(name::<TaskCreate>(), any::TASK_CREATE);
    assert_eq!(name::<protos::events::TaskStart>(), any::TASK_START);
    assert_eq!(name::<TaskDelete>(), any::TASK_DELETE);
    assert_eq!(name::<TaskExit>(), any::TASK_EXIT);
    assert_eq!(name::<protos::events::TaskOOM>(), any::TASK_OOM);
    assert_eq!(name::<protos::events::TaskExecAdded>(), any::TASK_EXEC_ADDED);
    assert_eq!(name::<TaskExecStarted>(), any::TASK_EXEC_STARTED);
    assert_eq!(name::<protos::events::TaskPaused>(), any::TASK_PAUSED);
    assert_eq!(name::<protos::events::TaskResumed>(), any::TASK_RESUMED);
    assert_eq!(name::<protos::events::TaskCheckpointed>(), any::TASK_CHECKPOINTED);
    assert_eq!(name::<cgroups_v1::Metrics>(), any::CGROUPS_V1_METRICS);
    assert_eq!(name::<cgroups_v2::Metrics>(), any::CGROUPS_V2_METRICS);

    assert_eq!(name::<Mount>(), "containerd.types.Mount");
    assert_eq!(name::<ProcessInfo>(), "containerd.v1.types.ProcessInfo");
    assert_eq!(name::<StateResponse>(), "containerd.task.v2.StateResponse");
    assert_eq!(name::<Envelope>(), "containerd.services.events.ttrpc.v1.Envelope");
    assert_eq!(
        name::<BootstrapParams>(),
        "containerd.runtime.bootstrap.v1.BootstrapParams"
    );
    assert_eq!(name::<RuntimeInfo>(), "containerd.types.RuntimeInfo");
}
