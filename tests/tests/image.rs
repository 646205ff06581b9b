//! Image-based containers: the shim mounts the snapshot it is handed in CreateTask (overlayfs)
//! and unmounts it again.

use e2e::image::{build_busybox_image, BUSYBOX_REF};
use e2e::{procfs, Daemon};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// Type of the mount at `target`, from our mount table.
fn mount_type_at(target: &std::path::Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        if std::path::Path::new(f.get(4)?) == target {
            return f.get(sep + 1).map(|s| s.to_string());
        }
    }
    None
}

#[test]
fn imported_busybox_image_runs_and_its_overlay_rootfs_is_unmounted() {
    let d = Daemon::start();
    let tar = build_busybox_image(d.tmp());
    let tar = tar.to_str().expect("utf-8");
    d.ctr(&["images", "import", tar]).timeout(Duration::from_secs(60)).ok();
    let images = d.ctr(&["images", "ls", "-q"]).ok();
    assert!(
        images.stdout_str().lines().any(|l| l == BUSYBOX_REF),
        "`ctr images import` did not create {BUSYBOX_REF}: {images}"
    );

    let id = d.id("img");
    let out = d
        .ctr(&["run", "--rm", "--runtime", d.runtime(), BUSYBOX_REF, &id, "echo", "hi"])
        .run();
    assert_eq!((out.code(), out.stdout_str().as_str()), (Some(0), "hi\n"), "{out}");
    d.assert_clean();

    // While it runs, the snapshot is an overlay mounted on <bundle>/rootfs; afterwards it is gone.
    let id = d.id("imgd");
    d.ctr(&["run", "-d", "--runtime", d.runtime(), BUSYBOX_REF, &id, "sleep", "1000"])
        .ok();
    d.wait_task_status(&id, "RUNNING", T);
    let rootfs = d.bundle_dir(&id).join("rootfs");
    assert_eq!(
        mount_type_at(&rootfs).as_deref(),
        Some("overlay"),
        "no overlay mounted on {} while the container runs; mounts under the temp dir: {:?}",
        rootfs.display(),
        procfs::mounts_under(d.tmp())
    );
    d.ctr(&["task", "kill", "-s", "KILL", &id]).ok();
    d.wait_task_status(&id, "STOPPED", T);
    d.ctr(&["task", "delete", &id]).ok();
    assert_eq!(mount_type_at(&rootfs), None, "rootfs still mounted after task delete");
    d.ctr(&["container", "delete", &id]).ok();
    d.assert_clean();
}
