//! containerd configuration for a private daemon, and which containerd the suite runs against.
//! All config text is generated here.
//!
//! The daemon of the test matrix is chosen with `E2E_CONTAINERD` (`1.6`, `1.7`, `2.1`, ...):
//! the binaries then come from `$SHIM_CI_CACHE/containerd-<V>/bin/` (default cache
//! `/var/cache/shim-ci`, filled by `tests/provision-containerd.sh`), unless `CONTAINERD_BIN` /
//! `CTR_BIN` name them explicitly. Without `E2E_CONTAINERD` the system's `/usr/bin/containerd`
//! and `/usr/bin/ctr` are used. The version actually tested is read from `containerd --version`
//! ([`containerd_version`]) and decides the config format ([`ConfigVersion`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Default directory of `tests/provision-containerd.sh` (override with `SHIM_CI_CACHE`).
pub const DEFAULT_CI_CACHE: &str = "/var/cache/shim-ci";

/// containerd config schema version.
///
/// containerd 1.6 and 1.7 read `version = 2`. containerd 2.x needs `version = 3`; without CRI
/// it must also disable `io.containerd.cri.v1.images` and `io.containerd.cri.v1.runtime`, and
/// NRI (which otherwise listens on the machine-wide `/var/run/nri/nri.sock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigVersion {
    V2,
    V3,
}

impl ConfigVersion {
    /// The format containerd `major` reads.
    pub fn for_major(major: u32) -> ConfigVersion {
        if major >= 2 {
            ConfigVersion::V3
        } else {
            ConfigVersion::V2
        }
    }

    /// The CRI plugins of this config format (disabled unless a test enables CRI).
    pub fn cri_plugins(self) -> &'static [&'static str] {
        match self {
            ConfigVersion::V2 => &["io.containerd.grpc.v1.cri"],
            ConfigVersion::V3 => &[
                "io.containerd.grpc.v1.cri",
                "io.containerd.cri.v1.images",
                "io.containerd.cri.v1.runtime",
            ],
        }
    }
}

/// The containerd binary the suite runs against, and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// Version as printed by `containerd --version`, e.g. `1.7.24~ds1` or `2.1.9+unknown`.
    pub text: String,
    /// `E2E_CONTAINERD` (empty when unset).
    pub selected: String,
    pub binary: PathBuf,
}

impl ContainerdVersion {
    /// `major.minor.patch`.
    pub fn short(&self) -> String {
        format!("{}.{}.{}", self.major, self.minor, self.patch)
    }

    /// Whether this containerd is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    pub fn config_version(&self) -> ConfigVersion {
        ConfigVersion::for_major(self.major)
    }

    /// `containerd 1.7.24` — what failure messages start with.
    pub fn label(&self) -> String {
        format!("containerd {}", self.short())
    }
}

impl std::fmt::Display for ContainerdVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "containerd {} ({}", self.text, self.binary.display())?;
        if !self.selected.is_empty() {
            write!(f, ", E2E_CONTAINERD={}", self.selected)?;
        }
        write!(f, ")")
    }
}

/// Parses `containerd --version` output: `containerd github.com/containerd/containerd 1.7.24~ds1 <rev>`
/// (2.x: `.../containerd/v2 2.1.9+unknown`). The version is the first word starting with a digit (or `v` and a digit).
pub fn parse_containerd_version(out: &str) -> Option<(u32, u32, u32, String)> {
    let word = out
        .split_whitespace()
        .map(|w| w.strip_prefix('v').unwrap_or(w))
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let mut nums = word.split(|c: char| !c.is_ascii_digit()).map(|n| n.parse::<u32>().ok());
    let major = nums.next()??;
    let minor = nums.next()??;
    let patch = nums.next().flatten().unwrap_or(0);
    Some((major, minor, patch, word.to_string()))
}

/// `E2E_CONTAINERD`, trimmed; empty when unset.
pub fn selected_containerd() -> String {
    std::env::var("E2E_CONTAINERD").unwrap_or_default().trim().to_string()
}

/// The provisioning cache: `$SHIM_CI_CACHE`, else [`DEFAULT_CI_CACHE`].
pub fn ci_cache_dir() -> PathBuf {
    match std::env::var_os("SHIM_CI_CACHE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_CI_CACHE),
    }
}

