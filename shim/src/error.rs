//! The shim's error type and its one mapping onto ttrpc status codes.
//!
//! Messages follow the Go shim's wording, including the trailing `: <class>` that
//! Go's errdefs adds for classified errors, because users see them through `ctr`
//! and other tools match on them.

use ttrpc::Code;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0}: not found")]
    NotFound(String),
    #[error("{0}: already exists")]
    AlreadyExists(String),
    #[error("{0}: failed precondition")]
    FailedPrecondition(String),
    #[error("{0}: invalid argument")]
    InvalidArgument(String),
    #[error("{0}: not implemented")]
    Unimplemented(String),
    #[error("{0}: context deadline exceeded")]
    DeadlineExceeded(String),
    /// Errors the Go shim returns unclassified (state-machine refusals, runc failures).
    #[error("{0}")]
    Unknown(String),
}

impl Error {
    pub fn code(&self) -> Code {
        match self {
            Error::NotFound(_) => Code::NOT_FOUND,
            Error::AlreadyExists(_) => Code::ALREADY_EXISTS,
            Error::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            Error::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            Error::Unimplemented(_) => Code::UNIMPLEMENTED,
            Error::DeadlineExceeded(_) => Code::DEADLINE_EXCEEDED,
            Error::Unknown(_) => Code::UNKNOWN,
        }
    }

    pub fn unknown(msg: impl Into<String>) -> Error {
        Error::Unknown(msg.into())
    }

    pub fn container_not_created() -> Error {
        Error::NotFound("container not created".into())
    }

    pub fn process_not_found(exec_id: &str) -> Error {
        Error::NotFound(format!("process does not exist {exec_id}"))
    }

    pub fn already_finished() -> Error {
        Error::NotFound("process already finished".into())
    }
}

impl From<runc_wrapper::Error> for Error {
    fn from(e: runc_wrapper::Error) -> Self {
        Error::Unknown(e.to_string())
    }
}

/// Maps a failed `runc kill` the way the Go shim does: a process that is already
/// gone is NOT_FOUND, so CRI and Docker treat the kill as done.
pub fn kill_error(e: runc_wrapper::Error) -> Error {
    if e.is_already_finished() {
        Error::already_finished()
    } else if e.is_not_exist() {
        Error::NotFound("no such container".into())
    } else {
        Error::Unknown(format!("unknown error after kill: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes_match_go() {
        let e = Error::container_not_created();
        assert_eq!(e.to_string(), "container not created: not found");
        assert_eq!(e.code(), Code::NOT_FOUND);
        let e = Error::AlreadyExists("id e5".into());
        assert_eq!(e.to_string(), "id e5: already exists");
        assert_eq!(e.code(), Code::ALREADY_EXISTS);
        let e = Error::unknown("cannot delete a running process");
        assert_eq!(e.to_string(), "cannot delete a running process");
        assert_eq!(e.code(), Code::UNKNOWN);
        assert_eq!(
            Error::process_not_found("nosuch").to_string(),
            "process does not exist nosuch: not found"
        );
    }
}
