//! Docker Engine through our shim: docker -> dockerd -> containerd (the one of the matrix) ->
//! shim -> runc. Debian's docker.io (20.10) runs against the test's private containerd, with
//! its own data root, exec root and API socket, no iptables and no bridge. Its containers live
//! in containerd namespace `moby` and use the `containerd-shim-runc-v2` first in containerd's
//! PATH, which the harness makes `SHIM_BIN`.
//!
//! Needs `dockerd` and `docker` (`apt-get install docker.io`; `.ci/run` does). Set
//! `E2E_SKIP_DOCKER=1` to skip explicitly on a machine without them.

use e2e::command::{self, Output};
use e2e::reaper::{self, Spawned};
use e2e::util::{self, shim_socket_path};
use e2e::{procfs, Daemon, DaemonOptions};
use nix::sys::signal::Signal;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const IMAGE: &str = "e2e-busybox:latest";
const DOCKER_TIMEOUT: Duration = Duration::from_secs(60);
const MOBY: &str = "moby";

fn bin(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

/// A private dockerd on top of a private containerd; stopped (and its mounts removed) on drop.
struct Dockerd<'d> {
    d: &'d Daemon,
    child: Option<Spawned>,
    dir: PathBuf,
    host: String,
    log: PathBuf,
}

impl<'d> Dockerd<'d> {
    fn start(d: &'d Daemon) -> Dockerd<'d> {
        let dockerd = bin("DOCKERD_BIN", "/usr/sbin/dockerd");
        let dir = d.tmp().join("docker");
        for sub in ["data", "exec", "cli"] {
            std::fs::create_dir_all(dir.join(sub)).expect("mkdir docker dirs");
        }
        std::fs::write(dir.join("daemon.json"), "{}\n").expect("write daemon.json");
        let log = dir.join("dockerd.log");
        let logf = std::fs::File::create(&log).expect("create dockerd log");
        let sock = dir.join("docker.sock");
        let mut cmd = Command::new(&dockerd);
        cmd.arg("--containerd")
            .arg(d.address())
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args([
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--bridge=none",
                "--userland-proxy=false",
                "--log-level=debug",
            ])
            .current_dir(&dir)
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup"))
            .stderr(logf)
            .process_group(0);
        let child = reaper::spawn(&mut cmd).unwrap_or_else(|e| panic!("cannot start {}: {e}", dockerd.display()));
        let mut me = Dockerd {
            d,
            child: Some(child),
            dir,
            host: format!("unix://{}", sock.display()),
            log,
        };
        let mut last = String::new();
        let up = util::poll(Duration::from_secs(40), Duration::from_millis(200), || {
            if let Some(st) = me.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("dockerd exited during startup ({st}):\n{}", me.log_tail(40));
            }
            let o = me.docker(&["version", "--format", "{{.Server.Version}}"]);
            last = o.to_string();
            (o.code() == Some(0)).then_some(())
        });
        if up.is_none() {
            panic!("dockerd did not come up: {last}\n{}", me.log_tail(40));
        }
        me
    }

    fn log_tail(&self, n: usize) -> String {
        let t = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        let mut s = format!("--- dockerd log {} ---\n", self.log.display());
        for l in &lines[lines.len().saturating_sub(n)..] {
            s.push_str("    ");
            s.push_str(util::tail(l, 400));
            s.push('\n');
        }
        s
    }

    fn docker_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let docker = bin("DOCKER_BIN", "/usr/bin/docker");
        let mut cmd = Command::new(&docker);
        cmd.arg("-H")
            .arg(&self.host)
            .args(args)
            .env("DOCKER_CONFIG", self.dir.join("cli"));
        let out = command::run(&mut cmd, stdin, DOCKER_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", docker.display()));
        assert!(!out.timed_out, "docker did not finish: {out}\n{}", self.describe());
        out
    }

    fn docker(&self, args: &[&str]) -> Output {
        self.docker_stdin(args, None)
    }