/// Where binary `name` of the selected daemon is: `$var` if set; else, with `E2E_CONTAINERD=V`,
/// `<cache>/containerd-V/bin/<name>`; else `/usr/bin/<name>`.
pub fn matrix_bin(var: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let sel = selected_containerd();
    if sel.is_empty() || sel == "system" {
        return Path::new("/usr/bin").join(name);
    }
    ci_cache_dir().join(format!("containerd-{sel}")).join("bin").join(name)
}

/// The Go shim shipped with the selected containerd (the reference to compare with).
pub fn go_shim_of_selected() -> PathBuf {
    matrix_bin("E2E_GO_SHIM", "containerd-shim-runc-v2")
}

/// The containerd under test, from `containerd --version` (run once). Panics with
/// provisioning instructions when the binary is missing, and when it is not the release
/// `E2E_CONTAINERD` asks for.
pub fn containerd_version() -> &'static ContainerdVersion {
    static V: OnceLock<ContainerdVersion> = OnceLock::new();
    V.get_or_init(|| {
        let binary = crate::util::containerd_bin();
        let selected = selected_containerd();
        let out = Command::new(&binary).arg("--version").output();
        let text = match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
            Ok(o) => panic!(
                "`{} --version` failed ({}): {}",
                binary.display(),
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!(
                "cannot run containerd {} ({e}){}",
                binary.display(),
                if selected.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; E2E_CONTAINERD={selected} needs `tests/provision-containerd.sh {selected}`                          (cache {})",
                        ci_cache_dir().display()
                    )
                }
            ),
        };
        let (major, minor, patch, word) = parse_containerd_version(&text).unwrap_or_else(|| {
            panic!("cannot parse `{} --version`: {text:?}", binary.display())
        });
        if !selected.is_empty() && selected != "system" {
            let want = format!("{major}.{minor}");
            assert!(
                selected == want || word.starts_with(&format!("{selected}.")) || word == selected,
                "E2E_CONTAINERD={selected} but {} is containerd {word}",
                binary.display()
            );
        }
        ContainerdVersion {
            major,
            minor,
            patch,
            text: word,
            selected,
            binary,
        }
    })
}

/// Paths and settings of one private containerd. Every path is inside the daemon's temp dir.
#[derive(Debug, Clone)]
pub struct ContainerdConfig {
    pub version: ConfigVersion,
    pub root: PathBuf,
    pub state: PathBuf,
    pub grpc_address: PathBuf,
    /// In its own directory (`<tmp>/ttrpc/`) so that a test can hide it from shims with a bind
    /// mount over that directory (see `Daemon::restart_containerd_ttrpc_withheld`).
    pub ttrpc_address: PathBuf,
    pub opt_path: PathBuf,
    /// `debug`: containerd logs forwarded events and passes `-debug` to shims, whose logs then
    /// end up in containerd's log file.
    pub log_level: &'static str,
    /// Plugins listed in `disabled_plugins` (default: the CRI plugins of the format).
    pub disabled_plugins: Vec<String>,
    /// TOML appended verbatim after the generated text (e.g. a `packaging/containerd/`
    /// snippet without its `version` line). It must not repeat a table generated here.
    pub extra: String,
}

impl ContainerdConfig {
    /// The standard layout under `tmp`, in the format of the containerd under test.
    pub fn in_dir(tmp: &Path) -> Self {
        Self::in_dir_for(tmp, containerd_version().config_version())
    }

    /// The standard layout under `tmp` in config format `version`.
    pub fn in_dir_for(tmp: &Path, version: ConfigVersion) -> Self {
        ContainerdConfig {
            version,
            disabled_plugins: version.cri_plugins().iter().map(|p| p.to_string()).collect(),
            extra: String::new(),
            root: tmp.join("root"),
            state: tmp.join("state"),
            grpc_address: tmp.join("containerd.sock"),
            ttrpc_address: tmp.join("ttrpc").join("containerd.sock.ttrpc"),
            opt_path: tmp.join("opt"),
            log_level: "debug",
        }
    }

