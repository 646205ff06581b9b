//! Conformance, launch and daemon (protocol doc §19, items 1–15 and 58–67; map in
//! `tests/CONFORMANCE.md`): the shim binary's flags and actions run by hand as containerd runs
//! them, the daemon they leave, grouping, stale sockets, reaping, a killed or SIGTERMed daemon,
//! the `delete` action, and runc helpers of a dead shim.

use e2e::launch::{
    busybox_bind_mount, connect_pids, containerd_flags, delete_response, fd_target, go_shim_release, host_pid_spec,
    make_mounted_bundle, options_stdin, process_group, run_delete_action, run_shim, runc_path, shutdown_and_wait,
};
use e2e::requests::{describe_err, exec_req, pause_req, Calls, RUNC_OPTIONS_TYPE_URL};
use e2e::scenario::wait_gone;
use e2e::shim::{make_bundle, rpc_ctx, HandShim, LogFifo};
use e2e::util::{self, go_join, sha256_hex, shim_socket_path};
use e2e::{procfs, Daemon};
use protobuf::{Message, MessageField};
use protos::runc_options::Options;
use protos::task::CreateTaskRequest;
use protos::task_ttrpc::TaskClient;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// Create + Start of `id` (null IO, empty options) on a hand-started shim; returns the pid.
fn create_and_start(d: &Daemon, client: &TaskClient, id: &str, bundle: &Path, opts: &Options) -> u32 {
    let mut r = CreateTaskRequest::new();
    r.id = id.to_string();
    r.bundle = bundle.to_string_lossy().into_owned();
    r.options = MessageField::some(protos::any::pack(RUNC_OPTIONS_TYPE_URL, opts).expect("pack"));
    let pid = client
        .create(rpc_ctx(d.ns()), &r)
        .unwrap_or_else(|e| panic!("Create({id}): {}\n{}", describe_err(&e), d.log_tail(20)))
        .pid;
    let c = Calls { client, ns: d.ns() };
    assert_eq!(c.start(id, ""), pid, "Start pid = Create pid");
    pid
}

/// The shim daemon serving `client` (from `Connect`).
fn daemon_pid(d: &Daemon, client: &TaskClient, id: &str) -> i32 {
    connect_pids(d, client, id).0 as i32
}

/// A hand-started shim whose container runs `sleep 1000`, its daemon sent `sig`:
/// (id, bundle, shim, container pid, daemon pid).
fn signalled_hand_shim(d: &Daemon, name: &str, sig: nix::sys::signal::Signal) -> (String, PathBuf, HandShim, u32, i32) {
    let id = d.id(name);
    let bundle = make_bundle(d, &id, &["/bin/sleep", "1000"]);
    let shim = HandShim::start(d, &id, &bundle, b"");
    let client = shim.client();
    let pid = create_and_start(d, &client, &id, &bundle, &Options::default());
    let daemon = daemon_pid(d, &client, &id);
    drop(client);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon), sig).expect("signal the shim daemon");
    (id, bundle, shim, pid, daemon)
}

/// Item 1: `-v` and `--v` print version text and exit 0; so does `-version` (later 2.x Go
/// shims; the Go shims of 1.6–2.1 reject it, which is only reported).
#[test]
fn version_flags_print_version_text_and_exit_0() {
    let shim = util::shim_bin();
    let go = go_shim_release(&shim);
    for flag in ["-v", "--v", "-version"] {
        let out = e2e::command::run(std::process::Command::new(&shim).arg(flag), None, T).expect("run shim");
        let ok = out.code() == Some(0) && out.stdout_str().contains("Version:");
        if flag == "-version" && go.is_some() && !ok {
            eprintln!("NOTE: Go shim {go:?} does not know -version: {out}");
            continue;
        }
        assert!(ok, "`{flag}` must print version text and exit 0: {out}");
    }
}

