//! containerd-shim-runc-v2: a containerd runtime shim v2 for runc.
//!
//! `main` parses Go-style flags and dispatches to an action: `start` (spawn or
//! reuse a daemon and print its address), `delete` (clean up after a dead shim),
//! `-v`, `-info`, or no action at all: serve the Task API as the daemon.
#![deny(unsafe_code)]

mod attach;
mod bootstrap;
mod cgroups;
mod cleanup;
mod console;
mod container;
mod daemon;
mod error;
mod flags;
mod info;
mod logger;
mod mount;
mod options;
mod outbox;
mod pump;
mod runner;
mod service;
mod socket;
mod spec;
mod state;
mod stdio;
mod sys;
mod timefmt;
mod wire;

#[cfg(test)]
mod untrusted_input_tests;

use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::process::ExitCode;

use flags::{Action, Flags};

const NAME: &str = "containerd-shim-runc-v2";

fn print_version() {
    println!("{NAME}:");
    println!("  Version:  {}", env!("CARGO_PKG_VERSION"));
    println!("  Revision: rust");
    println!();
}

/// Sends our log to the bundle's `log` fifo (containerd reads it), if there is one.
fn log_to_bundle_fifo() {
    let fifo = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("log");
    if let Ok(f) = fifo {
        let fd = OwnedFd::from(f);
        if nix::unistd::dup2_stderr(&fd).is_ok() {
            logger::make_stderr_nonblocking();
        }
    }
}

fn serve(flags: &Flags) -> i32 {
    sys::limit_malloc_arenas();
    log_to_bundle_fifo();
    logger::init(&flags.namespace, flags.debug);
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        log::error!("cannot become a child subreaper: {e}");
        return 1;
    }
    for unknown in &flags.unknown {
        log::warn!("ignoring unknown flag {unknown}");
    }
    let listener = if !flags.socket.is_empty() {
        match socket::claim(std::path::Path::new(&flags.socket)) {
            Ok(socket::Claim::Listening(l)) => l,
            Ok(socket::Claim::InUse) => {
                log::error!("socket {} is served by another shim", flags.socket);
                return 1;
            }
            Err(e) => {
                log::error!("listen on {}: {e}", flags.socket);
                return 1;
            }
        }
    } else {
        match sys::inherited_listener() {
            Some(fd) => UnixListener::from(fd),
            None => {
                log::error!("no listening socket on fd 3 and no -socket given");
                return 1;
            }
        }
    };
    match daemon::Daemon::new(&flags.namespace, &flags.address, listener) {
        Ok(mut d) => d.run(),
        Err(e) => {
            log::error!("cannot start serving: {e}");
            1
        }
    }
}

fn main() -> ExitCode {
    let flags = match Flags::parse(std::env::args().skip(1)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{NAME}: {e}");
            return ExitCode::from(2);
        }
    };
    let code = match &flags.action {
        Action::Version => {
            print_version();
            0
        }
        Action::Info => info::main(),
        action => {
            if let Err(e) = flags.require_namespace() {
                eprintln!("{NAME}: {e}");
                return ExitCode::from(1);
            }
            match action {
                Action::Start => bootstrap::main(&flags),
                Action::Delete => cleanup::main(&flags),
                Action::Serve => serve(&flags),
                Action::Other(word) => {
                    eprintln!("{NAME}: unknown action {word:?}");
                    1
                }
                Action::Version | Action::Info => unreachable!("handled above"),
            }
        }
    };
    ExitCode::from(code as u8)
}
