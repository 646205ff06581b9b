use std::fs;
use std::path::Path;

use protos::any::{unpack, CGROUPS_V1_METRICS};
use protos::cgroups_v1::Metrics;

use super::*;
use crate::cgroups::testutil::{real_v1_unavailable, RealCgroup, TempDir};
use crate::cgroups::Cgroup;

// File contents below were read from a v1 cgroup on the test machine
// (kernel 6.18, hybrid) that ran `dd` and a shell loop.
const MEMORY_STAT: &str = "\
cache 13197312
rss 114688
rss_huge 0
shmem 0
mapped_file 0
dirty 0
writeback 0
workingset_refault_anon 0
workingset_refault_file 0
swap 0
swapcached 0
pgpgin 298
pgpgout 48
pgfault 174
pgmajfault 1
inactive_anon 110592
active_anon 4096
inactive_file 13193216
active_file 4096
unevictable 0
hierarchical_memory_limit 9223372036854771712
hierarchical_memsw_limit 9223372036854771712
total_cache 13197312
total_rss 114688
total_rss_huge 0
total_shmem 0
total_mapped_file 0
total_dirty 0
total_writeback 0
total_workingset_refault_anon 0
total_workingset_refault_file 0
total_swap 0
total_swapcached 0
total_pgpgin 298
total_pgpgout 48
total_pgfault 174
total_pgmajfault 1
total_inactive_anon 110592
total_active_anon 4096
total_inactive_file 13193216
total_active_file 4096
total_unevictable 0
";

const UNLIMITED: &str = "9223372036854771712\n";

fn memory_files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("memory.stat", MEMORY_STAT),
        ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
        ("memory.usage_in_bytes", "13840384\n"),
        ("memory.max_usage_in_bytes", "14229504\n"),
        ("memory.failcnt", "0\n"),
        ("memory.limit_in_bytes", UNLIMITED),
        ("memory.memsw.usage_in_bytes", "13840385\n"),
        ("memory.memsw.max_usage_in_bytes", "14229505\n"),
        ("memory.memsw.failcnt", "3\n"),
        ("memory.memsw.limit_in_bytes", UNLIMITED),
        ("memory.kmem.usage_in_bytes", "438272\n"),
        ("memory.kmem.max_usage_in_bytes", "503808\n"),
        ("memory.kmem.failcnt", "0\n"),
        ("memory.kmem.limit_in_bytes", UNLIMITED),
        ("memory.kmem.tcp.usage_in_bytes", "0\n"),
        ("memory.kmem.tcp.max_usage_in_bytes", "0\n"),
        ("memory.kmem.tcp.failcnt", "0\n"),
        ("memory.kmem.tcp.limit_in_bytes", UNLIMITED),
    ]
}

fn subsystems(root: &Path, names: &[&str]) -> Vec<Subsystem> {
    names
        .iter()
        .map(|n| Subsystem {
            name: n.to_string(),
            dir: root.join(n),
        })
        .collect()
}

fn decode(cg: &Cgroup) -> Metrics {
    let any = cg.stats().unwrap();
    assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
    unpack(&any, CGROUPS_V1_METRICS).unwrap()
}

