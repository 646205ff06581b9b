//! The config of a private containerd with its CRI plugin, and its CNI network.
//!
//! The CRI runtime handler that uses the shim under test comes from the packaging snippets
//! (`packaging/containerd/config-v2-*.toml`): their text is parsed and merged into the daemon's
//! config, and only the shim path in them (`runtime_path`) is pointed at `SHIM_BIN`.

use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// The CRI plugin of config version 2 (containerd 1.6 and 1.7).
pub const CRI_PLUGIN_V2: &str = "io.containerd.grpc.v1.cri";

/// Which packaging snippet configures the runtime handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snippet {
    /// `config-v2-side-by-side.toml`: a runtime handler `runc-rs` next to the default runtime;
    /// pods ask for it with `runtime_handler = "runc-rs"` (RuntimeClass).
    SideBySide,
    /// `config-v2-replace.toml`: our shim is the default runtime (`runtime_handler = ""`).
    Replace,
}

impl Snippet {
    /// The snippet's file in the source tree.
    pub fn path(self) -> PathBuf {
        let name = match self {
            Snippet::SideBySide => "config-v2-side-by-side.toml",
            Snippet::Replace => "config-v2-replace.toml",
        };
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../packaging/containerd")
            .join(name)
    }
}

/// What the snippet configured, as found in its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeHandler {
    /// The runtime's key under `...containerd.runtimes` (the CRI runtime handler name).
    pub name: String,
    /// The snippet makes it the default runtime: pods get it with an empty handler.
    pub is_default: bool,
    /// How containerd finds the shim for this runtime.
    pub resolution: ShimResolution,
}

/// How a runtime of a snippet names its shim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShimResolution {
    /// `runtime_path` as written in the snippet (replaced by `SHIM_BIN` in the daemon config).
    Path(String),
    /// No `runtime_path`: containerd looks up this binary name, derived from the runtime type
    /// (`io.containerd.<a>.<b>` → `containerd-shim-<a>-<b>`), in its PATH.
    BinaryName(String),
}

/// The shim binary containerd looks up for a runtime type (its last two dotted parts).
pub fn binary_name(runtime_type: &str) -> String {
    let parts: Vec<&str> = runtime_type.split('.').collect();
    assert!(
        parts.len() >= 2,
        "runtime type {runtime_type:?} has fewer than two parts"
    );
    format!("containerd-shim-{}-{}", parts[parts.len() - 2], parts[parts.len() - 1])
}

impl RuntimeHandler {
    /// What `RunPodSandboxRequest.runtime_handler` must be for pods to use it.
    pub fn request_name(&self) -> &str {
        if self.is_default {
            ""
        } else {
            &self.name
        }
    }
}

/// Everything the CRI daemon's config is made of; every path is in the daemon's temp dir.
#[derive(Debug, Clone)]
pub struct CriConfig {
    pub root: PathBuf,
    pub state: PathBuf,
    pub grpc_address: PathBuf,
    pub ttrpc_address: PathBuf,
    pub opt_path: PathBuf,
    pub cni_bin_dir: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub sandbox_image: String,
    pub shim: PathBuf,
    pub snippet: Snippet,
    /// Pod / container annotations passed through to the OCI spec (runtime options
    /// `pod_annotations` / `container_annotations` of our handler).
    pub pod_annotations: Vec<String>,
    pub container_annotations: Vec<String>,
}

impl CriConfig {
    /// The standard layout under `tmp`.
    pub fn in_dir(tmp: &Path, shim: &Path, sandbox_image: &str, snippet: Snippet) -> CriConfig {
        CriConfig {
            root: tmp.join("root"),
            state: tmp.join("state"),
            grpc_address: tmp.join("containerd.sock"),
            ttrpc_address: tmp.join("containerd.sock.ttrpc"),
            opt_path: tmp.join("opt"),
            cni_bin_dir: PathBuf::from(CNI_BIN_DIR),
            cni_conf_dir: tmp.join("cni").join("net.d"),
            sandbox_image: sandbox_image.to_string(),
            shim: shim.to_path_buf(),
            snippet,
            pod_annotations: Vec::new(),
            container_annotations: Vec::new(),
        }
    }

