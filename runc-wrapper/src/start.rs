//! `runc start`: run the user's program in a created container.

use crate::{Invocation, Op, Runc};

impl Runc {
    /// `start ID`.
    pub fn start(&self, id: &str) -> Invocation {
        self.invocation(Op::Start, vec!["start".into(), id.into()])
    }
}

#[cfg(test)]
mod tests {
    use crate::fixtures::{runc, verb_args};
    use crate::Op;

    #[test]
    fn argv() {
        let inv = runc().start("c1");
        assert_eq!(inv.op, Op::Start);
        assert_eq!(verb_args(&inv), ["start", "c1"]);
    }
}
