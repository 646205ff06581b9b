//! `packaging/build-deb.sh` makes a Debian package of the shim under test that dpkg installs
//! and removes cleanly, whose dependencies this host satisfies, and whose installed files run
//! containers: through the absolute path and through the runtime type
//! `io.containerd.runc-rs.v2` (the `/usr/bin` link). The package is installed into a dpkg
//! root of the test's own (`dpkg --root`), never into the host's.

use e2e::command::{run, run_ok, Output};
use e2e::procfs;
use e2e::util::files_under;
use e2e::Daemon;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);
const PKG: &str = "containerd-shim-runc-rs";
const LIB_SHIM: &str = "usr/lib/containerd-shim-rs/containerd-shim-runc-v2";
const BIN_LINK: &str = "usr/bin/containerd-shim-runc-rs-v2";
const EXAMPLES: &str = "usr/share/doc/containerd-shim-runc-rs/examples";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn ok(cmd: &mut Command) -> Output {
    run_ok(cmd, T)
}

/// Builds the package of the shim under test into `out`; returns the .deb's path.
fn build_deb(out: &Path) -> PathBuf {
    let o = ok(Command::new(repo().join("packaging/build-deb.sh"))
        .arg(out)
        .env("SHIM_BIN", e2e::util::shim_bin()));
    let deb = PathBuf::from(o.stdout_str().trim());
    assert!(deb.is_file(), "build-deb.sh printed {deb:?}, which is no file\n{o}");
    deb
}

fn field(deb: &Path, name: &str) -> String {
    ok(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name))
        .stdout_str()
        .trim()
        .to_string()
}

/// An empty dpkg database at `root`, for `dpkg --root`.
fn dpkg_root(root: &Path) {
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir dpkg db");
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").expect("dpkg status");
}

/// `dpkg` working on the database at `root`.
fn dpkg_at(root: &Path) -> Command {
    let mut c = Command::new("dpkg");
    c.arg(format!("--root={}", root.display()));
    c
}

fn dpkg(root: &Path, args: &[&str]) -> Output {
    ok(dpkg_at(root).args(args))
}

