//! The Kubernetes path end to end: containerd's CRI plugin runs pods through the shim under
//! test (runtime handler from the packaging snippets), driven by a CRI v1 client.
#![cfg(feature = "cri")]

use e2e::cgroup::{self, Knob};
use e2e::cri::api::*;
use e2e::cri::{CriDaemon, CriOptions, Snippet, CRI_NAMESPACE};
use e2e::procfs;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// A container that exits 42 on SIGTERM and otherwise sleeps (SIGTERM-ignoring pid 1 otherwise).
const TRAP_TERM: [&str; 3] = [
    "/bin/sh",
    "-c",
    "trap 'echo got TERM; exit 42' TERM; echo started; while :; do sleep 1 & wait $!; done",
];

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

#[test]
fn pod_and_container_lifecycle_through_cri() {
    let d = CriDaemon::start();
    assert_eq!(d.handler().name, "runc-rs", "the side-by-side snippet's handler");

    // RunPodSandbox, PodSandboxStatus.
    let pod_cfg = d.pod_config("life");
    let pod = d.run_pod(&pod_cfg);
    let st = d.ok("PodSandboxStatus", d.cri().pod_sandbox_status(&pod, false));
    let pst = st.status.expect("pod status");
    assert_eq!(pst.id, pod);
    assert_eq!(pst.state, PodSandboxState::SandboxReady as i32, "{pst:#?}");
    assert_eq!(pst.runtime_handler, "runc-rs");
    let ip = pst.network.as_ref().map(|n| n.ip.clone()).unwrap_or_default();
    assert!(
        ip.starts_with(&d.net().prefix),
        "pod IP {ip:?} is not in our subnet {}",
        d.net().subnet
    );
    assert!(
        e2e::cri::daemon::link_exists(&d.net().bridge),
        "the CNI bridge {} was not created",
        d.net().bridge
    );
    let shims = d.wait_shims(1, T);
    let shim = shims[0].pid;
    assert_eq!(
        procfs::flag_value(&shims[0].argv, "id"),
        Some(pod.as_str()),
        "the pod's shim is started for the sandbox: {}",
        shims[0]
    );
    assert_eq!(procfs::flag_value(&shims[0].argv, "namespace"), Some(CRI_NAMESPACE));
    assert!(d.shim_socket(&pod).exists(), "no shim socket for the sandbox");
    let pause = d.sandbox_pid(&pod);
    assert_eq!(
        procfs::stat(pause).map(|s| s.ppid),
        Some(shim),
        "the pause process is not a child of the shim"
    );

    // CreateContainer, StartContainer, ContainerStatus, ListContainers.
    let c_cfg = d.container_config(&pod_cfg, "main", &TRAP_TERM);
    let c = d.ok("CreateContainer", d.cri().create_container(&pod, &c_cfg, &pod_cfg));
    let st = d.container_status(&c);
    assert_eq!(st.state, ContainerState::ContainerCreated as i32, "{st:#?}");
    d.ok("StartContainer", d.cri().start_container(&c));
    let st = d.wait_container_state(&c, ContainerState::ContainerRunning, T);
    assert!(st.started_at > 0, "{st:#?}");
    assert_eq!(st.metadata.as_ref().map(|m| m.name.as_str()), Some("main"));
    let listed = d.ok("ListContainers", d.cri().list_containers(None));
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0].id, c);
    assert_eq!(listed[0].pod_sandbox_id, pod);
    assert_eq!(listed[0].state, ContainerState::ContainerRunning as i32);
    let cpid = d.container_pid(&c);
    assert_eq!(
        procfs::stat(cpid).map(|s| s.ppid),
        Some(shim),
        "the container's init is not a child of the pod's shim"
    );
    assert_eq!(d.wait_shims(1, T)[0].pid, shim, "still one shim for the pod");

    // ExecSync sees the pod's network: eth0 with the pod IP.
    let addrs = d.exec_ok(&c, &["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&format!("{ip}/24")), "eth0 lacks {ip}/24: {addrs}");
    let routes = d.exec_ok(&c, &["ip", "-4", "route"]);
    assert!(!routes.contains("default"), "a default route in the pod: {routes}");

    // ContainerStats.
    d.exec_ok(&c, &["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"]);
    let stats = d.ok("ContainerStats", d.cri().container_stats(&c));
    assert_eq!(stats.attributes.as_ref().map(|a| a.id.as_str()), Some(c.as_str()));
    let cpu = stats
        .cpu
        .as_ref()
        .and_then(|c| c.usage_core_nano_seconds)
        .map(|v| v.value);
    assert!(cpu.unwrap_or(0) > 0, "no CPU usage in {stats:#?}");
    let mem = stats.memory.as_ref().and_then(|m| m.working_set_bytes).map(|v| v.value);
    assert!(mem.unwrap_or(0) > 0, "no memory working set in {stats:#?}");

    // UpdateContainerResources reaches the container's cgroup.
    let cg = d.container_cgroup(&c);
    assert!(cg.starts_with(&format!("/{}/", d.cgroup_root())), "cgroup {cg}");
    d.ok(
        "UpdateContainerResources",
        d.cri().update_container_resources(
            &c,
            LinuxContainerResources {
                memory_limit_in_bytes: 96 << 20,
                cpu_shares: 512,
                cpu_period: 100_000,
                cpu_quota: 50_000,
                ..Default::default()
            },
        ),
    );
    assert_eq!(cgroup::read(&cg, Knob::MemoryLimit), (96u64 << 20).to_string());
    let (shares, quota) = if cgroup::is_v2() {
        (cgroup::cpu_weight(512).to_string(), "50000 100000")
    } else {
        ("512".to_string(), "50000")
    };
    assert_eq!(cgroup::read(&cg, Knob::CpuShares), shares);
    assert_eq!(cgroup::read(&cg, Knob::CpuQuota), quota);
    let procs = cgroup::read(&cg, Knob::Procs);
    assert!(
        procs.lines().any(|l| l.trim() == cpid.to_string()),
        "container init {cpid} is not in {}: {procs}",
        cgroup::file(&cg, Knob::Procs).display()
    );

    // StopContainer: SIGTERM, the trap exits 42.
    d.ok("StopContainer", d.cri().stop_container(&c, 10));
    let st = d.wait_container_state(&c, ContainerState::ContainerExited, T);
    assert_eq!(st.exit_code, 42, "{st:#?}");
    assert_eq!(st.reason, "Error", "{st:#?}");
    assert!(st.finished_at >= st.started_at, "{st:#?}");
    let log = read(&st.log_path);
    assert!(log.contains(" stdout F got TERM"), "CRI log at {}: {log}", st.log_path);
    assert_eq!(d.wait_shims(1, T)[0].pid, shim, "the shim stays for the sandbox");

    // RemoveContainer, StopPodSandbox, RemovePodSandbox: the shim exits.
    d.ok("RemoveContainer", d.cri().remove_container(&c));
    assert!(d.ok("ListContainers", d.cri().list_containers(None)).is_empty());
    d.ok("StopPodSandbox", d.cri().stop_pod_sandbox(&pod));
    let pst = d.ok("PodSandboxStatus", d.cri().pod_sandbox_status(&pod, false));
    assert_eq!(
        pst.status.map(|s| s.state),
        Some(PodSandboxState::SandboxNotready as i32)
    );
    d.ok("RemovePodSandbox", d.cri().remove_pod_sandbox(&pod));
    d.wait_shims(0, T);
    assert!(procfs::stat(shim).is_none(), "the shim {shim} still exists");
    d.assert_clean();
}

#[test]
fn stop_container_escalates_to_sigkill_after_the_grace_period() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("kill");
    let pod = d.run_pod(&pod_cfg);
    // pid 1 of its own pid namespace without a handler: SIGTERM does nothing.
    let c = d.start_container(
        &pod,
        &pod_cfg,
        &d.container_config(&pod_cfg, "stubborn", &["sleep", "1000"]),
    );
    d.wait_container_state(&c, ContainerState::ContainerRunning, T);
    let t0 = std::time::Instant::now();
    d.ok("StopContainer", d.cri().stop_container(&c, 2));
    let took = t0.elapsed();
    let st = d.wait_container_state(&c, ContainerState::ContainerExited, T);
    assert_eq!(st.exit_code, 137, "{st:#?}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "StopContainer with a 2s grace period took {took:?}"
    );
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}