/// Item 2: without `-namespace` every action (start, delete, the daemon) fails with a message
/// and leaves nothing.
#[test]
fn every_action_without_namespace_exits_non_zero_with_a_message() {
    let d = Daemon::start();
    let id = d.id("nons");
    let bundle = make_bundle(&d, &id, &["/bin/true"]);
    let _log = LogFifo::create(&bundle);
    let base = ["-address", d.address(), "-id", &id];
    for action in [Some("start"), Some("delete"), None] {
        let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        if action == Some("delete") {
            args.extend(["-bundle".into(), bundle.to_string_lossy().into_owned()]);
        }
        args.extend(action.map(str::to_string));
        let out = run_shim(&d, &bundle, &args, b"");
        assert!(
            !out.timed_out && out.code().is_some_and(|c| c != 0),
            "{action:?} without -namespace must fail: {out}"
        );
        assert!(
            !out.stderr_str().trim().is_empty(),
            "{action:?} without -namespace must say why on stderr: {out}"
        );
        assert!(
            !out.stdout_str().contains("unix://"),
            "no address may be printed: {out}"
        );
    }
    d.assert_clean();
}

/// Items 3–8, 13, 41, 42: `start` as containerd runs it (options `Any` on stdin) and with the
/// other flag spellings (`-f=v`, `--f v`; empty stdin): it prints exactly
/// `unix:///run/containerd/s/<sha256(address/ns/id)>` and nothing else, writes it to `address`,
/// returns while the daemon keeps running; the socket is 0600 and serves `Connect`; the daemon
/// has its own process group, cwd = bundle, /dev/null on fds 0 and 1 and the `log` fifo on 2;
/// `Shutdown` with nothing registered ends it and removes the socket.
#[test]
fn start_prints_exactly_the_socket_address_and_leaves_a_daemon_as_containerd_expects() {
    let d = Daemon::start();
    let containerd = util::containerd_bin().to_string_lossy().into_owned();
    let forms: [(&str, bool); 2] = [("plain", true), ("spellings", false)];
    for (name, options_on_stdin) in forms {
        let id = d.id(&format!("start-{name}"));
        let bundle = make_bundle(&d, &id, &["/bin/true"]);
        let log = LogFifo::create(&bundle);
        let args: Vec<String> = if options_on_stdin {
            let mut a = containerd_flags(&d, &id);
            a.push("start".into());
            a
        } else {
            vec![
                format!("--namespace={}", d.ns()),
                "--address".into(),
                d.address().into(),
                format!("-publish-binary={containerd}"),
                format!("-id={id}"),
                "start".into(),
            ]
        };
        let stdin = if options_on_stdin {
            options_stdin(&Options::default())
        } else {
            Vec::new()
        };
        let out = run_shim(&d, &bundle, &args, &stdin);
        let want = format!(
            "unix://{}",
            util::SHIM_SOCKET_DIR.to_string() + "/" + &sha256_hex(go_join(&[d.address(), d.ns(), &id]).as_bytes())
        );
        assert_eq!(
            format!("unix://{}", shim_socket_path(d.address(), d.ns(), &id).display()),
            want
        );
        assert_eq!(out.code(), Some(0), "{name}: start must exit 0: {out}\n{}", log.text());
        assert!(!out.pipes_held_open, "{name}: start's stdout/stderr stayed open: {out}");
        assert_eq!(
            out.stdout_str(),
            want,
            "{name}: start must print exactly the address: {out}"
        );
        assert_eq!(
            out.stderr_str(),
            "",
            "{name}: start must print nothing on stderr: {out}"
        );
        let file = std::fs::read_to_string(bundle.join("address")).unwrap_or_default();
        assert_eq!(file, want, "{name}: <bundle>/address");

        let sock = shim_socket_path(d.address(), d.ns(), &id);
        let meta = std::fs::symlink_metadata(&sock).unwrap_or_else(|e| panic!("{}: {e}", sock.display()));
        assert!(meta.file_type().is_socket(), "{name}: {} is no socket", sock.display());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600, "{name}: socket mode");
        let client = e2e::shim::connect(&want);
        let (shim_pid, task_pid) = connect_pids(&d, &client, &id);
        assert_eq!(task_pid, 0, "{name}: Connect.task_pid of an id with no task");
        let shim = shim_pid as i32;
        let st = procfs::stat(shim).unwrap_or_else(|| panic!("{name}: Connect.shim_pid {shim} does not exist"));
        assert!(!st.is_zombie(), "{name}: the daemon is a zombie");
        assert!(
            d.shim_processes(&id).iter().any(|p| p.pid == shim),
            "{name}: Connect.shim_pid {shim} is not a shim daemon for {id}: {:#?}",
            d.shim_processes(&id)
        );
        assert_eq!(
            process_group(shim),
            Some(shim),
            "{name}: the daemon leads its own process group"
        );
        assert_eq!(
            procfs::link(shim, "cwd").map(|p| p.canonicalize().unwrap_or(p)),
            Some(bundle.canonicalize().expect("bundle")),
            "{name}: daemon cwd"
        );
        for fd in [0, 1] {
            assert_eq!(fd_target(shim, fd), Some("/dev/null".into()), "{name}: daemon fd {fd}");
        }
        assert_eq!(
            fd_target(shim, 2),
            Some(bundle.join("log")),
            "{name}: daemon fd 2 is the bundle's log fifo"
        );
        shutdown_and_wait(&d, client, &id, shim);
        assert!(!sock.exists(), "{name}: the socket outlived the daemon");
    }
    d.assert_clean();
}

