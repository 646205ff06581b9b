//! The runc runtime options (`containerd.runc.v1.Options`): decoding the `Any`
//! containerd sends, and the `options.json` / `runtime` files kept in the bundle
//! for the `delete` action.

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use protos::any::{self, AnyError};
use protos::runc_options::Options;
use protos::Any;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// runc's state root when the options name none; the namespace is appended.
pub const DEFAULT_RUNC_ROOT: &str = "/run/containerd/runc";

/// Decodes task options. Absent options, or an `Any` with an empty type URL, mean
/// defaults; any other type, or bytes that do not decode, are rejected.
pub fn decode(options: Option<&Any>) -> Result<Options, Error> {
    let Some(options) = options else {
        return Ok(Options::default());
    };
    if options.type_url.is_empty() && options.value.is_empty() {
        return Ok(Options::default());
    }
    any::unpack::<Options>(options, any::RUNC_OPTIONS).map_err(|e| match e {
        AnyError::WrongType { actual, .. } => Error::InvalidArgument(format!(
            "unsupported runtime options type {actual:?}, expected {}",
            any::RUNC_OPTIONS
        )),
        AnyError::Decode(e) => Error::InvalidArgument(format!("cannot decode {}: {e}", any::RUNC_OPTIONS)),
    })
}

/// The subset of the options the `delete` action needs, as JSON with Go's
/// snake_case names (zero values omitted, so defaults write `{}`).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionsJson {
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_pivot_root: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_new_keyring: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub shim_cgroup: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub io_uid: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub io_gid: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub binary_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub root: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub criu_path: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub systemd_cgroup: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub criu_image_path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub criu_work_path: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl From<&Options> for OptionsJson {
    fn from(o: &Options) -> Self {
        OptionsJson {
            no_pivot_root: o.no_pivot_root,
            no_new_keyring: o.no_new_keyring,
            shim_cgroup: o.shim_cgroup.clone(),
            io_uid: o.io_uid,
            io_gid: o.io_gid,
            binary_name: o.binary_name.clone(),
            root: o.root.clone(),
            criu_path: o.criu_path.clone(),
            systemd_cgroup: o.systemd_cgroup,
            criu_image_path: o.criu_image_path.clone(),
            criu_work_path: o.criu_work_path.clone(),
        }
    }
}

/// The runc binary to run: the options' `binary_name`, else `runc` from PATH.
pub fn runc_binary(binary_name: &str) -> PathBuf {
    if binary_name.is_empty() {
        PathBuf::from("runc")
    } else {
        PathBuf::from(binary_name)
    }
}

/// runc's `--root` for a namespace.
pub fn runc_root(root: &str, namespace: &str) -> PathBuf {
    let base = if root.is_empty() { DEFAULT_RUNC_ROOT } else { root };
    Path::new(base).join(namespace)
}

fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

/// Writes `options.json` and `runtime` into the bundle (read back by `delete`).
pub fn write_bundle_files(bundle: &Path, options: &Options) -> io::Result<()> {
    let json =
        serde_json::to_vec(&OptionsJson::from(options)).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    write_private(&bundle.join("options.json"), &json)?;
    write_private(&bundle.join("runtime"), options.binary_name.as_bytes())
}

/// Reads `options.json` and `runtime` back; missing or broken files mean defaults.
pub fn read_bundle_files(bundle: &Path) -> OptionsJson {
    let mut opts: OptionsJson = fs::read(bundle.join("options.json"))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default();
    if let Ok(runtime) = fs::read_to_string(bundle.join("runtime")) {
        let runtime = runtime.trim();
        if !runtime.is_empty() {
            opts.binary_name = runtime.to_string();
        }
    }
    opts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options_any(value: Vec<u8>) -> Any {
        any::pack_bytes(any::RUNC_OPTIONS, value)
    }

    #[test]
    fn absent_and_empty_mean_defaults() {
        assert_eq!(decode(None).unwrap(), Options::default());
        assert_eq!(decode(Some(&Any::default())).unwrap(), Options::default());
        assert_eq!(decode(Some(&options_any(vec![]))).unwrap(), Options::default());
    }

    #[test]
    fn decodes_binary_name_and_root() {
        let o = Options {
            binary_name: "/usr/local/bin/crun".into(),
            root: "/run/alt".into(),
            systemd_cgroup: true,
            ..Default::default()
        };
        let a = any::pack(any::RUNC_OPTIONS, &o).unwrap();
        let d = decode(Some(&a)).unwrap();
        assert_eq!(d.binary_name, "/usr/local/bin/crun");
        assert_eq!(d.root, "/run/alt");
        assert!(d.systemd_cgroup);
    }

    #[test]
    fn rejects_garbage_and_foreign_types() {
        let e = decode(Some(&options_any(vec![0xff, 0xff, 0xff]))).unwrap_err();
        assert_eq!(e.code(), ttrpc::Code::INVALID_ARGUMENT);
        let foreign = any::pack_bytes("runtimeoptions.v1.Options", vec![]);
        let e = decode(Some(&foreign)).unwrap_err();
        assert!(e.to_string().contains("runtimeoptions.v1.Options"), "{e}");
    }

    #[test]
    fn json_is_go_shaped() {
        assert_eq!(
            serde_json::to_string(&OptionsJson::from(&Options::default())).unwrap(),
            "{}"
        );
        let o = Options {
            root: "/r".into(),
            io_uid: 1000,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&OptionsJson::from(&o)).unwrap(),
            r#"{"io_uid":1000,"root":"/r"}"#
        );
    }

    #[test]
    fn bundle_files_round_trip() {
        let dir = std::env::temp_dir().join(format!("shim-opts-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let o = Options {
            binary_name: "/x/runc".into(),
            root: "/r".into(),
            ..Default::default()
        };
        write_bundle_files(&dir, &o).unwrap();
        let back = read_bundle_files(&dir);
        assert_eq!(back.binary_name, "/x/runc");
        assert_eq!(back.root, "/r");
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(read_bundle_files(&dir), OptionsJson::default());
        assert_eq!(runc_root("", "ns"), Path::new("/run/containerd/runc/ns"));
        assert_eq!(runc_binary(""), Path::new("runc"));
    }
}
