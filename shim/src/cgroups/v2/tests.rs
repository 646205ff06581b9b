use std::fs;

use protos::any::{unpack, CGROUPS_V2_METRICS};

use super::*;
use crate::cgroups::testutil::TempDir;
use crate::cgroups::Cgroup;

// A kernel 6.x container cgroup: cpu.stat and the pressure files as this
// machine's cgroup2 mount shows them, memory.stat with every key 6.x prints.
const CPU_STAT: &str = "\
usage_usec 571357998
user_usec 470231761
system_usec 101126236
nice_usec 0
core_sched.force_idle_usec 0
nr_periods 40
nr_throttled 3
throttled_usec 120000
nr_bursts 1
burst_usec 500
";

const MEMORY_STAT: &str = "\
anon 315392
file 1236992
kernel 229376
kernel_stack 16384
pagetables 36864
sec_pagetables 0
percpu 0
sock 4096
vmalloc 0
shmem 8192
zswap 0
zswapped 0
file_mapped 12288
file_dirty 4096
file_writeback 0
swapcached 0
anon_thp 2097152
file_thp 0
shmem_thp 0
inactive_anon 290816
active_anon 24576
inactive_file 1200128
active_file 36864
unevictable 0
slab_reclaimable 10240
slab_unreclaimable 165888
slab 176128
workingset_refault_anon 0
workingset_refault_file 7
workingset_activate_anon 0
workingset_activate_file 0
workingset_restore_anon 0
workingset_restore_file 0
workingset_nodereclaim 2
pgscan 11
pgsteal 10
pgscan_kswapd 0
pgscan_direct 11
pgscan_khugepaged 0
pgsteal_kswapd 0
pgsteal_direct 10
pgsteal_khugepaged 0
pgfault 1234
pgmajfault 5
pgrefill 1
pgactivate 2
pgdeactivate 3
pglazyfree 4
pglazyfreed 6
zswpin 0
zswpout 0
zswpwb 0
thp_fault_alloc 1
thp_collapse_alloc 0
thp_swpout 0
thp_swpout_fallback 0
";

fn fixture(t: &TempDir) -> std::path::PathBuf {
    t.write(
        "c1",
        &[
            ("cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n"),
            ("cgroup.events", "populated 1\nfrozen 0\n"),
            ("pids.current", "2\n"),
            ("pids.max", "max\n"),
            ("cpu.stat", CPU_STAT),
            (
                "cpu.pressure",
                "some avg10=6.63 avg60=5.72 avg300=5.16 total=56600415\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
            ),
            ("memory.stat", MEMORY_STAT),
            ("memory.current", "1953792\n"),
            ("memory.max", "20971520\n"),
            ("memory.swap.current", "0\n"),
            ("memory.swap.max", "max\n"),
            ("memory.peak", "2531328\n"),
            (
                "memory.pressure",
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=1154\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=845\n",
            ),
            ("memory.events", "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n"),
            (
                "io.stat",
                "254:0 rbytes=4096 wbytes=3276800 rios=1 wios=52 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n",
            ),
            (
                "io.pressure",
                "some avg10=0.02 avg60=0.66 avg300=0.90 total=12295522\nfull avg10=0.02 avg60=0.58 avg300=0.72 total=9983988\n",
            ),
            ("rdma.current", "mlx4_0 hca_handle=1 hca_object=20\n"),
            ("rdma.max", "mlx4_0 hca_handle=max hca_object=100\n"),
            ("hugetlb.2MB.current", "2097152\n"),
            ("hugetlb.2MB.max", "max\n"),
            ("hugetlb.2MB.rsvd.current", "0\n"),
            ("hugetlb.2MB.events", "max 0\n"),
            ("hugetlb.1GB.current", "0\n"),
            ("hugetlb.1GB.max", "0\n"),
        ],
    )
}

