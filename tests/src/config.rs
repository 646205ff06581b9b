//! containerd configuration for a private daemon. All config text is generated here.

use std::path::{Path, PathBuf};

/// containerd config schema version.
///
/// containerd 1.6 and 1.7 read `version = 2`. containerd 2.x needs `version = 3` (and must also
/// disable `io.containerd.cri.v1.images`, `io.containerd.cri.v1.runtime` and NRI, see
/// test-environment.md): add a `V3` variant and its `render` arm here when the suite runs
/// against 2.x.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigVersion {
    V2,
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
}

impl ContainerdConfig {
    /// The standard layout under `tmp`.
    pub fn in_dir(tmp: &Path) -> Self {
        ContainerdConfig {
            version: ConfigVersion::V2,
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
        match self.version {
            ConfigVersion::V2 => format!(
                "version = 2\n\
                 root = {root}\n\
                 state = {state}\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 \n\
                 [grpc]\n  address = {grpc}\n\
                 \n\
                 [ttrpc]\n  address = {ttrpc}\n\
                 \n\
                 [debug]\n  level = {level}\n\
                 \n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = {opt}\n",
                root = q(&self.root),
                state = q(&self.state),
                grpc = q(&self.grpc_address),
                ttrpc = q(&self.ttrpc_address),
                level = toml_string(self.log_level),
                opt = q(&self.opt_path),
            ),
        }
    }
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
        let c = ContainerdConfig::in_dir(Path::new("/tmp/x"));
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
}
