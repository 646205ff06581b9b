//! Task API, runc options (`containerd.runc.v1.Options`): BinaryName (`--runc-binary`, also
//! crun), Root (`--runc-root`), NoPivotRoot (`--no-pivot`), IoUid/IoGid, ShimCgroup, and the
//! shim's oom_score_adj.

use e2e::cgroup;
use e2e::fifo::{FifoReader, FifoWriter};
use e2e::requests::{describe_err, Calls, RUNC_OPTIONS_TYPE_URL};
use e2e::scenario::wait_gone;
use e2e::shim::{make_bundle, rpc_ctx, HandShim};
use e2e::{procfs, Daemon, DaemonOptions};
use protobuf::{Message, MessageField};
use protos::runc_options::Options;
use protos::task::{CreateTaskRequest, ShutdownRequest};
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// A runc stand-in that appends its argv to `log` and execs `exec_line`.
fn write_wrapper(path: &Path, log: &Path, body: &str) {
    let script = format!("#!/bin/sh\necho \"$*\" >> '{}'\n{body}\n", log.display());
    e2e::util::write_executable(path, &script);
}

fn wrapper_calls(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The wrapper's calls whose command (first word after the global flags) is `cmd`.
fn calls_of<'a>(calls: &'a [String], cmd: &str) -> Vec<&'a String> {
    calls
        .iter()
        .filter(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            // Global flags come in pairs (`--root R --log L --log-format json`).
            let mut i = 0;
            while i < words.len() && words[i].starts_with("--") {
                i += 2;
            }
            words.get(i) == Some(&cmd)
        })
        .collect()
}

fn run_with_runtime_flags<'d>(d: &'d Daemon, flags: &[&str], id: &str, script: &str) -> e2e::CtrOutput<'d> {
    let rootfs = d.rootfs().to_str().expect("utf-8");
    let mut args = vec!["run", "--rm", "--runtime", d.runtime()];
    args.extend_from_slice(flags);
    args.extend(["--rootfs", rootfs, id, "/bin/sh", "-c", script]);
    d.ctr(&args).run()
}

#[test]
fn runc_binary_option_runs_a_wrapper_for_every_runc_call() {
    let d = Daemon::start_with(DaemonOptions { shim_in_path: true });
    let id = d.id("runcbin");
    let log = d.tmp().join("runc-calls.log");
    let wrapper = d.tmp().join("runc-wrapper");
    write_wrapper(&wrapper, &log, "exec /usr/sbin/runc \"$@\"");
    let out = run_with_runtime_flags(
        &d,
        &["--runc-binary", wrapper.to_str().expect("utf-8")],
        &id,
        "echo via-wrapper",
    );
    assert_eq!(
        (out.code(), out.stdout_str().as_str()),
        (Some(0), "via-wrapper\n"),
        "ctr run through the runc wrapper: {out}"
    );
    let calls = wrapper_calls(&log);
    for cmd in ["create", "start", "delete"] {
        let c = calls_of(&calls, cmd);
        assert!(
            c.iter().any(|l| l.contains(&id)),
            "the wrapper was not used for runc {cmd} of {id}: {calls:#?}"
        );
    }
    assert!(
        calls
            .iter()
            .all(|l| l.contains(&format!("--root /run/containerd/runc/{}", d.ns()))),
        "every runc call gets the default root for the namespace: {calls:#?}"
    );
    d.assert_clean();
}

/// `--no-pivot` replaces the container's runtime options for the task (ctr's
/// `WithNoPivotRoot`), so `--runc-binary` cannot be combined with it: runc is found through
/// containerd's PATH instead, where our bin dir comes first.
#[test]
fn no_pivot_option_adds_no_pivot_to_runc_create() {
    let d = Daemon::start_with(DaemonOptions { shim_in_path: true });
    let id = d.id("nopivot");
    let log = d.tmp().join("runc-calls.log");
    write_wrapper(&d.bin_dir().join("runc"), &log, "exec /usr/sbin/runc \"$@\"");
    let out = run_with_runtime_flags(&d, &["--no-pivot"], &id, "echo no-pivot");
    assert_eq!(out.code(), Some(0), "ctr run --no-pivot: {out}");
    assert_eq!(out.stdout_str(), "no-pivot\n", "{out}");
    let calls = wrapper_calls(&log);
    let create = calls_of(&calls, "create");
    assert!(
        create.len() == 1 && create[0].split_whitespace().any(|w| w == "--no-pivot"),
        "runc create must get --no-pivot: {calls:#?}"
    );
    d.assert_clean();
}

