//! What differs between containerd releases at the shim's edges, checked against the containerd
//! of the matrix (`E2E_CONTAINERD`): `-info` (2.x), the `start` reply each release accepts, the
//! task service name it dials (`containerd.task.v2.Task`, or `.v3.` on 2.x), and `-v`.

use e2e::shim::rpc_ctx;
use e2e::{procfs, Daemon};
use protobuf::Message;
use protos::any::{pack, OCI_FEATURES, RUNC_OPTIONS};
use protos::introspection::RuntimeInfo;
use protos::runc_options::Options;
use protos::task::{ConnectRequest, ShutdownRequest};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// Runs `<shim> -info` with `stdin`; returns (exit code, stdout, stderr).
fn run_info(shim: &Path, stdin: &[u8]) -> (Option<i32>, Vec<u8>, String) {
    let mut cmd = Command::new(shim);
    cmd.arg("-info")
        .current_dir("/")
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let out = e2e::command::run(&mut cmd, Some(stdin), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("cannot run {} -info: {e}", shim.display()));
    let err = out.stderr_str();
    (out.code(), out.stdout, err)
}

fn decode_info(shim: &Path, stdin: &[u8]) -> RuntimeInfo {
    let (code, stdout, stderr) = run_info(shim, stdin);
    assert_eq!(
        code,
        Some(0),
        "`{} -info` failed (containerd 2.x calls it for idmap mounts, 2.2+ for every runtime \
         name but io.containerd.runc.v2): stderr {stderr}",
        shim.display()
    );
    RuntimeInfo::parse_from_bytes(&stdout).unwrap_or_else(|e| {
        panic!(
            "`{} -info` printed no containerd.types.RuntimeInfo ({e}): {:?}",
            shim.display(),
            String::from_utf8_lossy(&stdout)
        )
    })
}

fn runc_features() -> Value {
    let out = Command::new("runc")
        .arg("features")
        .stderr(Stdio::inherit())
        .output()
        .expect("run `runc features`");
    assert!(out.status.success(), "`runc features` failed");
    serde_json::from_slice(&out.stdout).expect("`runc features` prints JSON")
}

fn features_json(info: &RuntimeInfo) -> Value {
    let f = info.features.as_ref().expect("RuntimeInfo.features is set");
    assert_eq!(f.type_url, OCI_FEATURES, "features type URL");
    serde_json::from_slice(&f.value).unwrap_or_else(|e| {
        panic!(
            "RuntimeInfo.features is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&f.value)
        )
    })
}

/// `-info` prints a `RuntimeInfo`: runtime name, version, the options echoed back, and the
/// features of the runc the options name (`runc features`, which runc 1.1 has). The same shape
/// as containerd 2.1's own Go shim, when that is provisioned.
#[test]
fn info_prints_runtime_info_with_name_version_options_and_runc_features() {
    let shim = e2e::util::shim_bin();
    let info = decode_info(&shim, b"");
    assert_eq!(info.name, "io.containerd.runc.v2", "RuntimeInfo.name: {info:?}");
    let version = info.version.as_ref().expect("RuntimeInfo.version is set");
    assert!(!version.version.is_empty(), "empty RuntimeVersion: {info:?}");
    assert_eq!(
        features_json(&info),
        runc_features(),
        "RuntimeInfo.features must be `runc features`"
    );

    // Options on stdin (as containerd sends them) are echoed back unchanged.
    let mut o = Options::new();
    o.binary_name = "runc".into();
    o.root = "/run/containerd/runc".into();
    let opts = pack(RUNC_OPTIONS, &o).expect("pack options");
    let with = decode_info(&shim, &opts.write_to_bytes().expect("encode Any"));
    let echoed = with.options.as_ref().expect("RuntimeInfo.options echoed");
    assert_eq!(
        (echoed.type_url.as_str(), echoed.value.as_slice()),
        (opts.type_url.as_str(), opts.value.as_slice()),
        "options must be echoed back as given"
    );
    assert_eq!(features_json(&with), runc_features());

    // The 2.1 Go shim, when provisioned: same name and features.
    let go = e2e::config::ci_cache_dir().join("containerd-2.1/bin/containerd-shim-runc-v2");
    if go.exists() && go != shim {
        let gi = decode_info(&go, b"");
        assert_eq!(gi.name, info.name, "name differs from the 2.1 Go shim");
        assert_eq!(
            features_json(&gi),
            features_json(&info),
            "features differ from the 2.1 Go shim's"
        );
    } else {
        eprintln!(
            "[e2e] {} not provisioned: no comparison with the 2.1 Go shim",
            go.display()
        );
    }
}

/// `-v` prints version text and exits 0 (not machine-read by containerd).
#[test]
fn dash_v_prints_a_version_and_exits_0() {
    let shim = e2e::util::shim_bin();
    let out = e2e::command::run(Command::new(&shim).arg("-v"), None, Duration::from_secs(10)).expect("run -v");
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout_str().contains("Version:"), "`-v` prints no version: {out}");
}

