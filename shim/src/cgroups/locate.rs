//! Finding a process's cgroup: `/proc/<pid>/cgroup` names a path per
//! hierarchy, `/proc/self/mountinfo` says where each hierarchy is mounted.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::{is_unified, ROOT};

/// How the host mounts cgroups, which decides the kind of [`Cgroup`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Legacy or hybrid host: controllers live on v1 hierarchies (a cgroup2
    /// mount such as `/sys/fs/cgroup/unified` may exist next to them).
    V1,
    /// Unified host: the single cgroup2 hierarchy is `/sys/fs/cgroup`.
    Unified,
}

impl Mode {
    /// The mode of this host, decided as the Go shim does: unified when
    /// `/sys/fs/cgroup/cgroup.controllers` exists.
    pub fn host() -> Mode {
        if is_unified() {
            Mode::Unified
        } else {
            Mode::V1
        }
    }
}

/// One v1 controller (or named hierarchy such as `name=systemd`) and the
/// process's cgroup directory in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subsystem {
    pub name: String,
    pub dir: PathBuf,
}

/// A process's cgroup, as absolute directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroup {
    /// One entry per controller; controllers co-mounted in one hierarchy
    /// (`cpu,cpuacct`) each get an entry with the same directory.
    V1 {
        subsystems: Vec<Subsystem>,
    },
    V2 {
        dir: PathBuf,
    },
}

/// The v1 controllers that hold statistics; the cgroup "exists" while any of
/// their directories does.
pub(super) const STAT_SUBSYSTEMS: [&str; 7] = ["pids", "cpu", "cpuacct", "memory", "blkio", "hugetlb", "rdma"];

impl Cgroup {
    /// The cgroup of `pid`, on this host's cgroup mode.
    pub fn for_pid(pid: u32) -> io::Result<Cgroup> {
        let path = format!("/proc/{pid}/cgroup");
        let cgroup_file = fs::read_to_string(&path).map_err(|e| super::files::with_path(Path::new(&path), e))?;
        locate(&cgroup_file, &read_mounts()?, Mode::host())
    }

    /// Parses the contents of `/proc/<pid>/cgroup` and `/proc/self/mountinfo`.
    #[cfg(test)]
    pub fn from_proc(cgroup_file: &str, mountinfo: &str, mode: Mode) -> io::Result<Cgroup> {
        let mounts: Vec<Mount> = mountinfo.lines().filter_map(Mount::parse).collect();
        locate(cgroup_file, &mounts, mode)
    }

    /// The directory of v1 controller `name` (`memory`, `name=systemd`, ...).
    pub fn subsystem_dir(&self, name: &str) -> Option<&Path> {
        match self {
            Cgroup::V1 { subsystems } => subsystems.iter().find(|s| s.name == name).map(|s| s.dir.as_path()),
            Cgroup::V2 { .. } => None,
        }
    }

    /// Where the memory controller's files are: the v1 memory cgroup, or the
    /// v2 cgroup itself. `None` on v1 without a memory hierarchy.
    pub fn memory_dir(&self) -> Option<PathBuf> {
        match self {
            Cgroup::V1 { .. } => self.subsystem_dir("memory").map(Path::to_path_buf),
            Cgroup::V2 { dir } => Some(dir.clone()),
        }
    }

    /// Whether the cgroup is still there: on v1, the directory of any
    /// controller with statistics.
    pub fn exists(&self) -> bool {
        match self {
            Cgroup::V1 { subsystems } => subsystems
                .iter()
                .filter(|s| STAT_SUBSYSTEMS.contains(&s.name.as_str()))
                .any(|s| s.dir.symlink_metadata().is_ok()),
            Cgroup::V2 { dir } => dir.symlink_metadata().is_ok(),
        }
    }
}