#[test]
fn fixture_tree_all_controllers() {
    let t = TempDir::new("v1");
    t.write("memory", &memory_files());
    t.write(
        "cpu",
        &[(
            "cpu.stat",
            "nr_periods 120\nnr_throttled 7\nthrottled_time 350000000\nnr_bursts 0\nburst_time 0\n",
        )],
    );
    t.write(
        "cpuacct",
        &[
            ("cpuacct.usage", "158193953\n"),
            ("cpuacct.usage_percpu", "152576338 5617615 \n"),
            ("cpuacct.stat", "user 15\nsystem 3\n"),
        ],
    );
    t.write("pids", &[("pids.current", "3\n"), ("pids.max", "max\n")]);
    t.write(
        "blkio",
        &[
            ("blkio.throttle.io_serviced", "254:0 Read 10\n254:0 Write 52\n254:0 Sync 52\n254:0 Async 10\n254:0 Discard 0\n254:0 Total 62\nTotal 62\n"),
            ("blkio.throttle.io_service_bytes", "254:0 Read 655360\n254:0 Write 3276800\n254:0 Sync 3276800\n254:0 Async 655360\n254:0 Discard 0\n254:0 Total 3932160\nTotal 3932160\n"),
        ],
    );
    t.write(
        "hugetlb",
        &[
            ("hugetlb.2MB.usage_in_bytes", "4194304\n"),
            ("hugetlb.2MB.max_usage_in_bytes", "6291456\n"),
            ("hugetlb.2MB.failcnt", "1\n"),
            ("hugetlb.2MB.limit_in_bytes", UNLIMITED),
            ("hugetlb.2MB.rsvd.usage_in_bytes", "0\n"),
            ("hugetlb.1GB.usage_in_bytes", "0\n"),
            ("hugetlb.1GB.max_usage_in_bytes", "0\n"),
            ("hugetlb.1GB.failcnt", "0\n"),
        ],
    );
    t.write(
        "rdma",
        &[
            (
                "rdma.current",
                "mlx4_0 hca_handle=2 hca_object=2000\nocrdma1 hca_handle=3 hca_object=max\n",
            ),
            (
                "rdma.max",
                "mlx4_0 hca_handle=max hca_object=max\nocrdma1 hca_handle=10 hca_object=max\n",
            ),
        ],
    );
    let names = [
        "memory", "cpu", "cpuacct", "pids", "blkio", "hugetlb", "rdma", "freezer",
    ];
    let cg = Cgroup::V1 {
        subsystems: subsystems(&t.0, &names),
    };
    let m = decode(&cg);

    let pids = m.pids.as_ref().unwrap();
    assert_eq!((pids.current, pids.limit), (3, 0));

    let usage = m.cpu.usage.as_ref().unwrap();
    assert_eq!(usage.total, 158193953);
    assert_eq!(usage.per_cpu, vec![152576338, 5617615]);
    assert_eq!(usage.user, 150_000_000); // 15 ticks of 10 ms
    assert_eq!(usage.kernel, 30_000_000);
    let th = m.cpu.throttling.as_ref().unwrap();
    assert_eq!(
        (th.periods, th.throttled_periods, th.throttled_time),
        (120, 7, 350000000)
    );

    let mem = m.memory.as_ref().unwrap();
    assert_eq!(mem.cache, 13197312);
    assert_eq!(mem.rss, 114688);
    assert_eq!(mem.pg_pg_in, 298);
    assert_eq!(mem.pg_pg_out, 48);
    assert_eq!(mem.pg_fault, 174);
    assert_eq!(mem.pg_maj_fault, 1);
    assert_eq!(mem.inactive_file, 13193216);
    assert_eq!(mem.active_anon, 4096);
    assert_eq!(mem.hierarchical_memory_limit, 9223372036854771712);
    assert_eq!(mem.hierarchical_swap_limit, 9223372036854771712);
    assert_eq!(mem.total_cache, 13197312);
    assert_eq!(mem.total_rss, 114688);
    assert_eq!(mem.total_pg_maj_fault, 1);
    assert_eq!(mem.total_inactive_anon, 110592);
    let u = mem.usage.as_ref().unwrap();
    assert_eq!(
        (u.usage, u.max, u.failcnt, u.limit),
        (13840384, 14229504, 0, 9223372036854771712)
    );
    let s = mem.swap.as_ref().unwrap();
    assert_eq!((s.usage, s.max, s.failcnt), (13840385, 14229505, 3));
    let k = mem.kernel.as_ref().unwrap();
    assert_eq!((k.usage, k.max), (438272, 503808));
    assert_eq!(mem.kernel_tcp.as_ref().unwrap().limit, 9223372036854771712);
    let oom = m.memory_oom_control.as_ref().unwrap();
    assert_eq!((oom.oom_kill_disable, oom.under_oom, oom.oom_kill), (0, 0, 2));

    let b = m.blkio.as_ref().unwrap();
    let ops: Vec<(&str, u64)> = b
        .io_serviced_recursive
        .iter()
        .map(|e| (e.op.as_str(), e.value))
        .collect();
    assert_eq!(
        ops,
        [
            ("Read", 10),
            ("Write", 52),
            ("Sync", 52),
            ("Async", 10),
            ("Discard", 0),
            ("Total", 62)
        ]
    );
    assert!(b.io_serviced_recursive.iter().all(|e| e.major == 254 && e.minor == 0));
    assert_eq!(b.io_service_bytes_recursive[1].value, 3276800);
    assert!(b.sectors_recursive.is_empty());

    let sizes: Vec<(&str, u64, u64, u64)> = m
        .hugetlb
        .iter()
        .map(|h| (h.pagesize.as_str(), h.usage, h.max, h.failcnt))
        .collect();
    assert_eq!(sizes, [("1GB", 0, 0, 0), ("2MB", 4194304, 6291456, 1)]);

    let r = m.rdma.as_ref().unwrap();
    assert_eq!(r.current.len(), 2);
    assert_eq!(
        (
            r.current[0].device.as_str(),
            r.current[0].hca_handles,
            r.current[0].hca_objects
        ),
        ("mlx4_0", 2, 2000)
    );
    assert_eq!(r.current[1].hca_objects, u32::MAX);
    assert_eq!((r.limit[0].hca_handles, r.limit[1].hca_handles), (u32::MAX, 10));
}