/// containerd 2.x asks `-info` for the runtime's features before it creates a task with an
/// idmapped mount, and refuses the mount when `mountExtensions.idmap` is missing (runc 1.1 has
/// none). The error naming that feature proves containerd decoded our RuntimeInfo; a broken
/// `-info` fails differently. 1.6 and 1.7 never call `-info`.
#[test]
fn containerd_2x_reads_runc_features_from_info_for_idmapped_mounts() {
    let d = Daemon::start();
    if !d.version().at_least(2, 0) {
        eprintln!("[e2e] {}: never calls -info; nothing to check", d.version().label());
        return;
    }
    let id = d.id("idmap");
    let src = d.tmp().join("idmap-src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let mut spec: Value = serde_json::from_slice(
        &e2e::command::run_ok(
            Command::new(e2e::util::ctr_bin()).args(["oci", "spec"]),
            Duration::from_secs(10),
        )
        .stdout,
    )
    .expect("ctr oci spec");
    spec["root"] = serde_json::json!({ "path": d.rootfs(), "readonly": true });
    spec["process"]["args"] = serde_json::json!(["/bin/true"]);
    spec["process"]["terminal"] = serde_json::json!(false);
    spec["linux"]["cgroupsPath"] = serde_json::json!(format!("/{}/{id}", d.ns()));
    let map = serde_json::json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
    spec["mounts"].as_array_mut().expect("mounts").push(serde_json::json!({
        "destination": "/idmapped", "type": "bind", "source": src,
        "options": ["rbind", "rw"], "uidMappings": map, "gidMappings": map,
    }));
    let spec_path = d.tmp().join("idmap-spec.json");
    std::fs::write(&spec_path, spec.to_string()).expect("write spec");
    let out = d
        .ctr(&[
            "run",
            "--rm",
            "--runtime",
            d.runtime(),
            "--config",
            spec_path.to_str().expect("utf-8"),
            &id,
        ])
        .run();
    assert_ne!(out.code(), Some(0), "runc 1.1 cannot do idmapped mounts: {out}");
    let err = out.stderr_str();
    assert!(
        err.contains("mountExtensions.idmap"),
        "{} must have read the runc features from the shim's -info and refused the idmapped \
         mount for lack of mountExtensions.idmap: {out}",
        d.version().label()
    );
    // containerd 2.1 started the shim before it asked -info and leaves it running without a
    // task (its own Go shim too): shut it down the way containerd would have.
    let _ = d.ctr(&["container", "delete", &id]).run();
    let sock = d.shim_socket(&id);
    if sock.exists() {
        let addr = format!("unix://{}", sock.display());
        let client = ttrpc::Client::connect(&addr).unwrap_or_else(|e| panic!("{addr}: {e:?}"));
        let mut r = ShutdownRequest::new();
        r.id = id.clone();
        let v2 = protos::task_ttrpc::TaskClient::new(client.clone()).shutdown(rpc_ctx(d.ns()), &r);
        if let Err(ttrpc::Error::RpcStatus(s)) = &v2 {
            if s.code() == ttrpc::Code::UNIMPLEMENTED {
                let _ = protos::task_v3_ttrpc::TaskClient::new(client).shutdown(rpc_ctx(d.ns()), &r);
            }
        }
    }
    d.assert_clean();
}

/// A wrapper put in front of the shim that records what `start` printed (what containerd
/// parsed) in `<dir>/start-reply-<id>`.
fn recording_wrapper(dir: &Path, shim: &Path) -> PathBuf {
    let w = dir.join("recording-shim");
    let script = format!(
        "#!/bin/sh\n\
         id=\n\
         prev=\n\
         for a in \"$@\"; do [ \"$prev\" = -id ] && id=\"$a\"; prev=\"$a\"; done\n\
         case \" $* \" in\n\
         *\" start \"*)\n\
           out=$('{shim}' \"$@\"); rc=$?\n\
           printf '%s' \"$out\" > '{dir}/start-reply-'\"$id\"\n\
           printf '%s' \"$out\"\n\
           exit $rc ;;\n\
         esac\n\
         exec '{shim}' \"$@\"\n",
        shim = shim.display(),
        dir = dir.display()
    );
    e2e::util::write_executable(&w, &script);
    w
}

/// The `start` reply forms (protocol doc 2.4) and who accepts them.
#[derive(Debug, PartialEq)]
enum Reply {
    Bare(String),
    Json {
        version: i64,
        address: String,
        protocol: String,
    },
}

fn parse_reply(s: &str) -> Reply {
    let t = s.trim();
    if t.starts_with('{') {
        let v: Value = serde_json::from_str(t).unwrap_or_else(|e| panic!("bad JSON reply {t:?}: {e}"));
        Reply::Json {
            version: v["version"].as_i64().unwrap_or(0),
            address: v["address"].as_str().unwrap_or("").to_string(),
            protocol: v["protocol"].as_str().unwrap_or("").to_string(),
        }
    } else {
        Reply::Bare(t.to_string())
    }
}