/// The cgroup hierarchies mounted in this mount namespace.
pub(super) fn read_mounts() -> io::Result<Vec<Mount>> {
    let path = Path::new("/proc/self/mountinfo");
    let file = File::open(path).map_err(|e| super::files::with_path(path, e))?;
    let mut mounts = Vec::new();
    for line in BufReader::new(file).lines() {
        if let Some(m) = Mount::parse(&line?) {
            mounts.push(m);
        }
    }
    Ok(mounts)
}

fn locate(cgroup_file: &str, mounts: &[Mount], mode: Mode) -> io::Result<Cgroup> {
    match mode {
        Mode::Unified => {
            let path = cgroup_file
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .ok_or_else(|| not_found("no cgroup v2 entry"))?;
            let v2 = || mounts.iter().filter(|m| m.v2);
            let dir = v2()
                .filter(|m| m.point == Path::new(ROOT))
                .chain(v2())
                .find_map(|m| m.dir_for(path))
                .unwrap_or_else(|| Path::new(ROOT).join(path.trim_start_matches('/')));
            Ok(Cgroup::V2 { dir })
        }
        Mode::V1 => {
            let mut subsystems = Vec::new();
            for line in cgroup_file.lines() {
                let mut fields = line.splitn(3, ':');
                let (Some(_id), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
                    continue;
                };
                if controllers.is_empty() {
                    continue;
                }
                let Some(dir) = mounts
                    .iter()
                    .filter(|m| !m.v2 && m.has_controllers(controllers))
                    .find_map(|m| m.dir_for(path))
                else {
                    continue;
                };
                for name in controllers.split(',') {
                    subsystems.push(Subsystem {
                        name: name.to_string(),
                        dir: dir.clone(),
                    });
                }
            }
            if subsystems.is_empty() {
                return Err(not_found("no mounted cgroup v1 hierarchy"));
            }
            Ok(Cgroup::V1 { subsystems })
        }
    }
}

fn not_found(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, msg.to_string())
}

/// A cgroup or cgroup2 mount from a mountinfo line.
#[derive(Debug)]
pub(super) struct Mount {
    /// The hierarchy's directory that is mounted (`/` unless a bind mount).
    root: String,
    pub(super) point: PathBuf,
    pub(super) v2: bool,
    /// Super options: `rw,cpu,cpuacct`, `rw,name=systemd`, ...
    options: String,
}

impl Mount {
    /// `36 25 0:32 / /sys/fs/cgroup/memory rw,relatime shared:13 - cgroup cgroup rw,memory`
    pub(super) fn parse(line: &str) -> Option<Mount> {
        let (pre, post) = line.split_once(" - ")?;
        let mut post = post.split(' ');
        let v2 = match post.next()? {
            "cgroup" => false,
            "cgroup2" => true,
            _ => return None,
        };
        let options = post.nth(1)?.to_string();
        let mut pre = pre.split(' ');
        let root = unescape(pre.nth(3)?);
        let point = PathBuf::from(unescape(pre.next()?));
        Some(Mount {
            root,
            point,
            v2,
            options,
        })
    }

    fn has_controllers(&self, controllers: &str) -> bool {
        controllers.split(',').all(|c| self.options.split(',').any(|o| o == c))
    }

