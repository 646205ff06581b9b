//! A private containerd with its CRI plugin: own temp dir, sockets, config, CNI network
//! (bridge, subnet, conf dir, IPAM dir, netns dir), cgroup parent and images. Dropping it
//! removes pods and containers through CRI, stops containerd, and then removes whatever is
//! left (processes, runc state, mounts, netns, bridge, CNI cache, cgroups, shim sockets).

use super::api::*;
use super::client::{CreatedIds, CriClient, CriError, CriResult};
use super::config::{CniNetwork, CriConfig, RuntimeHandler, ShimResolution, Snippet};
use super::image::{build_cri_images, BUSYBOX_IMAGE, PAUSE_IMAGE};
use crate::cgroup;
use crate::cleanup::{assert_no_leaks, owned_processes, OwnedProcess};
use crate::command;
use crate::procfs;
use crate::reaper::{self, Spawned};
use crate::util::{self, list_dir, remove_empty_dirs, shim_socket_path, RUNC_ROOT};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The containerd namespace of CRI (fixed by the CRI plugin).
pub const CRI_NAMESPACE: &str = "k8s.io";

/// How long containerd with CRI may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`CriDaemon::assert_clean`] gives shims and containers to go away.
pub const CLEAN_TIMEOUT: Duration = Duration::from_secs(15);
/// CNI's result cache (libcni's default; containerd 1.6 does not move it).
const CNI_CACHE_DIR: &str = "/var/lib/cni/results";

/// Options of [`CriDaemon::start_with`].
#[derive(Debug, Clone)]
pub struct CriOptions {
    pub snippet: Snippet,
    /// Runtime option `pod_annotations` of the handler (pass-through to the OCI spec).
    pub pod_annotations: Vec<String>,
    /// Runtime option `container_annotations` of the handler.
    pub container_annotations: Vec<String>,
}

impl Default for CriOptions {
    fn default() -> Self {
        CriOptions {
            snippet: Snippet::SideBySide,
            pod_annotations: Vec::new(),
            container_annotations: Vec::new(),
        }
    }
}

/// A process of this daemon and how it was recognised.
pub type CriProcess = OwnedProcess;

/// A private containerd with CRI. Dropping it tears everything down (also while panicking).
pub struct CriDaemon {
    suffix: String,
    tmp: PathBuf,
    config: CriConfig,
    log_path: PathBuf,
    handler: RuntimeHandler,
    net: CniNetwork,
    /// Top-level cgroup (in every hierarchy) under which all pods of this daemon live.
    cgroup_root: String,
    containerd: Option<Spawned>,
    client: Option<CriClient>,
    created: Arc<Mutex<CreatedIds>>,
    pods_made: AtomicU32,
    shim_in_path: bool,
    config_path: PathBuf,
    /// containerd's cwd; first in its PATH when the shim is put there.
    bin_dir: PathBuf,
    path_env: std::ffi::OsString,
}

fn next_index() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

impl CriDaemon {
    /// containerd with CRI, our shim as runtime handler `runc-rs` (side-by-side snippet).
    pub fn start() -> CriDaemon {
        CriDaemon::start_with(CriOptions::default())
    }

