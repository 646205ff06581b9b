//! An OCI image tarball made from the host's busybox, for `ctr images import`.

use crate::command;
use crate::rootfs;
use crate::util::sha256_hex;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The name `ctr images import` gives the image (from the `org.opencontainers.image.ref.name`
/// annotation of `index.json`).
pub const BUSYBOX_REF: &str = "docker.io/library/busybox:latest";

const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// OCI architecture name of this host.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Builds `<work>/busybox-oci.tar`: an OCI image layout (one uncompressed layer holding the
/// busybox tree) named [`BUSYBOX_REF`]. Returns the tarball's path.
pub fn build_busybox_image(work: &Path) -> PathBuf {
    let config = json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"],
    });
    build_image_tarball(work, "busybox-oci.tar", &[(BUSYBOX_REF, config)])
}

/// Builds `<work>/<file>`: an OCI image layout tarball for `ctr images import` holding one
/// image per `(reference, image config)`, all sharing one uncompressed layer made of the
/// busybox tree. Returns the tarball's path.
pub fn build_image_tarball(work: &Path, file: &str, images: &[(&str, serde_json::Value)]) -> PathBuf {
    let stem = file.trim_end_matches(".tar");
    let tree = work.join(format!("{stem}-rootfs"));
    let layout = work.join(format!("{stem}-layout"));
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir image layout");
    rootfs::populate(&tree);

    let layer_tar = work.join(format!("{stem}-layer.tar"));
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

    let mut manifests = Vec::new();
    for (reference, image_config) in images {
        let config = json!({
            "architecture": oci_arch(),
            "os": "linux",
            "config": image_config,
            "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
            "history": [{ "created_by": format!("e2e test harness: host busybox as {reference}") }],
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
            "annotations": { "org.opencontainers.image.ref.name": reference },
        }));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    std::fs::write(layout.join("index.json"), index.to_string()).expect("write index.json");
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("write oci-layout");

    let out = work.join(file);
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

fn write_blob(blobs: &Path, v: &serde_json::Value) -> (String, usize) {
    let bytes = v.to_string().into_bytes();
    let hex = sha256_hex(&bytes);
    std::fs::write(blobs.join(&hex), &bytes).expect("write blob");
    (format!("sha256:{hex}"), bytes.len())
}
