//! The CRI harness itself: the leak checker sees a running pod, teardown removes everything of
//! it (pods, shims, mounts, netns, bridge, CNI cache, cgroups, runc state, temp dir), and the
//! daemon config is built from the packaging snippet.
#![cfg(feature = "cri")]

use e2e::cgroup;
use e2e::cri::api::*;
use e2e::cri::{CriDaemon, CRI_NAMESPACE};
use e2e::procfs;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[test]
fn leak_checker_sees_a_running_pod_and_teardown_removes_it() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("leaky");
    let pod = d.run_pod(&pod_cfg);
    let c = d.start_container(&pod, &pod_cfg, &d.container_config(&pod_cfg, "c", &["sleep", "1000"]));
    d.wait_container_state(&c, ContainerState::ContainerRunning, T);
    let shim = d.wait_shims(1, T)[0].pid;
    let cpid = d.container_pid(&c);
    let sock = d.shim_socket(&pod);
    let runc_state = Path::new("/run/containerd/runc").join(CRI_NAMESPACE).join(&c);
    let cgroup_top = cgroup::dir("memory", d.cgroup_root());
    let (tmp, bridge) = (d.tmp().to_path_buf(), d.net().bridge.clone());
    let cni_prefix = format!("{}-", d.net().name);

    let leaks = d.leaks().join("\n");
    for want in [
        format!("process pid {shim} "),
        format!("process pid {cpid} "),
        format!("shim socket {}", sock.display()),
        format!("runc state {}", runc_state.display()),
        format!("cgroup {}", cgroup_top.display()),
        "netns ".to_string(),
        format!("CNI cache /var/lib/cni/results/{cni_prefix}"),
        format!("CRI still has pod {pod}"),
        format!("CRI still has container {c}"),
        "mount ".to_string(),
    ] {
        assert!(leaks.contains(&want), "leak report lacks {want:?}:\n{leaks}");
    }
    assert!(e2e::cri::daemon::link_exists(&bridge));

    drop(d); // teardown with the pod running
    e2e::reaper::reap_orphans();
    for pid in [shim, cpid] {
        assert!(procfs::stat(pid).is_none(), "pid {pid} survived teardown");
    }
    assert!(!sock.exists(), "shim socket survived teardown");
    assert!(!runc_state.exists(), "runc state survived teardown");
    assert!(!cgroup_top.exists(), "cgroups survived teardown");
    assert!(
        !e2e::cri::daemon::link_exists(&bridge),
        "bridge {bridge} survived teardown"
    );
    assert!(procfs::mounts_under(&tmp).is_empty(), "mounts survived teardown");
    assert!(!tmp.exists(), "temp dir {} survived teardown", tmp.display());
    let cache: Vec<_> = std::fs::read_dir("/var/lib/cni/results")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !cache.iter().any(|n: &String| n.starts_with(&cni_prefix)),
        "CNI cache survived teardown: {cache:?}"
    );
}

#[test]
fn daemon_config_comes_from_the_packaging_snippet() {
    let d = CriDaemon::start();
    let text = std::fs::read_to_string(d.tmp().join("config.toml")).expect("config");
    let h = d.handler();
    assert_eq!(h.name, "runc-rs");
    assert_eq!(
        h.resolution,
        e2e::cri::config::ShimResolution::BinaryName("containerd-shim-runc-rs-v2".into()),
        "runtime type of packaging/containerd/config-v2-side-by-side.toml"
    );
    let linked = d.tmp().join("bin/containerd-shim-runc-rs-v2");
    assert_eq!(
        std::fs::canonicalize(&linked).ok(),
        std::fs::canonicalize(d.shim_bin()).ok(),
        "containerd's PATH must resolve the snippet's runtime to the shim under test"
    );
    for want in [
        "restrict_oom_score_adj = true".to_string(),
        "runtime_type = \"io.containerd.runc-rs.v2\"".to_string(),
        format!("sandbox_image = \"{}\"", e2e::cri::PAUSE_IMAGE),
    ] {
        assert!(text.contains(&want), "config lacks {want:?}:\n{text}");
    }
    // CRI knows both images without a pull.
    for image in [e2e::cri::PAUSE_IMAGE, e2e::cri::BUSYBOX_IMAGE] {
        let img = d.ok("ImageStatus", d.cri().image_status(image)).expect("image known");
        assert!(img.repo_tags.iter().any(|t| t == image), "{img:?}");
    }
    d.assert_clean();
}
