//! Command-line flags, parsed the way Go's `flag` package does for the Go shim.
//!
//! Single or double dash, `-f value` or `-f=value`; boolean flags take no separate
//! value; parsing stops at the first word that is not a flag, which is the action.
//! Unknown flags are tolerated (future containerd releases add flags): they are
//! taken as booleans unless written `-f=value`.

use std::fmt;

/// What the binary was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// No action word: run as the long-lived daemon.
    Serve,
    Start,
    Delete,
    /// `-v` / `-version`.
    Version,
    /// `-info` (containerd 2.x): print a RuntimeInfo.
    Info,
    /// Any other word, e.g. the legacy `publish`.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flags {
    pub namespace: String,
    pub id: String,
    pub address: String,
    pub publish_binary: String,
    pub bundle: String,
    pub socket: String,
    pub debug_socket: String,
    pub debug: bool,
    pub action: Action,
    /// Flags we did not recognise (kept for a log line).
    pub unknown: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct FlagError(pub String);

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FlagError {}

const VALUE_FLAGS: &[&str] = &[
    "namespace",
    "id",
    "address",
    "publish-binary",
    "bundle",
    "socket",
    "debug-socket",
];
const BOOL_FLAGS: &[&str] = &["debug", "v", "version", "info"];

fn parse_bool(name: &str, value: &str) -> Result<bool, FlagError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(FlagError(format!("invalid boolean value {value:?} for -{name}"))),
    }
}

impl Flags {
    pub fn parse<I, S>(args: I) -> Result<Flags, FlagError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        let mut flags = Flags {
            namespace: String::new(),
            id: String::new(),
            address: String::new(),
            publish_binary: "containerd".to_string(),
            bundle: String::new(),
            socket: String::new(),
            debug_socket: String::new(),
            debug: false,
            action: Action::Serve,
            unknown: Vec::new(),
        };
        let mut version = false;
        let mut info = false;
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            i += 1;
            if arg == "--" {
                break;
            }
            let body = match arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) {
                Some(b) if !b.is_empty() && !b.starts_with('-') && arg != "-" => b,
                _ => {
                    // First non-flag word: the action.
                    flags.action = match arg.as_str() {
                        "start" => Action::Start,
                        "delete" => Action::Delete,
                        other => Action::Other(other.to_string()),
                    };
                    break;
                }
            };
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            if VALUE_FLAGS.contains(&name) {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        let v = args
                            .get(i)
                            .ok_or_else(|| FlagError(format!("flag needs an argument: -{name}")))?;
                        i += 1;
                        v.clone()
                    }
                };
                match name {
                    "namespace" => flags.namespace = value,
                    "id" => flags.id = value,
                    "address" => flags.address = value,
                    "publish-binary" => flags.publish_binary = value,
                    "bundle" => flags.bundle = value,
                    "socket" => flags.socket = value,
                    _ => flags.debug_socket = value,
                }
            } else if BOOL_FLAGS.contains(&name) {
                let value = match inline {
                    Some(v) => parse_bool(name, &v)?,
                    None => true,
                };
                match name {
                    "debug" => flags.debug = value,
                    "v" | "version" => version = value,
                    _ => info = value,
                }
            } else {
                flags.unknown.push(arg.clone());
            }
        }
        if version {
            flags.action = Action::Version;
        } else if info {
            flags.action = Action::Info;
        }
        Ok(flags)
    }

    /// The checks the Go shim makes before any action that touches containers.
    pub fn require_namespace(&self) -> Result<(), FlagError> {
        if self.namespace.is_empty() {
            return Err(FlagError("shim namespace cannot be empty".to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_start_argv() {
        let f = Flags::parse([
            "-namespace",
            "ns1",
            "-address",
            "/run/c.sock",
            "-publish-binary",
            "/usr/bin/containerd",
            "-id",
            "c1",
            "-debug",
            "start",
        ])
        .unwrap();
        assert_eq!(f.namespace, "ns1");
        assert_eq!(f.address, "/run/c.sock");
        assert_eq!(f.publish_binary, "/usr/bin/containerd");
        assert_eq!(f.id, "c1");
        assert!(f.debug);
        assert_eq!(f.action, Action::Start);
    }

    #[test]
    fn all_flag_forms() {
        let f = Flags::parse([
            "--namespace=a",
            "-id=b",
            "--address",
            "c",
            "-bundle",
            "/b",
            "-debug=false",
            "delete",
        ])
        .unwrap();
        assert_eq!((f.namespace.as_str(), f.id.as_str()), ("a", "b"));
        assert_eq!(f.address, "c");
        assert_eq!(f.bundle, "/b");
        assert!(!f.debug);
        assert_eq!(f.action, Action::Delete);
    }

    #[test]
    fn daemon_has_no_action() {
        let f = Flags::parse(["-namespace", "n", "-id", "i", "-address", "a"]).unwrap();
        assert_eq!(f.action, Action::Serve);
    }

    #[test]
    fn version_and_info() {
        assert_eq!(Flags::parse(["-v"]).unwrap().action, Action::Version);
        assert_eq!(Flags::parse(["--version"]).unwrap().action, Action::Version);
        assert_eq!(Flags::parse(["-info"]).unwrap().action, Action::Info);
    }

    #[test]
    fn action_stops_parsing() {
        let f = Flags::parse(["-namespace", "n", "start", "-id", "x"]).unwrap();
        assert_eq!(f.action, Action::Start);
        assert_eq!(f.id, "");
    }

    #[test]
    fn unknown_flags_are_tolerated() {
        let f = Flags::parse(["-namespace", "n", "-future-flag", "-x=y", "start"]).unwrap();
        assert_eq!(f.unknown, vec!["-future-flag".to_string(), "-x=y".to_string()]);
        assert_eq!(f.action, Action::Start);
    }

    #[test]
    fn missing_value_and_bad_bool() {
        assert!(Flags::parse(["-namespace"]).is_err());
        assert!(Flags::parse(["-debug=maybe"]).is_err());
    }

    #[test]
    fn namespace_required() {
        let f = Flags::parse(["start"]).unwrap();
        assert!(f.require_namespace().is_err());
    }
}
