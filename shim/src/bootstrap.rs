//! The `start` action: make sure a daemon serves this container, tell containerd
//! where, and exit quickly.
//!
//! Nothing may be printed on success except the reply: containerd reads stdout and
//! stderr together as the address.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use protobuf::Message;
use protos::bootstrap::{BootstrapParams, BootstrapResult};
use protos::runc_options::Options;
use protos::Any;

use crate::flags::Flags;
use crate::socket::{self, Claim};
use crate::spec::Spec;
use crate::sys;

/// What containerd wrote on the shim's stdin.
#[derive(Debug)]
pub enum StartInput {
    Nothing,
    /// containerd 1.6 - 2.2: the runtime options `Any`.
    Options(Any),
    /// containerd 2.3+: `BootstrapParams`, with the options among its extensions.
    Bootstrap(BootstrapParams),
}

/// Tells the two stdin encodings apart. A `BootstrapParams` carries daemon facts
/// (version or addresses) and our own id; an options `Any` decoded as one does not.
pub fn classify(stdin: &[u8], id: &str) -> Result<StartInput, String> {
    if stdin.is_empty() {
        return Ok(StartInput::Nothing);
    }
    if let Ok(bp) = BootstrapParams::parse_from_bytes(stdin) {
        let daemon_facts = !bp.containerd_version.is_empty()
            || !bp.containerd_grpc_address.is_empty()
            || !bp.containerd_ttrpc_address.is_empty();
        if daemon_facts && bp.instance_id == id {
            return Ok(StartInput::Bootstrap(bp));
        }
    }
    Any::parse_from_bytes(stdin)
        .map(StartInput::Options)
        .map_err(|e| format!("cannot decode runtime options on stdin: {e}"))
}

impl StartInput {
    /// The runtime options, if any were sent.
    pub fn options_any(&self) -> Option<&Any> {
        match self {
            StartInput::Nothing => None,
            StartInput::Options(a) => Some(a),
            StartInput::Bootstrap(bp) => bp
                .extensions
                .iter()
                .filter_map(|e| e.value.as_ref())
                .find(|a| protos::any::type_matches(&a.type_url, protos::any::RUNC_OPTIONS)),
        }
    }
}

/// Everything `start` needs, resolved from flags, stdin and the environment.
struct Plan {
    namespace: String,
    id: String,
    grpc_address: String,
    socket_dir: PathBuf,
    debug: bool,
    reply_protobuf: bool,
    options: Options,
}

fn plan(flags: &Flags, input: &StartInput) -> Result<Plan, String> {
    let mut plan = Plan {
        namespace: flags.namespace.clone(),
        id: flags.id.clone(),
        grpc_address: flags.address.clone(),
        socket_dir: PathBuf::from(socket::SOCKET_DIR),
        debug: flags.debug,
        reply_protobuf: false,
        options: Options::default(),
    };
    if let StartInput::Bootstrap(bp) = input {
        plan.reply_protobuf = true;
        if !bp.namespace.is_empty() {
            plan.namespace = bp.namespace.clone();
        }
        if !bp.containerd_grpc_address.is_empty() {
            plan.grpc_address = bp.containerd_grpc_address.clone();
        }
        if let Some(dir) = bp.socket_dir.as_deref().filter(|d| !d.is_empty()) {
            plan.socket_dir = PathBuf::from(dir);
        }
        // LogLevel: DEBUG = -4, TRACE = -8.
        if bp.log_level.value() <= -4 {
            plan.debug = true;
        }
    }
    if let Some(any) = input.options_any() {
        plan.options = crate::options::decode(Some(any)).map_err(|e| e.to_string())?;
    }
    if plan.namespace.is_empty() {
        return Err("shim namespace cannot be empty".into());
    }
    Ok(plan)
}