/// The other packaging snippet: our shim replaces the default runtime; a pod that names no
/// runtime handler gets it.
#[test]
fn replace_snippet_serves_pods_without_a_runtime_handler() {
    let d = CriDaemon::start_with(CriOptions {
        snippet: Snippet::Replace,
        ..Default::default()
    });
    assert!(d.handler().is_default);
    assert_eq!(d.handler().request_name(), "");
    let pod_cfg = d.pod_config("default");
    let pod = d.run_pod(&pod_cfg);
    let c = d.start_container(&pod, &pod_cfg, &d.container_config(&pod_cfg, "c", &["sleep", "1000"]));
    d.wait_container_state(&c, ContainerState::ContainerRunning, T);
    d.wait_shims(1, T); // checks the shim is SHIM_BIN, not the Go shim in PATH
    assert_eq!(d.exec_ok(&c, &["echo", "hi"]), "hi\n");
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}

/// What kubelet meets around the happy path: a container whose command does not exist, resources
/// updated before start, ExecSync in an exited container, a terminal container attached and
/// resized, and StopPodSandbox with containers still running.
#[test]
fn failed_start_terminal_container_and_stopping_a_pod_with_running_containers() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("edges");
    let pod = d.run_pod(&pod_cfg);
    let shim = d.wait_shims(1, T)[0].pid;

    // StartContainer of a missing binary fails; the container is EXITED with StartError.
    let bad_cfg = d.container_config(&pod_cfg, "bad", &["/no/such/binary"]);
    let bad = d.ok("CreateContainer", d.cri().create_container(&pod, &bad_cfg, &pod_cfg));
    let e = d
        .cri()
        .start_container(&bad)
        .expect_err("starting /no/such/binary must fail");
    assert!(e.message.contains("no such file or directory"), "{e}");
    let st = d.container_status(&bad);
    assert_eq!(
        (st.state, st.exit_code, st.reason.as_str()),
        (ContainerState::ContainerExited as i32, 128, "StartError"),
        "{st:#?}"
    );
    d.ok("RemoveContainer", d.cri().remove_container(&bad));
    assert_eq!(
        d.wait_shims(1, T)[0].pid,
        shim,
        "the pod's shim survives a failed start"
    );

    // Resources updated between create and start apply at start.
    let c_cfg = d.container_config(&pod_cfg, "late", &["sleep", "1000"]);
    let c = d.ok("CreateContainer", d.cri().create_container(&pod, &c_cfg, &pod_cfg));
    let limit = LinuxContainerResources {
        memory_limit_in_bytes: 80 << 20,
        ..Default::default()
    };
    d.ok(
        "UpdateContainerResources",
        d.cri().update_container_resources(&c, limit),
    );
    d.ok("StartContainer", d.cri().start_container(&c));
    d.wait_container_state(&c, ContainerState::ContainerRunning, T);
    assert_eq!(
        cgroup::read(&d.container_cgroup(&c), Knob::MemoryLimit),
        (80u64 << 20).to_string()
    );

    // A container with a terminal: attach, resize, read.
    let mut tty_cfg = d.container_config(&pod_cfg, "tty", &["sh", "-c", "while read l; do stty size; done"]);
    tty_cfg.tty = true;
    tty_cfg.stdin = true;
    let t = d.start_container(&pod, &pod_cfg, &tty_cfg);
    d.wait_container_state(&t, ContainerState::ContainerRunning, T);
    let url = d.ok(
        "Attach(tty)",
        d.cri().attach(AttachRequest {
            container_id: t.clone(),
            stdin: true,
            tty: true,
            stdout: true,
            stderr: false,
        }),
    );
    let mut s = e2e::cri::StreamSession::open(&url).unwrap_or_else(|e| panic!("{e}"));
    s.send_resize(77, 22).expect("resize");
    let mut resized = false;
    for _ in 0..50 {
        s.send_stdin(b"x\r").expect("send stdin");
        if s.read_until(Duration::from_millis(200), |s| s.stdout_str().contains("22 77")) {
            resized = true;
            break;
        }
    }
    assert!(resized, "the container's terminal never saw the resize: {s:?}");
    s.close();

    // ExecSync in an exited container is refused by CRI.
    let ex = d.start_container(
        &pod,
        &pod_cfg,
        &d.container_config(&pod_cfg, "ex", &["sh", "-c", "exit 4"]),
    );
    let st = d.wait_container_state(&ex, ContainerState::ContainerExited, T);
    assert_eq!(st.exit_code, 4);
    assert!(d.cri().exec_sync(&ex, &["true"], 5).is_err());

    // StopPodSandbox with running containers: all stop, the shim exits.
    d.ok("StopPodSandbox", d.cri().stop_pod_sandbox(&pod));
    for id in [&c, &t, &ex] {
        assert_eq!(
            d.container_status(id).state,
            ContainerState::ContainerExited as i32,
            "container {id} after StopPodSandbox"
        );
    }
    d.wait_shims(0, T);
    d.ok("RemovePodSandbox", d.cri().remove_pod_sandbox(&pod));
    d.assert_clean();
}
