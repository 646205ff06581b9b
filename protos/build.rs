//! Generates the protobuf messages and ttrpc services from `proto/` into
//! `OUT_DIR` with the pure-Rust `ttrpc-codegen` (no `protoc` needed).
//!
//! The generated files open with inner attributes and `//!` docs, which
//! `include!` cannot take, so each file is copied with those lines removed;
//! `src/lib.rs` puts the equivalent `allow`s on the including modules.
//!
//! The generated service traits answer methods the server does not
//! implement with NOT_FOUND; containerd expects UNIMPLEMENTED (2.x falls back
//! from task API v3 to v2 on it), so the copy switches that code.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ttrpc_codegen::{Codegen, Customize, ProtobufCustomize};

/// Every input, relative to `proto/`. The file stem becomes the Rust
/// module name, so stems must be unique.
const PROTOS: &[&str] = &[
    "containerd/types/mount.proto",
    "containerd/types/introspection.proto",
    "containerd/v1/types/types.proto",
    "containerd/task/v2/task.proto",
    "containerd/task/v3/task_v3.proto",
    "containerd/events/events.proto",
    "containerd/services/events/ttrpc/v1/ttrpc_events.proto",
    "containerd/runc/v1/runc_options.proto",
    "containerd/runtime/bootstrap/v1/bootstrap.proto",
    "io/containerd/cgroups/v1/cgroups_v1.proto",
    "io/containerd/cgroups/v2/cgroups_v2.proto",
];

fn main() -> io::Result<()> {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env("OUT_DIR")?);
    let proto_dir = manifest_dir.join("proto");
    println!("cargo:rerun-if-changed={}", proto_dir.display());
    println!("cargo:rerun-if-changed=build.rs");

    let raw_dir = out_dir.join("raw");
    let gen_dir = out_dir.join("gen");
    for dir in [&raw_dir, &gen_dir] {
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
        fs::create_dir_all(dir)?;
    }

    Codegen::new()
        .out_dir(&raw_dir)
        .include(&proto_dir)
        .inputs(PROTOS.iter().map(|p| proto_dir.join(p)))
        .rust_protobuf()
        .customize(Customize {
            async_all: false,
            async_client: false,
            async_server: false,
            gen_mod: false,
        })
        .rust_protobuf_customize(ProtobufCustomize::default().gen_mod_rs(false))
        .run()?;

    for entry in fs::read_dir(&raw_dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs") {
            rewrite(&path, &gen_dir)?;
        }
    }
    Ok(())
}

/// Default body of an unimplemented method in a generated service trait.
const DEFAULT_CODE: &str = "::ttrpc::Code::NOT_FOUND, \"/";
const WANTED_CODE: &str = "::ttrpc::Code::UNIMPLEMENTED, \"/";

/// Copies `src` into `dst_dir`, dropping the `#![...]` and `//!` lines and,
/// in service files, making unimplemented methods answer UNIMPLEMENTED.
fn rewrite(src: &Path, dst_dir: &Path) -> io::Result<()> {
    let mut text = fs::read_to_string(src)?;
    if src.to_string_lossy().ends_with("_ttrpc.rs") {
        if !text.contains(DEFAULT_CODE) {
            return Err(io::Error::other(format!(
                "{}: default method body not found; has ttrpc-compiler changed?",
                src.display()
            )));
        }
        text = text.replace(DEFAULT_CODE, WANTED_CODE);
    }
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#![") {
            if !trimmed.ends_with(']') {
                return Err(io::Error::other(format!(
                    "{}: multi-line inner attribute: {line}",
                    src.display()
                )));
            }
            continue;
        }
        if trimmed.starts_with("//!") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    let name = src
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{}: no file name", src.display())))?;
    fs::write(dst_dir.join(name), out)
}

fn env(name: &str) -> io::Result<String> {
    std::env::var(name).map_err(|e| io::Error::other(format!("{name}: {e}")))
}
