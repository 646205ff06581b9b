//! `runc resume`: thaw a paused container.

use crate::{Invocation, Op, Runc};

impl Runc {
    /// `resume ID`.
    pub fn resume(&self, id: &str) -> Invocation {
        self.invocation(Op::Resume, vec!["resume".into(), id.into()])
    }
}

#[cfg(test)]
mod tests {
    use crate::fixtures::{runc, verb_args};
    use crate::Op;

    #[test]
    fn argv() {
        let inv = runc().resume("c1");
        assert_eq!(inv.op, Op::Resume);
        assert_eq!(verb_args(&inv), ["resume", "c1"]);
    }
}