    pub fn start_with(opts: CriOptions) -> CriDaemon {
        reaper::init();
        let shim = util::shim_bin();
        let shim = std::fs::canonicalize(&shim).unwrap_or(shim);
        let suffix = util::unique_suffix();
        let tmp = std::env::temp_dir().join(format!("e2e-cri-{suffix}"));
        std::fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("mkdir {}: {e}", tmp.display()));
        let index = next_index();
        let tag = format!("{:x}{index:x}", std::process::id());
        let net = CniNetwork::new(
            &tag,
            std::process::id().wrapping_mul(7).wrapping_add(index),
            &tmp.join("cni/ipam"),
        );
        let mut config = CriConfig::in_dir(&tmp, &shim, PAUSE_IMAGE, opts.snippet);
        config.pod_annotations = opts.pod_annotations.clone();
        config.container_annotations = opts.container_annotations.clone();
        let (text, handler) = config.render();
        let config_path = tmp.join("config.toml");
        std::fs::write(&config_path, &text).expect("write containerd config");
        std::fs::create_dir_all(&config.cni_conf_dir).expect("mkdir CNI conf dir");
        std::fs::create_dir_all(&net.ipam_dir).expect("mkdir IPAM dir");
        std::fs::write(
            config.cni_conf_dir.join(format!("10-{}.conflist", net.name)),
            net.conflist(),
        )
        .expect("write CNI conflist");
        for plugin in ["bridge", "host-local", "loopback"] {
            let p = config.cni_bin_dir.join(plugin);
            assert!(
                p.is_file(),
                "CNI plugin {} is missing: install containernetworking-plugins",
                p.display()
            );
        }
        // A leftover of an earlier run with the same pid.
        delete_link(&net.bridge);
        // containerd 1.6 parses a handler's `runtime_path` but its CRI never uses it (observed
        // with 1.6.20: a logging wrapper as runtime_path is never run; the shim comes from
        // containerd's PATH). The replace snippet installs our shim first in PATH
        // (packaging/install.sh), which also works on 1.6; a runtime resolved by binary name
        // (the side-by-side snippet's io.containerd.runc-rs.v2) finds that name in PATH.
        let shim_in_path = opts.snippet == Snippet::Replace;
        let bin_dir = tmp.join("bin");
        std::fs::create_dir_all(&bin_dir).expect("mkdir bin");
        let mut links: Vec<String> = Vec::new();
        if shim_in_path {
            links.push("containerd-shim-runc-v2".into());
        }
        if let ShimResolution::BinaryName(name) = &handler.resolution {
            links.push(name.clone());
        }
        for name in &links {
            std::os::unix::fs::symlink(&shim, bin_dir.join(name)).expect("symlink shim into bin dir");
        }
        let host_path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
        let mut path_env = bin_dir.clone().into_os_string();
        path_env.push(":");
        path_env.push(&host_path);
        let mut d = CriDaemon {
            cgroup_root: format!("e2e-cri-{suffix}"),
            suffix,
            log_path: tmp.join("containerd.log"),
            tmp,
            config,
            handler,
            net,
            containerd: None,
            client: None,
            created: Arc::new(Mutex::new(CreatedIds::default())),
            pods_made: AtomicU32::new(0),
            shim_in_path,
            config_path,
            bin_dir,
            path_env,
        };
        d.spawn_containerd();
        d.import_images();
        d
    }

    /// Starts containerd with this daemon's config and waits until CRI is ready.
    fn spawn_containerd(&mut self) {
        assert!(self.containerd.is_none(), "containerd is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open containerd log");
        let mut cmd = Command::new(util::containerd_bin());
        cmd.arg("--config")
            .arg(&self.config_path)
            .current_dir(&self.bin_dir)
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

    /// SIGKILLs containerd (shims and pods keep running) and drops the client.
    pub fn kill_containerd(&mut self) {
        self.client = None;
        if let Some(mut c) = self.containerd.take() {
            c.kill_and_wait();
        }
    }

    /// Starts containerd again with the same config (after [`CriDaemon::kill_containerd`]);
    /// returns once CRI answers and reports runtime and network ready.
    pub fn restart_containerd(&mut self) {
        self.spawn_containerd();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::new();
        loop {
            if let Some(st) = self.containerd.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("containerd exited during startup ({st}):\n{}", self.log_tail(60));
            }
            let log = self.log_text();
            if let Some(l) = log
                .lines()
                .find(|l| l.contains("failed to load plugin io.containerd.grpc.v1.cri"))
            {
                panic!("containerd did not load its CRI plugin: {l}");
            }
            if self.config.grpc_address.exists() {
                match CriClient::connect_recording(&self.config.grpc_address, self.created.clone()) {
                    Ok(c) => match c.version() {
                        Ok(v) if v.runtime_api_version == "v1" => {
                            self.client = Some(c);
                            break;
                        }
                        Ok(v) => panic!("CRI answers with API {:?}, not v1: {v:?}", v.runtime_api_version),
                        Err(e) => last = e.to_string(),
                    },
                    Err(e) => last = e.to_string(),
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "containerd's CRI did not answer Version within {READY_TIMEOUT:?}; last: {last}\n{}",
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Runtime and network (our CNI config) ready.
        let ready = util::poll(Duration::from_secs(30), Duration::from_millis(100), || {
            let st = self.cri().status().ok()?;
            let conds = st.status?.conditions;
            let ok = |t: &str| conds.iter().any(|c| c.r#type == t && c.status);
            (ok("RuntimeReady") && ok("NetworkReady")).then_some(())
        });
        if ready.is_none() {
            panic!(
                "CRI never reported RuntimeReady and NetworkReady: {:?}\n{}",
                self.cri().status(),
                self.log_tail(60)
            );
        }
    }

    fn import_images(&mut self) {
        let tar = build_cri_images(&self.tmp);
        let mut c = Command::new(util::ctr_bin());
        c.arg("--address")
            .arg(&self.config.grpc_address)
            .args(["--namespace", CRI_NAMESPACE, "images", "import"])
            .arg(&tar);
        let out = command::run(&mut c, None, Duration::from_secs(120)).expect("run ctr images import");
        assert!(
            out.code() == Some(0),
            "importing the CRI images failed: {out}\n{}",
            self.log_tail(30)
        );
        let _ = std::fs::remove_file(&tar);
        for image in [PAUSE_IMAGE, BUSYBOX_IMAGE] {
            let known = util::poll(Duration::from_secs(20), Duration::from_millis(100), || {
                self.cri().image_status(image).ok().flatten()
            });
            assert!(
                known.is_some(),
                "CRI does not know the imported image {image}: {:?}\n{}",
                self.cri().list_images(),
                self.log_tail(30)
            );
        }
    }

    // ---- accessors

    /// The CRI client (connected while containerd runs).
    pub fn cri(&self) -> &CriClient {
        self.client.as_ref().expect("containerd is not running")
    }

    /// A second, independent client (for calls from another thread).
    pub fn new_client(&self) -> CriClient {
        CriClient::connect_recording(&self.config.grpc_address, self.created.clone()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The runtime handler our shim serves (from the packaging snippet).
    pub fn handler(&self) -> &RuntimeHandler {
        &self.handler
    }

    pub fn net(&self) -> &CniNetwork {
        &self.net
    }

    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    pub fn address(&self) -> &str {
        self.config.grpc_address.to_str().expect("utf-8 temp dir")
    }

    /// The shim under test is first in containerd's PATH (containerd < 1.7, whose CRI ignores
    /// `runtime_path`).
    pub fn shim_in_path(&self) -> bool {
        self.shim_in_path
    }

    /// The shim under test (canonical path).
    pub fn shim_bin(&self) -> &Path {
        &self.config.shim
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The top-level cgroup of this daemon's pods (`/<this>/<pod>/<container id>`).
    pub fn cgroup_root(&self) -> &str {
        &self.cgroup_root
    }

    /// Where the shim serving sandbox (group) `id` listens.
    pub fn shim_socket(&self, id: &str) -> PathBuf {
        shim_socket_path(self.address(), CRI_NAMESPACE, id)
    }

    // ---- configs

    /// A pod config as kubelet would send it: metadata, hostname, a log directory of its own,
    /// cgroup parent `/<cgroup_root>/<name>-<n>`, network/IPC shared in the pod, a pid
    /// namespace per container.
    pub fn pod_config(&self, name: &str) -> PodSandboxConfig {
        let n = self.pods_made.fetch_add(1, Ordering::Relaxed);
        let unique = format!("{name}-{n}");
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: unique.clone(),
                uid: format!("uid-{unique}-{}", self.suffix),
                namespace: "e2e".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: self.tmp.join("pods").join(&unique).to_string_lossy().into_owned(),
            labels: [("e2e-test".to_string(), name.to_string())].into(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("/{}/{unique}", self.cgroup_root),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Pod as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A container of the busybox image running `cmd`, logging to `<name>.log` in the pod's log
    /// directory, namespaces as the pod's config says.
    pub fn container_config(&self, pod: &PodSandboxConfig, name: &str, cmd: &[&str]) -> ContainerConfig {
        let ns = pod
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone());
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: BUSYBOX_IMAGE.into(),
                ..Default::default()
            }),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            labels: [("e2e-container".to_string(), name.to_string())].into(),
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: ns,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    // ---- calls that must succeed (panic with the containerd log otherwise)

    /// Unwraps a CRI result, or panics with `what`, the error and the log tail.
    pub fn ok<T>(&self, what: &str, r: CriResult<T>) -> T {
        r.unwrap_or_else(|e: CriError| panic!("{what}: {e}\n{}", self.log_tail(50)))
    }

    /// RunPodSandbox with our handler; returns the sandbox id.
    pub fn run_pod(&self, config: &PodSandboxConfig) -> String {
        let r = self.cri().run_pod_sandbox(config, self.handler.request_name());
        self.ok("RunPodSandbox", r)
    }

    /// CreateContainer + StartContainer; returns the container id.
    pub fn start_container(&self, pod_id: &str, pod: &PodSandboxConfig, c: &ContainerConfig) -> String {
        let id = self.ok("CreateContainer", self.cri().create_container(pod_id, c, pod));
        self.ok("StartContainer", self.cri().start_container(&id));
        id
    }

    pub fn container_status(&self, id: &str) -> ContainerStatus {
        let r = self.cri().container_status(id, false);
        self.ok("ContainerStatus", r)
            .status
            .unwrap_or_else(|| panic!("ContainerStatus of {id} without status"))
    }

    /// Polls ContainerStatus until the state is `state`.
    pub fn wait_container_state(&self, id: &str, state: ContainerState, timeout: Duration) -> ContainerStatus {
        let mut last = None;
        let got = util::poll(timeout, Duration::from_millis(100), || {
            let st = self.container_status(id);
            let hit = st.state == state as i32;
            last = Some(st.clone());
            hit.then_some(st)
        });
        got.unwrap_or_else(|| {
            panic!(
                "container {id} did not reach {state:?} within {timeout:?}; last status: {last:#?}\n{}",
                self.log_tail(40)
            )
        })
    }

    /// The runtime's verbose info of a container (`info` of a verbose ContainerStatus: pid,
    /// runtimeSpec, ...).
    pub fn container_info(&self, id: &str) -> serde_json::Value {
        let r = self.ok("ContainerStatus(verbose)", self.cri().container_status(id, true));
        let info = r
            .info
            .get("info")
            .unwrap_or_else(|| panic!("no verbose info for {id}: {:?}", r.info));
        serde_json::from_str(info).unwrap_or_else(|e| panic!("verbose info of {id} is not JSON: {e}: {info}"))
    }

    /// The pid (in our pid namespace) of a running container's init process.
    pub fn container_pid(&self, id: &str) -> i32 {
        let info = self.container_info(id);
        let pid = info["pid"].as_i64().unwrap_or(0) as i32;
        assert!(pid > 0, "no pid in the verbose info of {id}: {info}");
        pid
    }

    /// The pid of a pod's sandbox (pause) process.
    pub fn sandbox_pid(&self, pod_id: &str) -> i32 {
        let r = self.ok("PodSandboxStatus(verbose)", self.cri().pod_sandbox_status(pod_id, true));
        let info = r.info.get("info").cloned().unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&info).unwrap_or_default();
        let pid = v["pid"].as_i64().unwrap_or(0) as i32;
        assert!(pid > 0, "no pid in the verbose info of sandbox {pod_id}: {info}");
        pid
    }

    /// The cgroup path (relative to a hierarchy root, see [`crate::cgroup`]) of a container, from
    /// its OCI spec.
    pub fn container_cgroup(&self, id: &str) -> String {
        let info = self.container_info(id);
        info["runtimeSpec"]["linux"]["cgroupsPath"]
            .as_str()
            .unwrap_or_else(|| panic!("no cgroupsPath in the spec of {id}: {info}"))
            .to_string()
    }

    /// ExecSync that must succeed at the CRI level (the command may fail).
    pub fn exec_sync(&self, id: &str, cmd: &[&str]) -> ExecSyncResponse {
        let r = self.cri().exec_sync(id, cmd, 30);
        self.ok(&format!("ExecSync {cmd:?} in {id}"), r)
    }

    /// ExecSync whose command must exit 0; returns its stdout.
    pub fn exec_ok(&self, id: &str, cmd: &[&str]) -> String {
        let r = self.exec_sync(id, cmd);
        assert_eq!(
            r.exit_code,
            0,
            "{cmd:?} in {id} failed: stdout {:?} stderr {:?}",
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        );
        String::from_utf8_lossy(&r.stdout).into_owned()
    }

    /// StopPodSandbox + RemovePodSandbox (its containers go with it).
    pub fn remove_pod(&self, pod_id: &str) {
        self.ok("StopPodSandbox", self.cri().stop_pod_sandbox(pod_id));
        self.ok("RemovePodSandbox", self.cri().remove_pod_sandbox(pod_id));
    }

    // ---- processes

    /// Live processes of this daemon except containerd and our own children: shims (their
    /// `-address` is ours), processes in our cgroups (pods, containers), processes whose cwd is
    /// in our temp dir, and all their descendants.
    pub fn processes(&self) -> Vec<CriProcess> {
        reaper::reap_orphans();
        let ctd = self.containerd.as_ref().map(Spawned::pid);
        let cg_prefix = format!("/{}/", self.cgroup_root);
        owned_processes(ctd, |st, argv| {
            if procfs::flag_value(argv, "address") == Some(self.address()) {
                Some("-address is ours".to_string())
            } else if let Some(cg) = procfs::cgroup_paths(st.pid)
                .into_iter()
                .find(|c| c.starts_with(&cg_prefix))
            {
                Some(format!("cgroup {cg}"))
            } else {
                procfs::link(st.pid, "cwd")
                    .filter(|c| c.starts_with(&self.tmp))
                    .map(|c| format!("cwd {}", c.display()))
            }
        })
    }

    /// The shim daemons of this containerd (not their `start`/`delete` invocations).
    pub fn shims(&self) -> Vec<CriProcess> {
        self.processes()
            .into_iter()
            .filter(|p| {
                p.state != 'Z'
                    && procfs::flag_value(&p.argv, "address") == Some(self.address())
                    && !p.argv.iter().any(|a| a == "start" || a == "delete")
            })
            .collect()
    }

    /// Waits until exactly `n` shim daemons run and returns them; checks that each is the
    /// binary under test.
    pub fn wait_shims(&self, n: usize, timeout: Duration) -> Vec<CriProcess> {
        let mut last = Vec::new();
        let got = util::poll(timeout, Duration::from_millis(100), || {
            last = self.shims();
            (last.len() == n).then(|| last.clone())
        });
        let shims = got.unwrap_or_else(|| {
            panic!(
                "expected {n} shim process(es) within {timeout:?}, found {}:\n  {}\n{}",
                last.len(),
                last.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "),
                self.log_tail(30)
            )
        });
        for s in &shims {
            let exe = procfs::link(s.pid, "exe");
            assert_eq!(
                exe.as_deref(),
                Some(self.shim_bin()),
                "shim {s} is not the binary under test (the handler's runtime_path)"
            );
        }
        shims
    }

    /// The shim daemon whose `-id` is `group` (the sandbox id, or a group annotation).
    pub fn shim_for(&self, group: &str) -> Option<CriProcess> {
        self.shims()
            .into_iter()
            .find(|p| procfs::flag_value(&p.argv, "id") == Some(group))
    }

    // ---- leaks and teardown

    fn netns_dir(&self) -> PathBuf {
        self.config.state.join("io.containerd.grpc.v1.cri").join("netns")
    }

    fn cgroup_tops(&self) -> Vec<PathBuf> {
        cgroup::hierarchies()
            .into_iter()
            .map(|h| h.join(&self.cgroup_root))
            .filter(|d| d.is_dir())
            .collect()
    }

    fn cni_cache_files(&self) -> Vec<PathBuf> {
        let prefix = format!("{}-", self.net.name);
        list_dir(Path::new(CNI_CACHE_DIR))
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .collect()
    }

    /// Everything left of this daemon's pods and containers; empty when clean. The bridge is
    /// not counted (the bridge plugin keeps it; teardown removes it).
    pub fn leaks(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in self.processes() {
            out.push(format!("process {p}"));
        }
        for m in procfs::mounts_under(&self.tmp) {
            out.push(format!("mount {}", m.display()));
        }
        let created = self.created.lock().unwrap_or_else(|e| e.into_inner());
        for id in created.pods.iter().chain(created.containers.iter()) {
            let state = Path::new(RUNC_ROOT).join(CRI_NAMESPACE).join(id);
            if state.exists() {
                out.push(format!("runc state {}", state.display()));
            }
            let sock = self.shim_socket(id);
            if sock.symlink_metadata().is_ok() {
                out.push(format!("shim socket {} (group {id})", sock.display()));
            }
            for top in self.cgroup_tops() {
                for pod in list_dir(&top) {
                    let cg = pod.join(id);
                    if cg.is_dir() {
                        out.push(format!("cgroup {}", cg.display()));
                    }
                }
            }
        }
        drop(created);
        for f in list_dir(&self.netns_dir()) {
            out.push(format!("netns {}", f.display()));
        }
        for f in self.cni_cache_files() {
            out.push(format!("CNI cache {}", f.display()));
        }
        for f in list_dir(&self.net.ipam_dir.join(&self.net.name)) {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name != "lock" && !name.starts_with("last_reserved_ip") {
                out.push(format!("IP allocation {}", f.display()));
            }
        }
        if let Some(c) = &self.client {
            match c.list_pod_sandbox() {
                Ok(pods) => out.extend(pods.iter().map(|p| format!("CRI still has pod {}", p.id))),
                Err(e) => out.push(format!("{e}")),
            }
            match c.list_containers(None) {
                Ok(cs) => out.extend(cs.iter().map(|c| format!("CRI still has container {}", c.id))),
                Err(e) => out.push(format!("{e}")),
            }
        }
        out
    }

    /// Asserts that nothing of this daemon's pods is left (see [`CriDaemon::leaks`]) and that
    /// CRI never tried to pull an image. Shims get [`CLEAN_TIMEOUT`] to exit.
    pub fn assert_clean(&self) {
        assert_no_leaks(CLEAN_TIMEOUT, || self.leaks(), || self.log_tail(40));
        self.assert_no_pull();
    }

    /// CRI never tried to pull (there is no registry; every image is imported).
    pub fn assert_no_pull(&self) {
        let log = self.log_text();
        if let Some(l) = log.lines().find(|l| l.contains("PullImage")) {
            panic!("CRI tried to pull an image: {l}");
        }
    }

    fn teardown(&mut self) {
        if let Some(c) = self.client.take() {
            let mut pods: Vec<String> = c
                .list_pod_sandbox()
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.id)
                .collect();
            pods.extend(
                self.created
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pods
                    .iter()
                    .cloned(),
            );
            pods.sort();
            pods.dedup();
            for id in &pods {
                let _ = c.stop_pod_sandbox(id);
                let _ = c.remove_pod_sandbox(id);
            }
            for ctr in c.list_containers(None).unwrap_or_default() {
                let _ = c.remove_container(&ctr.id);
            }
        }
        if let Some(mut c) = self.containerd.take() {
            c.signal(Signal::SIGTERM);
            if c.wait_timeout(Duration::from_secs(10)).ok().flatten().is_none() {
                eprintln!("[e2e] containerd (CRI) ignored SIGTERM for 10s; SIGKILL");
                c.kill_and_wait();
            }
        }
        for round in 0..30 {
            let procs = self.processes();
            if procs.is_empty() {
                break;
            }
            for p in &procs {
                if p.state != 'Z' {
                    if round == 0 {
                        eprintln!("[e2e] CRI teardown: killing leftover {p}");
                    }
                    let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let created = std::mem::take(&mut *self.created.lock().unwrap_or_else(|e| e.into_inner()));
        let runc_root = Path::new(RUNC_ROOT).join(CRI_NAMESPACE);
        for id in created.pods.iter().chain(created.containers.iter()) {
            if runc_root.join(id).exists() {
                let mut c = Command::new(util::runc_bin());
                c.arg("--root").arg(&runc_root).args(["delete", "--force", id]);
                let _ = command::run(&mut c, None, Duration::from_secs(15));
            }
            let _ = std::fs::remove_file(self.shim_socket(id));
        }
        for m in procfs::mounts_under(&self.tmp) {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        delete_link(&self.net.bridge);
        for f in self.cni_cache_files() {
            let _ = std::fs::remove_file(f);
        }
        for top in self.cgroup_tops() {
            remove_empty_dirs(&top);
        }
        let remaining = procfs::mounts_under(&self.tmp);
        if remaining.is_empty() {
            let _ = std::fs::remove_dir_all(&self.tmp);
        } else {
            eprintln!(
                "[e2e] CRI teardown: mounts remain under {}, not removing it: {remaining:?}",
                self.tmp.display()
            );
        }
    }

    // ---- log

    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// The last `n` lines of containerd's log (with the shims' debug logs), for failures.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(n);
        let mut s = format!("--- containerd log {} (last {n} lines) ---\n", self.log_path.display());
        for l in &lines[from..] {
            s.push_str("    ");
            s.push_str(util::tail(l, 400));
            s.push('\n');
        }
        s
    }
}

impl Drop for CriDaemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("[e2e] CRI test failed; temp dir {}", self.tmp.display());
            eprintln!("{}", self.log_tail(60));
        }
        self.teardown();
    }
}

/// Does the network link `name` exist?
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn delete_link(name: &str) {
    if link_exists(name) {
        let mut c = Command::new("ip");
        c.args(["link", "delete", name]);
        let _ = command::run(&mut c, None, Duration::from_secs(10));
    }
}
