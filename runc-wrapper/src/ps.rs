//! `runc ps`: the pids of every process in the container.

use crate::{Error, Invocation, Op, Runc};

impl Runc {
    /// `ps --format json ID`; parse its stdout with [`parse_ps`].
    pub fn ps(&self, id: &str) -> Invocation {
        self.invocation(Op::Ps, vec!["ps".into(), "--format".into(), "json".into(), id.into()])
    }
}

/// Parses `runc ps --format json`: a JSON array of pids; `null` or empty
/// output is no process.
pub fn parse_ps(stdout: &[u8]) -> Result<Vec<u32>, Error> {
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    serde_json::from_slice::<Option<Vec<u32>>>(stdout)
        .map(Option::unwrap_or_default)
        .map_err(|source| Error::Parse {
            what: "runc ps output",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{runc, verb_args};

    #[test]
    fn argv() {
        let inv = runc().ps("c1");
        assert_eq!(inv.op, Op::Ps);
        assert_eq!(verb_args(&inv), ["ps", "--format", "json", "c1"]);
    }

    #[test]
    fn parses_pids() {
        assert_eq!(parse_ps(b"[5299,5310,5311]\n").unwrap(), [5299, 5310, 5311]);
        assert_eq!(parse_ps(b"[]").unwrap(), Vec::<u32>::new());
        assert_eq!(parse_ps(b"null\n").unwrap(), Vec::<u32>::new());
        assert_eq!(parse_ps(b"").unwrap(), Vec::<u32>::new());
        assert_eq!(parse_ps(b" \n").unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn rejects_garbage() {
        for bad in [&b"[1,-2]"[..], b"{\"pids\":[1]}", b"container does not exist"] {
            assert!(matches!(
                parse_ps(bad),
                Err(Error::Parse {
                    what: "runc ps output",
                    ..
                })
            ));
        }
    }
}
