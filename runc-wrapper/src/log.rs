//! Reading runc's JSON log (`--log <bundle>/log.json --log-format json`).
//!
//! runc appends one JSON object per line, `{"level":"error","msg":"...","time":"..."}`,
//! to a file shared by every invocation for the bundle. The file may be large
//! and may end in a line still being written.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::Deserialize;

/// How much of the end of the log is read.
const TAIL: u64 = 64 * 1024;

/// The message of the last `"level":"error"` line in the log, trimmed, or
/// `None` if the file is missing or holds no such line. Only the last 64 KiB
/// are read; lines that are not JSON log entries are skipped.
pub fn last_error(log_path: &Path) -> Option<String> {
    last_error_since(log_path, 0)
}

/// Like [`last_error`], but only among lines written at or after byte
/// `start` (the log's length before the invocation of interest began).
/// A `start` beyond the end of the file (the log was replaced) reads it whole.
pub fn last_error_since(log_path: &Path, start: u64) -> Option<String> {
    let mut file = File::open(log_path).ok()?;
    let len = file.metadata().ok()?.len();
    let start = if start > len { 0 } else { start };
    let tail_start = len.saturating_sub(TAIL);
    // Reading from the middle of the file, the first line is likely partial:
    // read one byte before the cut so a line starting right there is kept.
    let (from, partial_first_line) = if tail_start > start {
        (tail_start - 1, true)
    } else {
        (start, false)
    };
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut bytes = Vec::new();
    file.take(len - from).read_to_end(&mut bytes).ok()?;
    let mut lines = &bytes[..];
    if partial_first_line {
        let newline = lines.iter().position(|&b| b == b'\n')?;
        lines = &lines[newline + 1..];
    }
    lines.split(|&b| b == b'\n').rev().find_map(error_message)
}

/// One line of runc's JSON log; other fields (`time`) are ignored.
#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    level: String,
    #[serde(default)]
    msg: String,
}

/// The trimmed message of an error line; `None` for anything else.
fn error_message(line: &[u8]) -> Option<String> {
    let entry: Entry = serde_json::from_slice(line).ok()?;
    let message = entry.msg.trim();
    (entry.level == "error" && !message.is_empty()).then(|| message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ScratchDir;

    fn line(level: &str, msg: &str) -> String {
        format!("{{\"level\":\"{level}\",\"msg\":\"{msg}\",\"time\":\"2024-05-01T10:00:00Z\"}}\n")
    }

    #[test]
    fn missing_file() {
        let dir = ScratchDir::new("log-missing");
        assert_eq!(last_error(&dir.path().join("log.json")), None);
    }

    #[test]
    fn empty_file() {
        let dir = ScratchDir::new("log-empty");
        assert_eq!(last_error(&dir.write("log.json", "")), None);
    }

    #[test]
    fn no_error_lines() {
        let dir = ScratchDir::new("log-none");
        let text = line("info", "starting") + &line("warning", "careful") + &line("debug", "x");
        assert_eq!(last_error(&dir.write("log.json", text)), None);
    }

    #[test]
    fn last_error_wins() {
        let dir = ScratchDir::new("log-last");
        let text = line("error", "first")
            + &line("info", "between")
            + &line("error", "  container does not exist \\n ")
            + &line("warning", "after");
        assert_eq!(
            last_error(&dir.write("log.json", text)).as_deref(),
            Some("container does not exist")
        );
    }

    #[test]
    fn partial_last_line() {
        let dir = ScratchDir::new("log-partial");
        let text = line("error", "complete") + "{\"level\":\"error\",\"msg\":\"half wri";
        assert_eq!(last_error(&dir.write("log.json", text)).as_deref(), Some("complete"));
    }

    #[test]
    fn garbage_is_skipped() {
        let dir = ScratchDir::new("log-garbage");
        let mut text = line("error", "real").into_bytes();
        text.extend_from_slice(b"not json at all\n\xff\xfe\x00binary\n[1,2,3]\n42\n");
        text.extend_from_slice(b"{\"level\":7,\"msg\":\"typed wrong\"}\n");
        text.extend_from_slice(b"{\"level\":\"error\",\"msg\":\"   \"}\n\n\n");
        text.extend_from_slice(b"level=error msg=\"text format\"\n");
        assert_eq!(last_error(&dir.write("log.json", text)).as_deref(), Some("real"));
    }

    #[test]
    fn large_file_reads_the_tail() {
        let dir = ScratchDir::new("log-large");
        let mut text = line("error", "too old to see");
        while text.len() < 3 * TAIL as usize {
            text += &line("info", "filler filler filler filler filler");
        }
        text += &line("error", "near the end");
        text += &line("info", "trailing");
        let path = dir.write("log.json", &text);
        assert_eq!(last_error(&path).as_deref(), Some("near the end"));
    }

    #[test]
    fn large_file_without_recent_error() {
        let dir = ScratchDir::new("log-large-old");
        let mut text = line("error", "too old to see");
        while text.len() < 2 * TAIL as usize {
            text += &line("info", "filler");
        }
        assert_eq!(last_error(&dir.write("log.json", text)), None);
    }

    #[test]
    fn cut_inside_a_line_is_not_misread() {
        // The 64 KiB cut falls inside a garbage line whose tail alone would be
        // a valid error entry: it must not be taken for a line of its own.
        let dir = ScratchDir::new("log-cut");
        let head = "x".repeat(10) + r#"{"level":"error","msg":"fake"}"# + "\n";
        let filler = "f".repeat(TAIL as usize + 10 - head.len() - 1) + "\n";
        let text = head + &filler;
        assert_eq!(text.len() as u64 - TAIL, 10);
        let path = dir.write("log.json", &text);
        assert_eq!(last_error(&path), None);
        // A line starting exactly at the cut is whole and counts.
        let head = "y".repeat(100) + "\n";
        let tail = line("error", "exactly at the cut");
        let pad = "z".repeat(TAIL as usize - tail.len() - 1) + "\n";
        let text = head + &tail + &pad;
        assert_eq!(text.len() as u64 - TAIL, 101);
        let path = dir.write("log2.json", &text);
        assert_eq!(last_error(&path).as_deref(), Some("exactly at the cut"));
    }

    #[test]
    fn since_offset() {
        let dir = ScratchDir::new("log-since");
        let old = line("error", "old");
        let text = old.clone() + &line("info", "new run");
        let path = dir.write("log.json", &text);
        assert_eq!(last_error_since(&path, old.len() as u64), None);
        assert_eq!(last_error_since(&path, 0).as_deref(), Some("old"));
        // The log shrank (replaced): read it all.
        assert_eq!(last_error_since(&path, 1 << 40).as_deref(), Some("old"));
    }
}
