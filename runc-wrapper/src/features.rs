//! `runc features`: what the runtime supports, as JSON (runc 1.1+).

use crate::{Invocation, Op, Runc};

impl Runc {
    /// `features`, without any global flag (so without a log: failures
    /// report runc's exit status and output). Its stdout is the JSON
    /// document, to be passed through as is.
    pub fn features(&self) -> Invocation {
        Invocation::new(Op::Features, self.binary.clone(), vec!["features".into()], None)
    }
}

#[cfg(test)]
mod tests {
    use crate::fixtures::runc;
    use crate::Op;
    use std::path::Path;

    #[test]
    fn no_global_flags() {
        let inv = runc().features();
        assert_eq!(inv.op, Op::Features);
        assert_eq!(inv.program, Path::new("/usr/sbin/runc"));
        assert_eq!(inv.args, ["features"]);
        assert_eq!(inv.log, None);
    }
}