/// Runs `start`; returns the bytes to print.
pub fn run(flags: &Flags) -> Result<Vec<u8>, String> {
    let mut stdin = Vec::new();
    io::stdin()
        .read_to_end(&mut stdin)
        .map_err(|e| format!("read stdin: {e}"))?;
    let input = classify(&stdin, &flags.id)?;
    let plan = plan(flags, &input)?;

    let bundle = std::env::current_dir().map_err(|e| format!("cannot get cwd: {e}"))?;
    let spec = Spec::load(&bundle).map_err(|e| format!("read {}/config.json: {e}", bundle.display()))?;
    let group = spec.group_key(&plan.id);
    let sock = socket::socket_path(&plan.socket_dir, &plan.grpc_address, &plan.namespace, group);
    let address = socket::address_of(&sock);

    let listener = match socket::claim(&sock).map_err(|e| format!("create socket {}: {e}", sock.display()))? {
        Claim::InUse => {
            write_address(&bundle, &address)?;
            return Ok(reply(&plan, &address));
        }
        Claim::Listening(l) => l,
    };
    let outcome = (|| {
        write_address(&bundle, &address)?;
        let pid = spawn_daemon(&plan, &bundle, listener.as_raw_fd())?;
        if let Err(e) = adjust_daemon(&plan, pid) {
            let _ = sys::kill(pid as i32, libc::SIGKILL);
            return Err(e);
        }
        Ok(())
    })();
    drop(listener);
    if let Err(e) = outcome {
        let _ = fs::remove_file(&sock);
        return Err(e);
    }
    Ok(reply(&plan, &address))
}

fn reply(plan: &Plan, address: &str) -> Vec<u8> {
    if plan.reply_protobuf {
        let mut r = BootstrapResult::new();
        r.version = 2;
        r.address = address.to_string();
        r.protocol = "ttrpc".to_string();
        if let Ok(bytes) = r.write_to_bytes() {
            return bytes;
        }
    }
    address.as_bytes().to_vec()
}

/// Writes `<bundle>/address` atomically (temp file + rename).
fn write_address(bundle: &Path, address: &str) -> Result<(), String> {
    let tmp = bundle.join(".address.tmp");
    let dst = bundle.join("address");
    fs::write(&tmp, address)
        .and_then(|_| fs::rename(&tmp, &dst))
        .map_err(|e| format!("write {}: {e}", dst.display()))
}

fn spawn_daemon(plan: &Plan, bundle: &Path, listener_fd: i32) -> Result<u32, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("-namespace")
        .arg(&plan.namespace)
        .arg("-id")
        .arg(&plan.id)
        .arg("-address")
        .arg(&plan.grpc_address);
    if plan.debug {
        cmd.arg("-debug");
    }
    cmd.current_dir(bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    sys::pass_fd(&mut cmd, listener_fd, sys::LISTENER_FD);
    let child = cmd.spawn().map_err(|e| format!("start shim daemon: {e}"))?;
    Ok(child.id())
}