#[test]
fn cfq_recursive_files_and_device_names() {
    let t = TempDir::new("v1-cfq");
    let dir = t.write(
        "blkio",
        &[
            (
                "blkio.io_serviced_recursive",
                "8:0 Read 5\n8:0 Write 7\n8:0 Sync 9\n8:0 Async 3\n8:0 Total 12\n8:16 Read 1\nTotal 13\n",
            ),
            (
                "blkio.io_service_bytes_recursive",
                "8:0 Read 20480\n8:0 Write 28672\nTotal 49152\n",
            ),
            ("blkio.sectors_recursive", "8:0 96\n"),
            ("blkio.io_queued_recursive", "8:0 Read 0\nTotal 0\n"),
            ("blkio.io_service_time_recursive", "8:0 Read 1000\n"),
            ("blkio.io_wait_time_recursive", "8:0 Read 2000\n"),
            ("blkio.io_merged_recursive", "8:0 Read 1\n"),
            ("blkio.time_recursive", "8:0 42\n"),
            // Ignored when the recursive files have entries.
            ("blkio.throttle.io_serviced", "8:0 Read 999\n"),
        ],
    );
    let partitions = t.0.join("partitions");
    fs::write(
        &partitions,
        "major minor  #blocks  name\n\n   8        0  488386584 sda\n   8        1     524288 sda1\n   8       16  1000 sdb\n",
    )
    .unwrap();
    let subs = vec![Subsystem {
        name: "blkio".into(),
        dir: dir.clone(),
    }];
    let m = metrics(&subs, &partitions).unwrap();
    let b = m.blkio.as_ref().unwrap();
    assert_eq!(b.io_serviced_recursive.len(), 6);
    assert_eq!(b.io_serviced_recursive[0].device, "/dev/sda");
    assert_eq!(b.io_serviced_recursive[5].device, "/dev/sdb");
    assert_eq!(
        (b.io_serviced_recursive[5].major, b.io_serviced_recursive[5].minor),
        (8, 16)
    );
    assert_eq!(b.sectors_recursive[0].op, "");
    assert_eq!(b.sectors_recursive[0].value, 96);
    assert_eq!(b.io_time_recursive[0].value, 42);
    assert_eq!(b.io_wait_time_recursive[0].value, 2000);
    assert_eq!(b.io_merged_recursive[0].value, 1);
    assert_eq!(b.io_queued_recursive.len(), 1);
    assert!(b.io_serviced_recursive.iter().all(|e| e.value != 999));
    // No pids/cpu dirs: no pids stats, the cpu message is there but empty.
    assert!(m.pids.is_none());
    assert_eq!(m.cpu.usage.total, 0);
}