    /// The daemon config: our base (private paths, CRI with `restrict_oom_score_adj`, the test's
    /// CNI dirs and sandbox image, netns under the state dir, and the stock default runtime
    /// `runc` of `containerd config default`, i.e. the Go shim from PATH) merged with the
    /// snippet's text.
    ///
    /// The stock runtime must be there: the side-by-side snippet adds a runtime next to it, and
    /// containerd 1.6 refuses to load CRI ("no corresponding runtime configured in
    /// `containerd.runtimes` for `containerd` `default_runtime_name = \"runc\"`") when the
    /// snippet is the whole config.
    ///
    /// NRI is disabled: containerd 2.x enables it with a machine-wide socket
    /// (`/var/run/nri/nri.sock`) that concurrent daemons would fight over. containerd 2.x
    /// migrates this version 2 config itself.
    /// Returns the TOML text and the runtime handler the snippet defines.
    pub fn render(&self) -> (String, RuntimeHandler) {
        let snippet_path = self.snippet.path();
        let text = std::fs::read_to_string(&snippet_path)
            .unwrap_or_else(|e| panic!("read packaging snippet {}: {e}", snippet_path.display()));
        self.render_with_snippet(&text)
    }

    /// [`CriConfig::render`] with the snippet's text given.
    pub fn render_with_snippet(&self, snippet_text: &str) -> (String, RuntimeHandler) {
        let q = |p: &Path| toml_string(&p.to_string_lossy());
        let base = format!(
            "version = 2\n\
             root = {root}\n\
             state = {state}\n\
             disabled_plugins = [\"io.containerd.nri.v1.nri\"]\n\
             [grpc]\n  address = {grpc}\n\
             [ttrpc]\n  address = {ttrpc}\n\
             [debug]\n  level = \"debug\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = {opt}\n\
             [plugins.\"{CRI_PLUGIN_V2}\"]\n\
             \x20 sandbox_image = {image}\n\
             \x20 restrict_oom_score_adj = true\n\
             \x20 netns_mounts_under_state_dir = true\n\
             \x20 stream_server_address = \"127.0.0.1\"\n\
             \x20 stream_server_port = \"0\"\n\
             \x20 enable_selinux = false\n\
             \x20 disable_apparmor = true\n\
             \x20 stats_collect_period = 1\n\
             [plugins.\"{CRI_PLUGIN_V2}\".cni]\n\
             \x20 bin_dir = {cni_bin}\n\
             \x20 conf_dir = {cni_conf}\n\
             \x20 max_conf_num = 1\n\
             [plugins.\"{CRI_PLUGIN_V2}\".containerd]\n\
             \x20 snapshotter = \"overlayfs\"\n\
             \x20 default_runtime_name = \"runc\"\n\
             [plugins.\"{CRI_PLUGIN_V2}\".containerd.runtimes.runc]\n\
             \x20 runtime_type = \"io.containerd.runc.v2\"\n",
            root = q(&self.root),
            state = q(&self.state),
            grpc = q(&self.grpc_address),
            ttrpc = q(&self.ttrpc_address),
            opt = q(&self.opt_path),
            image = toml_string(&self.sandbox_image),
            cni_bin = q(&self.cni_bin_dir),
            cni_conf = q(&self.cni_conf_dir),
        );
        let mut config: Table = base.parse().expect("base CRI config is valid TOML");
        let mut snippet: Table = snippet_text
            .parse()
            .unwrap_or_else(|e| panic!("the packaging snippet is not valid TOML: {e}\n{snippet_text}"));
        match snippet.remove("version") {
            Some(Value::Integer(2)) => {}
            other => panic!("the packaging snippet is not `version = 2` (found {other:?})"),
        }
        let handler = self.point_runtimes_at_shim(&mut snippet);
        merge(&mut config, snippet, "");
        (config.to_string(), handler)
    }

