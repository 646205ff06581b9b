//! The images of the CRI tests, built from the host's static busybox: a sandbox ("pause")
//! image and a busybox image for containers, sharing one layer, in one OCI layout tarball for
//! `ctr -n k8s.io images import`.

use crate::command;
use crate::image::oci_arch;
use crate::rootfs;
use crate::util::sha256_hex;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The sandbox image (`sandbox_image` of the CRI config). Its registry host does not exist, so
/// a pull could never succeed: the tests must never need one.
pub const PAUSE_IMAGE: &str = "e2e.local/e2e/pause:1";
/// The image of the tests' containers.
pub const BUSYBOX_IMAGE: &str = "e2e.local/e2e/busybox:1";

/// What the pause image runs: a shell that sleeps forever and reaps whatever is re-parented to
/// it (it is pid 1 of pods that share their pid namespace).
pub const PAUSE_ENTRYPOINT: [&str; 3] = ["/bin/sh", "-c", "while :; do sleep 3600 & wait; done"];

const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// Builds `<work>/cri-images.tar` holding [`PAUSE_IMAGE`] and [`BUSYBOX_IMAGE`].
pub fn build_cri_images(work: &Path) -> PathBuf {
    let tree = work.join("cri-image-rootfs");
    let layout = work.join("cri-image-layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir image layout");
    rootfs::populate(&tree);

    let layer_tar = work.join("cri-layer.tar");
    command::run_ok(
        Command::new("tar")
            .args([
                "--sort=name",
                "--numeric-owner",
                "--owner=0",
                "--group=0",
                "--mtime=@0",
                "-C",
            ])
            .arg(&tree)
            .arg("-cf")
            .arg(&layer_tar)
            .arg("."),
        Duration::from_secs(60),
    );
    let layer = std::fs::read(&layer_tar).expect("read layer tar");
    let layer_digest = format!("sha256:{}", sha256_hex(&layer));
    std::fs::rename(&layer_tar, blobs.join(&layer_digest[7..])).expect("move layer blob");
    let _ = std::fs::remove_dir_all(&tree);

    let env = json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
    let pause_config = json!({
        "Env": env,
        "Entrypoint": PAUSE_ENTRYPOINT,
        "WorkingDir": "/",
    });
    let busybox_config = json!({ "Env": env, "Cmd": ["sh"], "WorkingDir": "/" });
    let mut manifests = Vec::new();
    for (name, cfg) in [(PAUSE_IMAGE, pause_config), (BUSYBOX_IMAGE, busybox_config)] {
        let config = json!({
            "architecture": oci_arch(),
            "os": "linux",
            "config": cfg,
            "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
            "history": [{ "created_by": format!("e2e CRI tests: host busybox as {name}") }],
        });
        let (config_digest, config_size) = write_blob(&blobs, &config);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": { "mediaType": MT_CONFIG, "digest": config_digest, "size": config_size },
            "layers": [{ "mediaType": MT_LAYER, "digest": layer_digest, "size": layer.len() }],
        });
        let (manifest_digest, manifest_size) = write_blob(&blobs, &manifest);
        manifests.push(json!({
            "mediaType": MT_MANIFEST,
            "digest": manifest_digest,
            "size": manifest_size,
            "platform": { "architecture": oci_arch(), "os": "linux" },
            "annotations": { "org.opencontainers.image.ref.name": name },
        }));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    std::fs::write(layout.join("index.json"), index.to_string()).expect("write index.json");
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("write oci-layout");

    let out = work.join("cri-images.tar");
    command::run_ok(
        Command::new("tar")
            .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
            .arg(&layout)
            .arg("-cf")
            .arg(&out)
            .args(["oci-layout", "index.json", "blobs"]),
        Duration::from_secs(60),
    );
    let _ = std::fs::remove_dir_all(&layout);
    out
}

fn write_blob(blobs: &Path, v: &Value) -> (String, usize) {
    let bytes = v.to_string().into_bytes();
    let hex = sha256_hex(&bytes);
    std::fs::write(blobs.join(&hex), &bytes).expect("write blob");
    (format!("sha256:{hex}"), bytes.len())
}
