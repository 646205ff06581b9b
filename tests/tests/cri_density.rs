//! Density: a pod of 10 containers is served by one shim; its memory is measured and printed
//! (`smaps_rollup`: Rss, Pss, Anonymous). Also: one shim serves the pod's containers
//! concurrently (a slow exec in one does not hold up the others).
#![cfg(feature = "cri")]

use e2e::cri::api::*;
use e2e::cri::{memory_usage, CriDaemon, MemoryUsage};
use e2e::procfs;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);
const CONTAINERS: usize = 10;

#[test]
fn ten_containers_in_one_pod_share_one_shim_and_its_memory_is_measured() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("dense");
    let pod = d.run_pod(&pod_cfg);
    let shim = d.wait_shims(1, T)[0].pid;
    let settle = || std::thread::sleep(Duration::from_millis(500));
    settle();
    let sandbox_only = memory_usage(shim).expect("shim memory");

    let ids: Vec<String> = (0..CONTAINERS)
        .map(|i| {
            let name = format!("c{i}");
            let cmd = ["sh", "-c", "echo up; exec sleep 1000"];
            d.start_container(&pod, &pod_cfg, &d.container_config(&pod_cfg, &name, &cmd))
        })
        .collect();
    for id in &ids {
        d.wait_container_state(id, ContainerState::ContainerRunning, T);
    }
    let shims = d.wait_shims(1, T);
    assert_eq!(shims[0].pid, shim, "the pod's shim changed");
    for id in &ids {
        assert_eq!(
            procfs::stat(d.container_pid(id)).map(|s| s.ppid),
            Some(shim),
            "container {id} is not served by the pod's shim"
        );
    }
    // Work every container once (exec + stats) so the shim has seen all kinds of requests.
    for id in &ids {
        assert_eq!(d.exec_ok(id, &["echo", "x"]), "x\n");
        d.ok("ContainerStats", d.cri().container_stats(id));
    }
    settle();
    let loaded: MemoryUsage = memory_usage(shim).expect("shim memory");
    let threads = std::fs::read_to_string(format!("/proc/{shim}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    let exe = procfs::link(shim, "exe")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    // Straight to stderr (not captured by the test harness): the numbers belong in the CI log.
    let report = format!(
        "[density] shim {exe} (pid {shim}, {threads} threads): sandbox only: {sandbox_only}; \
         sandbox + {CONTAINERS} containers: {loaded}\n"
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), report.as_bytes());
    assert!(loaded.rss_kib > 0 && loaded.pss_kib > 0, "{loaded}");

    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}

#[test]
fn a_slow_exec_does_not_hold_up_the_pods_other_containers() {
    let d = CriDaemon::start();
    let pod_cfg = d.pod_config("busy");
    let pod = d.run_pod(&pod_cfg);
    let a = d.start_container(&pod, &pod_cfg, &d.container_config(&pod_cfg, "a", &["sleep", "1000"]));
    d.wait_container_state(&a, ContainerState::ContainerRunning, T);

    // A 10-second ExecSync in a, from another client (another connection, another thread).
    let other = d.new_client();
    let a2 = a.clone();
    let slow = std::thread::spawn(move || {
        let t0 = Instant::now();
        let r = other.exec_sync(&a2, &["sh", "-c", "sleep 10; echo slow"], 30);
        (r, t0.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    // Meanwhile the same shim starts another container, runs execs in both, reports stats.
    let t0 = Instant::now();
    let b = d.start_container(&pod, &pod_cfg, &d.container_config(&pod_cfg, "b", &["sleep", "1000"]));
    d.wait_container_state(&b, ContainerState::ContainerRunning, T);
    assert_eq!(d.exec_ok(&b, &["echo", "fast"]), "fast\n");
    assert_eq!(d.exec_ok(&a, &["echo", "also"]), "also\n");
    d.ok("ContainerStats", d.cri().container_stats(&a));
    let took = t0.elapsed();
    assert!(
        !slow.is_finished(),
        "starting b and two execs took {took:?}: they waited for the slow exec in a"
    );
    let (r, slow_took) = slow.join().expect("slow exec thread");
    let r = d.ok("slow ExecSync", r);
    assert_eq!(
        (String::from_utf8_lossy(&r.stdout).as_ref(), r.exit_code),
        ("slow\n", 0)
    );
    assert!(slow_took >= Duration::from_secs(10), "{slow_took:?}");
    d.wait_shims(1, T);
    d.remove_pod(&pod);
    d.wait_shims(0, T);
    d.assert_clean();
}
