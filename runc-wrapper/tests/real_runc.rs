//! Against the real runc at /usr/sbin/runc; each test is skipped, with the
//! reason printed, where runc (or root, for containers) is missing.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};

use runc_wrapper::{parse_ps, parse_state, CreateOpts, Error, Op, Runc};

const RUNC: &str = "/usr/sbin/runc";
const BUSYBOX: &str = "/usr/bin/busybox";

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("runc-wrapper-it-{}-{n}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn have_runc() -> bool {
    let found = Path::new(RUNC).exists();
    if !found {
        eprintln!("skipped: {RUNC} is missing");
    }
    found
}

/// A runc with a private root and log inside `dir`.
fn runc_in(dir: &TempDir) -> Runc {
    Runc {
        root: Some(dir.0.join("root")),
        log: Some(dir.0.join("log.json")),
        ..Runc::new(RUNC)
    }
}

#[test]
fn state_of_unknown_container() {
    if !have_runc() {
        return;
    }
    let dir = TempDir::new("state");
    let err = runc_in(&dir).state("nonexistent").output().unwrap_err();
    match &err {
        Error::Failed {
            op: Op::State,
            message,
            exit_code,
        } => {
            assert_eq!(*exit_code, 1);
            // runc's own words, read from log.json (not the fallback).
            assert!(message.contains("does not exist"), "{message}");
            assert!(!message.starts_with("exit status"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.is_not_exist());
    assert!(!err.is_already_finished());
    assert_eq!(err.to_string(), format!("runc state failed: {}", err.runc_message()));
    assert!(fs::read_to_string(dir.0.join("log.json"))
        .unwrap()
        .contains("\"level\":\"error\""));
}

#[test]
fn failure_without_log_falls_back_to_output() {
    if !have_runc() {
        return;
    }
    let dir = TempDir::new("nolog");
    let runc = Runc {
        root: Some(dir.0.join("root")),
        ..Runc::new(RUNC)
    };
    let err = runc.ps("nonexistent").output().unwrap_err();
    // runc also prints its error on stderr, which the fallback carries.
    assert!(err.runc_message().starts_with("exit status 1: "), "{err}");
    assert!(err.is_not_exist(), "{err}");
}

#[test]
fn missing_binary() {
    let err = Runc::new("/nonexistent/runc").state("c1").output().unwrap_err();
    assert!(matches!(&err, Error::Spawn { program, .. } if program == Path::new("/nonexistent/runc")));
    assert_eq!(
        err.to_string(),
        "runc state failed: exec: \"/nonexistent/runc\": No such file or directory"
    );
}

#[test]
fn features() {
    if !have_runc() {
        return;
    }
    // runc 1.1 has `features`; an older runc fails with its usage error.
    match Runc::new(RUNC).features().output() {
        Ok(stdout) => {
            let doc: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
            assert!(doc["ociVersionMin"].is_string(), "{doc}");
        }
        Err(err @ Error::Failed { .. }) => {
            eprintln!("runc has no features verb: {err}");
            assert!(err.to_string().starts_with("runc features failed: exit status"));
        }
        Err(other) => panic!("unexpected {other:?}"),
    }
}

/// Deletes the container whatever happens to the test.
struct Container<'a> {
    runc: &'a Runc,
    id: &'a str,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.runc.delete(self.id, true).output();
    }
}

/// A bundle whose rootfs is a static busybox, running `args`.
fn busybox_bundle(dir: &TempDir, args: &[&str]) -> PathBuf {
    let bundle = dir.0.join("bundle");
    let bin = bundle.join("rootfs/bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
    for applet in ["sh", "sleep"] {
        symlink("busybox", bin.join(applet)).unwrap();
    }
    let status = std::process::Command::new(RUNC)
        .args(["spec", "--bundle"])
        .arg(&bundle)
        .status()
        .unwrap();
    assert!(status.success());
    let config = bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&fs::read(&config).unwrap()).unwrap();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = args.into();
    fs::write(&config, serde_json::to_vec(&spec).unwrap()).unwrap();
    bundle
}

fn can_run_containers() -> bool {
    if !have_runc() {
        return false;
    }
    if fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) != 0 {
        eprintln!("skipped: containers need root");
        return false;
    }
    if !Path::new(BUSYBOX).exists() {
        eprintln!("skipped: {BUSYBOX} is missing");
        return false;
    }
    true
}