    /// The TOML text.
    pub fn render(&self) -> String {
        let q = |p: &Path| toml_string(&p.to_string_lossy());
        let disabled: Vec<String> = self.disabled_plugins.iter().map(|p| toml_string(p)).collect();
        let mut t = format!(
            "version = {version}\n\
             root = {root}\n\
             state = {state}\n\
             disabled_plugins = [{disabled}]\n\
             \n\
             [grpc]\n  address = {grpc}\n\
             \n\
             [ttrpc]\n  address = {ttrpc}\n\
             \n\
             [debug]\n  level = {level}\n",
            version = match self.version {
                ConfigVersion::V2 => 2,
                ConfigVersion::V3 => 3,
            },
            root = q(&self.root),
            state = q(&self.state),
            disabled = disabled.join(", "),
            grpc = q(&self.grpc_address),
            ttrpc = q(&self.ttrpc_address),
            level = toml_string(self.log_level),
        );
        match self.version {
            // 1.6/1.7: the opt plugin would otherwise install into /opt/containerd.
            ConfigVersion::V2 => t.push_str(&format!(
                "\n[plugins.\"io.containerd.internal.v1.opt\"]\n  path = {}\n",
                q(&self.opt_path)
            )),
            // 2.x has no opt plugin; NRI would listen on the machine-wide /var/run/nri/nri.sock.
            ConfigVersion::V3 => t.push_str("\n[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = true\n"),
        }
        if !self.extra.is_empty() {
            t.push('\n');
            t.push_str(&self.extra);
            if !self.extra.ends_with('\n') {
                t.push('\n');
            }
        }
        t
    }
}

/// A `packaging/containerd/*.toml` snippet made appendable to a generated config: comments and
/// its `version = N` line are dropped (the generated config has its own).
pub fn snippet_body(snippet: &str) -> String {
    snippet
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            let version_line = t.starts_with("version") && t.contains('=');
            !t.starts_with('#') && !version_line
        })
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_config_has_private_paths_and_no_cri() {
        let c = ContainerdConfig::in_dir_for(Path::new("/tmp/x"), ConfigVersion::V2);
        let t = c.render();
        assert!(t.starts_with("version = 2\n"), "{t}");
        for want in [
            "root = \"/tmp/x/root\"",
            "state = \"/tmp/x/state\"",
            "address = \"/tmp/x/containerd.sock\"",
            "address = \"/tmp/x/ttrpc/containerd.sock.ttrpc\"",
            "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]",
            "path = \"/tmp/x/opt\"",
        ] {
            assert!(t.contains(want), "missing {want} in\n{t}");
        }
    }

    #[test]
    fn v3_config_disables_all_cri_plugins_and_nri() {
        let c = ContainerdConfig::in_dir_for(Path::new("/tmp/x"), ConfigVersion::V3);
        let t = c.render();
        assert!(t.starts_with("version = 3\n"), "{t}");
        for want in [
            "root = \"/tmp/x/root\"",
            "state = \"/tmp/x/state\"",
            "address = \"/tmp/x/containerd.sock\"",
            "address = \"/tmp/x/ttrpc/containerd.sock.ttrpc\"",
            "disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.cri.v1.images\", \
             \"io.containerd.cri.v1.runtime\"]",
            "[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = true\n",
        ] {
            assert!(t.contains(want), "missing {want} in\n{t}");
        }
        assert!(!t.contains("internal.v1.opt"), "2.x has no opt plugin:\n{t}");
    }

    #[test]
    fn snippets_lose_comments_and_version_and_are_appended() {
        let body = snippet_body("# c\nversion = 3\n\n[plugins.\"x\"]\n  a = 1 # keep\n");
        assert_eq!(body, "[plugins.\"x\"]\n  a = 1 # keep");
        let mut c = ContainerdConfig::in_dir_for(Path::new("/tmp/x"), ConfigVersion::V3);
        c.extra = body;
        assert!(c.render().ends_with("\n[plugins.\"x\"]\n  a = 1 # keep\n"));
    }

    #[test]
    fn containerd_version_lines_parse() {
        let p = parse_containerd_version;
        assert_eq!(
            p("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3\n"),
            Some((1, 6, 20, "1.6.20~ds1".into()))
        );
        assert_eq!(
            p("containerd github.com/containerd/containerd/v2 2.1.9+unknown \n"),
            Some((2, 1, 9, "2.1.9+unknown".into()))
        );
        assert_eq!(
            p("containerd containerd.io v1.7.24 abc\n"),
            Some((1, 7, 24, "1.7.24".into()))
        );
        assert_eq!(ConfigVersion::for_major(1), ConfigVersion::V2);
        assert_eq!(ConfigVersion::for_major(2), ConfigVersion::V3);
    }
}
