//! `google.protobuf.Any` with the bare type URLs containerd uses.
//!
//! containerd 1.6 resolves `Any`s by exact registered name, so everything we
//! send carries a bare name (`containerd.events.TaskExit`), never the
//! `type.googleapis.com/` prefix that protobuf's `Any::pack` adds. What we
//! receive is matched leniently by [`type_matches`].

use std::fmt;

use protobuf::Message;

use crate::Any;

/// `containerd.runc.v1.Options`: runtime options (start stdin, Create).
pub const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";
/// `containerd.runc.v1.CheckpointOptions`: Checkpoint options.
pub const RUNC_CHECKPOINT_OPTIONS: &str = "containerd.runc.v1.CheckpointOptions";
/// `containerd.runc.v1.ProcessDetails`: `ProcessInfo.info` of execs in Pids.
pub const RUNC_PROCESS_DETAILS: &str = "containerd.runc.v1.ProcessDetails";

/// Event on topic `/tasks/create`.
pub const TASK_CREATE: &str = "containerd.events.TaskCreate";
/// Event on topic `/tasks/start`.
pub const TASK_START: &str = "containerd.events.TaskStart";
/// Event on topic `/tasks/delete`.
pub const TASK_DELETE: &str = "containerd.events.TaskDelete";
/// Event on topic `/tasks/exit`.
pub const TASK_EXIT: &str = "containerd.events.TaskExit";
/// Event on topic `/tasks/oom`.
pub const TASK_OOM: &str = "containerd.events.TaskOOM";
/// Event on topic `/tasks/exec-added`.
pub const TASK_EXEC_ADDED: &str = "containerd.events.TaskExecAdded";
/// Event on topic `/tasks/exec-started`.
pub const TASK_EXEC_STARTED: &str = "containerd.events.TaskExecStarted";
/// Event on topic `/tasks/paused`.
pub const TASK_PAUSED: &str = "containerd.events.TaskPaused";
/// Event on topic `/tasks/resumed`.
pub const TASK_RESUMED: &str = "containerd.events.TaskResumed";
/// Event on topic `/tasks/checkpointed`.
pub const TASK_CHECKPOINTED: &str = "containerd.events.TaskCheckpointed";

/// Stats on a cgroup v1 host.
pub const CGROUPS_V1_METRICS: &str = "io.containerd.cgroups.v1.Metrics";
/// Stats on a cgroup v2 host.
pub const CGROUPS_V2_METRICS: &str = "io.containerd.cgroups.v2.Metrics";

/// JSON OCI `Process` (Exec spec).
pub const OCI_PROCESS: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/// JSON OCI `LinuxResources` (Update resources).
pub const OCI_LINUX_RESOURCES: &str = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";
/// JSON output of `runc features` (`RuntimeInfo.features`).
pub const OCI_FEATURES: &str = "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

/// Why an `Any` could not be unpacked.
#[derive(Debug)]
pub enum AnyError {
    /// The type URL names another message.
    WrongType {
        /// The type we asked for.
        expected: String,
        /// The type URL found in the `Any`.
        actual: String,
    },
    /// The type matched but the value is not a valid message.
    Decode(protobuf::Error),
}

impl fmt::Display for AnyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnyError::WrongType { expected, actual } => {
                write!(f, "unexpected type {actual:?}, want {expected:?}")
            }
            AnyError::Decode(_) => f.write_str("invalid message in Any"),
        }
    }
}

impl std::error::Error for AnyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AnyError::WrongType { .. } => None,
            AnyError::Decode(e) => Some(e),
        }
    }
}

/// Encodes `msg` into an `Any` with the bare `type_url` given.
pub fn pack(type_url: &str, msg: &impl Message) -> Result<Any, protobuf::Error> {
    Ok(pack_bytes(type_url, msg.write_to_bytes()?))
}

/// Wraps already encoded bytes (protobuf or JSON) with `type_url`.
pub fn pack_bytes(type_url: &str, value: Vec<u8>) -> Any {
    let mut any = Any::new();
    any.type_url = type_url.to_owned();
    any.value = value;
    any
}

/// Whether the type URL `actual` names `expected`: the whole string is equal,
/// or the part after its last `/` is (so `type.googleapis.com/X` matches `X`).
pub fn type_matches(actual: &str, expected: &str) -> bool {
    actual == expected || actual.rsplit_once('/').is_some_and(|(_, name)| name == expected)
}

