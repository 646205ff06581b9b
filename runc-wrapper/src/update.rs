//! `runc update`: change a container's resource limits.

use crate::{Invocation, Op, Runc};

impl Runc {
    /// `update --resources - ID`: the caller writes the OCI `LinuxResources`
    /// JSON to runc's stdin (see [`Invocation::output_with_input`]).
    pub fn update(&self, id: &str) -> Invocation {
        self.invocation(
            Op::Update,
            vec!["update".into(), "--resources".into(), "-".into(), id.into()],
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::fixtures::{runc, verb_args};
    use crate::Op;

    #[test]
    fn argv() {
        let inv = runc().update("c1");
        assert_eq!(inv.op, Op::Update);
        assert_eq!(verb_args(&inv), ["update", "--resources", "-", "c1"]);
    }
}
