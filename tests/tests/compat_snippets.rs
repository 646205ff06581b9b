//! The containerd config snippets shipped in `packaging/containerd/` work on the containerd of
//! the matrix: `config-v2-*.toml` on 1.6/1.7 (config version 2), `config-v3-*.toml` on 2.x
//! (version 3). Each snippet is merged verbatim into the daemon's config (only the install
//! paths are pointed at `SHIM_BIN`), with the CRI plugin enabled so that the snippet's tables
//! are really read (CRI's own use of them — pods — is tested in `cri_*.rs`). Then a container
//! runs through the runtime the snippet configures, with `ctr`:
//!
//! * replace: `io.containerd.runc.v2` resolves to our shim, installed first in containerd's
//!   PATH (what `packaging/install.sh` does with `/usr/local/bin`);
//! * side by side: our shim under a runtime of its own while `io.containerd.runc.v2` keeps
//!   resolving to the Go shim in PATH: on 1.6/1.7 the runtime type `io.containerd.runc-rs.v2`
//!   (binary `containerd-shim-runc-rs-v2`, found in containerd's cwd/PATH), on 2.x the absolute
//!   `runtime_path` (`ctr run --runtime <path>`).

use e2e::config::{snippet_body, ConfigVersion, ContainerdConfig};
use e2e::{procfs, Daemon, DaemonOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);
/// Where the snippets expect our shim (`packaging/install.sh`).
const REPLACE_PATH: &str = "/usr/local/bin/containerd-shim-runc-v2";
const SIDE_BY_SIDE_PATH: &str = "/usr/local/lib/containerd-shim-rs/containerd-shim-runc-v2";
/// The side-by-side runtime type of the version 2 snippets, and the binary it resolves to.
const SIDE_BY_SIDE_TYPE: &str = "io.containerd.runc-rs.v2";
const SIDE_BY_SIDE_BINARY: &str = "containerd-shim-runc-rs-v2";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Replace,
    SideBySide,
}

fn snippet_file(v: ConfigVersion, kind: Kind) -> PathBuf {
    let name = match (v, kind) {
        (ConfigVersion::V2, Kind::Replace) => "config-v2-replace.toml",
        (ConfigVersion::V2, Kind::SideBySide) => "config-v2-side-by-side.toml",
        (ConfigVersion::V3, Kind::Replace) => "config-v3-replace.toml",
        (ConfigVersion::V3, Kind::SideBySide) => "config-v3-side-by-side.toml",
    };
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/containerd")
        .join(name)
}

/// Settings the CRI plugin needs to start in a private daemon without touching the host:
/// loopback streaming server on a free port, a CNI conf dir of our own, no AppArmor, and
/// `restrict_oom_score_adj` (this VM forbids lowering oom_score_adj).
fn cri_settings(v: ConfigVersion, tmp: &Path) -> String {
    let cni = tmp.join("cni-conf");
    let (stream, runtime) = match v {
        ConfigVersion::V2 => ("io.containerd.grpc.v1.cri", "io.containerd.grpc.v1.cri"),
        ConfigVersion::V3 => ("io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime"),
    };
    let mut s =
        format!("[plugins.\"{stream}\"]\n  stream_server_address = \"127.0.0.1\"\n  stream_server_port = \"0\"\n");
    if runtime == stream {
        s.push_str("  restrict_oom_score_adj = true\n  disable_apparmor = true\n");
    } else {
        s.push_str(&format!(
            "\n[plugins.\"{runtime}\"]\n  restrict_oom_score_adj = true\n  disable_apparmor = true\n"
        ));
    }
    s.push_str(&format!(
        "\n[plugins.\"{runtime}\".cni]\n  conf_dir = \"{}\"\n",
        cni.display()
    ));
    s
}

