//! The shim binary's own actions run by hand (`start` with any argv, `delete`, `-v`), the
//! processes they leave, and bundles whose rootfs is a mount the shim makes (for the
//! conformance tests, `tests/CONFORMANCE.md`).

use crate::command::{self, Output};
use crate::daemon::Daemon;
use crate::procfs;
use crate::requests::{describe_err, RUNC_OPTIONS_TYPE_URL};
use crate::scenario::wait_gone;
use crate::shim::{make_bundle, rpc_ctx};
use crate::util;
use protobuf::{Message, MessageField};
use protos::runc_options::Options;
use protos::task::{ConnectRequest, CreateTaskRequest, DeleteResponse, ShutdownRequest};
use protos::task_ttrpc::TaskClient;
use protos::types::Mount;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Bound for one shim action run by hand.
pub const ACTION_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs the shim under test with exactly `args`, cwd `cwd`, `TTRPC_ADDRESS` of `d`, `stdin`
/// bytes on stdin (as containerd runs `start` and `delete`).
pub fn run_shim(d: &Daemon, cwd: &Path, args: &[String], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(d.shim_bin());
    cmd.args(args).current_dir(cwd).env("TTRPC_ADDRESS", d.ttrpc_address());
    command::run(&mut cmd, Some(stdin), ACTION_TIMEOUT).expect("run the shim")
}

/// The flags containerd passes before the action: `-namespace N -address A -publish-binary P -id ID`.
pub fn containerd_flags(d: &Daemon, id: &str) -> Vec<String> {
    [
        "-namespace",
        d.ns(),
        "-address",
        d.address(),
        "-publish-binary",
        &util::containerd_bin().to_string_lossy(),
        "-id",
        id,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs `<shim> <containerd flags> -bundle B delete` in `bundle`, as containerd does when it
/// loses a shim.
pub fn run_delete_action(d: &Daemon, id: &str, bundle: &Path) -> Output {
    let mut args = containerd_flags(d, id);
    args.extend([
        "-bundle".to_string(),
        bundle.to_string_lossy().into_owned(),
        "delete".into(),
    ]);
    run_shim(d, bundle, &args, b"")
}

/// Decodes the `DeleteResponse` the `delete` action printed; panics with the output otherwise.
pub fn delete_response(out: &Output) -> DeleteResponse {
    DeleteResponse::parse_from_bytes(&out.stdout)
        .unwrap_or_else(|e| panic!("`delete` printed no DeleteResponse ({e}): {out}"))
}

/// `Any{containerd.runc.v1.Options, opts}` encoded, as containerd writes it on `start`'s stdin.
pub fn options_stdin(opts: &Options) -> Vec<u8> {
    protos::any::pack(RUNC_OPTIONS_TYPE_URL, opts)
        .expect("pack Options")
        .write_to_bytes()
        .expect("encode Any")
}

/// The containerd release of a Go shim (`Some((major, minor))` when `-v` says "Go version"),
/// `None` for our shim. Lets a test skip a check of behaviour that Go shim does not have yet.
pub fn go_shim_release(shim: &Path) -> Option<(u32, u32)> {
    let out = command::run(Command::new(shim).arg("-v"), None, Duration::from_secs(10)).ok()?;
    let text = out.stdout_str();
    if !text.contains("Go version") {
        return None;
    }
    let version = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))
        .map(str::trim)
        .unwrap_or("");
    let mut nums = version
        .trim_start_matches('v')
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    Some((nums.next().flatten().unwrap_or(0), nums.next().flatten().unwrap_or(0)))
}

/// True (and says so on stderr) when the shim under test is a Go shim, for a test of behaviour
/// only ours has; `why` names the difference (tests/COMPAT.md lists it).
pub fn skip_for_go_shims(shim: &Path, why: &str) -> bool {
    let go = go_shim_release(shim).is_some();
    if go {
        eprintln!("skipped: {why}");
    }
    go
}