#[test]
fn runc_root_option_puts_runc_state_under_that_root() {
    let d = Daemon::start_with(DaemonOptions { shim_in_path: true });
    let id = d.id("runcroot");
    let root = d.tmp().join("runc-root");
    let rootfs = d.rootfs().to_str().expect("utf-8");
    d.ctr(&[
        "run",
        "-d",
        "--runtime",
        d.runtime(),
        "--runc-root",
        root.to_str().expect("utf-8"),
        "--rootfs",
        rootfs,
        &id,
        "/bin/sleep",
        "1000",
    ])
    .ok();
    d.wait_task_status(&id, "RUNNING", T);
    let state = root.join(d.ns()).join(&id).join("state.json");
    assert!(
        state.is_file(),
        "no runc state at {} (contents of the root: {:?})",
        state.display(),
        std::fs::read_dir(&root).map(|r| r.flatten().map(|e| e.path()).collect::<Vec<_>>())
    );
    assert!(
        !d.runc_root().join(&id).exists(),
        "runc state was also written under the default root"
    );
    // The shim still controls the container through that root.
    let ps = d.ctr(&["task", "ps", &id]).ok();
    assert_eq!(e2e::parse_task_ps(&ps.stdout_str()).len(), 1, "ctr task ps: {ps}");
    d.remove_container(&id);
    assert!(
        !root.join(d.ns()).join(&id).exists(),
        "runc state left under the custom root after delete"
    );
    d.assert_clean();
}

/// crun via `--runc-binary`, with the workaround from test-environment.md (ociVersion 1.1+ (1.7
/// writes 1.2.0) lowered to 1.0.2; on a cgroup v1 hybrid host also a private mount namespace
/// hiding /sys/fs/cgroup/unified, which a pure cgroup v2 host does not have).
#[test]
fn crun_as_runc_binary_runs_a_container() {
    let crun = Path::new("/usr/bin/crun");
    if !crun.exists() {
        eprintln!(
            "SKIPPED crun_as_runc_binary_runs_a_container: /usr/bin/crun is not installed (apt-get install crun)"
        );
        return;
    }
    let d = Daemon::start_with(DaemonOptions { shim_in_path: true });
    let id = d.id("crun");
    let log = d.tmp().join("crun-calls.log");
    let wrapper = d.tmp().join("crun-wrapper");
    let exec = if cgroup::is_v2() {
        r#"exec /usr/bin/crun "$@""#
    } else {
        r#"exec unshare --mount --propagation private /bin/sh -c 'mount -t tmpfs none /sys/fs/cgroup/unified && exec /usr/bin/crun "$@"' crun "$@""#
    };
    write_wrapper(
        &wrapper,
        &log,
        &format!(
            r#"prev=
for a in "$@"; do
  if [ "$prev" = --bundle ]; then
    sed -i 's/"ociVersion": *"1\.[1-9][^"]*"/"ociVersion": "1.0.2"/' "$a/config.json"
  fi
  prev="$a"
done
{exec}"#
        ),
    );
    let out = run_with_runtime_flags(
        &d,
        &["--runc-binary", wrapper.to_str().expect("utf-8")],
        &id,
        "echo via-crun; exit 7",
    );
    assert_eq!(
        (out.code(), out.stdout_str().as_str()),
        (Some(7), "via-crun\n"),
        "ctr run with crun: {out}"
    );
    let calls = wrapper_calls(&log);
    assert!(!calls_of(&calls, "create").is_empty(), "crun was not used: {calls:#?}");
    d.assert_clean();
}

fn create_req(id: &str, bundle: &Path, opts: &Options) -> CreateTaskRequest {
    let mut r = CreateTaskRequest::new();
    r.id = id.to_string();
    r.bundle = bundle.to_string_lossy().into_owned();
    r.options = MessageField::some(protos::any::pack(RUNC_OPTIONS_TYPE_URL, opts).expect("pack Options"));
    r
}

fn shutdown_and_wait(d: &Daemon, shim: &HandShim, client: protos::task_ttrpc::TaskClient) {
    let pids: Vec<i32> = d.shim_processes(&shim.id).iter().map(|p| p.pid).collect();
    let mut r = ShutdownRequest::new();
    r.id = shim.id.clone();
    let _ = client.shutdown(rpc_ctx(d.ns()), &r);
    drop(client);
    for pid in pids {
        assert!(wait_gone(pid, T), "shim {pid} did not exit after Shutdown");
    }
}

