//! A private containerd per test: own temp dir, config, sockets and namespace.

use crate::command;
use crate::config::{self, ContainerdConfig, ContainerdVersion};
use crate::ctr::Ctr;
use crate::events::EventWatcher;
use crate::reaper::{self, Spawned};
use crate::rootfs;
use crate::util::{self, shim_socket_path, RUNC_ROOT, TASKS_DIR};
use nix::sys::signal::Signal;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The runtime name that makes containerd look for `containerd-shim-runc-v2` (cwd, then PATH).
pub const RUNC_V2_RUNTIME: &str = "io.containerd.runc.v2";

/// How long containerd may take to answer `ctr version` after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Options for [`Daemon::start_with`].
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// Put `SHIM_BIN` first in containerd's PATH and cwd as `containerd-shim-runc-v2`, and use
    /// the runtime name `io.containerd.runc.v2` (needed for `ctr run --runc-binary`).
    /// Otherwise tests use `--runtime <absolute SHIM_BIN>`.
    pub shim_in_path: bool,
}

/// A private containerd. Dropping it tears everything down (also while panicking).
pub struct Daemon {
    suffix: String,
    ns: String,
    tmp: PathBuf,
    pub(crate) config: ContainerdConfig,
    config_path: PathBuf,
    log_path: PathBuf,
    shim: PathBuf,
    runtime: String,
    /// containerd's cwd (also first in its PATH when the shim is put there).
    cwd: PathBuf,
    path_env: OsString,
    pub(crate) containerd: Option<Spawned>,
    /// Container ids used by the test (for the socket and fifo checks).
    pub(crate) ids: Mutex<BTreeSet<String>>,
    /// Mounts made by the harness itself (removed at teardown, ignored by the leak check).
    pub(crate) harness_mounts: Vec<PathBuf>,
    /// Cleared at teardown; event watchers stop reconnecting then.
    pub(crate) alive: Arc<AtomicBool>,
}

impl Daemon {
    /// A private containerd with `--runtime <SHIM_BIN>` as the runtime for tests.
    pub fn start() -> Daemon {
        Daemon::start_with(DaemonOptions::default())
    }

    pub fn start_with(opts: DaemonOptions) -> Daemon {
        Daemon::start_configured(opts, |_| {})
    }