    /// Rewrites `runtime_path` of the snippet's runtime to the shim under test (a runtime
    /// resolved by binary name is linked into the daemon's PATH by the daemon) and adds the
    /// annotation pass-through lists; returns the runtime the snippet defines: its only
    /// runtime, or the one it adds next to the stock `runc`.
    fn point_runtimes_at_shim(&self, snippet: &mut Table) -> RuntimeHandler {
        let containerd = table_at(snippet, &["plugins", CRI_PLUGIN_V2, "containerd"])
            .unwrap_or_else(|| panic!("the snippet configures no plugins.\"{CRI_PLUGIN_V2}\".containerd"));
        let default_name = containerd
            .get("default_runtime_name")
            .and_then(Value::as_str)
            .map(str::to_string);
        let runtimes = containerd
            .get_mut("runtimes")
            .and_then(Value::as_table_mut)
            .expect("the snippet configures no runtimes");
        let ours: Vec<String> = if runtimes.len() == 1 {
            runtimes.keys().cloned().collect()
        } else {
            runtimes.keys().filter(|k| *k != "runc").cloned().collect()
        };
        assert_eq!(
            ours.len(),
            1,
            "expected the snippet to configure one runtime, or one next to the stock runc: {runtimes:?}"
        );
        let name = ours[0].clone();
        let rt = runtimes
            .get_mut(&name)
            .and_then(Value::as_table_mut)
            .expect("the runtime is a table");
        let runtime_type = rt
            .get("runtime_type")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("runtime {name} of the snippet has no runtime_type"))
            .to_string();
        let resolution = match rt.get("runtime_path").and_then(Value::as_str) {
            Some(p) => {
                let packaged = p.to_string();
                rt.insert(
                    "runtime_path".into(),
                    Value::String(self.shim.to_string_lossy().into_owned()),
                );
                ShimResolution::Path(packaged)
            }
            None => {
                assert_ne!(
                    runtime_type, "io.containerd.runc.v2",
                    "runtime {name} would resolve to the Go shim's binary name"
                );
                ShimResolution::BinaryName(binary_name(&runtime_type))
            }
        };
        let strings = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
        if !self.pod_annotations.is_empty() {
            rt.insert("pod_annotations".into(), strings(&self.pod_annotations));
        }
        if !self.container_annotations.is_empty() {
            rt.insert("container_annotations".into(), strings(&self.container_annotations));
        }
        RuntimeHandler {
            is_default: default_name.as_deref() == Some(name.as_str()),
            name,
            resolution,
        }
    }
}

fn table_at<'a>(t: &'a mut Table, path: &[&str]) -> Option<&'a mut Table> {
    let mut cur = t;
    for key in path {
        cur = cur.get_mut(*key)?.as_table_mut()?;
    }
    Some(cur)
}

/// Deep merge: tables are merged key by key; any other value of `from` replaces the one in
/// `into` (a snippet setting a key our base sets wins; it is the product's configuration).
fn merge(into: &mut Table, from: Table, at: &str) {
    for (k, v) in from {
        let here = format!("{at}.{k}");
        match (into.get_mut(&k), v) {
            (Some(Value::Table(dst)), Value::Table(src)) => merge(dst, src, &here),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// Where Debian's containernetworking-plugins installs bridge, host-local and loopback.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// A CNI network of our own: a bridge without an address (no gateway, no default route, no
/// masquerading) and host-local addresses from a subnet of our own.
#[derive(Debug, Clone)]
pub struct CniNetwork {
    /// Network name (also the prefix of CNI's result cache files).
    pub name: String,
    /// Linux bridge name (at most 15 bytes).
    pub bridge: String,
    /// `a.b.c.0/24`.
    pub subnet: String,
    /// The first three octets of the subnet (`a.b.c.`), to check pod addresses.
    pub prefix: String,
    /// host-local's data dir.
    pub ipam_dir: PathBuf,
}

impl CniNetwork {
    /// A network for one daemon: names from the unique `tag`, the subnet `10.234.<n>.0/24`
    /// where `n` is `index` modulo 256.
    pub fn new(tag: &str, index: u32, ipam_dir: &Path) -> CniNetwork {
        let n = index % 256;
        let bridge = format!("e2ecri{tag}");
        assert!(bridge.len() <= 15, "bridge name {bridge} is too long");
        CniNetwork {
            name: format!("e2e-cri-{tag}"),
            bridge,
            subnet: format!("10.234.{n}.0/24"),
            prefix: format!("10.234.{n}."),
            ipam_dir: ipam_dir.to_path_buf(),
        }
    }

    /// The `.conflist` text.
    pub fn conflist(&self) -> String {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": self.name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": false,
                    "isDefaultGateway": false,
                    "ipMasq": false,
                    "hairpinMode": false,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{ "subnet": self.subnet }]],
                        "dataDir": self.ipam_dir,
                    },
                },
                { "type": "loopback" },
            ],
        })
        .to_string()
    }
}