/// IoUid/IoGid (no ctr flag): the container-side ends of the stdio pipes are made for that
/// uid/gid, and the output still arrives. runc then gives each stdio fd to the process's own
/// uid (its `fixStdioPermissions`, keeping the gid), so inside the gid shows IoGid and the uid
/// shows the process user (root here), with any shim.
#[test]
fn io_uid_and_io_gid_own_the_container_side_stdio_pipes() {
    let d = Daemon::start();
    let id = d.id("iouid");
    let bundle = make_bundle(
        &d,
        &id,
        &[
            "/bin/sh",
            "-c",
            "stat -L -c '%n %u:%g' /proc/self/fd/0 /proc/self/fd/1 /proc/self/fd/2; echo err-line >&2",
        ],
    );
    let shim = HandShim::start(&d, &id, &bundle, b"");
    let client = shim.client();
    let c = Calls {
        client: &client,
        ns: d.ns(),
    };
    let fifos = d.tmp().join("iouid-fifos");
    std::fs::create_dir_all(&fifos).expect("mkdir");
    let mut stdin = FifoWriter::create(&fifos.join("stdin"));
    let stdout = FifoReader::create(&fifos.join("stdout"));
    let stderr = FifoReader::create(&fifos.join("stderr"));
    let opts = Options {
        io_uid: 1234,
        io_gid: 2345,
        ..Default::default()
    };
    let mut req = create_req(&id, &bundle, &opts);
    req.stdin = stdin.uri();
    req.stdout = stdout.uri();
    req.stderr = stderr.uri();
    client
        .create(rpc_ctx(d.ns()), &req)
        .unwrap_or_else(|e| panic!("Create with IoUid/IoGid: {}\n{}", describe_err(&e), shim.log.text()));
    c.start(&id, "");
    stdin.open(T);
    let w = c.wait(&id, "");
    assert_eq!(
        w.exit_status,
        0,
        "the container's stat must succeed; stdout {:?}",
        stdout.text()
    );
    assert!(stdout.wait_eof(T), "stdout got no EOF");
    assert!(
        stderr.wait_text(T, |t| t.contains("err-line")),
        "stderr output: {:?}",
        stderr.text()
    );
    let text = stdout.text();
    for fd in 0..3 {
        let line = format!("/proc/self/fd/{fd} 0:2345");
        assert!(
            text.lines().any(|l| l == line),
            "fd {fd} of the container must have gid 2345 (IoGid; uid 0 from runc); stat printed {text:?}"
        );
    }
    stdin.close();
    c.delete(&id, "");
    shutdown_and_wait(&d, &shim, client);
    d.assert_clean();
}

/// The v1 hierarchies a shim cgroup is made in for the test (cpuset is left out: a new cpuset
/// cgroup has no cpus until configured). On cgroup v2 they are all the one unified hierarchy.
const SHIM_CGROUP_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

#[test]
fn shim_cgroup_option_on_start_puts_the_shim_into_that_cgroup() {
    let d = Daemon::start();
    let id = d.id("shimcg");
    let cg = format!("/{}/e2e-shim", d.ns());
    let mut dirs: Vec<PathBuf> = SHIM_CGROUP_CONTROLLERS.iter().map(|c| cgroup::dir(c, &cg)).collect();
    dirs.dedup();
    for dir in &dirs {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    }
    let bundle = make_bundle(&d, &id, &["/bin/true"]);
    let opts = Options {
        shim_cgroup: cg.clone(),
        ..Default::default()
    };
    let stdin = protos::any::pack(RUNC_OPTIONS_TYPE_URL, &opts)
        .expect("pack")
        .write_to_bytes()
        .expect("encode Any");
    let shim = HandShim::start(&d, &id, &bundle, &stdin);
    let client = shim.client();
    let pids: Vec<i32> = d.shim_processes(&id).iter().map(|p| p.pid).collect();
    assert_eq!(pids.len(), 1, "one shim daemon");
    let paths = procfs::cgroup_paths(pids[0]);
    let cgroup_file = std::fs::read_to_string(format!("/proc/{}/cgroup", pids[0])).unwrap_or_default();
    shutdown_and_wait(&d, &shim, client);
    // In every hierarchy: a shim may have made the cgroup in more than these.
    for hier in cgroup::hierarchies() {
        let _ = std::fs::remove_dir(hier.join(cg.trim_start_matches('/')));
    }
    assert!(
        paths.iter().filter(|p| **p == cg).count() >= dirs.len(),
        "the shim must be in {cg} in each of {dirs:?}:\n{cgroup_file}"
    );
    d.assert_clean();
}

