use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Instant;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::*;
use crate::cgroups::testutil::{real_v1_unavailable, RealCgroup, TempDir};

/// Whether `fd` becomes readable within `ms` milliseconds.
fn readable_within(fd: BorrowedFd<'_>, ms: u16) -> bool {
    let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
    ep.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, 1)).unwrap();
    let mut events = [EpollEvent::empty()];
    ep.wait(&mut events, EpollTimeout::from(ms)).unwrap() == 1
}

/// Waits up to `ms` for readiness, then returns what the watcher reports.
fn next_event(w: &mut dyn OomWatch, ms: u16) -> Option<OomEvent> {
    readable_within(w.fd(), ms).then(|| w.on_readable().unwrap())
}

fn memory_events(oom: u64, oom_kill: u64, max: u64) -> String {
    format!("low 0\nhigh 0\nmax {max}\noom {oom}\noom_kill {oom_kill}\noom_group_kill 0\n")
}

#[test]
fn v2_counts_oom_kills_from_memory_events() {
    let t = TempDir::new("oom-v2");
    let dir = t.write(
        "c1",
        &[
            ("memory.events", &memory_events(1, 2, 4)),
            ("cgroup.events", "populated 1\nfrozen 0\n"),
        ],
    );
    let events = dir.join("memory.events");
    let mut w = OomWatcher::for_cgroup(&Cgroup::V2 { dir: dir.clone() }).unwrap();
    assert!(matches!(w, OomWatcher::V2(_)));
    assert!(!readable_within(w.fd(), 0));

    // Other counters change: nothing to report (kills before watch() don't count).
    fs::write(&events, memory_events(1, 2, 5)).unwrap();
    assert_eq!(next_event(&mut w, 2000), Some(OomEvent::Nothing));
    assert!(!readable_within(w.fd(), 0), "queue drained");

    fs::write(&events, memory_events(2, 3, 6)).unwrap();
    assert_eq!(next_event(&mut w, 2000), Some(OomEvent::Oom));

    // Several kills between two looks: one report.
    fs::write(&events, memory_events(5, 6, 7)).unwrap();
    fs::write(&events, memory_events(6, 7, 7)).unwrap();
    assert_eq!(next_event(&mut w, 2000), Some(OomEvent::Oom));
    assert!(!readable_within(w.fd(), 0));

    // cgroup.events changes (the init exited): memory.events re-read, no kill.
    fs::write(dir.join("cgroup.events"), "populated 0\nfrozen 0\n").unwrap();
    assert_eq!(next_event(&mut w, 2000), Some(OomEvent::Nothing));

    // final_check reads without waiting for (or needing) readiness.
    fs::write(&events, memory_events(7, 8, 7)).unwrap();
    assert_eq!(w.final_check().unwrap(), OomEvent::Oom);
    assert_eq!(w.final_check().unwrap(), OomEvent::Nothing);
    assert!(!readable_within(w.fd(), 0), "final_check drained the queue");

    // The cgroup is removed: the watches go (IN_IGNORED) and the file with them.
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(next_event(&mut w, 2000), Some(OomEvent::Gone));
}

#[test]
fn v2_needs_both_files() {
    let t = TempDir::new("oom-v2-missing");
    let dir = t.write("c1", &[("memory.events", &memory_events(0, 0, 0))]);
    let err = OomV2::watch(&dir).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(err.to_string().contains("cgroup.events"), "{err}");
    let err = OomV2::watch(&t.0.join("none")).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
}

#[test]
fn v1_without_memory_hierarchy_is_an_error() {
    let cg = Cgroup::V1 {
        subsystems: vec![crate::cgroups::locate::Subsystem {
            name: "cpu".into(),
            dir: "/sys/fs/cgroup/cpu".into(),
        }],
    };
    let err = OomWatcher::for_cgroup(&cg).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
}