fn toml_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(snippet: Snippet) -> CriConfig {
        CriConfig::in_dir(
            Path::new("/tmp/x"),
            Path::new("/opt/shim"),
            "e2e.local/pause:1",
            snippet,
        )
    }

    #[test]
    fn side_by_side_snippet_is_merged_with_the_shim_path_replaced() {
        let mut c = cfg(Snippet::SideBySide);
        c.pod_annotations = vec!["io.containerd.runc.v2.group".into()];
        let (text, h) = c.render();
        assert_eq!(h.name, "runc-rs");
        assert!(!h.is_default);
        assert_eq!(h.request_name(), "runc-rs");
        assert_eq!(
            h.resolution,
            ShimResolution::BinaryName("containerd-shim-runc-rs-v2".into())
        );
        let t: Table = text.parse().expect("rendered config parses");
        assert_eq!(t["version"].as_integer(), Some(2));
        let cri = t["plugins"][CRI_PLUGIN_V2].as_table().expect("cri table");
        assert_eq!(cri["restrict_oom_score_adj"].as_bool(), Some(true));
        assert_eq!(cri["sandbox_image"].as_str(), Some("e2e.local/pause:1"));
        assert_eq!(cri["cni"]["conf_dir"].as_str(), Some("/tmp/x/cni/net.d"));
        let rt = &cri["containerd"]["runtimes"]["runc-rs"];
        assert_eq!(rt["runtime_type"].as_str(), Some("io.containerd.runc-rs.v2"));
        assert!(rt.get("runtime_path").is_none(), "{text}");
        assert_eq!(rt["pod_annotations"].as_array().map(Vec::len), Some(1), "{text}");
        let stock = &cri["containerd"]["runtimes"]["runc"];
        assert_eq!(stock["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
        assert_eq!(binary_name("io.containerd.runc.v2"), "containerd-shim-runc-v2");
        assert_eq!(cri["containerd"]["snapshotter"].as_str(), Some("overlayfs"));
        assert!(!text.contains("/usr/local/"), "{text}");
    }

    #[test]
    fn replace_snippet_makes_the_default_runtime_ours() {
        let (text, h) = cfg(Snippet::Replace).render();
        assert_eq!(h.name, "runc");
        assert!(h.is_default);
        assert_eq!(h.request_name(), "");
        let t: Table = text.parse().expect("rendered config parses");
        let ctd = &t["plugins"][CRI_PLUGIN_V2]["containerd"];
        assert_eq!(ctd["default_runtime_name"].as_str(), Some("runc"));
        assert_eq!(ctd["snapshotter"].as_str(), Some("overlayfs"));
        assert_eq!(ctd["runtimes"]["runc"]["runtime_path"].as_str(), Some("/opt/shim"));
        assert_eq!(
            h.resolution,
            ShimResolution::Path("/usr/local/bin/containerd-shim-runc-v2".into())
        );
    }

    #[test]
    fn cni_conflist_has_no_gateway_and_no_masquerade() {
        let n = CniNetwork::new("1a2b3", 7, Path::new("/tmp/x/ipam"));
        let v: serde_json::Value = serde_json::from_str(&n.conflist()).expect("json");
        let br = &v["plugins"][0];
        assert_eq!(br["type"], "bridge");
        assert_eq!(br["bridge"], "e2ecri1a2b3");
        assert_eq!(br["isGateway"], false);
        assert_eq!(br["isDefaultGateway"], false);
        assert_eq!(br["ipMasq"], false);
        assert_eq!(br["ipam"]["ranges"][0][0]["subnet"], "10.234.7.0/24");
        assert!(br["ipam"].get("routes").is_none());
        assert_eq!(v["plugins"][1]["type"], "loopback");
    }
}