fn oom_score_adj(pid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .unwrap_or_else(|e| panic!("read oom_score_adj of {pid}: {e}"))
        .trim()
        .parse()
        .expect("oom_score_adj")
}

#[test]
fn the_shim_runs_with_containerds_oom_score_adj_plus_one() {
    let d = Daemon::start();
    let ctd = d.containerd_pid().expect("containerd runs");
    // Raising is always allowed (lowering below 0 is not, on this VM).
    std::fs::write(format!("/proc/{ctd}/oom_score_adj"), "321").expect("set containerd's oom_score_adj");
    let id = d.id("oomscore");
    d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let shims = d.shim_processes(&id);
    assert_eq!(shims.len(), 1, "one shim: {shims:?}");
    let got = oom_score_adj(shims[0].pid);
    d.remove_container(&id);
    assert_eq!(got, 322, "the shim's oom_score_adj must be containerd's (321) + 1");
    d.assert_clean();
}

/// The core-scheduling cookie of `pid` (0 = none); None where the kernel has no core
/// scheduling (prctl answers EINVAL).
fn sched_core_cookie(pid: i32) -> Option<u64> {
    const PR_SCHED_CORE: libc::c_int = 62;
    const PR_SCHED_CORE_GET: libc::c_ulong = 0;
    const PIDTYPE_PID: libc::c_ulong = 0;
    let mut cookie: u64 = 0;
    // SAFETY: PR_SCHED_CORE_GET writes one u64 through the pointer, which is valid.
    let rc = unsafe {
        libc::prctl(
            PR_SCHED_CORE,
            PR_SCHED_CORE_GET,
            pid as libc::c_ulong,
            PIDTYPE_PID,
            &mut cookie as *mut u64 as libc::c_ulong,
        )
    };
    (rc == 0).then_some(cookie)
}

#[test]
fn sched_core_gives_the_shim_and_its_container_one_cookie_or_fails_start_where_the_kernel_lacks_it() {
    // containerd starts every shim with SCHED_CORE=1 given `sched_core = true` (1.x), or
    // that variable in the shim manager's `env` (2.x, whose migration turns the former into it).
    let d = Daemon::start_configured(DaemonOptions::default(), |c| {
        let table = if matches!(c.version, e2e::config::ConfigVersion::V3) {
            "[plugins.'io.containerd.shim.v1.manager']\n  env = ['SCHED_CORE=1']\n"
        } else {
            "[plugins.\"io.containerd.runtime.v2.task\"]\n  sched_core = true\n"
        };
        c.extra.push_str(table);
    });
    let id = d.id("schedcore");
    match sched_core_cookie(0) {
        None => {
            // No core scheduling in this kernel: `start` fails, as the Go shim's does,
            // naming the reason, and leaves no daemon behind.
            let out = d.run_rootfs(&["-d"], &id, &["/bin/sleep", "1000"]).run();
            assert!(
                out.status.is_some_and(|s| !s.success()),
                "start must fail without kernel core scheduling:\n{out}"
            );
            let text = format!("{}{}", String::from_utf8_lossy(&out.stderr), d.log_text());
            assert!(
                text.contains("enable sched core support"),
                "error must name sched core:\n{out}"
            );
            assert!(d.shim_processes(&id).is_empty(), "no shim daemon may be left");
            d.ctr(&["container", "delete", &id]).run();
        }
        Some(_) => {
            let row = d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
            let shims = d.shim_processes(&id);
            assert_eq!(shims.len(), 1, "one shim: {shims:?}");
            let shim_cookie = sched_core_cookie(shims[0].pid).expect("cookie of the shim");
            let task_cookie = sched_core_cookie(row.pid as i32).expect("cookie of the container");
            d.remove_container(&id);
            assert_ne!(shim_cookie, 0, "the shim must have a core-scheduling cookie");
            assert_eq!(task_cookie, shim_cookie, "the container inherits the shim's cookie");
        }
    }
    d.assert_clean();
}