/// Item 9: the daemon's `oom_score_adj` is containerd's + 1, capped at 1000.
#[test]
fn the_shims_oom_score_adj_is_capped_at_1000() {
    let d = Daemon::start();
    let ctd = d.containerd_pid().expect("containerd runs");
    std::fs::write(format!("/proc/{ctd}/oom_score_adj"), "1000").expect("raise containerd's oom_score_adj");
    let id = d.id("oomcap");
    d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let shims = d.shim_processes(&id);
    assert_eq!(shims.len(), 1, "one shim: {shims:#?}");
    let got = std::fs::read_to_string(format!("/proc/{}/oom_score_adj", shims[0].pid)).unwrap_or_default();
    d.remove_container(&id);
    assert_eq!(got.trim(), "1000", "containerd 1000 + 1, capped");
    d.assert_clean();
}

/// Items 11 and 64: containers with one `io.containerd.runc.v2.group` (or
/// `io.kubernetes.cri.sandbox-id`) annotation share one daemon and one socket named after the
/// group; every bundle's `address` names it. Deleting the first container (whose bundle, the
/// daemon's cwd, containerd removes) leaves the other working, and its delete ends the daemon.
#[test]
fn containers_of_one_group_share_one_shim_which_outlives_the_first_bundle() {
    let d = Daemon::start();
    for key in ["io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id"] {
        let group = d.id(if key.contains("kubernetes") { "sandbox" } else { "group" });
        let ann = format!("{key}={group}");
        let first = d.id("member1");
        let second = d.id("member2");
        for id in [&first, &second] {
            d.run_detached(&["--annotation", &ann], id, &["/bin/sleep", "1000"]);
        }
        let sock = shim_socket_path(d.address(), d.ns(), &group);
        let want = format!("unix://{}", sock.display());
        for id in [&first, &second] {
            let addr = std::fs::read_to_string(d.bundle_dir(id).join("address")).unwrap_or_default();
            assert_eq!(addr, want, "{key}: address of {id}");
            assert!(!d.shim_socket(id).exists(), "{key}: {id} got a socket of its own");
        }
        assert!(sock.exists(), "{key}: no socket for the group");
        let daemons: Vec<_> = d
            .processes()
            .into_iter()
            .filter(|p| {
                procfs::flag_value(&p.argv, "namespace") == Some(d.ns())
                    && !p.argv.iter().any(|a| a == "start" || a == "delete")
            })
            .collect();
        assert_eq!(daemons.len(), 1, "{key}: one daemon for the group: {daemons:#?}");
        let shim = daemons[0].pid;
        for id in [&first, &second] {
            let pid = d.task(id).expect("task").pid as i32;
            assert_eq!(
                procfs::stat(pid).map(|s| s.ppid),
                Some(shim),
                "{key}: parent of {id}'s init"
            );
        }

        d.remove_container(&first);
        assert!(
            !d.bundle_dir(&first).exists(),
            "{key}: containerd removed the first bundle (the daemon's cwd)"
        );
        assert!(
            procfs::stat(shim).is_some_and(|s| !s.is_zombie()),
            "{key}: the shim died with its first container"
        );
        let out = d
            .ctr(&[
                "task",
                "exec",
                "--exec-id",
                "after",
                &second,
                "/bin/sh",
                "-c",
                "echo still; exit 6",
            ])
            .run();
        assert_eq!(
            (out.code(), out.stdout_str().as_str()),
            (Some(6), "still\n"),
            "{key}: exec in the second container after the first was deleted: {out}"
        );
        d.remove_container(&second);
        assert!(
            wait_gone(shim, T),
            "{key}: the group's shim outlived its last container"
        );
        d.track_id(&group);
        d.assert_clean();
    }
}

