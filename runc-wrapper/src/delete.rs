//! `runc delete`: remove a stopped (or, forced, any) container's state.

use crate::{Invocation, Op, Runc};

impl Runc {
    /// `delete [--force] ID`.
    pub fn delete(&self, id: &str, force: bool) -> Invocation {
        let mut args = vec!["delete".into()];
        if force {
            args.push("--force".into());
        }
        args.push(id.into());
        self.invocation(Op::Delete, args)
    }
}

#[cfg(test)]
mod tests {
    use crate::fixtures::{runc, verb_args};
    use crate::Op;

    #[test]
    fn plain() {
        let inv = runc().delete("c1", false);
        assert_eq!(inv.op, Op::Delete);
        assert_eq!(verb_args(&inv), ["delete", "c1"]);
    }

    #[test]
    fn forced() {
        assert_eq!(verb_args(&runc().delete("c1", true)), ["delete", "--force", "c1"]);
    }
}