    /// Runs docker and asserts exit code 0.
    fn ok(&self, args: &[&str]) -> Output {
        let out = self.docker(args);
        assert_eq!(out.code(), Some(0), "docker failed: {out}\n{}", self.describe());
        out
    }

    fn describe(&self) -> String {
        format!("{}{}", self.log_tail(25), self.d.log_tail(25))
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "-f", format, name])
            .stdout_str()
            .trim()
            .to_string()
    }

    /// Stops dockerd (SIGTERM, then SIGKILL) and unmounts what it left under its dirs.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.signal(Signal::SIGTERM);
            if c.wait_timeout(Duration::from_secs(30)).ok().flatten().is_none() {
                eprintln!("[e2e] dockerd ignored SIGTERM; SIGKILL\n{}", self.log_tail(20));
                c.kill_and_wait();
            }
        }
        let mut mounts = procfs::mounts_under(&self.dir);
        mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
        for m in mounts {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

impl Drop for Dockerd<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(60));
            if self.child.is_some() {
                let _ = self.docker(&[
                    "rm", "-f", "-v", "e2e-run", "e2e-exec", "e2e-logs", "e2e-trap", "e2e-kill", "e2e-rmf",
                ]);
            }
        }
        self.stop();
    }
}

fn docker_available() -> bool {
    if std::env::var_os("E2E_SKIP_DOCKER").is_some_and(|v| !v.is_empty() && v != "0") {
        eprintln!("[e2e] E2E_SKIP_DOCKER is set: Docker Engine test skipped");
        return false;
    }
    for b in [
        bin("DOCKERD_BIN", "/usr/sbin/dockerd"),
        bin("DOCKER_BIN", "/usr/bin/docker"),
    ] {
        assert!(
            b.exists(),
            "{} is missing: install Debian's docker.io (or set E2E_SKIP_DOCKER=1)",
            b.display()
        );
    }
    true
}