/// Item 12: a socket file nobody listens on (left by a killed shim) is replaced: the container
/// starts and the new shim serves on that path.
#[test]
fn a_stale_socket_file_is_replaced_and_a_new_shim_started() {
    let d = Daemon::start();
    let id = d.id("stale");
    let sock = d.shim_socket(&id);
    std::fs::create_dir_all(sock.parent().expect("dir")).expect("mkdir socket dir");
    drop(std::os::unix::net::UnixListener::bind(&sock).expect("bind the stale socket"));
    assert!(
        std::os::unix::net::UnixStream::connect(&sock).is_err(),
        "the stale socket must not accept"
    );
    let task = d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let client = d.shim_client(&id);
    let (shim, pid) = connect_pids(&d, &client, &id);
    assert_eq!(pid, task.pid, "Connect.task_pid on the replaced socket");
    assert!(d.shim_processes(&id).iter().any(|p| p.pid == shim as i32));
    drop(client);
    d.remove_container(&id);
    d.assert_clean();
}

/// Item 14 (containerd 2.3+, checked by hand): `start` with `BootstrapParams` on stdin (options
/// in `extensions`) prints a protobuf `BootstrapResult{2, address, "ttrpc"}`, the socket is in
/// `socket_dir` and named after `containerd_grpc_address/ns/id`. Go shims before 2.3 lack it.
#[test]
fn start_with_bootstrap_params_prints_a_bootstrap_result_and_uses_socket_dir() {
    if let Some(go) = go_shim_release(&util::shim_bin()).filter(|v| *v < (2, 3)) {
        eprintln!("SKIPPED: Go shim {go:?} predates BootstrapParams (containerd 2.3)");
        return;
    }
    use protos::bootstrap::{BootstrapParams, BootstrapResult, Extension};
    let d = Daemon::start();
    let id = d.id("boot");
    let bundle = make_bundle(&d, &id, &["/bin/true"]);
    let log = LogFifo::create(&bundle);
    let dir = d.tmp().join("s");
    let mut bp = BootstrapParams::new();
    bp.instance_id = id.clone();
    bp.namespace = d.ns().into();
    bp.containerd_version = "2.3.0".into();
    bp.containerd_ttrpc_address = d.ttrpc_address().into();
    bp.containerd_grpc_address = d.address().into();
    bp.containerd_binary = util::containerd_bin().to_string_lossy().into_owned();
    let mut ext = Extension::new();
    ext.value = MessageField::some(protos::any::pack(RUNC_OPTIONS_TYPE_URL, &Options::default()).expect("pack"));
    bp.extensions.push(ext);
    bp.socket_dir = Some(dir.to_string_lossy().into_owned());
    let mut args = containerd_flags(&d, &id);
    args.push("start".into());
    let out = run_shim(&d, &bundle, &args, &bp.write_to_bytes().expect("encode"));
    assert_eq!(out.code(), Some(0), "start with BootstrapParams: {out}\n{}", log.text());
    let res = BootstrapResult::parse_from_bytes(&out.stdout)
        .unwrap_or_else(|e| panic!("start must print a BootstrapResult ({e}): {out}"));
    let sock = dir.join(sha256_hex(go_join(&[d.address(), d.ns(), &id]).as_bytes()));
    let want = format!("unix://{}", sock.display());
    assert_eq!(
        (res.version, res.address.as_str(), res.protocol.as_str()),
        (2, want.as_str(), "ttrpc"),
        "BootstrapResult"
    );
    assert!(sock.exists(), "no socket in socket_dir: {}", sock.display());
    let client = e2e::shim::connect(&want);
    let shim = daemon_pid(&d, &client, &id);
    shutdown_and_wait(&d, client, &id, shim);
    assert!(!sock.exists(), "the socket in socket_dir outlived the daemon");
    d.assert_clean();
}

