//! Pod grouping: one shim process serves a pod's sandbox and all its containers (grouped by the
//! `io.kubernetes.cri.sandbox-id` annotation, or by `io.containerd.runc.v2.group`); it exits
//! when its last container is gone.
#![cfg(feature = "cri")]

use e2e::cri::api::*;
use e2e::cri::{CriDaemon, CriOptions};
use e2e::procfs;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// Asserts that `pid`'s parent is the shim `shim`.
fn assert_child_of(d: &CriDaemon, what: &str, pid: i32, shim: i32) {
    assert_eq!(
        procfs::stat(pid).map(|s| s.ppid),
        Some(shim),
        "{what} (pid {pid}) is not served by shim {shim}; shims: {:#?}",
        d.shims()
    );
}

fn assert_gone(pid: i32, what: &str) {
    let gone = e2e::util::poll(Duration::from_secs(15), Duration::from_millis(50), || {
        e2e::reaper::reap_orphans();
        procfs::stat(pid).is_none().then_some(())
    });
    assert!(
        gone.is_some(),
        "{what} (pid {pid}) still exists: {:?}",
        procfs::stat(pid)
    );
}

#[test]
fn one_shim_per_pod_and_two_pods_two_shims() {
    let d = CriDaemon::start();
    let a_cfg = d.pod_config("a");
    let a = d.run_pod(&a_cfg);
    let b_cfg = d.pod_config("b");
    let b = d.run_pod(&b_cfg);
    let a_containers: Vec<String> = ["a1", "a2", "a3"]
        .iter()
        .map(|n| d.start_container(&a, &a_cfg, &d.container_config(&a_cfg, n, &["sleep", "1000"])))
        .collect();
    let b1 = d.start_container(&b, &b_cfg, &d.container_config(&b_cfg, "b1", &["sleep", "1000"]));
    for c in a_containers.iter().chain([&b1]) {
        d.wait_container_state(c, ContainerState::ContainerRunning, T);
    }

    // Two pods, two shims: each started for its sandbox, each the parent of its pod's processes.
    d.wait_shims(2, T);
    let shim_a = d
        .shim_for(&a)
        .unwrap_or_else(|| panic!("no shim with -id {a}: {:#?}", d.shims()));
    let shim_b = d
        .shim_for(&b)
        .unwrap_or_else(|| panic!("no shim with -id {b}: {:#?}", d.shims()));
    assert_ne!(shim_a.pid, shim_b.pid);
    assert_child_of(&d, "sandbox a", d.sandbox_pid(&a), shim_a.pid);
    assert_child_of(&d, "sandbox b", d.sandbox_pid(&b), shim_b.pid);
    for c in &a_containers {
        assert_child_of(&d, &format!("container {c} of pod a"), d.container_pid(c), shim_a.pid);
        assert!(
            !d.shim_socket(c).exists(),
            "container {c} got a socket of its own: it is grouped by its sandbox"
        );
    }
    assert_child_of(&d, "container b1", d.container_pid(&b1), shim_b.pid);
    assert!(d.shim_socket(&a).exists() && d.shim_socket(&b).exists());

    // Removing one container keeps the pod's shim.
    d.ok("StopContainer", d.cri().stop_container(&a_containers[0], 0));
    d.ok("RemoveContainer", d.cri().remove_container(&a_containers[0]));
    assert_eq!(d.wait_shims(2, T).len(), 2);
    assert_eq!(d.exec_ok(&a_containers[1], &["echo", "a2"]), "a2\n");

    // Removing pod a ends shim a only.
    d.remove_pod(&a);
    assert_gone(shim_a.pid, "shim of pod a");
    assert!(!d.shim_socket(&a).exists(), "the socket of pod a's shim is left");
    let left = d.wait_shims(1, T);
    assert_eq!(left[0].pid, shim_b.pid);
    assert_eq!(d.exec_ok(&b1, &["echo", "b"]), "b\n");

    d.remove_pod(&b);
    assert_gone(shim_b.pid, "shim of pod b");
    d.wait_shims(0, T);
    d.assert_clean();
}

/// `io.containerd.runc.v2.group` (passed to the OCI spec by the handler's `pod_annotations`)
/// takes precedence over the sandbox id: two pods of one group share one shim.
#[test]
fn group_annotation_puts_two_pods_in_one_shim() {
    const GROUP: &str = "io.containerd.runc.v2.group";
    let d = CriDaemon::start_with(CriOptions {
        pod_annotations: vec![GROUP.into()],
        ..Default::default()
    });
    let group = format!("grp-{}", std::process::id());
    let mut pods = Vec::new();
    for name in ["g1", "g2"] {
        let mut cfg = d.pod_config(name);
        cfg.annotations.insert(GROUP.into(), group.clone());
        let pod = d.run_pod(&cfg);
        let c = d.start_container(&pod, &cfg, &d.container_config(&cfg, "c", &["sleep", "1000"]));
        d.wait_container_state(&c, ContainerState::ContainerRunning, T);
        pods.push((pod, c));
    }
    let shims = d.wait_shims(1, T);
    let shim = shims[0].pid;
    assert_eq!(
        procfs::flag_value(&shims[0].argv, "id"),
        Some(pods[0].0.as_str()),
        "the group's shim was started for the first sandbox: {}",
        shims[0]
    );
    assert!(d.shim_socket(&group).exists(), "no shim socket for group {group}");
    for (pod, c) in &pods {
        assert_child_of(&d, &format!("sandbox {pod}"), d.sandbox_pid(pod), shim);
        assert_child_of(&d, &format!("container {c}"), d.container_pid(c), shim);
    }

    // The shim outlives the pod it was started for while the group has members.
    d.remove_pod(&pods[0].0);
    assert_eq!(d.wait_shims(1, T)[0].pid, shim);
    assert_eq!(d.exec_ok(&pods[1].1, &["echo", "still"]), "still\n");
    d.remove_pod(&pods[1].0);
    assert_gone(shim, "the group's shim");
    let sock = d.shim_socket(&group);
    let removed = e2e::util::poll(Duration::from_secs(5), Duration::from_millis(50), || {
        (!sock.exists()).then_some(())
    });
    assert!(removed.is_some(), "the group's shim socket {} is left", sock.display());
    d.assert_clean();
}