/// The shim processes serving `moby` containers of this containerd.
fn moby_shims(d: &Daemon) -> Vec<e2e::OwnedProcess> {
    d.processes()
        .into_iter()
        .filter(|p| {
            procfs::flag_value(&p.argv, "namespace") == Some(MOBY)
                && procfs::flag_value(&p.argv, "address") == Some(d.address())
                && !p.argv.iter().any(|a| a == "start" || a == "delete")
        })
        .collect()
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// What Docker's containers may leave behind, for their ids: shim sockets, runc state, bundles,
/// cgroups, containerd's tasks and containers in `moby`.
fn moby_leaks(d: &Daemon, docker_dir: &Path, ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for p in moby_shims(d) {
        out.push(format!("shim process {p}"));
    }
    for id in ids {
        let sock = shim_socket_path(d.address(), MOBY, id);
        if sock.exists() {
            out.push(format!("shim socket {} of {id}", sock.display()));
        }
        for hier in list(Path::new("/sys/fs/cgroup")) {
            let cg = hier.join("docker").join(id);
            if cg.is_dir() {
                out.push(format!("cgroup {}", cg.display()));
            }
        }
    }
    for dir in [
        d.state_dir().join(util::TASKS_DIR).join(MOBY),
        Path::new(util::RUNC_ROOT).join(MOBY),
        docker_dir.join("exec/runtime-runc").join(MOBY),
    ] {
        for e in list(&dir) {
            if ids.iter().any(|id| e.ends_with(id)) {
                out.push(format!("leftover {}", e.display()));
            }
        }
    }
    for what in ["task", "container"] {
        let o = d.ctr(&["--namespace", MOBY, what, "ls", "-q"]).run();
        for id in o.stdout_str().split_whitespace() {
            out.push(format!("containerd still has {what} {id} in namespace {MOBY}"));
        }
    }
    out
}

fn list(d: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(d)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn docker_run_exec_logs_stats_stop_kill_rm_go_through_our_shim_and_leave_nothing() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start_with(DaemonOptions { shim_in_path: true });
    let mut dk = Dockerd::start(&d);
    let shim = canonical(d.shim_bin());

    // An image made with `docker import` from the busybox rootfs.
    let tree = d.tmp().join("docker-image-rootfs");
    e2e::rootfs::populate(&tree);
    let tar = command::run_ok(
        Command::new("tar")
            .args(["--numeric-owner", "-C"])
            .arg(&tree)
            .args(["-c", "."]),
        Duration::from_secs(60),
    );
    let imported = dk.docker_stdin(&["import", "-", IMAGE], Some(&tar.stdout));
    assert_eq!(imported.code(), Some(0), "docker import: {imported}");
    let _ = std::fs::remove_dir_all(&tree);
    let mut ids: Vec<String> = Vec::new();
    let remember = |ids: &mut Vec<String>, name: &str| {
        let id = dk_id(&dk, name);
        d.track_id(&id);
        ids.push(id);
    };

    // docker run: output and exit code.
    let out = dk.docker(&[
        "run",
        "--name",
        "e2e-run",
        "--network",
        "none",
        IMAGE,
        "/bin/sh",
        "-c",
        "echo hi; echo oops >&2; exit 3",
    ]);
    assert_eq!(
        out.code(),
        Some(3),
        "docker run must exit with the container's status: {out}"
    );
    assert_eq!(out.stdout_str(), "hi\n", "docker run stdout: {out}");
    assert!(out.stderr_str().contains("oops"), "docker run stderr: {out}");
    remember(&mut ids, "e2e-run");
    assert_eq!(dk.inspect("e2e-run", "{{.State.ExitCode}}"), "3");
    dk.ok(&["rm", "e2e-run"]);

    // docker run -d, and the shim serving it is ours.
    dk.ok(&[
        "run",
        "-d",
        "--name",
        "e2e-exec",
        "--network",
        "none",
        IMAGE,
        "/bin/sleep",
        "1000",
    ]);
    remember(&mut ids, "e2e-exec");
    let shims = util::poll(Duration::from_secs(20), Duration::from_millis(100), || {
        let s = moby_shims(&d);
        (!s.is_empty()).then_some(s)
    })
    .unwrap_or_else(|| panic!("no shim for Docker's container\n{}", dk.describe()));
    for p in &shims {
        let exe = procfs::link(p.pid, "exe").map(|e| canonical(&e));
        assert_eq!(
            exe.as_deref(),
            Some(shim.as_path()),
            "Docker's container is served by another shim than SHIM_BIN: {p}"
        );
    }

    // docker exec: output, exit code, stdin.
    let out = dk.docker(&["exec", "e2e-exec", "/bin/sh", "-c", "echo exec-out; exit 5"]);
    assert_eq!(
        (out.code(), out.stdout_str().as_str()),
        (Some(5), "exec-out\n"),
        "docker exec: {out}"
    );
    let out = dk.docker_stdin(
        &["exec", "-i", "e2e-exec", "/bin/head", "-n", "1"],
        Some(b"in-line\nmore\n"),
    );
    assert_eq!(
        (out.code(), out.stdout_str().as_str()),
        (Some(0), "in-line\n"),
        "docker exec -i: {out}"
    );

    // docker stats.
    let out = dk.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.PIDs}}|{{.MemUsage}}",
        "e2e-exec",
    ]);
    let line = out.stdout_str();
    let (pids, mem) = line.trim().split_once('|').unwrap_or(("", ""));
    assert_eq!(pids, "1", "docker stats PIDs of a lone sleep: {out}");
    assert!(
        !mem.starts_with("0B /") && !mem.is_empty(),
        "docker stats shows no memory usage (Stats through the shim): {out}"
    );

    // docker logs: stdout and stderr, separately.
    dk.ok(&[
        "run",
        "-d",
        "--name",
        "e2e-logs",
        "--network",
        "none",
        IMAGE,
        "/bin/sh",
        "-c",
        "echo to-out; echo to-err >&2; exec sleep 1000",
    ]);
    remember(&mut ids, "e2e-logs");
    let logs = util::poll(Duration::from_secs(20), Duration::from_millis(100), || {
        let o = dk.ok(&["logs", "e2e-logs"]);
        (o.stdout_str().contains("to-out") && o.stderr_str().contains("to-err")).then_some(o)
    })
    .unwrap_or_else(|| {
        panic!(
            "docker logs never showed both lines: {}",
            dk.docker(&["logs", "e2e-logs"])
        )
    });
    assert_eq!(logs.stdout_str(), "to-out\n", "docker logs stdout: {logs}");
    assert_eq!(logs.stderr_str(), "to-err\n", "docker logs stderr: {logs}");

    // docker stop: SIGTERM, then SIGKILL after the timeout (a pid 1 without a handler ignores
    // SIGTERM), and a container that traps SIGTERM exits with its own status.
    dk.ok(&[
        "run",
        "-d",
        "--name",
        "e2e-trap",
        "--network",
        "none",
        IMAGE,
        e2e::rootfs::TRAP_TERM_SCRIPT,
        "42",
    ]);
    remember(&mut ids, "e2e-trap");
    let trap_pid: i32 = dk.inspect("e2e-trap", "{{.State.Pid}}").parse().expect("pid");
    util::poll(Duration::from_secs(20), Duration::from_millis(20), || {
        procfs::catches_signal(trap_pid, libc::SIGTERM).then_some(())
    })
    .expect("the trap script never trapped SIGTERM");
    dk.ok(&["stop", "-t", "20", "e2e-trap"]);
    assert_eq!(
        dk.inspect("e2e-trap", "{{.State.ExitCode}}"),
        "42",
        "docker stop of a SIGTERM trap"
    );
    dk.ok(&["stop", "-t", "1", "e2e-exec"]);
    assert_eq!(
        dk.inspect("e2e-exec", "{{.State.ExitCode}}"),
        "137",
        "docker stop after the timeout"
    );

    // docker kill.
    dk.ok(&[
        "run",
        "-d",
        "--name",
        "e2e-kill",
        "--network",
        "none",
        IMAGE,
        "/bin/sleep",
        "1000",
    ]);
    remember(&mut ids, "e2e-kill");
    dk.ok(&["kill", "e2e-kill"]);
    let st = util::poll(Duration::from_secs(20), Duration::from_millis(100), || {
        let s = dk.inspect("e2e-kill", "{{.State.Status}} {{.State.ExitCode}}");
        (s.starts_with("exited")).then_some(s)
    })
    .unwrap_or_else(|| panic!("docker kill: container never exited\n{}", dk.describe()));
    assert_eq!(st, "exited 137", "docker kill");

    // docker rm -f of a running container, then of everything else.
    dk.ok(&[
        "run",
        "-d",
        "--name",
        "e2e-rmf",
        "--network",
        "none",
        IMAGE,
        "/bin/sleep",
        "1000",
    ]);
    remember(&mut ids, "e2e-rmf");
    dk.ok(&["rm", "-f", "e2e-rmf"]);
    dk.ok(&["rm", "-f", "e2e-exec", "e2e-logs", "e2e-trap", "e2e-kill"]);
    let left = dk.ok(&["ps", "-aq"]);
    assert_eq!(left.stdout_str().trim(), "", "docker ps -a after rm: {left}");

    // Nothing is left: no shim, no container process, no socket, runc state, bundle or cgroup.
    let mut last = Vec::new();
    let clean = util::poll(Duration::from_secs(15), Duration::from_millis(200), || {
        last = moby_leaks(&d, &dk.dir, &ids);
        last.is_empty().then_some(())
    });
    assert!(
        clean.is_some(),
        "Docker's containers left behind:\n  - {}\n{}",
        last.join("\n  - "),
        dk.describe()
    );
    dk.stop();
    d.assert_clean();
}

/// The full container id of a docker container name.
fn dk_id(dk: &Dockerd<'_>, name: &str) -> String {
    let id = dk.inspect(name, "{{.Id}}");
    assert_eq!(id.len(), 64, "docker inspect {name} gave no id: {id:?}");
    id
}