/// Item 58: the daemon is a subreaper: a process orphaned inside a container that shares the
/// host's pid namespace is re-parented to the shim, which reaps it when it dies.
#[test]
fn orphans_of_a_host_pid_namespace_container_are_reaped_by_the_shim() {
    let d = Daemon::start();
    let id = d.id("orphan");
    let spec = d.tmp().join("orphan.json");
    let json = host_pid_spec(&d, &id, &["/bin/sh", "-c", "(/bin/sleep 1000 &); exec /bin/sleep 1001"]);
    std::fs::write(&spec, serde_json::to_vec(&json).expect("spec")).expect("write spec");
    d.ctr(&[
        "run",
        "-d",
        "--runtime",
        d.runtime(),
        "--config",
        spec.to_str().expect("utf-8"),
        &id,
    ])
    .ok();
    let init = d.wait_task_status(&id, "RUNNING", T);
    let shims = d.shim_processes(&id);
    assert_eq!(shims.len(), 1, "{shims:#?}");
    let shim = shims[0].pid;
    let orphan = util::poll(T, Duration::from_millis(50), || {
        d.container_pids(&id)
            .into_iter()
            .find(|&p| p != init.pid as i32 && procfs::cmdline(p).iter().any(|a| a == "1000"))
    })
    .unwrap_or_else(|| panic!("the orphaned sleep never showed up in {id}'s cgroup"));
    assert_eq!(
        procfs::stat(orphan).map(|s| s.ppid),
        Some(shim),
        "the orphan (pid {orphan}) must be re-parented to the shim (subreaper)"
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(orphan), nix::sys::signal::Signal::SIGKILL).expect("kill");
    let reaped = util::poll(T, Duration::from_millis(50), || {
        procfs::stat(orphan).is_none().then_some(())
    });
    let left = procfs::stat(orphan);
    d.remove_container(&id);
    assert!(reaped.is_some(), "the shim did not reap its orphan: {left:?}");
    d.assert_clean();
}

/// Item 59: exit status N for `exit N`, 128 + S for death by signal S (exec and init).
#[test]
fn exit_statuses_are_the_exit_code_or_128_plus_the_signal() {
    let d = Daemon::start();
    let id = d.id("statuses");
    d.run_detached(&[], &id, &["/bin/sleep", "1000"]);
    let client = d.shim_client(&id);
    let c = Calls {
        client: &client,
        ns: d.ns(),
    };
    c.exec(&exec_req(&d, &id, "code", &["/bin/sh", "-c", "exit 7"]));
    c.start(&id, "code");
    assert_eq!(c.wait(&id, "code").exit_status, 7, "exit 7");
    for (x, sig) in [
        ("term", libc::SIGTERM),
        ("usr1", libc::SIGUSR1),
        ("kill", libc::SIGKILL),
    ] {
        c.exec(&exec_req(&d, &id, x, &["/bin/sleep", "1000"]));
        c.start(&id, x);
        c.kill(&id, x, sig as u32, false);
        assert_eq!(
            c.wait(&id, x).exit_status,
            128 + sig as u32,
            "exec killed by signal {sig}"
        );
        c.delete(&id, x);
    }
    c.delete(&id, "code");
    c.kill(&id, "", libc::SIGKILL as u32, false);
    assert_eq!(c.wait(&id, "").exit_status, 137, "init killed by SIGKILL");
    drop(client);
    d.remove_container(&id);
    d.assert_clean();
}

/// Item 62: after `kill -9` of the daemon containerd runs `delete`, which kills the container
/// and unmounts its rootfs, and containerd publishes `/tasks/exit` and `/tasks/delete` with 137.
#[test]
fn a_sigkilled_shim_is_cleaned_up_by_delete_and_containerd_reports_137() {
    let d = Daemon::start();
    let tar = e2e::image::build_busybox_image(d.tmp());
    d.ctr(&["images", "import", tar.to_str().expect("utf-8")])
        .timeout(Duration::from_secs(60))
        .ok();
    let id = d.id("killed");
    // --null-io: ctr never deletes this task itself, so it must not make fifos it would remove.
    d.ctr(&[
        "run",
        "-d",
        "--null-io",
        "--runtime",
        d.runtime(),
        e2e::BUSYBOX_REF,
        &id,
        "sleep",
        "1000",
    ])
    .ok();
    let task = d.wait_task_status(&id, "RUNNING", T);
    let rootfs = d.bundle_dir(&id).join("rootfs");
    assert!(
        procfs::mounts_under(d.tmp()).contains(&rootfs),
        "no rootfs mounted at {} while running",
        rootfs.display()
    );
    let shims = d.shim_processes(&id);
    assert_eq!(shims.len(), 1, "{shims:#?}");
    let ev = d.events();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shims[0].pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 the shim");
    let exit = ev.wait_topic("/tasks/exit", &id, T);
    assert_eq!(
        (exit.u64_field("pid"), exit.u64_field("exit_status")),
        (task.pid as u64, 137),
        "/tasks/exit from containerd after the shim died\n{}",
        ev.describe()
    );
    let del = ev.wait_topic("/tasks/delete", &id, T);
    assert_eq!(del.u64_field("exit_status"), 137, "{}", ev.describe());
    assert!(wait_gone(task.pid as i32, T), "the container outlived its killed shim");
    assert!(
        !procfs::mounts_under(d.tmp()).contains(&rootfs),
        "the rootfs is still mounted after `delete`"
    );
    assert!(!d.runc_root().join(&id).exists(), "runc state left after `delete`");
    d.ctr(&["container", "delete", &id]).ok();
    // A killed shim's socket may stay (the Go shim's `delete` leaves it; protocol doc §5).
    let _ = std::fs::remove_file(d.shim_socket(&id));
    d.assert_clean();
}