/// The process group of `pid` (field 5 of `/proc/<pid>/stat`).
pub fn process_group(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// What fd `fd` of `pid` points at (`/dev/null`, `pipe:[N]`, a path).
pub fn fd_target(pid: i32, fd: i32) -> Option<PathBuf> {
    procfs::link(pid, &format!("fd/{fd}"))
}

/// `Connect(id)` on `client`: `(shim_pid, task_pid)`.
pub fn connect_pids(d: &Daemon, client: &TaskClient, id: &str) -> (u32, u32) {
    let mut r = ConnectRequest::new();
    r.id = id.to_string();
    let c = client
        .connect(rpc_ctx(d.ns()), &r)
        .unwrap_or_else(|e| panic!("Connect({id}): {e:?}"));
    (c.shim_pid, c.task_pid)
}

/// Sends `Shutdown` (the shim may exit before it answers) and waits until `shim_pid` is gone.
pub fn shutdown_and_wait(d: &Daemon, client: TaskClient, id: &str, shim_pid: i32) {
    let mut r = ShutdownRequest::new();
    r.id = id.to_string();
    let _ = client.shutdown(rpc_ctx(d.ns()), &r);
    drop(client);
    assert!(
        wait_gone(shim_pid, Duration::from_secs(10)),
        "shim {shim_pid} did not exit after Shutdown with no container left\n{}",
        d.log_tail(20)
    );
}

/// Like [`make_bundle`], but `root.path` is `rootfs` inside the bundle (read-only), so the
/// container only has a root once the shim mounts [`busybox_bind_mount`] there.
pub fn make_mounted_bundle(d: &Daemon, id: &str, args: &[&str]) -> PathBuf {
    let dir = make_bundle(d, id, args);
    let path = dir.join("config.json");
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&path).expect("read config.json")).expect("JSON");
    spec["root"] = json!({ "path": "rootfs", "readonly": true });
    std::fs::write(&path, serde_json::to_vec_pretty(&spec).expect("JSON")).expect("write config.json");
    dir
}

/// A `CreateTaskRequest.rootfs` entry: the shared busybox rootfs bind-mounted read-only.
pub fn busybox_bind_mount(d: &Daemon) -> Mount {
    let mut m = Mount::new();
    m.type_ = "bind".into();
    m.source = d.rootfs().to_string_lossy().into_owned();
    m.options = vec!["rbind".into(), "ro".into()];
    m
}

/// `ctr oci spec` with the busybox rootfs, `args`, cgroup `/<ns>/<id>`, and no pid namespace
/// (the container's processes live in the host's), for `ctr run --config`.
pub fn host_pid_spec(d: &Daemon, id: &str, args: &[&str]) -> Value {
    let out = command::run_ok(
        Command::new(util::ctr_bin()).args(["oci", "spec"]),
        Duration::from_secs(10),
    );
    let mut spec: Value = serde_json::from_slice(&out.stdout).expect("ctr oci spec prints JSON");
    spec["root"] = json!({ "path": d.rootfs(), "readonly": true });
    spec["process"]["args"] = json!(args);
    spec["process"]["terminal"] = json!(false);
    spec["process"]["env"] = json!(["PATH=/bin"]);
    spec["linux"]["cgroupsPath"] = json!(format!("/{}/{id}", d.ns()));
    spec["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .retain(|n| n["type"] != "pid");
    spec
}

/// The absolute path of `runc` in `PATH` (for a wrapper script or `Options.binary_name`).
pub fn runc_path() -> PathBuf {
    let bin = util::runc_bin();
    if bin.is_absolute() {
        return bin;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|p| p.join(&bin))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no {} in PATH", bin.display()))
}

/// A `CreateTaskRequest` for `id` in `bundle`, null stdio, and `opts` as its runc options
/// (`None`: the empty options `Any` containerd sends when none are set).
pub fn create_req(id: &str, bundle: &Path, opts: Option<&Options>) -> CreateTaskRequest {
    let mut r = CreateTaskRequest::new();
    r.id = id.to_string();
    r.bundle = bundle.to_string_lossy().into_owned();
    r.options = MessageField::some(match opts {
        Some(o) => protos::any::pack(RUNC_OPTIONS_TYPE_URL, o).expect("pack runc options"),
        None => protos::any::pack_bytes(RUNC_OPTIONS_TYPE_URL, Vec::new()),
    });
    r
}

/// Sends `r` to a hand-started shim and returns the init's pid; panics with the shim's error.
pub fn create_task(d: &Daemon, client: &TaskClient, r: &CreateTaskRequest) -> u32 {
    client
        .create(rpc_ctx(d.ns()), r)
        .unwrap_or_else(|e| panic!("Create: {}", describe_err(&e)))
        .pid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_group_of_this_process() {
        let me = std::process::id() as i32;
        assert_eq!(process_group(me), Some(nix::unistd::getpgrp().as_raw()));
    }
}
