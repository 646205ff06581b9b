//! The few facts the shim reads from a bundle's `config.json`.
//!
//! Only annotations (shim grouping) and the Linux namespaces (the kill-all rule) are
//! read, with a lenient model: fields we don't use are skipped, so specs written by
//! any containerd version parse.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use serde::Deserialize;

/// Annotation that groups containers into one shim (containerd's runc shim).
pub const GROUP_ANNOTATION: &str = "io.containerd.runc.v2.group";
/// Annotation that CRI puts on every container of a pod.
pub const SANDBOX_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

#[derive(Debug, Default, Deserialize)]
pub struct Spec {
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    #[serde(default)]
    pub linux: Option<Linux>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Linux {
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub path: Option<String>,
}

impl Spec {
    pub fn load(bundle: &Path) -> io::Result<Spec> {
        let data = std::fs::read(bundle.join("config.json"))?;
        Self::parse(&data)
    }

    pub fn parse(data: &[u8]) -> io::Result<Spec> {
        serde_json::from_slice(data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// The key whose hash names the shim socket: the group annotation, then the
    /// CRI sandbox id, then the container id (in that order).
    pub fn group_key<'a>(&'a self, id: &'a str) -> &'a str {
        self.annotations
            .get(GROUP_ANNOTATION)
            .or_else(|| self.annotations.get(SANDBOX_ANNOTATION))
            .map(String::as_str)
            .unwrap_or(id)
    }

    /// Whether the container has a pid namespace of its own. Without one, processes
    /// left behind when the init exits must be killed by the shim.
    pub fn has_private_pid_namespace(&self) -> bool {
        self.linux.as_ref().is_some_and(|l| {
            l.namespaces
                .iter()
                .any(|n| n.kind == "pid" && n.path.as_deref().unwrap_or("").is_empty())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_key_order() {
        let s =
            Spec::parse(br#"{"annotations":{"io.kubernetes.cri.sandbox-id":"sb","io.containerd.runc.v2.group":"g"}}"#)
                .unwrap();
        assert_eq!(s.group_key("id"), "g");
        let s = Spec::parse(br#"{"annotations":{"io.kubernetes.cri.sandbox-id":"sb"}}"#).unwrap();
        assert_eq!(s.group_key("id"), "sb");
        let s = Spec::parse(br#"{"ociVersion":"1.1.0","process":{"args":["sh"]}}"#).unwrap();
        assert_eq!(s.group_key("id"), "id");
    }

    #[test]
    fn pid_namespace_rule() {
        let private = Spec::parse(br#"{"linux":{"namespaces":[{"type":"mount"},{"type":"pid"}]}}"#).unwrap();
        assert!(private.has_private_pid_namespace());
        let joined = Spec::parse(br#"{"linux":{"namespaces":[{"type":"pid","path":"/proc/1/ns/pid"}]}}"#).unwrap();
        assert!(!joined.has_private_pid_namespace());
        let host = Spec::parse(br#"{"linux":{"namespaces":[{"type":"network"}]}}"#).unwrap();
        assert!(!host.has_private_pid_namespace());
        assert!(!Spec::default().has_private_pid_namespace());
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let s = Spec::parse(br#"{"linux":{"namespaces":[{"type":"time"}],"seccomp":{"x":1},"future":[]},"hooks":{}}"#)
            .unwrap();
        assert_eq!(s.linux.unwrap().namespaces.len(), 1);
    }
}