/// Item 63: the `delete` action force-deletes the container and prints only a
/// `DeleteResponse{init pid, 137, now}`; a second run succeeds too, and so does one without
/// `init.pid`, `runtime` and `options.json` (2.x Go shims; 1.6/1.7 need `runtime`).
#[test]
fn the_delete_action_is_idempotent_and_prints_only_a_delete_response() {
    let d = Daemon::start();
    let (id, bundle, shim, pid, daemon) = signalled_hand_shim(&d, "delact", nix::sys::signal::Signal::SIGKILL);
    assert!(wait_gone(daemon, T), "the killed daemon");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    for round in ["first", "second"] {
        let out = run_delete_action(&d, &id, &bundle);
        assert_eq!(out.code(), Some(0), "{round} delete: {out}");
        let r = delete_response(&out);
        assert_eq!(
            out.stdout,
            r.write_to_bytes().expect("encode"),
            "{round} delete: stdout must be exactly the DeleteResponse: {out}"
        );
        assert_eq!((r.pid, r.exit_status), (pid, 137), "{round} delete: {r:?}");
        assert!(
            r.exited_at.as_ref().is_some_and(|t| t.seconds >= before - 1),
            "{round} delete: exited_at is now: {r:?}"
        );
        assert!(wait_gone(pid as i32, T), "{round} delete: the container still runs");
        assert!(!d.runc_root().join(&id).exists(), "{round} delete: runc state left");
    }
    let go = go_shim_release(d.shim_bin());
    for f in ["init.pid", "options.json", "runtime"] {
        let _ = std::fs::remove_file(bundle.join(f));
    }
    let out = run_delete_action(&d, &id, &bundle);
    if go.is_some_and(|v| v < (2, 0)) && out.code() != Some(0) {
        eprintln!("NOTE: Go shim {go:?} needs <bundle>/runtime in `delete`: {out}");
    } else {
        assert_eq!(
            out.code(),
            Some(0),
            "delete without init.pid, runtime, options.json: {out}"
        );
        let r = delete_response(&out);
        assert_eq!((r.pid, r.exit_status), (0, 137), "delete without init.pid: {r:?}");
    }
    let _ = std::fs::remove_file(d.shim_socket(&id));
    drop(shim);
    d.assert_clean();
}

/// Item 65: SIGTERM makes the daemon exit and remove its socket; its container keeps running
/// (here: a hand-started shim, so no containerd runs `delete` after it).
#[test]
fn sigterm_ends_the_shim_without_killing_its_container_and_removes_the_socket() {
    let d = Daemon::start();
    let (id, bundle, shim, pid, daemon) = signalled_hand_shim(&d, "sigterm", nix::sys::signal::Signal::SIGTERM);
    let gone = wait_gone(daemon, T);
    let alive = procfs::stat(pid as i32).is_some_and(|s| !s.is_zombie());
    let sock_left = d.shim_socket(&id).exists();
    // Clean up as containerd would: the `delete` action.
    if gone {
        let out = run_delete_action(&d, &id, &bundle);
        assert_eq!(out.code(), Some(0), "delete after SIGTERM: {out}");
    }
    let _ = std::fs::remove_file(d.shim_socket(&id));
    assert!(gone, "the shim ignored SIGTERM");
    assert!(alive, "SIGTERM to the shim killed its container (pid {pid})");
    assert!(!sock_left, "the SIGTERMed shim left its socket");
    drop(shim);
    d.assert_clean();
}

