//! Task API, cgroups: Stats as `io.containerd.cgroups.v1.Metrics` on cgroup v1 and
//! `io.containerd.cgroups.v2.Metrics` on cgroup v2 (`ctr task metrics`), Update with
//! `LinuxResources` reaching the container's cgroup, and OOM events.
//!
//! ctr (1.6, 1.7 and 2.1) has no `task update` command: Update is sent from our ttrpc client,
//! exactly as containerd forwards it (`LinuxResources` JSON in the Any).

use e2e::cgroup::{self, Knob};
use e2e::ctr::deleted_exit_status;
use e2e::requests::{describe_err, exec_req, stats_req, update_req, Calls};
use e2e::shim::rpc_ctx;
use e2e::util::poll_until;
use e2e::Daemon;
use protos::any::{CGROUPS_V1_METRICS, CGROUPS_V2_METRICS};
use protos::{cgroups_v1, cgroups_v2};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// A file of the container's cgroup (`/<ns>/<id>`, ctr's default cgroups path).
fn cgroup_file(d: &Daemon, id: &str, knob: Knob) -> String {
    cgroup::read(&format!("/{}/{id}", d.ns()), knob)
}

/// The numbers the tests compare, from the Metrics of the host's cgroup mode.
#[derive(Debug)]
struct Stats {
    memory_usage: u64,
    memory_limit: u64,
    /// v1: cpuacct usage in ns with per-CPU values; v2: cpu.stat usage_usec.
    cpu_usage: u64,
    pids_current: u64,
    pids_limit: u64,
}

/// Stats of the init: `io.containerd.cgroups.v1.Metrics` on a v1 host (with per-CPU usage),
/// `io.containerd.cgroups.v2.Metrics` on a v2 host, as containerd's Go shim sends them.
fn stats(d: &Daemon, c: &Calls, id: &str) -> Stats {
    let resp = c
        .client
        .stats(rpc_ctx(d.ns()), &stats_req(id))
        .unwrap_or_else(|e| panic!("Stats({id}): {}", describe_err(&e)));
    let any = resp.stats.as_ref().expect("Stats returned no Any");
    let want = if cgroup::is_v2() {
        CGROUPS_V2_METRICS
    } else {
        CGROUPS_V1_METRICS
    };
    assert_eq!(any.type_url, want, "Stats type URL for the host's cgroup mode");
    if cgroup::is_v2() {
        let m: cgroups_v2::Metrics = protos::any::unpack(any, want).expect("decode v2 Metrics");
        Stats {
            memory_usage: m.memory.usage,
            memory_limit: m.memory.usage_limit,
            cpu_usage: m.cpu.usage_usec,
            pids_current: m.pids.current,
            pids_limit: m.pids.limit,
        }
    } else {
        let m: cgroups_v1::Metrics = protos::any::unpack(any, want).expect("decode v1 Metrics");
        let usage = m.memory.usage.as_ref().expect("memory.usage in Stats");
        let cpu = m.cpu.usage.as_ref().expect("cpu.usage in Stats");
        assert!(!cpu.per_cpu.is_empty(), "Stats cpu.usage.per_cpu: {m:?}");
        Stats {
            memory_usage: usage.usage,
            memory_limit: usage.limit,
            cpu_usage: cpu.total,
            pids_current: m.pids.current,
            pids_limit: m.pids.limit,
        }
    }
}

/// `METRIC VALUE` rows of `ctr task metrics` (table format).
fn metric_rows(text: &str) -> Vec<(String, String)> {
    text.lines()
        .skip_while(|l| !l.starts_with("METRIC"))
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), f.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

/// `ctr task metrics` prints the v1 or v2 metric names (containerd decodes what the shim sends)
/// with the numbers of the container's cgroup, and Stats carries the same numbers.
#[test]
fn ctr_task_metrics_and_stats_show_the_containers_real_cgroup_numbers() {
    let d = Daemon::start();
    let id = d.id("metrics");
    d.run_detached(&["--memory-limit", "67108864"], &id, &["/bin/sleep", "1000"]);
    let client = d.shim_client(&id);
    let c = Calls {
        client: &client,
        ns: d.ns(),
    };
    c.exec(&exec_req(&d, &id, "m1", &["/bin/sleep", "1000"]));
    c.start(&id, "m1");
    // runc's intermediate `runc init` of the exec is reparented to the shim and counts in
    // pids.current until the shim reaps it: wait for the cgroup to settle at init + exec.
    assert!(
        poll_until(T, || cgroup_file(&d, &id, Knob::PidsCurrent) == "2"),
        "pids.current never settled at 2 (init and exec): {}",
        cgroup_file(&d, &id, Knob::PidsCurrent)
    );

    let out = d.ctr(&["task", "metrics", &id]).ok();
    let rows = metric_rows(&out.stdout_str());
    let get = |k: &str| -> u64 {
        rows.iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("ctr task metrics has no numeric {k}: {out}"))
    };
    let (limit, usage, cpu) = if cgroup::is_v2() {
        ("memory.usage_limit", "memory.usage", "cpu.usage_usec")
    } else {
        ("memory.limit_in_bytes", "memory.usage_in_bytes", "cpuacct.usage")
    };
    assert_eq!(get(limit), 67108864, "memory limit: {out}");
    assert!(get(usage) > 0, "memory usage must be real: {out}");
    assert!(get(cpu) > 0, "cpu usage must be real: {out}");
    assert_eq!(get("pids.current"), 2, "pids.current (init and exec): {out}");

    let m = stats(&d, &c, &id);
    assert_eq!(m.memory_limit, 67108864, "Stats memory limit: {m:?}");
    assert!(m.memory_usage > 0, "Stats memory usage: {m:?}");
    assert!(m.cpu_usage > 0, "Stats cpu usage: {m:?}");
    assert_eq!(m.pids_current, 2, "Stats pids.current: {m:?}");

    c.kill(&id, "m1", 9, false);
    c.wait(&id, "m1");
    c.delete(&id, "m1");
    drop(client);
    d.remove_container(&id);
    d.assert_clean();
}