#[test]
fn missing_files_and_dirs_are_skipped() {
    let t = TempDir::new("v1-missing");
    // A kernel without swap accounting and kmem, and a pids dir without files.
    let files: Vec<_> = memory_files()
        .into_iter()
        .filter(|(n, _)| !n.contains("memsw") && !n.contains("kmem.usage"))
        .collect();
    t.write("memory", &files);
    t.write("pids", &[]);
    let cg = Cgroup::V1 {
        subsystems: subsystems(&t.0, &["memory", "pids", "cpu"]),
    };
    let m = decode(&cg);
    assert!(m.pids.is_none());
    let mem = m.memory.as_ref().unwrap();
    assert_eq!(mem.usage.usage, 13840384);
    assert_eq!(mem.swap.usage, 0);
    assert_eq!(mem.kernel.usage, 0);
    assert_eq!(mem.kernel.max, 503808); // still read: each file is optional
    assert!(m.blkio.is_none());
}

#[test]
fn pids_limit_and_bad_numbers() {
    let t = TempDir::new("v1-pids");
    t.write("pids", &[("pids.current", "1\n"), ("pids.max", "64\n")]);
    let cg = Cgroup::V1 {
        subsystems: subsystems(&t.0, &["pids"]),
    };
    assert_eq!(decode(&cg).pids.limit, 64);
    t.write("pids", &[("pids.current", "one\n")]);
    let err = cg.stats().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn deleted_cgroup_is_not_found() {
    let t = TempDir::new("v1-gone");
    let cg = Cgroup::V1 {
        subsystems: subsystems(&t.0, &["memory", "cpu"]),
    };
    assert!(!cg.exists());
    let err = cg.stats().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert_eq!(err.to_string(), "cgroup does not exist");
}

#[test]
fn real_cgroup_stats() {
    if let Some(why) = real_v1_unavailable() {
        eprintln!("skipping real_cgroup_stats: {why}");
        return;
    }
    let mut real = RealCgroup::new(&["memory", "cpu", "cpuacct", "pids", "blkio"], "stats");
    // Burn a little CPU in the cgroup, then sleep as its only process.
    let pid = real.spawn("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 30");
    real.wait_for_exec(pid, "sleep");
    let cg = Cgroup::for_pid(pid).unwrap();
    assert_eq!(cg.memory_dir().unwrap(), real.dirs[0]);
    assert_eq!(cg.subsystem_dir("cpuacct").unwrap(), real.dirs[2]);
    assert_eq!(cg.subsystem_dir("pids").unwrap(), real.dirs[3]);
    assert!(cg.exists());
    let m = decode(&cg);
    assert_eq!(m.pids.current, 1, "{:?}", m.pids);
    assert_eq!(m.pids.limit, 0);
    assert!(m.memory.usage.usage > 0, "{:?}", m.memory.usage);
    assert!(m.memory.usage.max >= m.memory.usage.usage);
    assert!(m.memory.usage.limit > 0);
    assert!(m.memory_oom_control.is_some());
    assert!(m.cpu.usage.total > 0);
    assert!(!m.cpu.usage.per_cpu.is_empty());
    assert!(m.blkio.is_some());
    eprintln!(
        "real v1 stats: memory usage {} max {} rss {} cache {}; cpu total {} ns, user {} ns, kernel {} ns",
        m.memory.usage.usage,
        m.memory.usage.max,
        m.memory.rss,
        m.memory.cache,
        m.cpu.usage.total,
        m.cpu.usage.user,
        m.cpu.usage.kernel
    );
    drop(real);
    assert!(!cg.exists());
    assert_eq!(cg.stats().unwrap_err().kind(), io::ErrorKind::NotFound);
}
