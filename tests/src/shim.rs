//! Talking to a shim directly: bundles made by hand, a shim `start`ed by hand (as containerd
//! would), and a ttrpc Task client.

use crate::command::{self, Output};
use crate::daemon::Daemon;
use crate::util;
use protos::task_ttrpc::TaskClient;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Bound for one ttrpc call from a test.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(20);

/// A ttrpc context with [`RPC_TIMEOUT`] and the namespace metadata containerd sends.
pub fn rpc_ctx(ns: &str) -> ttrpc::context::Context {
    let mut md = HashMap::new();
    md.insert("containerd-namespace-ttrpc".to_string(), vec![ns.to_string()]);
    let mut ctx = ttrpc::context::with_metadata(md);
    ctx.timeout_nano = RPC_TIMEOUT.as_nanos() as i64;
    ctx
}

/// Connects a `containerd.task.v2.Task` client to `address` (`unix:///...` or a path).
pub fn connect(address: &str) -> TaskClient {
    let addr = if address.starts_with("unix://") {
        address.to_string()
    } else {
        format!("unix://{address}")
    };
    let client = ttrpc::Client::connect(&addr).unwrap_or_else(|e| panic!("ttrpc connect {addr}: {e:?}"));
    TaskClient::new(client)
}

/// Writes `<dir>/config.json`: `ctr oci spec` with the shared busybox rootfs (absolute, read-only),
/// `args`, no terminal and cgroup `/<ns>/<id>`. Returns `dir`.
pub fn make_bundle(d: &Daemon, id: &str, args: &[&str]) -> PathBuf {
    let dir = bundle_path(d, id);
    std::fs::create_dir_all(&dir).expect("mkdir bundle");
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
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&spec).expect("spec JSON"),
    )
    .expect("write config.json");
    dir
}

/// A bundle dir for `id` without `config.json`.
pub fn make_empty_bundle(d: &Daemon, id: &str) -> PathBuf {
    let dir = bundle_path(d, id);
    std::fs::create_dir_all(&dir).expect("mkdir bundle");
    dir
}

fn bundle_path(d: &Daemon, id: &str) -> PathBuf {
    d.track_id(id);
    d.tmp().join("bundles").join(id)
}

/// Runs `SHIM -namespace N -address A -publish-binary CONTAINERD -id ID start` the way
/// containerd does: cwd = bundle, `TTRPC_ADDRESS` set, `stdin` bytes on stdin, own process
/// group. The bundle must have a `log` fifo with a reader (see [`LogFifo`]) for the daemon.
pub fn run_start(d: &Daemon, id: &str, bundle: &Path, stdin: &[u8]) -> Output {
    let mut cmd = Command::new(d.shim_bin());
    cmd.args(["-namespace", d.ns(), "-address", d.address(), "-publish-binary"])
        .arg(util::containerd_bin())
        .args(["-id", id, "start"])
        .current_dir(bundle)
        .env("TTRPC_ADDRESS", d.ttrpc_address());
    command::run(&mut cmd, Some(stdin), Duration::from_secs(20)).expect("run shim start")
}

/// The `log` fifo of a bundle, opened like containerd does (reader first, non-blocking) and
/// drained in the background so the shim never blocks on it.
pub struct LogFifo {
    text: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LogFifo {
    pub fn create(bundle: &Path) -> LogFifo {
        let path = bundle.join("log");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o700))
            .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let text = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (text.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match f.read(&mut buf) {
                    Ok(n) if n > 0 => t.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&buf[..n]),
                    _ => {
                        if s.load(Ordering::SeqCst) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        });
        LogFifo {
            text,
            stop,
            thread: Some(thread),
        }
    }

    /// What the shim daemon logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl Drop for LogFifo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A shim daemon started by hand for container `id`.
pub struct HandShim {
    pub id: String,
    pub bundle: PathBuf,
    /// As printed by `start` (`unix:///run/containerd/s/<hash>`).
    pub address: String,
    pub log: LogFifo,
}

impl HandShim {
    /// Makes the `log` fifo, runs `start` (panics unless it succeeds) and returns the shim.
    pub fn start(d: &Daemon, id: &str, bundle: &Path, stdin: &[u8]) -> HandShim {
        let log = LogFifo::create(bundle);
        let out = run_start(d, id, bundle, stdin);
        assert!(
            out.code() == Some(0) && !out.pipes_held_open,
            "shim start failed: {out}\nshim log:\n{}",
            log.text()
        );
        let address = out.stdout_str().trim().to_string();
        assert!(address.starts_with("unix://"), "start printed no address: {out}");
        HandShim {
            id: id.to_string(),
            bundle: bundle.to_path_buf(),
            address,
            log,
        }
    }

    pub fn client(&self) -> TaskClient {
        connect(&self.address)
    }
}