    /// Like [`Daemon::start_with`], with `adjust` applied to the generated configuration first
    /// (append a packaging snippet to `extra`, enable CRI by editing `disabled_plugins`, ...).
    pub fn start_configured(opts: DaemonOptions, adjust: impl FnOnce(&mut ContainerdConfig)) -> Daemon {
        reaper::init();
        let version = config::containerd_version();
        install_version_panic_hook();
        let shim = util::shim_bin();
        let suffix = util::unique_suffix();
        let ns = format!("e2e-{suffix}");
        let tmp = std::env::temp_dir().join(format!("e2e-{suffix}"));
        std::fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("mkdir {}: {e}", tmp.display()));
        eprintln!("[e2e] {version}; shim {}; namespace {ns}", shim.display());
        let mut config = ContainerdConfig::in_dir_for(&tmp, version.config_version());
        adjust(&mut config);
        let config_path = tmp.join("config.toml");
        std::fs::write(&config_path, config.render()).expect("write containerd config");
        let bin_dir = tmp.join("bin");
        std::fs::create_dir_all(&bin_dir).expect("mkdir bin");
        let host_path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
        let (runtime, path_env) = if opts.shim_in_path {
            std::os::unix::fs::symlink(&shim, bin_dir.join("containerd-shim-runc-v2"))
                .expect("symlink shim into bin dir");
            let mut p = bin_dir.clone().into_os_string();
            p.push(":");
            p.push(&host_path);
            (RUNC_V2_RUNTIME.to_string(), p)
        } else {
            (shim.to_string_lossy().into_owned(), host_path)
        };
        let mut d = Daemon {
            suffix,
            ns,
            log_path: tmp.join("containerd.log"),
            tmp,
            config,
            config_path,
            shim,
            runtime,
            cwd: bin_dir,
            path_env,
            containerd: None,
            ids: Mutex::new(BTreeSet::new()),
            harness_mounts: Vec::new(),
            alive: Arc::new(AtomicBool::new(true)),
        };
        d.spawn_containerd(None);
        d
    }

    // ---- accessors

    /// The containerd release under test (the same for every daemon of the process).
    pub fn version(&self) -> &'static ContainerdVersion {
        config::containerd_version()
    }

    /// The generated configuration file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The configuration the daemon runs with.
    pub fn config(&self) -> &ContainerdConfig {
        &self.config
    }

    /// containerd's `PATH` (our bin dir first when the shim is put there).
    pub fn path_env(&self) -> &std::ffi::OsStr {
        &self.path_env
    }

    /// containerd's cwd and first `PATH` entry when [`DaemonOptions::shim_in_path`] is set.
    pub fn bin_dir(&self) -> &Path {
        &self.cwd
    }

    /// The containerd namespace of this daemon's tests (unique on the host).
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// containerd's gRPC socket path (what shims get as `-address`).
    pub fn address(&self) -> &str {
        self.config.grpc_address.to_str().expect("utf-8 temp dir")
    }

    /// containerd's ttrpc socket path (what shims get as `TTRPC_ADDRESS`).
    pub fn ttrpc_address(&self) -> &str {
        self.config.ttrpc_address.to_str().expect("utf-8 temp dir")
    }

    /// The daemon's private temp dir.
    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    pub fn state_dir(&self) -> &Path {
        &self.config.state
    }

    pub fn root_dir(&self) -> &Path {
        &self.config.root
    }

    /// The shim under test (absolute path).
    pub fn shim_bin(&self) -> &Path {
        &self.shim
    }

    /// What to pass to `ctr run --runtime`.
    pub fn runtime(&self) -> &str {
        &self.runtime
    }

    /// The shared busybox rootfs for `ctr run --rootfs`.
    pub fn rootfs(&self) -> &'static Path {
        rootfs::busybox_rootfs()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn containerd_pid(&self) -> Option<i32> {
        self.containerd.as_ref().map(Spawned::pid)
    }

    /// A container id unique on the host (`<name>-<suffix>`), remembered for the leak check.
    pub fn id(&self, name: &str) -> String {
        let id = format!("{name}-{}", self.suffix);
        self.track_id(&id);
        id
    }

    /// Remembers an id chosen elsewhere for the leak check.
    pub fn track_id(&self, id: &str) {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string());
    }

    /// The bundle containerd makes for `id`.
    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.config.state.join(TASKS_DIR).join(&self.ns).join(id)
    }

    /// Where the shim for `id` of this daemon listens.
    pub fn shim_socket(&self, id: &str) -> PathBuf {
        shim_socket_path(self.address(), &self.ns, id)
    }

    /// runc's state dir for this namespace.
    pub fn runc_root(&self) -> PathBuf {
        Path::new(RUNC_ROOT).join(&self.ns)
    }

    /// A ctr command against this daemon and namespace.
    pub fn ctr<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Ctr<'_> {
        Ctr::new(self, args)
    }

    /// Starts a `ctr events` watcher; returns once it is subscribed.
    pub fn events(&self) -> EventWatcher {
        let w = EventWatcher::start(self);
        w.wait_subscribed(Duration::from_secs(20));
        w
    }

    /// Arguments `ctr` needs to reach this daemon and namespace.
    pub(crate) fn ctr_base_args(&self) -> Vec<OsString> {
        vec![
            "--address".into(),
            self.address().into(),
            "--namespace".into(),
            self.ns.clone().into(),
        ]
    }

    // ---- containerd process

    /// Starts containerd. With `withhold`, containerd runs in a private mount namespace in
    /// which `withhold` is bind-mounted over the ttrpc socket's directory: containerd serves
    /// ttrpc there, while everyone else (the shims) still finds the old, dead socket until
    /// [`Daemon::open_ttrpc`].
    fn spawn_containerd(&mut self, withhold: Option<&Path>) {
        assert!(self.containerd.is_none(), "containerd is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open containerd log");
        let ttrpc_dir = self.config.ttrpc_address.parent().expect("ttrpc dir").to_path_buf();
        std::fs::create_dir_all(&ttrpc_dir).expect("mkdir ttrpc dir");
        let mut cmd = match withhold {
            None => Command::new(util::containerd_bin()),
            Some(hidden) => {
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
                    .arg(r#"mount --bind "$1" "$2" && shift 2 && exec "$@""#)
                    .arg("sh")
                    .arg(hidden)
                    .arg(&ttrpc_dir)
                    .arg(util::containerd_bin());
                c
            }
        };
        cmd.arg("--config")
            .arg(&self.config_path)
            .current_dir(&self.cwd)
            .env("PATH", &self.path_env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log)
            .process_group(0);
        let child = reaper::spawn(&mut cmd)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", util::containerd_bin().display()));
        self.containerd = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let mut last = String::new();
        let ready = util::poll(READY_TIMEOUT, Duration::from_millis(50), || {
            if let Some(st) = self.containerd.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("containerd exited during startup ({st}):\n{}", self.log_tail(40));
            }
            if !self.config.grpc_address.exists() {
                return None;
            }
            let mut c = Command::new(util::ctr_bin());
            c.arg("--address").arg(self.address()).arg("version");
            match command::run(&mut c, None, Duration::from_secs(5)) {
                Ok(o) if o.code() == Some(0) => Some(()),
                Ok(o) => {
                    last = o.to_string();
                    None
                }
                Err(e) => panic!("cannot run ctr: {e}"),
            }
        });
        if ready.is_none() {
            panic!(
                "containerd did not answer `ctr version` within {READY_TIMEOUT:?}; last try: {last}\n{}",
                self.log_tail(40)
            );
        }
    }

    /// SIGKILLs containerd and waits for it (shims keep running).
    pub fn kill_containerd(&mut self) {
        if let Some(mut c) = self.containerd.take() {
            c.kill_and_wait();
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop_containerd(&mut self, grace: Duration) {
        if let Some(mut c) = self.containerd.take() {
            c.signal(Signal::SIGTERM);
            if c.wait_timeout(grace).ok().flatten().is_none() {
                eprintln!("[e2e] containerd ignored SIGTERM for {grace:?}; SIGKILL");
                c.kill_and_wait();
            }
        }
    }

    /// Starts containerd again with the same config (after [`Daemon::kill_containerd`]).
    pub fn restart_containerd(&mut self) {
        self.spawn_containerd(None);
    }

    /// Starts containerd again with the same config, but keeps its ttrpc socket out of the
    /// shims' reach (they keep seeing the dead socket of the previous containerd) until
    /// [`Daemon::open_ttrpc`]. ctr works meanwhile (gRPC). This lets a test subscribe to events
    /// before a shim can deliver the ones it queued while containerd was away.
    pub fn restart_containerd_ttrpc_withheld(&mut self) {
        let hidden = self.tmp.join("ttrpc-withheld");
        std::fs::create_dir_all(&hidden).expect("mkdir ttrpc-withheld");
        self.spawn_containerd(Some(&hidden));
        let sock = hidden.join(self.config.ttrpc_address.file_name().expect("socket name"));
        assert!(sock.exists(), "containerd's ttrpc socket is not at {}", sock.display());
        if let Ok(_conn) = UnixStream::connect(&self.config.ttrpc_address) {
            panic!(
                "the ttrpc address {} is reachable although it should be withheld",
                self.ttrpc_address()
            );
        }
    }

    /// Makes the ttrpc socket of a containerd started by
    /// [`Daemon::restart_containerd_ttrpc_withheld`] reachable at the configured address.
    pub fn open_ttrpc(&mut self) {
        let hidden = self.tmp.join("ttrpc-withheld");
        let dir = self.config.ttrpc_address.parent().expect("ttrpc dir").to_path_buf();
        nix::mount::mount(
            Some(&hidden),
            &dir,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap_or_else(|e| panic!("bind mount {} on {}: {e}", hidden.display(), dir.display()));
        self.harness_mounts.push(dir);
        if let Err(e) = UnixStream::connect(&self.config.ttrpc_address) {
            panic!(
                "containerd's ttrpc socket {} is not reachable after open_ttrpc: {e}",
                self.ttrpc_address()
            );
        }
    }

    // ---- log

    /// Whole containerd log (includes the shims' logs: the daemon runs at debug level).
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// The last `n` lines of containerd's log, indented, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(n);
        let mut s = format!(
            "--- {} log {} (last {} lines) ---\n",
            config::containerd_version().label(),
            self.log_path.display(),
            n
        );
        for l in &lines[from..] {
            s.push_str("    ");
            s.push_str(util::tail(l, 400));
            s.push('\n');
        }
        s
    }
}

impl Daemon {
    /// Copies containerd's log (with the shims' logs) to `$E2E_LOG_DIR` (default
    /// `/tmp/e2e-failed-logs`) as `<version>-<namespace>.log`: teardown removes the temp dir.
    fn keep_log(&self) {
        let dir = std::env::var_os("E2E_LOG_DIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp/e2e-failed-logs"));
        let dst = dir.join(format!("{}-{}.log", config::containerd_version().short(), self.ns));
        if std::fs::create_dir_all(&dir).is_ok() && std::fs::copy(&self.log_path, &dst).is_ok() {
            eprintln!("[e2e] containerd log kept as {}", dst.display());
        }
    }
}

/// Makes every panic message of the test process start with the containerd release under test
/// (`[e2e] panic while testing containerd 1.7.24 ...`), so that a failure in the version matrix names
/// its daemon even when it happens outside the harness's own messages.
fn install_version_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            eprintln!("[e2e] panic while testing {}", config::containerd_version());
            prev(info);
        }));
    });
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            eprintln!(
                "[e2e] test failed on {}; namespace {}, temp dir {}",
                config::containerd_version(),
                self.ns,
                self.tmp.display()
            );
            eprintln!("{}", self.log_tail(60));
            self.keep_log();
        }
        self.teardown();
    }
}
