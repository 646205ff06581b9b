//! `runc pause`: freeze every process of the container.

use crate::{Invocation, Op, Runc};

impl Runc {
    /// `pause ID`.
    pub fn pause(&self, id: &str) -> Invocation {
        self.invocation(Op::Pause, vec!["pause".into(), id.into()])
    }
}

#[cfg(test)]
mod tests {
    use crate::fixtures::{runc, verb_args};
    use crate::Op;

    #[test]
    fn argv() {
        let inv = runc().pause("c1");
        assert_eq!(inv.op, Op::Pause);
        assert_eq!(verb_args(&inv), ["pause", "c1"]);
    }
}
