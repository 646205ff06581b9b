//! The `delete` action: containerd runs it whenever its connection to a shim
//! closes, normally after Delete + Shutdown, and after a shim died. It must be
//! cheap, idempotent, and print nothing on stdout but a `DeleteResponse`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use protobuf::Message;
use protos::task::DeleteResponse;
use runc_wrapper::Runc;

use crate::flags::Flags;
use crate::{mount, options, socket};

/// Exit status reported for a container whose shim is gone: 128 + SIGKILL.
const KILLED: u32 = 128 + 9;

fn bundle_path(flags: &Flags) -> io::Result<PathBuf> {
    if !flags.bundle.is_empty() {
        return Ok(PathBuf::from(&flags.bundle));
    }
    let cwd = std::env::current_dir()?;
    let parent = cwd.parent().unwrap_or(Path::new("/"));
    Ok(parent.join(&flags.id))
}

/// Runs the cleanup; warnings go to stderr (containerd logs them), the response to stdout.
pub fn run(flags: &Flags) -> Result<DeleteResponse, String> {
    if flags.id.is_empty() {
        return Err("shim id cannot be empty".into());
    }
    let bundle = bundle_path(flags).map_err(|e| format!("cannot find bundle: {e}"))?;
    let opts = options::read_bundle_files(&bundle);
    let runc = Runc {
        root: Some(options::runc_root(&opts.root, &flags.namespace)),
        log: Some(bundle.join("log.json")),
        criu: (!opts.criu_path.is_empty()).then(|| PathBuf::from(&opts.criu_path)),
        systemd_cgroup: opts.systemd_cgroup,
        ..Runc::new(options::runc_binary(&opts.binary_name))
    };
    if let Err(e) = runc.delete(&flags.id, true).output() {
        if !e.is_not_exist() {
            eprintln!("failed to remove runc container: {e}");
        }
    }
    if let Err(e) = mount::unmount_all(&bundle.join("rootfs")) {
        eprintln!("failed to cleanup rootfs mount: {e}");
    }
    remove_dead_socket(&bundle);
    let pid = match fs::read_to_string(bundle.join("init.pid")) {
        Ok(s) => s.trim().parse().unwrap_or(0),
        Err(e) => {
            eprintln!("failed to read init pid file: {e}");
            0
        }
    };
    let mut resp = DeleteResponse::new();
    resp.pid = pid;
    resp.exit_status = KILLED;
    resp.exited_at = protobuf::MessageField::some(protos::time::now());
    Ok(resp)
}

/// Removes the shim socket named in the bundle's `address` file when nothing
/// answers on it any more (the daemon died): nobody else cleans it up.
fn remove_dead_socket(bundle: &Path) {
    let Ok(address) = fs::read_to_string(bundle.join("address")) else {
        return;
    };
    let path = Path::new(socket::path_of(address.trim()));
    if !path.starts_with("/") || !path.exists() || socket::is_live(path) {
        return;
    }
    if let Err(e) = fs::remove_file(path) {
        eprintln!("failed to remove dead shim socket {}: {e}", path.display());
    }
}

pub fn main(flags: &Flags) -> i32 {
    match run(flags) {
        Ok(resp) => match resp.write_to_bytes() {
            Ok(bytes) => {
                let mut out = io::stdout();
                let _ = out.write_all(&bytes);
                let _ = out.flush();
                0
            }
            Err(e) => {
                eprintln!("encode delete response: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("containerd-shim-runc-v2 delete: {e}");
            1
        }
    }
}