fn shim_exe(d: &Daemon, id: &str) -> PathBuf {
    let shims = d.shim_processes(id);
    assert_eq!(shims.len(), 1, "one shim for {id}: {shims:#?}");
    let exe = procfs::link(shims[0].pid, "exe").expect("shim exe");
    std::fs::canonicalize(&exe).unwrap_or(exe)
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The first `containerd-shim-runc-v2` in `path` (what containerd resolves the runtime
/// `io.containerd.runc.v2` to).
fn first_in_path(path: &std::ffi::OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|d| d.join("containerd-shim-runc-v2"))
        .find(|p| p.is_file())
}

fn run_and_remove(d: &Daemon, runtime: &str, name: &str) -> PathBuf {
    let id = d.id(name);
    d.ctr(&[
        "run",
        "-d",
        "--runtime",
        runtime,
        "--rootfs",
        d.rootfs().to_str().expect("utf-8"),
        &id,
        "/bin/sleep",
        "1000",
    ])
    .ok();
    d.wait_task_status(&id, "RUNNING", T);
    let exe = shim_exe(d, &id);
    let out = d
        .ctr(&[
            "task",
            "exec",
            "--exec-id",
            "x",
            &id,
            "/bin/sh",
            "-c",
            "echo via-snippet",
        ])
        .run();
    assert_eq!(
        (out.code(), out.stdout_str().as_str()),
        (Some(0), "via-snippet\n"),
        "exec in a container of runtime {runtime}: {out}"
    );
    d.ctr(&["task", "kill", "-s", "KILL", &id]).ok();
    d.wait_task_status(&id, "STOPPED", T);
    d.ctr(&["task", "delete", &id]).ok();
    d.ctr(&["container", "delete", &id]).ok();
    exe
}

/// How a snippet's runtime reaches our shim in the test daemon.
struct Ours {
    /// Where `SHIM_BIN` was put (a symlink) for containerd to find it.
    path: PathBuf,
    /// The `ctr run --runtime` value that selects it.
    ctr_runtime: String,
    /// What the CRI plugin's logged config must mention for the snippet's runtime.
    cri_marker: String,
}

/// Starts a daemon whose config is the generated one plus the packaged snippet (paths pointed
/// at `SHIM_BIN`), with CRI enabled when `cri`.
fn daemon_with_snippet(kind: Kind, cri: bool) -> (Daemon, String, Ours) {
    let v = e2e::config::containerd_version().config_version();
    let file = snippet_file(v, kind);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let want_version = match v {
        ConfigVersion::V2 => "version = 2",
        ConfigVersion::V3 => "version = 3",
    };
    assert!(
        text.lines().any(|l| l.trim() == want_version),
        "{} is not `{want_version}`",
        file.display()
    );
    let shim = e2e::util::shim_bin();
    let mut ours = Ours {
        path: PathBuf::new(),
        ctr_runtime: String::new(),
        cri_marker: String::new(),
    };
    let d = Daemon::start_configured(
        DaemonOptions {
            shim_in_path: kind == Kind::Replace,
        },
        |c: &mut ContainerdConfig| {
            let tmp = c.root.parent().expect("temp dir").to_path_buf();
            let body = match (kind, v) {
                // The daemon's bin dir is first in its PATH and holds SHIM_BIN under this name.
                (Kind::Replace, _) => {
                    let p = tmp.join("bin/containerd-shim-runc-v2");
                    assert!(
                        text.contains(REPLACE_PATH),
                        "{} does not name {REPLACE_PATH}",
                        file.display()
                    );
                    ours = Ours {
                        ctr_runtime: e2e::RUNC_V2_RUNTIME.to_string(),
                        cri_marker: p.to_string_lossy().into_owned(),
                        path: p.clone(),
                    };
                    snippet_body(&text).replace(REPLACE_PATH, &p.to_string_lossy())
                }
                // A runtime type of our own: containerd looks its binary up in its cwd (the
                // daemon's bin dir), then PATH, as `install.sh --side-by-side` provides it.
                (Kind::SideBySide, ConfigVersion::V2) => {
                    let marker = format!("runtime_type = \"{SIDE_BY_SIDE_TYPE}\"");
                    assert!(
                        text.contains(&marker),
                        "{} does not use {SIDE_BY_SIDE_TYPE}",
                        file.display()
                    );
                    let dir = tmp.join("bin");
                    std::fs::create_dir_all(&dir).expect("mkdir bin");
                    let p = dir.join(SIDE_BY_SIDE_BINARY);
                    std::os::unix::fs::symlink(&shim, &p).expect("symlink shim");
                    ours = Ours {
                        path: p,
                        ctr_runtime: SIDE_BY_SIDE_TYPE.to_string(),
                        cri_marker: SIDE_BY_SIDE_TYPE.to_string(),
                    };
                    snippet_body(&text)
                }
                (Kind::SideBySide, ConfigVersion::V3) => {
                    assert!(
                        text.contains(SIDE_BY_SIDE_PATH),
                        "{} does not name {SIDE_BY_SIDE_PATH}",
                        file.display()
                    );
                    let dir = tmp.join("shim-rs");
                    std::fs::create_dir_all(&dir).expect("mkdir shim-rs");
                    let p = dir.join("containerd-shim-runc-v2");
                    std::os::unix::fs::symlink(&shim, &p).expect("symlink shim");
                    ours = Ours {
                        ctr_runtime: p.to_string_lossy().into_owned(),
                        cri_marker: p.to_string_lossy().into_owned(),
                        path: p.clone(),
                    };
                    snippet_body(&text).replace(SIDE_BY_SIDE_PATH, &p.to_string_lossy())
                }
            };
            if cri {
                c.disabled_plugins.clear();
                c.extra = format!("{}\n{body}\n", cri_settings(c.version, &tmp));
            } else {
                c.extra = body;
            }
        },
    );
    let text = std::fs::read_to_string(d.config_path()).expect("read config");
    (d, text, ours)
}

/// With CRI enabled, the CRI plugin came up with the snippet's runtime and `marker` (our path
/// or our runtime type) in its config.
fn assert_cri_loaded_snippet(d: &Daemon, marker: &str, handler: &str) {
    let log = e2e::util::poll(Duration::from_secs(10), Duration::from_millis(100), || {
        let log = d.log_text();
        let started = log.contains("Start cri plugin with config")
            || log.contains("starting cri plugin")
            || log.contains("Start streaming server");
        started.then_some(log)
    })
    .unwrap_or_else(|| panic!("the CRI plugin did not start\n{}", d.log_tail(60)));
    for bad in ["failed to load plugin", "failed to create CRI service"] {
        if let Some(l) = log.lines().find(|l| l.contains(bad) && l.contains("cri")) {
            panic!("the CRI plugin failed with the snippet: {l}");
        }
    }
    let p = marker;
    let line = log
        .lines()
        .find(|l| (l.contains("Start cri plugin with config") || l.contains("starting cri plugin")) && l.contains(p))
        .unwrap_or_else(|| {
            panic!(
                "the CRI plugin's config never mentions runtime {handler} with {p}\n{}",
                log.lines()
                    .filter(|l| l.contains("cri"))
                    .map(|l| format!("    {}\n", e2e::util::head(l, 1500)))
                    .collect::<String>()
            )
        });
    assert!(line.contains(handler), "runtime {handler} missing from: {line}");
}

fn check_snippet(kind: Kind, cri: bool) {
    let (d, config, ours) = daemon_with_snippet(kind, cri);
    let shim = canonical(d.shim_bin());
    if cri {
        assert_cri_loaded_snippet(
            &d,
            &ours.cri_marker,
            match kind {
                Kind::Replace => "runc",
                Kind::SideBySide => "runc-rs",
            },
        );
    }
    match kind {
        Kind::Replace => {
            assert_eq!(
                canonical(&ours.path),
                shim,
                "the replace snippet's runtime_path must be SHIM_BIN in this daemon"
            );
            let exe = run_and_remove(&d, e2e::RUNC_V2_RUNTIME, "replace");
            assert_eq!(
                exe, shim,
                "io.containerd.runc.v2 did not resolve to our shim\nconfig:\n{config}"
            );
        }
        Kind::SideBySide => {
            assert_eq!(canonical(&ours.path), shim, "the side-by-side install must be SHIM_BIN");
            let exe = run_and_remove(&d, &ours.ctr_runtime, "ours");
            assert_eq!(
                exe, shim,
                "the side-by-side runtime {} runs another shim",
                ours.ctr_runtime
            );
            // Next to it, io.containerd.runc.v2 still means the Go shim first in PATH.
            let go = first_in_path(d.path_env()).expect("a containerd-shim-runc-v2 in PATH");
            let exe = run_and_remove(&d, e2e::RUNC_V2_RUNTIME, "go");
            assert_eq!(exe, canonical(&go), "io.containerd.runc.v2 next to our runtime");
        }
    }
    d.assert_clean();
}

#[test]
fn replace_snippet_with_cri_enabled_runs_io_containerd_runc_v2_through_our_shim() {
    check_snippet(Kind::Replace, true);
}

#[test]
fn side_by_side_snippet_with_cri_enabled_runs_our_shim_next_to_the_go_shim() {
    check_snippet(Kind::SideBySide, true);
}

#[test]
fn snippets_with_the_cri_plugin_disabled_still_start_and_run_containers() {
    check_snippet(Kind::Replace, false);
    check_snippet(Kind::SideBySide, false);
}
