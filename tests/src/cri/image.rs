//! The images of the CRI tests, built from the host's static busybox: a sandbox ("pause")
//! image and a busybox image for containers, sharing one layer, in one OCI layout tarball for
//! `ctr -n k8s.io images import`.

use crate::image::build_image_tarball;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The sandbox image (`sandbox_image` of the CRI config). Its registry host does not exist, so
/// a pull could never succeed: the tests must never need one.
pub const PAUSE_IMAGE: &str = "e2e.local/e2e/pause:1";
/// The image of the tests' containers.
pub const BUSYBOX_IMAGE: &str = "e2e.local/e2e/busybox:1";

/// What the pause image runs: a shell that sleeps forever and reaps whatever is re-parented to
/// it (it is pid 1 of pods that share their pid namespace).
pub const PAUSE_ENTRYPOINT: [&str; 3] = ["/bin/sh", "-c", "while :; do sleep 3600 & wait; done"];

/// Builds `<work>/cri-images.tar` holding [`PAUSE_IMAGE`] and [`BUSYBOX_IMAGE`].
pub fn build_cri_images(work: &Path) -> PathBuf {
    let env = json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
    let pause = json!({ "Env": env, "Entrypoint": PAUSE_ENTRYPOINT, "WorkingDir": "/" });
    let busybox = json!({ "Env": env, "Cmd": ["sh"], "WorkingDir": "/" });
    build_image_tarball(
        work,
        "cri-images.tar",
        &[(PAUSE_IMAGE, pause), (BUSYBOX_IMAGE, busybox)],
    )
}