fn workspace_version() -> String {
    let toml = std::fs::read_to_string(repo().join("Cargo.toml")).expect("read Cargo.toml");
    let section = toml
        .split("[workspace.package]")
        .nth(1)
        .expect("[workspace.package] in Cargo.toml");
    section
        .lines()
        .find_map(|l| l.trim().strip_prefix("version = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("workspace version")
}

#[test]
fn the_deb_installs_runs_containers_and_removes_cleanly() {
    let d = Daemon::start();
    let out = d.tmp().join("deb");
    let deb = build_deb(&out);

    // Metadata: our version, this machine's architecture, what the binary needs.
    assert_eq!(field(&deb, "Package"), PKG);
    assert_eq!(field(&deb, "Version"), format!("{}-1", workspace_version()));
    let arch = ok(Command::new("dpkg").arg("--print-architecture")).stdout_str();
    assert_eq!(field(&deb, "Architecture"), arch.trim());
    let depends = field(&deb, "Depends");
    for want in ["libc6 (>= 2.", "runc"] {
        assert!(depends.contains(want), "Depends {depends:?} lacks {want:?}");
    }
    // This host (Debian 12 with runc) satisfies them: apt resolves the install offline.
    let sim = run(Command::new("apt-get").args(["-s", "install"]).arg(&deb), None, T).expect("apt-get -s");
    assert_eq!(
        sim.code(),
        Some(0),
        "apt-get cannot resolve the package's dependencies\n{sim}"
    );
    assert!(
        sim.stdout_str().contains(&format!("Inst {PKG} ")),
        "apt-get would not install {PKG}\n{sim}"
    );

    // Install into a dpkg root of our own. Its dependencies live in the host's database, not
    // in this empty one (checked above), hence --force-depends.
    let root = d.tmp().join("dpkg-root");
    dpkg_root(&root);
    dpkg(&root, &["--force-depends", "-i", deb.to_str().expect("utf-8")]);
    let status = dpkg(&root, &["-s", PKG]).stdout_str();
    assert!(status.contains("Status: install ok installed"), "{status}");

    let shim = root.join(LIB_SHIM);
    let link = root.join(BIN_LINK);
    assert_eq!(
        std::fs::read(&shim).expect("installed shim"),
        std::fs::read(e2e::util::shim_bin()).expect("shim under test"),
        "the package's binary is not the shim under test"
    );
    assert_eq!(
        std::fs::canonicalize(&link).expect("resolve /usr/bin link"),
        std::fs::canonicalize(&shim).expect("resolve shim"),
        "{BIN_LINK} must lead to {LIB_SHIM}"
    );
    // The package's snippets name its own layout, and only paths it installs.
    for entry in std::fs::read_dir(root.join(EXAMPLES)).expect("examples dir") {
        let p = entry.expect("dir entry").path();
        let text = std::fs::read_to_string(&p).expect("read example");
        if p.extension().is_some_and(|e| e == "toml") {
            assert!(!text.contains("/usr/local"), "{} names /usr/local", p.display());
        }
        assert!(!text.contains("install.sh"), "{} names install.sh", p.display());
        for word in text.split(|c: char| c == '"' || c.is_whitespace() || c == '=' || c == ':') {
            if word.starts_with("/usr/lib/containerd-shim-rs") || word.starts_with("/usr/bin/containerd-shim") {
                let installed = root.join(word.trim_start_matches('/'));
                assert!(
                    installed.exists(),
                    "{} names {word}, which the package does not install",
                    p.display()
                );
            }
        }
    }

    // Containers through the installed files: the absolute path (stdout and exit code) ...
    let id = d.id("deb-path");
    let o = d
        .run_rootfs_with(
            shim.to_str().expect("utf-8"),
            &["--rm"],
            &id,
            &["/bin/sh", "-c", "echo from-the-deb; exit 3"],
        )
        .code(3);
    assert_eq!(o.stdout_str().trim(), "from-the-deb", "{o}");

    // ... and the runtime type, which containerd resolves to `containerd-shim-runc-rs-v2` in its
    // cwd (where an installed /usr/bin would be on its PATH): the package's link, followed.
    std::os::unix::fs::symlink(&link, d.bin_dir().join("containerd-shim-runc-rs-v2")).expect("link into bin dir");
    let id = d.id("deb-type");
    d.run_rootfs_with("io.containerd.runc-rs.v2", &["-d"], &id, &["/bin/sleep", "1000"])
        .ok();
    d.wait_task_status(&id, "RUNNING", Duration::from_secs(20));
    let shims = d.shim_processes(&id);
    assert_eq!(shims.len(), 1, "one shim serves {id}: {shims:?}");
    let exe = procfs::link(shims[0].pid, "exe").expect("shim exe");
    assert_eq!(
        std::fs::canonicalize(&exe).unwrap_or(exe.clone()),
        std::fs::canonicalize(&shim).expect("resolve shim"),
        "the shim serving {id} is not the package's binary"
    );
    d.remove_container(&id);

    // Removal and purge leave nothing of the package behind.
    dpkg(&root, &["-r", PKG]);
    assert!(
        !shim.exists() && link.symlink_metadata().is_err(),
        "dpkg -r left the shim"
    );
    dpkg(&root, &["-P", PKG]);
    let left = files_under(&root.join("usr"));
    assert!(left.is_empty(), "dpkg -P left files behind: {left:?}");
    let status = run(dpkg_at(&root).args(["-s", PKG]), None, T).expect("dpkg -s");
    assert_ne!(
        status.code(),
        Some(0),
        "{PKG} still known to dpkg after purge\n{status}"
    );
    d.assert_clean();
}