/// A real container through a wrapper that records `start`'s reply: the reply has a form this
/// containerd accepts (1.6: bare address only; 1.7: bare or JSON version 2; 2.x: also JSON
/// version 3), the container runs, and the shim serves the task API version containerd then
/// uses (v2, or v3 when the reply says 3) — and on 2.x also v3 — with the same answers.
#[test]
fn start_reply_is_one_this_containerd_accepts_and_the_shim_serves_the_task_api_it_dials() {
    let d = Daemon::start();
    let v = d.version();
    let wrapper = recording_wrapper(d.tmp(), d.shim_bin());
    let id = d.id("reply");
    d.ctr(&[
        "run",
        "-d",
        "--runtime",
        wrapper.to_str().expect("utf-8"),
        "--rootfs",
        d.rootfs().to_str().expect("utf-8"),
        &id,
        "/bin/sleep",
        "1000",
    ])
    .ok();
    let task = d.wait_task_status(&id, "RUNNING", T);
    let raw =
        std::fs::read_to_string(d.tmp().join(format!("start-reply-{id}"))).expect("the wrapper recorded start's reply");
    let sock = format!("unix://{}", d.shim_socket(&id).display());
    let reply = parse_reply(&raw);
    let service_version = match &reply {
        Reply::Bare(a) => {
            assert_eq!(a, &sock, "bare start reply");
            2
        }
        Reply::Json {
            version,
            address,
            protocol,
        } => {
            assert!(
                v.at_least(1, 7),
                "{} takes a JSON start reply literally as an address: {raw:?}",
                v.label()
            );
            assert!(
                *version == 2 || (*version == 3 && v.at_least(2, 0)),
                "{} does not accept start reply version {version}: {raw:?}",
                v.label()
            );
            assert_eq!(
                (address.as_str(), protocol.as_str()),
                (sock.as_str(), "ttrpc"),
                "{raw:?}"
            );
            *version
        }
    };
    // 2.x logs what it understood.
    if v.at_least(2, 0) {
        let want = format!("msg=\"connecting to shim {id}\"");
        let line = d
            .log_text()
            .lines()
            .find(|l| l.contains(&want))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("{} did not log `{want}`\n{}", v.label(), d.log_tail(30)));
        assert!(
            line.contains(&format!("version={service_version}")) && line.contains("protocol=ttrpc"),
            "{} understood another version/protocol than the reply {raw:?}: {line}",
            v.label()
        );
    }

    let client = ttrpc::Client::connect(&sock).unwrap_or_else(|e| panic!("connect {sock}: {e:?}"));
    let mut req = ConnectRequest::new();
    req.id = id.clone();
    let v2 = protos::task_ttrpc::TaskClient::new(client.clone()).connect(rpc_ctx(d.ns()), &req);
    let v3 = protos::task_v3_ttrpc::TaskClient::new(client).connect(rpc_ctx(d.ns()), &req);
    let used = if service_version >= 3 { &v3 } else { &v2 };
    let used = used.as_ref().unwrap_or_else(|e| {
        panic!(
            "containerd.task.v{service_version}.Task (what {} dials after this reply) fails: {e:?}",
            v.label()
        )
    });
    assert_eq!(used.task_pid, task.pid, "Connect.task_pid");
    let shims = d.shim_processes(&id);
    assert_eq!(shims.len(), 1, "{shims:#?}");
    assert_eq!(used.shim_pid, shims[0].pid as u32, "Connect.shim_pid");
    if v.at_least(2, 0) {
        let v3 = v3.as_ref().unwrap_or_else(|e| {
            panic!(
                "containerd.task.v3.Task fails on the shim of a {} task: {e:?}",
                v.label()
            )
        });
        assert_eq!((v3.shim_pid, v3.task_pid), (used.shim_pid, used.task_pid), "v3 Connect");
    }

    d.ctr(&["task", "kill", "-s", "KILL", &id]).ok();
    d.wait_task_status(&id, "STOPPED", T);
    d.ctr(&["task", "delete", &id]).ok();
    d.ctr(&["container", "delete", &id]).ok();
    let shim_pid = shims[0].pid;
    e2e::util::poll(T, Duration::from_millis(50), || {
        e2e::reaper::reap_orphans();
        procfs::stat(shim_pid).is_none().then_some(())
    })
    .expect("the shim exits after delete");
    d.assert_clean();
}

#[test]
fn start_reply_forms_parse() {
    assert_eq!(
        parse_reply("unix:///run/containerd/s/ab\n"),
        Reply::Bare("unix:///run/containerd/s/ab".into())
    );
    assert_eq!(
        parse_reply(r#"{"version":3,"address":"unix:///x","protocol":"ttrpc"}"#),
        Reply::Json {
            version: 3,
            address: "unix:///x".into(),
            protocol: "ttrpc".into()
        }
    );
}
