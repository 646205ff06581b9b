//! `runc state`: a container's status as runc sees it.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use crate::{Error, Invocation, Op, Runc};

/// runc's view of a container (`runc state` output); missing fields are
/// left empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct State {
    /// The container id.
    pub id: String,
    /// The init's pid; 0 once it has stopped.
    pub pid: u32,
    /// `created`, `running`, `paused` or `stopped`.
    pub status: String,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The root filesystem.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339 as runc prints it.
    pub created: String,
    /// The bundle's annotations.
    #[serde(deserialize_with = "null_as_empty")]
    pub annotations: HashMap<String, String>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<HashMap<String, String>, D::Error> {
    Ok(Option::deserialize(deserializer)?.unwrap_or_default())
}

impl Runc {
    /// `state ID`; parse its stdout with [`parse_state`].
    pub fn state(&self, id: &str) -> Invocation {
        self.invocation(Op::State, vec!["state".into(), id.into()])
    }
}

/// Parses the JSON `runc state` prints.
pub fn parse_state(stdout: &[u8]) -> Result<State, Error> {
    serde_json::from_slice(stdout).map_err(|source| Error::Parse {
        what: "runc state output",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{runc, verb_args};

    #[test]
    fn argv() {
        let inv = runc().state("c1");
        assert_eq!(inv.op, Op::State);
        assert_eq!(verb_args(&inv), ["state", "c1"]);
    }

    #[test]
    fn parses_runc_output() {
        let stdout = br#"{
  "ociVersion": "1.0.2-dev",
  "id": "c1",
  "pid": 5299,
  "status": "created",
  "bundle": "/run/containerd/io.containerd.runtime.v2.task/default/c1",
  "rootfs": "/run/containerd/io.containerd.runtime.v2.task/default/c1/rootfs",
  "created": "2024-11-23T07:45:09.325815676Z",
  "owner": "",
  "annotations": {"io.kubernetes.cri.container-type": "sandbox"}
}"#;
        let state = parse_state(stdout).unwrap();
        assert_eq!(state.id, "c1");
        assert_eq!(state.pid, 5299);
        assert_eq!(state.status, "created");
        assert_eq!(
            state.bundle,
            PathBuf::from("/run/containerd/io.containerd.runtime.v2.task/default/c1")
        );
        assert!(state.rootfs.ends_with("c1/rootfs"));
        assert_eq!(state.created, "2024-11-23T07:45:09.325815676Z");
        assert_eq!(state.annotations["io.kubernetes.cri.container-type"], "sandbox");
    }

    #[test]
    fn defaults_and_null_annotations() {
        let state = parse_state(br#"{"id":"c2","status":"stopped","annotations":null}"#).unwrap();
        assert_eq!(state.pid, 0);
        assert!(state.annotations.is_empty());
        assert_eq!(state.bundle, PathBuf::new());
    }

    #[test]
    fn rejects_garbage() {
        let err = parse_state(b"container does not exist").unwrap_err();
        assert!(matches!(
            err,
            Error::Parse {
                what: "runc state output",
                ..
            }
        ));
    }
}
