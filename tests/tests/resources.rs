//! The shim's resource budget as a tested property: one thread, bounded memory,
//! and no growth in memory or open descriptors across many execs. The precise
//! figures belong to the benchmark (shimbench); these bounds are generous on purpose.

use e2e::Daemon;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// Generous ceilings for one shim serving one container (the budget is 0.35 MiB
/// anonymous and 2.6 MiB resident; shimbench measures it exactly).
const MAX_ANON_KIB: u64 = 1024;
const MAX_RSS_KIB: u64 = 6 * 1024;
/// Allowed anonymous growth over 50 execs once warmed up. Measured here: the heap
/// settles by a few KiB over the first couple of hundred execs, then stays flat;
/// a leak of 1 KiB per exec exceeds this bound.
const MAX_GROWTH_KIB: u64 = 48;

#[derive(Debug, Clone, Copy)]
struct Usage {
    rss_kib: u64,
    anon_kib: u64,
    threads: u64,
    fds: usize,
}

fn field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn usage(pid: i32) -> Usage {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).expect("smaps_rollup of the shim");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status of the shim");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds of the shim")
        .count();
    Usage {
        rss_kib: field(&smaps, "Rss:").expect("Rss"),
        anon_kib: field(&smaps, "Anonymous:").expect("Anonymous"),
        threads: field(&status, "Threads:").expect("Threads"),
        fds,
    }
}

fn exec(d: &Daemon, id: &str, exec_id: &str) {
    d.ctr(&["task", "exec", "--exec-id", exec_id, id, "/bin/true"])
        .timeout(T)
        .ok();
}

#[test]
fn shim_is_one_thread_within_budget_and_does_not_grow_over_many_execs() {
    let d = Daemon::start();
    let id = d.id("budget");
    d.run_rootfs(&["-d"], &id, &["/bin/sleep", "3600"]).ok();
    d.wait_task_status(&id, "RUNNING", T);
    let shims = d.shim_processes(&id);
    assert_eq!(shims.len(), 1, "expected one shim for {id}: {shims:#?}");
    let pid = shims[0].pid;

    // Warm up: maps and buffers reach their working size in the first execs.
    for i in 0..25 {
        exec(&d, &id, &format!("w{i}"));
    }
    let before = usage(pid);
    for i in 0..50 {
        exec(&d, &id, &format!("e{i}"));
    }
    let after = usage(pid);
    eprintln!("shim {pid}: after 25 execs {before:?}, after 75 execs {after:?}");

    assert_eq!(after.threads, 1, "the shim must stay single-threaded: {after:?}");
    assert!(
        after.fds <= before.fds,
        "open descriptors grew from {} to {} over 50 execs (leak)",
        before.fds,
        after.fds
    );
    assert!(
        after.anon_kib <= before.anon_kib + MAX_GROWTH_KIB,
        "anonymous memory grew from {} KiB to {} KiB over 50 execs",
        before.anon_kib,
        after.anon_kib
    );
    assert!(
        after.anon_kib <= MAX_ANON_KIB,
        "anonymous memory {} KiB over budget",
        after.anon_kib
    );
    assert!(
        after.rss_kib <= MAX_RSS_KIB,
        "resident memory {} KiB over budget",
        after.rss_kib
    );

    d.ctr(&["task", "kill", "-s", "KILL", &id]).ok();
    d.wait_task_status(&id, "STOPPED", T);
    d.ctr(&["task", "delete", &id]).ok();
    d.ctr(&["container", "delete", &id]).ok();
    d.assert_clean();
}