/// Gives the daemon a core-scheduling cookie when containerd asks for one, applies
/// `shim_cgroup` and raises the daemon's `oom_score_adj` one above containerd's, so
/// the OOM killer picks the shim before the daemon.
fn adjust_daemon(plan: &Plan, pid: u32) -> Result<(), String> {
    // containerd sets SCHED_CORE when its runtime plugin has `sched_core = true`. The
    // daemon has not started any container yet, so everything it runs inherits the cookie.
    if std::env::var_os("SCHED_CORE").is_some_and(|v| !v.is_empty()) {
        sys::create_sched_core_cookie(pid).map_err(|e| format!("enable sched core support: {e}"))?;
    }
    if !plan.options.shim_cgroup.is_empty() {
        crate::cgroups::move_pid(&plan.options.shim_cgroup, pid)
            .map_err(|e| format!("failed to join shim cgroup {}: {e}", plan.options.shim_cgroup))?;
    }
    let parent = std::os::unix::process::parent_id();
    let score: i32 = fs::read_to_string(format!("/proc/{parent}/oom_score_adj"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let score = (score + 1).min(1000);
    fs::write(format!("/proc/{pid}/oom_score_adj"), score.to_string())
        .map_err(|e| format!("failed to adjust OOM score for shim: {e}"))
}

/// Entry point used by `main`: prints the reply or the error, returns the exit code.
pub fn main(flags: &Flags) -> i32 {
    match run(flags) {
        Ok(bytes) => {
            let mut out = io::stdout();
            let _ = out.write_all(&bytes);
            let _ = out.flush();
            0
        }
        Err(e) => {
            eprintln!("containerd-shim-runc-v2 start: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options_bytes() -> Vec<u8> {
        let o = Options {
            binary_name: "/run/ctd-example/runcwrap".into(),
            ..Default::default()
        };
        protos::any::pack(protos::any::RUNC_OPTIONS, &o)
            .unwrap()
            .write_to_bytes()
            .unwrap()
    }

    #[test]
    fn empty_stdin_is_nothing() {
        assert!(matches!(classify(b"", "c1").unwrap(), StartInput::Nothing));
    }

    #[test]
    fn options_any_is_recognised() {
        let input = classify(&options_bytes(), "c1").unwrap();
        let StartInput::Options(a) = &input else {
            panic!("not options: {input:?}")
        };
        assert_eq!(a.type_url, "containerd.runc.v1.Options");
        assert!(input.options_any().is_some());
    }

    #[test]
    fn bootstrap_params_are_recognised() {
        let mut bp = BootstrapParams::new();
        bp.instance_id = "c1".into();
        bp.namespace = "ns".into();
        bp.containerd_version = "2.3.0".into();
        bp.containerd_grpc_address = "/run/containerd/containerd.sock".into();
        bp.socket_dir = Some("/run/alt/s".into());
        let mut ext = protos::bootstrap::Extension::new();
        ext.value = protobuf::MessageField::some(Any::parse_from_bytes(&options_bytes()).unwrap());
        bp.extensions.push(ext);
        let bytes = bp.write_to_bytes().unwrap();
        let input = classify(&bytes, "c1").unwrap();
        assert!(matches!(input, StartInput::Bootstrap(_)));
        let flags = Flags::parse(["-namespace", "ns", "-id", "c1", "-address", "/x", "start"]).unwrap();
        let p = plan(&flags, &input).unwrap();
        assert!(p.reply_protobuf);
        assert_eq!(p.socket_dir, Path::new("/run/alt/s"));
        assert_eq!(p.grpc_address, "/run/containerd/containerd.sock");
        assert_eq!(p.options.binary_name, "/run/ctd-example/runcwrap");
        // Same bytes with another id are not taken as our bootstrap params.
        assert!(!matches!(classify(&bytes, "other").unwrap(), StartInput::Bootstrap(_)));
    }

    #[test]
    fn garbage_stdin_is_an_error() {
        let flags = Flags::parse(["-namespace", "ns", "-id", "c1", "start"]).unwrap();
        let err = classify(&[0xff, 0xfe, 0x00], "c1")
            .and_then(|i| plan(&flags, &i).map(|_| ()))
            .unwrap_err();
        assert!(err.contains("options"), "{err}");
    }

    #[test]
    fn bootstrap_reply_is_protobuf_version_2() {
        let flags = Flags::parse(["-namespace", "ns", "-id", "c1", "start"]).unwrap();
        let mut p = plan(&flags, &StartInput::Nothing).unwrap();
        assert_eq!(reply(&p, "unix:///x"), b"unix:///x");
        p.reply_protobuf = true;
        let r = BootstrapResult::parse_from_bytes(&reply(&p, "unix:///x")).unwrap();
        assert_eq!(
            (r.version, r.address.as_str(), r.protocol.as_str()),
            (2, "unix:///x", "ttrpc")
        );
    }
}
