//! Reading `/proc`: processes, their parents, argv, cgroups; our mount table.

use std::path::{Path, PathBuf};

/// The fields of `/proc/<pid>/stat` the harness needs.
#[derive(Debug, Clone)]
pub struct Stat {
    pub pid: i32,
    pub comm: String,
    /// `R`, `S`, `D`, `Z`, `T`, ...
    pub state: char,
    /// Thread group id of the parent.
    pub ppid: i32,
}

impl Stat {
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
    }
}

/// All numeric entries of `/proc`.
pub fn pids() -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

/// `/proc/<pid>/stat`, or `None` when the process is gone.
pub fn stat(pid: i32) -> Option<Stat> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm is in parentheses and may itself contain ") ": split at the last one.
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    let mut rest = s[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(Stat { pid, comm, state, ppid })
}

/// argv of a process (empty for zombies and kernel threads).
pub fn cmdline(pid: i32) -> Vec<String> {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(raw) => raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Cgroup paths of a process, one per hierarchy line of `/proc/<pid>/cgroup`.
pub fn cgroup_paths(pid: i32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2).map(str::to_string))
        .collect()
}

/// Target of `/proc/<pid>/<link>` (`cwd`, `exe`, ...).
pub fn link(pid: i32, what: &str) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/{what}")).ok()
}

/// True if the process has a handler installed for signal number `sig` (`SigCgt`).
pub fn catches_signal(pid: i32, sig: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|mask| mask & (1u64 << (sig - 1)) != 0)
}

/// Value of a Go-style flag (`-name V`, `--name V`, `-name=V`, `--name=V`) in argv.
pub fn flag_value<'a>(argv: &'a [String], name: &str) -> Option<&'a str> {
    let single = format!("-{name}");
    let double = format!("--{name}");
    for (i, a) in argv.iter().enumerate() {
        for n in [&single, &double] {
            if a == n {
                return argv.get(i + 1).map(String::as_str);
            }
            if let Some(v) = a.strip_prefix(n.as_str()).and_then(|r| r.strip_prefix('=')) {
                return Some(v);
            }
        }
    }
    None
}

/// Mount points of this process's mount namespace (octal escapes decoded).
pub fn mount_points() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(unescape_octal))
        .map(PathBuf::from)
        .collect()
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = mount_points().into_iter().filter(|m| m.starts_with(dir)).collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    v.dedup();
    v
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_in_all_go_forms() {
        let argv: Vec<String> = [
            "shim",
            "-namespace",
            "n1",
            "--address=/a",
            "-id=x",
            "--bundle",
            "/b",
            "start",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(flag_value(&argv, "namespace"), Some("n1"));
        assert_eq!(flag_value(&argv, "address"), Some("/a"));
        assert_eq!(flag_value(&argv, "id"), Some("x"));
        assert_eq!(flag_value(&argv, "bundle"), Some("/b"));
        assert_eq!(flag_value(&argv, "debug"), None);
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_octal("/tmp/a\\040b"), "/tmp/a b");
        assert_eq!(unescape_octal("/x\\"), "/x\\");
    }

    #[test]
    fn own_stat_parses() {
        let me = stat(std::process::id() as i32).expect("own stat");
        assert_ne!(me.state, 'Z');
        assert!(me.ppid > 0);
    }
}
