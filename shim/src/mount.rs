//! Rootfs mounts from `CreateTaskRequest.rootfs`, and their removal.

use std::io;
use std::path::{Component, Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// One mount as containerd describes it (`containerd.types.Mount`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub kind: String,
    pub source: String,
    pub target: String,
    pub options: Vec<String>,
}

impl From<&protos::types::Mount> for MountSpec {
    fn from(m: &protos::types::Mount) -> Self {
        MountSpec {
            kind: m.type_.clone(),
            source: m.source.clone(),
            target: m.target.clone(),
            options: m.options.clone(),
        }
    }
}

/// fstab words split into mount(2) flags and the data string.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub flags: MsFlags,
    pub data: String,
    /// `bind` + `ro` needs a second, remounting call to become read-only.
    pub remount_ro: bool,
}

/// Splits fstab-style options. Unknown words go to the data string.
pub fn parse_options(options: &[String]) -> Parsed {
    let mut flags = MsFlags::empty();
    let mut data: Vec<&str> = Vec::new();
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            // containerd-internal hints (2.x) are never passed to the kernel.
            o if o.starts_with("X-containerd.") => continue,
            o => {
                data.push(o);
                continue;
            }
        };
        flags.insert(set);
        flags.remove(clear);
    }
    let remount_ro = flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY);
    Parsed {
        flags,
        data: data.join(","),
        remount_ro,
    }
}

/// Joins `target` under `root` without letting `..` escape it.
pub fn join_inside(root: &Path, target: &str) -> PathBuf {
    let mut out = root.to_path_buf();
    let mut depth = 0usize;
    for c in Path::new(target).components() {
        match c {
            Component::Normal(p) => {
                out.push(p);
                depth += 1;
            }
            Component::ParentDir if depth > 0 => {
                out.pop();
                depth -= 1;
            }
            _ => {}
        }
    }
    out
}

fn mount_one(m: &MountSpec, target: &Path) -> io::Result<()> {
    if m.kind.starts_with("fuse.") || m.kind.starts_with("fuse3.") {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("mount type {} is not supported", m.kind),
        ));
    }
    if m.options.iter().any(|o| o == "loop") {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "loop mounts are not supported",
        ));
    }
    let p = parse_options(&m.options);
    if p.data.len() >= 4096 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("mount options too long ({} bytes)", p.data.len()),
        ));
    }
    let data = (!p.data.is_empty()).then_some(p.data.as_str());
    let fstype = (!m.kind.is_empty()).then_some(m.kind.as_str());
    mount(Some(m.source.as_str()), target, fstype, p.flags, data)?;
    if p.remount_ro {
        let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | (p.flags & MsFlags::MS_REC);
        if let Err(e) = mount(None::<&str>, target, None::<&str>, flags, None::<&str>) {
            let _ = umount2(target, MntFlags::MNT_DETACH);
            return Err(e.into());
        }
    }
    Ok(())
}

/// Mounts every entry onto `rootfs` (or `rootfs/<target>`), in order. On failure
/// everything mounted so far is undone.
pub fn mount_all(mounts: &[MountSpec], rootfs: &Path) -> io::Result<()> {
    if mounts.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(rootfs)?;
    for (i, m) in mounts.iter().enumerate() {
        let target = if m.target.is_empty() {
            rootfs.to_path_buf()
        } else {
            join_inside(rootfs, &m.target)
        };
        if let Err(e) = mount_one(m, &target) {
            let _ = unmount_all(rootfs);
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "failed to mount rootfs component {} ({} {} on {}): {e}",
                    i,
                    m.kind,
                    m.source,
                    target.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Unmounts everything stacked on `target` (and below it), retrying while busy.
pub fn unmount_all(target: &Path) -> io::Result<()> {
    // Mounts below the rootfs (1.7+ targets) first, deepest first.
    let mut nested = mounts_below(target);
    nested.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in nested {
        unmount_stack(&p)?;
    }
    unmount_stack(target)
}

fn unmount_stack(target: &Path) -> io::Result<()> {
    let mut busy = 0;
    loop {
        match umount2(target, MntFlags::empty()) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::EBUSY) if busy < 50 => {
                busy += 1;
                sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Mount points strictly below `dir`, from /proc/self/mountinfo.
fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p != dir && p.starts_with(dir))
        .collect()
}

fn unescape_mountinfo(field: &str) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let b = field.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overlay_options_go_to_data() {
        let p = parse_options(&opts(&["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/l1:/l2"]));
        assert_eq!(p.flags, MsFlags::empty());
        assert_eq!(p.data, "index=off,workdir=/w,upperdir=/u,lowerdir=/l1:/l2");
        assert!(!p.remount_ro);
    }

    #[test]
    fn bind_ro_needs_remount() {
        let p = parse_options(&opts(&["rbind", "ro", "nosuid"]));
        assert!(p
            .flags
            .contains(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID));
        assert!(p.remount_ro);
        let p = parse_options(&opts(&["ro", "rw", "bind"]));
        assert!(!p.flags.contains(MsFlags::MS_RDONLY));
        assert!(!p.remount_ro);
    }

    #[test]
    fn containerd_hints_are_dropped() {
        let p = parse_options(&opts(&["X-containerd.mkdir.path=/x", "ro"]));
        assert_eq!(p.data, "");
        assert!(p.flags.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn targets_stay_inside_rootfs() {
        let r = Path::new("/b/rootfs");
        assert_eq!(join_inside(r, "/etc/x"), Path::new("/b/rootfs/etc/x"));
        assert_eq!(join_inside(r, "../../etc"), Path::new("/b/rootfs/etc"));
        assert_eq!(join_inside(r, "a/../../b"), Path::new("/b/rootfs/b"));
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), Path::new("/a b"));
        assert_eq!(unescape_mountinfo("/plain"), Path::new("/plain"));
    }

    #[test]
    fn unmount_of_nothing_is_ok() {
        let d = std::env::temp_dir().join(format!("shim-mnt-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        unmount_all(&d).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
        unmount_all(&d).unwrap();
    }
}