#[test]
fn update_with_linux_resources_changes_the_containers_cgroup_and_stats() {
    let d = Daemon::start();
    let id = d.id("update");
    d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let client = d.shim_client(&id);
    let c = Calls {
        client: &client,
        ns: d.ns(),
    };
    let resources = serde_json::json!({
        "memory": { "limit": 33554432 },
        "cpu": { "shares": 512 },
        "pids": { "limit": 77 },
    });
    let r = update_req(&id, &serde_json::to_vec(&resources).expect("JSON"));
    client
        .update(rpc_ctx(d.ns()), &r)
        .unwrap_or_else(|e| panic!("Update: {}\n{}", describe_err(&e), d.log_tail(20)));
    assert_eq!(
        cgroup_file(&d, &id, Knob::MemoryLimit),
        "33554432",
        "memory limit after Update"
    );
    let shares = if cgroup::is_v2() { cgroup::cpu_weight(512) } else { 512 };
    assert_eq!(
        cgroup_file(&d, &id, Knob::CpuShares),
        shares.to_string(),
        "cpu shares after Update"
    );
    assert_eq!(cgroup_file(&d, &id, Knob::PidsMax), "77", "pids limit after Update");
    let m = stats(&d, &c, &id);
    assert_eq!(m.memory_limit, 33554432, "Stats after Update: {m:?}");
    assert_eq!(m.pids_limit, 77, "Stats pids.limit after Update: {m:?}");
    drop(client);
    d.remove_container(&id);
    d.assert_clean();
}

#[test]
fn memory_limit_exceeded_gives_oom_event_before_exit_137() {
    let d = Daemon::start();
    let ev = d.events();
    let id = d.id("oom");
    let out = d
        .run_rootfs(
            &["--rm", "--memory-limit", "16777216"],
            &id,
            &["/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
        )
        .timeout(Duration::from_secs(60))
        .run();
    assert_eq!(out.code(), Some(137), "ctr run of an OOM-killed container: {out}");
    let exit = ev.wait_topic("/tasks/exit", &id, T);
    assert_eq!(exit.u64_field("exit_status"), 137, "{}", ev.describe());
    let oom = ev.wait_topic("/tasks/oom", &id, T);
    assert!(
        oom.seq < exit.seq,
        "/tasks/oom must be published before /tasks/exit\n{}",
        ev.describe()
    );
    ev.wait_topic("/tasks/delete", &id, T);
    d.assert_clean();
}

/// An exec that runs out of memory: the OOM event comes before the exec's exit, the container
/// keeps running and is deleted cleanly.
#[test]
fn oom_of_an_exec_is_published_before_its_exit_and_the_container_survives() {
    let d = Daemon::start();
    let id = d.id("execoom");
    d.run_detached(&["--memory-limit", "16777216"], &id, &["/bin/sleep", "1000"]);
    let ev = d.events();
    let client = d.shim_client(&id);
    let c = Calls {
        client: &client,
        ns: d.ns(),
    };
    c.exec(&exec_req(
        &d,
        &id,
        "hog",
        &["/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
    ));
    c.start(&id, "hog");
    let w = c.wait(&id, "hog");
    assert_eq!(w.exit_status, 137, "the OOM-killed exec: {w:?}");
    let exit = ev.wait_for("/tasks/exit of hog", T, |e| {
        e.topic == "/tasks/exit" && e.str_field("id") == "hog"
    });
    let oom = ev.wait_topic("/tasks/oom", &id, T);
    assert!(
        oom.seq < exit.seq,
        "/tasks/oom must be published before the exec's /tasks/exit\n{}",
        ev.describe()
    );
    c.delete(&id, "hog");
    assert_eq!(
        d.task(&id).map(|t| t.status),
        Some("RUNNING".to_string()),
        "the init survives its exec's OOM"
    );
    drop(client);
    d.ctr(&["task", "kill", "-s", "KILL", &id]).ok();
    d.wait_task_status(&id, "STOPPED", T);
    let del = d.ctr(&["task", "delete", &id]).run();
    assert_eq!(deleted_exit_status(&del), Some(137), "{del}");
    d.ctr(&["container", "delete", &id]).ok();
    d.assert_clean();
}
