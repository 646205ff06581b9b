//! `runc kill`: signal the container's init, or every process in it.

use crate::{Invocation, Op, Runc};

impl Runc {
    /// `kill [--all] ID SIGNUM`; the op is [`Op::KillAll`] with `all`.
    pub fn kill(&self, id: &str, signal: u32, all: bool) -> Invocation {
        let mut args = vec!["kill".into()];
        if all {
            args.push("--all".into());
        }
        args.push(id.into());
        args.push(signal.to_string().into());
        let op = if all { Op::KillAll } else { Op::Kill };
        self.invocation(op, args)
    }
}

#[cfg(test)]
mod tests {
    use crate::fixtures::{runc, verb_args};
    use crate::Op;

    #[test]
    fn init_only() {
        let inv = runc().kill("c1", 15, false);
        assert_eq!(inv.op, Op::Kill);
        assert_eq!(verb_args(&inv), ["kill", "c1", "15"]);
    }

    #[test]
    fn all() {
        let inv = runc().kill("c1", 9, true);
        assert_eq!(inv.op, Op::KillAll);
        assert_eq!(verb_args(&inv), ["kill", "--all", "c1", "9"]);
    }
}