/// Item 66: runc runs with PDEATHSIG=SIGKILL: a runc call in flight (a `pause` that hangs in a
/// wrapper) dies with the SIGKILLed shim.
#[test]
fn a_runc_call_in_flight_dies_with_the_sigkilled_shim() {
    let d = Daemon::start();
    let id = d.id("pdeath");
    let wrapper = d.tmp().join("runc-hangs-on-pause");
    e2e::util::write_executable(
        &wrapper,
        &format!(
            "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = pause ] && exec /bin/sleep 1002; done\nexec {} \"$@\"\n",
            runc_path().display()
        ),
    );
    let opts = Options {
        binary_name: wrapper.to_string_lossy().into_owned(),
        ..Default::default()
    };
    let bundle = make_bundle(&d, &id, &["/bin/sleep", "1000"]);
    let shim = HandShim::start(&d, &id, &bundle, &options_stdin(&opts));
    let client = shim.client();
    let pid = create_and_start(&d, &client, &id, &bundle, &opts);
    let daemon = daemon_pid(&d, &client, &id);
    std::thread::scope(|s| {
        let pauser = s.spawn(|| client.pause(rpc_ctx(d.ns()), &pause_req(&id)));
        let helper = util::poll(T, Duration::from_millis(50), || {
            procfs::pids().into_iter().find(|&p| {
                procfs::stat(p).is_some_and(|s| s.ppid == daemon) && procfs::cmdline(p).iter().any(|a| a == "1002")
            })
        });
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon), nix::sys::signal::Signal::SIGKILL).expect("kill");
        let helper = helper.unwrap_or_else(|| panic!("the hanging runc pause never started"));
        assert!(wait_gone(daemon, T), "the killed daemon");
        let res = pauser.join().expect("pause thread");
        assert!(res.is_err(), "Pause cannot succeed with a dead shim: {res:?}");
        assert!(
            wait_gone(helper, Duration::from_secs(5)),
            "runc (pid {helper}) outlived the SIGKILLed shim: no PDEATHSIG"
        );
    });
    drop(client);
    let out = run_delete_action(&d, &id, &bundle);
    assert_eq!(out.code(), Some(0), "delete: {out}");
    assert!(wait_gone(pid as i32, T), "the container after delete");
    let _ = std::fs::remove_file(d.shim_socket(&id));
    drop(shim);
    d.assert_clean();
}

/// Item 17 (failure half) lives here because it needs a hand-started shim: a `Create` whose
/// runc fails leaves nothing mounted on `<bundle>/rootfs`, and the error carries runc's message.
#[test]
fn a_failing_create_leaves_nothing_mounted_and_reports_runcs_error() {
    let d = Daemon::start();
    let id = d.id("badcreate");
    let bundle = make_mounted_bundle(&d, &id, &["/bin/e2e-no-such-binary"]);
    let shim = HandShim::start(&d, &id, &bundle, b"");
    let client = shim.client();
    let mut r = CreateTaskRequest::new();
    r.id = id.clone();
    r.bundle = bundle.to_string_lossy().into_owned();
    r.rootfs.push(busybox_bind_mount(&d));
    r.options = MessageField::some(protos::any::pack_bytes(RUNC_OPTIONS_TYPE_URL, Vec::new()));
    let err = client
        .create(rpc_ctx(d.ns()), &r)
        .expect_err("Create of a missing command must fail");
    let text = describe_err(&err);
    let mounted = procfs::mounts_under(&bundle);
    let runc_left = d.runc_root().join(&id).exists();
    let daemon = daemon_pid(&d, &client, &id);
    shutdown_and_wait(&d, client, &id, daemon);
    drop(shim);
    assert!(mounted.is_empty(), "a failed Create left mounts: {mounted:?}");
    assert!(!runc_left, "a failed Create left runc state");
    assert!(
        text.contains("OCI runtime create failed")
            && text.contains("e2e-no-such-binary")
            && text.contains("no such file or directory"),
        "the error must carry runc's message: {text}"
    );
    d.assert_clean();
}