/// Runs `create` as the shim does: spawn, wait, then `check`.
fn create(runc: &Runc, id: &str, bundle: &Path) -> Result<u32, Error> {
    let pid_file = bundle.join("init.pid");
    let inv = runc.create(
        id,
        &CreateOpts {
            bundle: bundle.to_path_buf(),
            pid_file: pid_file.clone(),
            ..CreateOpts::default()
        },
    );
    let status = inv
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    inv.check(status.code().unwrap(), b"")?;
    Ok(fs::read_to_string(pid_file).unwrap().trim().parse().unwrap())
}

#[test]
fn container_lifecycle() {
    if !can_run_containers() {
        return;
    }
    let dir = TempDir::new("life");
    let runc = runc_in(&dir);
    let bundle = busybox_bundle(&dir, &["sleep", "100"]);
    let id = format!("rw-life-{}", std::process::id());
    let _guard = Container { runc: &runc, id: &id };

    let pid = create(&runc, &id, &bundle).unwrap();
    let state = parse_state(&runc.state(&id).output().unwrap()).unwrap();
    assert_eq!(state.id, id);
    assert_eq!(state.pid, pid);
    assert_eq!(state.status, "created");
    assert_eq!(state.bundle, bundle);

    runc.start(&id).output().unwrap();
    assert_eq!(parse_ps(&runc.ps(&id).output().unwrap()).unwrap(), [pid]);

    match runc.pause(&id).output() {
        Ok(_) => {
            let state = parse_state(&runc.state(&id).output().unwrap()).unwrap();
            assert_eq!(state.status, "paused");
            runc.resume(&id).output().unwrap();
        }
        Err(err) => eprintln!("pause not testable here: {err}"),
    }
    if let Err(err) = runc.update(&id).output_with_input(br#"{"pids":{"limit":100}}"#) {
        eprintln!("update not testable here: {err}");
    }

    runc.kill(&id, 9, false).output().unwrap();
    let mut stopped = false;
    for _ in 0..100 {
        let state = parse_state(&runc.state(&id).output().unwrap()).unwrap();
        if state.status == "stopped" {
            stopped = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(stopped, "container did not stop");

    let err = runc.kill(&id, 15, false).output().unwrap_err();
    assert!(err.is_already_finished(), "{err}");
    assert_eq!(err.to_string(), "runc kill failed: container not running");

    runc.delete(&id, false).output().unwrap();
    let err = runc.delete(&id, false).output().unwrap_err();
    assert!(err.is_not_exist(), "{err}");
    assert!(err.to_string().starts_with("failed to delete task: "), "{err}");
}

#[test]
fn create_failure_reports_runc_message() {
    if !can_run_containers() {
        return;
    }
    let dir = TempDir::new("badexec");
    let runc = runc_in(&dir);
    let bundle = busybox_bundle(&dir, &["/no/such/program"]);
    let id = format!("rw-bad-{}", std::process::id());
    let _guard = Container { runc: &runc, id: &id };

    // A stale error from an earlier invocation sharing the log...
    let _ = runc.state("nonexistent").output();
    let err = create(&runc, &id, &bundle).unwrap_err();
    let text = err.to_string();
    eprintln!("{text}");
    assert!(text.starts_with("OCI runtime create failed: "), "{text}");
    // ...is not what gets reported.
    assert!(text.contains("/no/such/program"), "{text}");
    assert!(!err.is_not_exist());
}