    /// Where the cgroup `path` of this hierarchy appears under the mount
    /// point; `None` when the mount shows a subtree that doesn't hold it.
    fn dir_for(&self, path: &str) -> Option<PathBuf> {
        let root = self.root.trim_end_matches('/');
        let rel = path.strip_prefix(root)?;
        if !(rel.is_empty() || rel.starts_with('/')) {
            return None;
        }
        let rel = rel.trim_start_matches('/');
        Some(if rel.is_empty() {
            self.point.clone()
        } else {
            self.point.join(rel)
        })
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) && d[0] <= b'3');
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine: hybrid, one hierarchy per controller, the test runner's
    /// memory cgroup nested, cgroup2 at /sys/fs/cgroup/unified.
    const HYBRID_MOUNTINFO: &str = "\
23 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A container started by ctr on this machine (`/<namespace>/<id>`).
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/default/c1
8:pids:/default/c1
7:blkio:/default/c1
6:freezer:/default/c1
5:devices:/default/c1
4:memory:/default/c1
3:cpuset:/default/c1
2:cpuacct:/default/c1
1:cpu:/default/c1
0::/default/c1
";

    fn dir<'a>(cg: &'a Cgroup, name: &str) -> &'a str {
        cg.subsystem_dir(name).unwrap().to_str().unwrap()
    }

    #[test]
    fn hybrid_host_uses_v1_lines() {
        let cg = Cgroup::from_proc(HYBRID_CGROUP, HYBRID_MOUNTINFO, Mode::V1).unwrap();
        assert_eq!(dir(&cg, "memory"), "/sys/fs/cgroup/memory/default/c1");
        assert_eq!(dir(&cg, "cpu"), "/sys/fs/cgroup/cpu/default/c1");
        assert_eq!(dir(&cg, "cpuacct"), "/sys/fs/cgroup/cpuacct/default/c1");
        assert_eq!(dir(&cg, "pids"), "/sys/fs/cgroup/pids/default/c1");
        assert_eq!(dir(&cg, "blkio"), "/sys/fs/cgroup/blkio/default/c1");
        assert_eq!(dir(&cg, "freezer"), "/sys/fs/cgroup/freezer/default/c1");
        assert_eq!(dir(&cg, "name=systemd"), "/sys/fs/cgroup/systemd/default/c1");
        assert!(cg.subsystem_dir("hugetlb").is_none());
        assert_eq!(cg.memory_dir().unwrap(), Path::new("/sys/fs/cgroup/memory/default/c1"));
        let Cgroup::V1 { subsystems } = &cg else {
            panic!("{cg:?}")
        };
        assert_eq!(subsystems.len(), 9);
    }

    #[test]
    fn real_self_cgroup_of_this_process() {
        // The runner's own cgroup on this machine: root everywhere but memory.
        let own = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/78bc96f6\n2:cpuacct:/\n1:cpu:/\n0::/\n";
        let cg = Cgroup::from_proc(own, HYBRID_MOUNTINFO, Mode::V1).unwrap();
        assert_eq!(dir(&cg, "memory"), "/sys/fs/cgroup/memory/process_api/78bc96f6");
        assert_eq!(dir(&cg, "pids"), "/sys/fs/cgroup/pids");
    }

    #[test]
    fn combined_controllers_and_bind_mounted_subtree() {
        let mountinfo = "\
25 1 8:1 / / rw - ext4 /dev/sda1 rw
26 25 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
27 26 0:23 / /sys/fs/cgroup/systemd rw shared:9 - cgroup cgroup rw,xattr,name=systemd
28 26 0:24 / /sys/fs/cgroup/cpu,cpuacct rw shared:10 - cgroup cgroup rw,cpu,cpuacct
29 26 0:25 / /sys/fs/cgroup/net_cls,net_prio rw shared:11 - cgroup cgroup rw,net_cls,net_prio
30 26 0:26 /kubepods /mnt/memory\\040cg rw shared:12 - cgroup cgroup rw,memory
31 26 0:27 /other /mnt/pids-other rw - cgroup cgroup rw,pids
32 26 0:27 /k8s /mnt/pids rw - cgroup cgroup rw,pids
";
        let proc = "\
12:pids:/k8s/pod1/c2
5:memory:/kubepods/pod1/c2
4:net_cls,net_prio:/
3:cpu,cpuacct:/k8s/pod1/c2
1:name=systemd:/system.slice/containerd.service
0::/system.slice/containerd.service
";
        let cg = Cgroup::from_proc(proc, mountinfo, Mode::V1).unwrap();
        assert_eq!(dir(&cg, "cpu"), "/sys/fs/cgroup/cpu,cpuacct/k8s/pod1/c2");
        assert_eq!(dir(&cg, "cpuacct"), "/sys/fs/cgroup/cpu,cpuacct/k8s/pod1/c2");
        assert_eq!(dir(&cg, "net_prio"), "/sys/fs/cgroup/net_cls,net_prio");
        // Mount root /kubepods: its directory is the mount point itself.
        assert_eq!(dir(&cg, "memory"), "/mnt/memory cg/pod1/c2");
        // Two mounts of the pids hierarchy: the one whose root holds the path.
        assert_eq!(dir(&cg, "pids"), "/mnt/pids/pod1/c2");
        assert_eq!(
            dir(&cg, "name=systemd"),
            "/sys/fs/cgroup/systemd/system.slice/containerd.service"
        );
    }

    #[test]
    fn mount_root_must_be_a_whole_prefix() {
        let mountinfo = "30 26 0:26 /kube /mnt/memory rw - cgroup cgroup rw,memory\n";
        let err = Cgroup::from_proc("5:memory:/kubepods/c\n", mountinfo, Mode::V1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let cg = Cgroup::from_proc("5:memory:/kube\n", mountinfo, Mode::V1).unwrap();
        assert_eq!(dir(&cg, "memory"), "/mnt/memory");
    }

    #[test]
    fn unified_host() {
        let mountinfo = "\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
28 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
        let proc = "0::/system.slice/containerd.service/k8s.io/abc\n";
        let cg = Cgroup::from_proc(proc, mountinfo, Mode::Unified).unwrap();
        assert_eq!(
            cg,
            Cgroup::V2 {
                dir: PathBuf::from("/sys/fs/cgroup/system.slice/containerd.service/k8s.io/abc")
            }
        );
        assert_eq!(
            cg.memory_dir().unwrap(),
            Path::new("/sys/fs/cgroup/system.slice/containerd.service/k8s.io/abc")
        );
        assert!(cg.subsystem_dir("memory").is_none());
        // No cgroup2 mount listed: the default root.
        let cg = Cgroup::from_proc("0::/a/b\n", "", Mode::Unified).unwrap();
        assert_eq!(
            cg,
            Cgroup::V2 {
                dir: PathBuf::from("/sys/fs/cgroup/a/b")
            }
        );
        // The hybrid host's cgroup2 mount is not used when it is not the root
        // and another mount at /sys/fs/cgroup exists.
        let mi = format!("{HYBRID_MOUNTINFO}50 31 0:40 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        let cg = Cgroup::from_proc("0::/x\n", &mi, Mode::Unified).unwrap();
        assert_eq!(
            cg,
            Cgroup::V2 {
                dir: PathBuf::from("/sys/fs/cgroup/x")
            }
        );
    }

    #[test]
    fn missing_entries_are_not_found() {
        let err = Cgroup::from_proc("4:memory:/a\n", "", Mode::Unified).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let err = Cgroup::from_proc("0::/a\n", HYBRID_MOUNTINFO, Mode::V1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        // A controller whose hierarchy isn't mounted is left out.
        let cg = Cgroup::from_proc("10:rdma:/a\n4:memory:/a\n", HYBRID_MOUNTINFO, Mode::V1).unwrap();
        assert!(cg.subsystem_dir("rdma").is_none());
    }

    #[test]
    fn unescapes_mountinfo_octal() {
        assert_eq!(unescape("/a\\040b\\011c\\134d"), "/a b\tc\\d");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/bad\\9x\\04"), "/bad\\9x\\04");
    }

    #[test]
    fn for_pid_on_this_host() {
        let cg = Cgroup::for_pid(std::process::id()).unwrap();
        match (&cg, Mode::host()) {
            (Cgroup::V1 { .. }, Mode::V1) | (Cgroup::V2 { .. }, Mode::Unified) => {}
            _ => panic!("{cg:?} on {:?}", Mode::host()),
        }
        assert!(cg.exists());
    }
}
