//! The shim's own log: logrus-style text lines on fd 2.
//!
//! fd 2 of the daemon is the bundle's `log` fifo, which containerd copies into its
//! own log. Writes never block: while containerd is down nobody drains the fifo,
//! and a full fifo must not stall the event loop, so such lines are dropped.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::fd::AsFd;
use std::time::SystemTime;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::timefmt;

struct Logger {
    namespace: String,
    level: LevelFilter,
}

/// Installs the logger; `debug` raises the level from info to debug.
pub fn init(namespace: &str, debug: bool) {
    let level = if debug { LevelFilter::Debug } else { LevelFilter::Info };
    let logger = Logger {
        namespace: namespace.to_string(),
        level,
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}

/// Makes fd 2 non-blocking so a full log fifo drops lines instead of stalling.
pub fn make_stderr_nonblocking() {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let stderr = std::io::stderr();
    let fd = stderr.as_fd();
    if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFL) {
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        let _ = fcntl(fd, FcntlArg::F_SETFL(flags));
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// Writes `value` the way logrus does: bare when every character is "safe",
/// otherwise quoted with Go-style escapes.
pub fn push_value(out: &mut String, value: &str) {
    let bare = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._/@^+".contains(c));
    if bare {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Formats one log line (with the trailing newline).
pub fn format_line(time: SystemTime, level: Level, msg: &str, namespace: &str) -> String {
    let mut line = String::with_capacity(96 + msg.len());
    line.push_str("time=\"");
    timefmt::push_rfc3339_nanos(&mut line, time);
    line.push_str("\" level=");
    line.push_str(level_name(level));
    line.push_str(" msg=");
    push_value(&mut line, msg);
    line.push_str(" namespace=");
    push_value(&mut line, namespace);
    line.push_str(" runtime=io.containerd.runc.v2\n");
    line
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let msg = record.args().to_string();
        let line = format_line(SystemTime::now(), record.level(), &msg, &self.namespace);
        // One write per line keeps lines whole in the fifo (writes <= PIPE_BUF are atomic);
        // EAGAIN (nobody reading) drops the line.
        let _ = std::io::stderr().write(line.as_bytes());
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn line_has_logrus_shape() {
        let t = UNIX_EPOCH + Duration::new(1_795_000_000, 5);
        let line = format_line(t, Level::Info, "starting signal loop", "default");
        assert_eq!(
            line,
            "time=\"2026-11-18T11:06:40.000000005Z\" level=info msg=\"starting signal loop\" \
             namespace=default runtime=io.containerd.runc.v2\n"
        );
    }

    #[test]
    fn values_quoted_only_when_needed() {
        let mut s = String::new();
        push_value(&mut s, "abc-1.2_x/y@z^+");
        assert_eq!(s, "abc-1.2_x/y@z^+");
        let mut s = String::new();
        push_value(&mut s, "a b\"c\n");
        assert_eq!(s, "\"a b\\\"c\\n\"");
        let mut s = String::new();
        push_value(&mut s, "");
        assert_eq!(s, "");
    }
}