/// Decodes the message in `any` after checking its type against `expected`
/// with [`type_matches`].
pub fn unpack<M: Message>(any: &Any, expected: &str) -> Result<M, AnyError> {
    if !type_matches(&any.type_url, expected) {
        return Err(AnyError::WrongType {
            expected: expected.to_owned(),
            actual: any.type_url.clone(),
        });
    }
    M::parse_from_bytes(&any.value).map_err(AnyError::Decode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runc_options::Options;

    /// Any{type_url, value = Options{binary_name}} built byte by byte, as
    /// containerd 1.6 writes it on `start`'s stdin.
    fn stdin_bytes(binary_name: &str) -> Vec<u8> {
        let mut options = vec![0x32, binary_name.len() as u8];
        options.extend_from_slice(binary_name.as_bytes());
        let mut any = vec![0x0a, 0x1a];
        any.extend_from_slice(b"containerd.runc.v1.Options");
        any.extend_from_slice(&[0x12, options.len() as u8]);
        any.extend_from_slice(&options);
        any
    }

    #[test]
    fn decodes_containerd_16_start_stdin() {
        // Same shape as the observed 51-byte stdin: 0a1a ... 12 15 32 13 ...
        let bytes = stdin_bytes("/usr/local/bin/runc");
        assert_eq!(bytes.len(), 51);
        assert_eq!(&bytes[28..32], &[0x12, 0x15, 0x32, 0x13]);
        let any = Any::parse_from_bytes(&bytes).unwrap();
        assert_eq!(any.type_url, RUNC_OPTIONS);
        let opts: Options = unpack(&any, RUNC_OPTIONS).unwrap();
        assert_eq!(opts.binary_name, "/usr/local/bin/runc");

        let bytes = stdin_bytes("/run/ctd-example/runcwrap");
        assert_eq!(&bytes[28..32], &[0x12, 0x1b, 0x32, 0x19]);
        let any = Any::parse_from_bytes(&bytes).unwrap();
        let opts: Options = unpack(&any, RUNC_OPTIONS).unwrap();
        assert_eq!(opts.binary_name, "/run/ctd-example/runcwrap");
        assert_eq!(opts, {
            let mut o = Options::new();
            o.binary_name = "/run/ctd-example/runcwrap".into();
            o
        });
    }

    #[test]
    fn decodes_options_any_without_value() {
        // Without --runc-binary containerd sends the type URL only.
        let mut bytes = vec![0x0a, 0x1a];
        bytes.extend_from_slice(b"containerd.runc.v1.Options");
        let any = Any::parse_from_bytes(&bytes).unwrap();
        let opts: Options = unpack(&any, RUNC_OPTIONS).unwrap();
        assert_eq!(opts, Options::new());
    }

    #[test]
    fn type_matches_bare_prefixed_and_wrong() {
        assert!(type_matches(RUNC_OPTIONS, RUNC_OPTIONS));
        assert!(type_matches(
            "type.googleapis.com/containerd.runc.v1.Options",
            RUNC_OPTIONS
        ));
        assert!(type_matches("example.com/a/containerd.runc.v1.Options", RUNC_OPTIONS));
        assert!(type_matches(OCI_PROCESS, OCI_PROCESS));
        assert!(!type_matches("containerd.runc.v1.CheckpointOptions", RUNC_OPTIONS));
        assert!(!type_matches("containerd.runc.v1.Options2", RUNC_OPTIONS));
        assert!(!type_matches("xcontainerd.runc.v1.Options", RUNC_OPTIONS));
        assert!(!type_matches("containerd.runc.v1.Options/", RUNC_OPTIONS));
        assert!(!type_matches("", RUNC_OPTIONS));
        assert!(!type_matches("Process", OCI_PROCESS));
    }

    #[test]
    fn unpack_reports_wrong_type() {
        let any = pack_bytes(RUNC_CHECKPOINT_OPTIONS, Vec::new());
        match unpack::<Options>(&any, RUNC_OPTIONS) {
            Err(AnyError::WrongType { expected, actual }) => {
                assert_eq!(expected, RUNC_OPTIONS);
                assert_eq!(actual, RUNC_CHECKPOINT_OPTIONS);
            }
            other => panic!("unexpected {other:?}"),
        }
        let err = unpack::<Options>(&any, RUNC_OPTIONS).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unexpected type \"containerd.runc.v1.CheckpointOptions\", want \"containerd.runc.v1.Options\""
        );
    }

    #[test]
    fn unpack_reports_decode_error() {
        // Field 6 announces 5 bytes, only 1 follows.
        let any = pack_bytes(RUNC_OPTIONS, vec![0x32, 0x05, b'x']);
        let err = unpack::<Options>(&any, RUNC_OPTIONS).unwrap_err();
        assert!(matches!(err, AnyError::Decode(_)), "{err:?}");
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn pack_uses_bare_type_url_and_round_trips() {
        let mut opts = Options::new();
        opts.root = "/run/r".into();
        opts.systemd_cgroup = true;
        let any = pack(RUNC_OPTIONS, &opts).unwrap();
        assert_eq!(any.type_url, "containerd.runc.v1.Options");
        assert!(!any.type_url.contains('/'));
        assert_eq!(any.value, opts.write_to_bytes().unwrap());
        let back: Options = unpack(&any, RUNC_OPTIONS).unwrap();
        assert_eq!(back, opts);

        let wire = any.write_to_bytes().unwrap();
        assert_eq!(&wire[..2], &[0x0a, 0x1a]);
        assert_eq!(&wire[2..28], RUNC_OPTIONS.as_bytes());
    }

    #[test]
    fn pack_bytes_keeps_json_untouched() {
        let json = br#"{"args":["sh"],"terminal":false}"#.to_vec();
        let any = pack_bytes(OCI_PROCESS, json.clone());
        assert_eq!(any.type_url, OCI_PROCESS);
        assert_eq!(any.value, json);
    }
}