#[test]
fn fixture_cgroup_stats() {
    let t = TempDir::new("v2");
    let dir = fixture(&t);
    let cg = Cgroup::V2 { dir };
    let any = cg.stats().unwrap();
    assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
    let m: Metrics = unpack(&any, CGROUPS_V2_METRICS).unwrap();

    assert_eq!((m.pids.current, m.pids.limit), (2, u64::MAX));

    let c = &m.cpu;
    assert_eq!(
        (c.usage_usec, c.user_usec, c.system_usec),
        (571357998, 470231761, 101126236)
    );
    assert_eq!((c.nr_periods, c.nr_throttled, c.throttled_usec), (40, 3, 120000));
    assert_eq!((c.nr_bursts, c.burst_usec), (1, 500));
    assert_eq!(c.psi.some.avg10, 6.63);
    assert_eq!(c.psi.some.avg300, 5.16);
    assert_eq!(c.psi.some.total, 56600415);
    assert_eq!(c.psi.full.total, 0);

    let mm = &m.memory;
    assert_eq!((mm.anon, mm.file, mm.kernel_stack), (315392, 1236992, 16384));
    assert_eq!((mm.slab, mm.sock, mm.shmem), (176128, 4096, 8192));
    assert_eq!((mm.file_mapped, mm.file_dirty, mm.anon_thp), (12288, 4096, 2097152));
    assert_eq!((mm.inactive_anon, mm.active_file), (290816, 36864));
    assert_eq!((mm.slab_reclaimable, mm.slab_unreclaimable), (10240, 165888));
    assert_eq!((mm.pgfault, mm.pgmajfault), (1234, 5));
    // 6.x splits workingset_refault into _anon/_file: the old key reads 0.
    assert_eq!((mm.workingset_refault, mm.workingset_nodereclaim), (0, 2));
    assert_eq!((mm.pgscan, mm.pgsteal, mm.pgrefill), (11, 10, 1));
    assert_eq!((mm.pgactivate, mm.pgdeactivate), (2, 3));
    assert_eq!((mm.pglazyfree, mm.pglazyfreed, mm.thp_fault_alloc), (4, 6, 1));
    assert_eq!((mm.usage, mm.usage_limit), (1953792, 20971520));
    assert_eq!((mm.swap_usage, mm.swap_limit), (0, u64::MAX));
    assert_eq!((mm.max_usage, mm.swap_max_usage), (2531328, 0));
    assert_eq!(mm.psi.full.total, 845);

    let ev = m.memory_events.as_ref().unwrap();
    assert_eq!((ev.low, ev.high, ev.max, ev.oom, ev.oom_kill), (0, 0, 12, 2, 1));

    let io: Vec<_> =
        m.io.usage
            .iter()
            .map(|e| (e.major, e.minor, e.rbytes, e.wbytes, e.rios, e.wios))
            .collect();
    assert_eq!(io, [(254, 0, 4096, 3276800, 1, 52), (8, 16, 1, 2, 3, 4)]);
    assert_eq!(m.io.psi.some.avg60, 0.66);

    assert_eq!(m.rdma.current[0].device, "mlx4_0");
    assert_eq!((m.rdma.current[0].hca_handles, m.rdma.current[0].hca_objects), (1, 20));
    assert_eq!(
        (m.rdma.limit[0].hca_handles, m.rdma.limit[0].hca_objects),
        (u32::MAX, 100)
    );

    let h: Vec<_> = m
        .hugetlb
        .iter()
        .map(|h| (h.pagesize.as_str(), h.current, h.max))
        .collect();
    assert_eq!(h, [("1GB", 0, 0), ("2MB", 2097152, u64::MAX)]);
}

#[test]
fn controllers_not_enabled_and_missing_files() {
    let t = TempDir::new("v2-bare");
    // Only the core files: no cpu/memory controller, no memory.events.
    let dir = t.write(
        "c2",
        &[
            ("cgroup.controllers", "pids\n"),
            ("cpu.stat", CPU_STAT),
            ("memory.stat", MEMORY_STAT),
            ("pids.current", "1\n"),
        ],
    );
    let m = metrics(&dir).unwrap();
    assert_eq!((m.pids.current, m.pids.limit), (1, 0));
    // cpu.stat and memory.stat are read only for enabled controllers.
    assert_eq!(m.cpu.usage_usec, 0);
    assert_eq!(m.memory.anon, 0);
    assert!(m.cpu.is_some() && m.memory.is_some() && m.io.is_some() && m.rdma.is_some());
    assert!(m.cpu.psi.is_none());
    assert!(m.memory_events.is_none());
    assert!(m.hugetlb.is_empty());
    assert!(m.io.usage.is_empty());

    fs::write(dir.join("memory.events"), "").unwrap();
    assert!(metrics(&dir).unwrap().memory_events.is_none());
}

#[test]
fn deleted_cgroup_is_not_found() {
    let t = TempDir::new("v2-gone");
    let cg = Cgroup::V2 { dir: t.0.join("gone") };
    assert!(!cg.exists());
    assert_eq!(cg.stats().unwrap_err().kind(), io::ErrorKind::NotFound);
}

#[test]
fn enables_controllers_in_root_and_ancestors() {
    let t = TempDir::new("v2-ctl");
    let root = t.write(
        "root",
        &[
            ("cgroup.controllers", "cpuset cpu io memory pids\n"),
            ("cgroup.subtree_control", ""),
        ],
    );
    for sub in ["root/ns", "root/ns/pod", "root/ns/pod/c1"] {
        t.write(sub, &[("cgroup.subtree_control", "")]);
    }
    let cgroup = root.join("ns/pod/c1");
    enable_v2_controllers(&root, &cgroup).unwrap();
    let want = "+cpuset +cpu +io +memory +pids";
    for dir in [root.clone(), root.join("ns"), root.join("ns/pod")] {
        let got = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap();
        assert_eq!(got, want, "{}", dir.display());
    }
    // Not the container's own cgroup.
    assert_eq!(fs::read_to_string(cgroup.join("cgroup.subtree_control")).unwrap(), "");

    // A failure at the deepest level is reported; higher ones are still tried.
    fs::remove_file(root.join("ns/pod/cgroup.subtree_control")).unwrap();
    fs::write(root.join("cgroup.subtree_control"), "").unwrap();
    let err = enable_v2_controllers(&root, &cgroup).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(err.to_string().contains("ns/pod/cgroup.subtree_control"), "{err}");
    assert_eq!(fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(), want);

    // ... but one higher up is not, once the deepest write succeeds.
    fs::write(root.join("ns/pod/cgroup.subtree_control"), "").unwrap();
    fs::remove_file(root.join("ns/cgroup.subtree_control")).unwrap();
    enable_v2_controllers(&root, &cgroup).unwrap();

    // The cgroup directly under the root: only the root is written.
    fs::write(root.join("cgroup.subtree_control"), "").unwrap();
    enable_v2_controllers(&root, &root.join("ns")).unwrap();
    assert_eq!(fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(), want);

    let err = enable_v2_controllers(&root, &t.0.join("elsewhere/c")).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}
