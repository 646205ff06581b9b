//! Task API, cgroups: Stats as `io.containerd.cgroups.v1.Metrics` (`ctr task metrics`), Update
//! with `LinuxResources` reaching the container's cgroup, and OOM events.
//!
//! ctr (1.6, 1.7 and 2.1) has no `task update` command: Update is sent from our ttrpc client,
//! exactly as containerd forwards it (`LinuxResources` JSON in the Any).

use e2e::ctr::deleted_exit_status;
use e2e::requests::{describe_err, exec_req, Calls, RESOURCES_TYPE_URL};
use e2e::shim::rpc_ctx;
use e2e::Daemon;
use protobuf::MessageField;
use protos::any::pack_bytes;
use protos::cgroups_v1::Metrics;
use protos::task::{StatsRequest, UpdateTaskRequest};
use std::path::PathBuf;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn cgroup_file(d: &Daemon, id: &str, controller: &str, file: &str) -> String {
    let p = PathBuf::from("/sys/fs/cgroup")
        .join(controller)
        .join(d.ns())
        .join(id)
        .join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

fn stats(d: &Daemon, c: &Calls, id: &str) -> Metrics {
    let mut r = StatsRequest::new();
    r.id = id.to_string();
    let resp = c
        .client
        .stats(rpc_ctx(d.ns()), &r)
        .unwrap_or_else(|e| panic!("Stats({id}): {}", describe_err(&e)));
    let any = resp.stats.as_ref().expect("Stats returned no Any");
    assert_eq!(
        any.type_url, "io.containerd.cgroups.v1.Metrics",
        "Stats type URL on a cgroup v1 host"
    );
    protos::any::unpack(any, "io.containerd.cgroups.v1.Metrics").expect("decode v1 Metrics")
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

#[test]
fn ctr_task_metrics_and_stats_show_the_containers_real_cgroup_v1_numbers() {
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

    let out = d.ctr(&["task", "metrics", &id]).ok();
    let rows = metric_rows(&out.stdout_str());
    let get = |k: &str| -> u64 {
        rows.iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("ctr task metrics has no numeric {k}: {out}"))
    };
    assert_eq!(get("memory.limit_in_bytes"), 67108864, "memory limit: {out}");
    assert!(get("memory.usage_in_bytes") > 0, "memory usage must be real: {out}");
    assert!(get("cpuacct.usage") > 0, "cpu usage must be real: {out}");
    let pids_now: u64 = cgroup_file(&d, &id, "pids", "pids.current")
        .parse()
        .expect("pids.current");
    assert_eq!(pids_now, 2, "two processes in the container (init and exec)");
    assert_eq!(get("pids.current"), pids_now, "pids.current: {out}");

    let m = stats(&d, &c, &id);
    let mem = m.memory.usage.as_ref().expect("memory.usage in Stats");
    assert_eq!(mem.limit, 67108864, "Stats memory.usage.limit");
    assert!(mem.usage > 0, "Stats memory.usage.usage: {m:?}");
    assert!(
        m.cpu
            .usage
            .as_ref()
            .is_some_and(|u| u.total > 0 && !u.per_cpu.is_empty()),
        "Stats cpu.usage: {m:?}"
    );
    assert_eq!(m.pids.current, 2, "Stats pids.current");

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
    let mut r = UpdateTaskRequest::new();
    r.id = id.clone();
    r.resources = MessageField::some(pack_bytes(
        RESOURCES_TYPE_URL,
        serde_json::to_vec(&resources).expect("JSON"),
    ));
    client
        .update(rpc_ctx(d.ns()), &r)
        .unwrap_or_else(|e| panic!("Update: {}\n{}", describe_err(&e), d.log_tail(20)));
    assert_eq!(
        cgroup_file(&d, &id, "memory", "memory.limit_in_bytes"),
        "33554432",
        "memory limit after Update"
    );
    assert_eq!(
        cgroup_file(&d, &id, "cpu", "cpu.shares"),
        "512",
        "cpu shares after Update"
    );
    assert_eq!(
        cgroup_file(&d, &id, "pids", "pids.max"),
        "77",
        "pids limit after Update"
    );
    let m = stats(&d, &c, &id);
    assert_eq!(
        m.memory.usage.as_ref().map(|u| u.limit),
        Some(33554432),
        "Stats after Update"
    );
    assert_eq!(m.pids.limit, 77, "Stats pids.limit after Update");
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