/// A real OOM kill in a v1 memory cgroup limited to 8 MiB: `dd` with a
/// 32 MiB buffer dies of SIGKILL and the eventfd reports it; removing the
/// cgroup then wakes the eventfd once more and reports `Gone`.
#[test]
fn v1_real_oom_kill_then_removal() {
    if let Some(why) = real_v1_unavailable() {
        eprintln!("skipping v1_real_oom_kill_then_removal: {why}");
        return;
    }
    let mut real = RealCgroup::new(&["memory"], "oom");
    let dir = real.dirs[0].clone();
    fs::write(dir.join("memory.limit_in_bytes"), "8388608").unwrap();
    let mut w = OomWatcher::V1(OomV1::register(&dir).unwrap());
    assert!(!readable_within(w.fd(), 0));
    assert_eq!(w.final_check().unwrap(), OomEvent::Nothing);

    let started = Instant::now();
    real.spawn("exec dd if=/dev/zero of=/dev/null bs=32M count=1");
    let event = next_event(&mut w, 10_000);
    let status = real.child.as_mut().unwrap().wait().unwrap();
    eprintln!(
        "v1 OOM: {event:?} after {:?}; dd {status:?}; oom_control: {:?}",
        started.elapsed(),
        fs::read_to_string(dir.join("memory.oom_control")).unwrap()
    );
    assert_eq!(event, Some(OomEvent::Oom));
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    // The kernel signals the eventfd again while the victim dies (seen here:
    // a second notification some milliseconds later), so one kill may be
    // reported twice, as by the Go shim. Then nothing is left.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let again = w.final_check().unwrap();
    eprintln!("v1 OOM: second look after the exit: {again:?}");
    assert_ne!(again, OomEvent::Gone);
    assert_eq!(w.final_check().unwrap(), OomEvent::Nothing);

    real.child = None;
    real.remove();
    assert!(!dir.exists());
    let event = next_event(&mut w, 5_000);
    eprintln!("v1 after rmdir: {event:?}");
    assert_eq!(event, Some(OomEvent::Gone));
}

/// What the v2 watcher can rely on, checked on this host's cgroup2 mount
/// (no controllers needed): when the last process leaves a cgroup,
/// `cgroup.events` changes (`populated 0`) and wakes an inotify watch on it.
/// Removing the directory afterwards wakes nothing here (kernfs keeps the
/// watched inode alive): the daemon must drop a v2 watcher itself once the
/// init has exited, after `final_check`.
#[test]
fn cgroup2_last_exit_wakes_inotify_watch() {
    let unified = Path::new("/sys/fs/cgroup/unified");
    if !nix::unistd::geteuid().is_root() || !unified.join("cgroup.procs").exists() {
        eprintln!("skipping cgroup2_last_exit_wakes_inotify_watch: not root or no cgroup2 at {unified:?}");
        return;
    }
    let mut real = RealCgroup::new(&["unified"], "inotify");
    let dir = real.dirs[0].clone();
    let events = dir.join("cgroup.events");
    let pid = real.spawn("exec sleep 30");
    real.wait_for_exec(pid, "sleep");
    assert!(fs::read_to_string(&events).unwrap().contains("populated 1"));

    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).unwrap();
    inotify.add_watch(&events, AddWatchFlags::IN_MODIFY).unwrap();
    assert!(!readable_within(inotify.as_fd(), 0));

    let mut child = real.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        readable_within(inotify.as_fd(), 5_000),
        "no event when the cgroup emptied"
    );
    let got = inotify.read_events().unwrap();
    assert!(got.iter().all(|e| e.mask.contains(AddWatchFlags::IN_MODIFY)), "{got:?}");
    assert!(fs::read_to_string(&events).unwrap().contains("populated 0"));

    fs::remove_dir(&dir).unwrap();
    let woke = readable_within(inotify.as_fd(), 1_000);
    eprintln!("cgroup2: rmdir woke the inotify watch: {woke}");
}
