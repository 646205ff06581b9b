//! Reading CRI-format container log files (`<RFC 3339 time> <stdout|stderr> <F|P> <text>`).

/// One line of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stream: String,
    pub tag: String,
    pub text: String,
}

/// A line as expected in a log (for comparisons).
pub fn log_line(stream: &str, tag: &str, text: &str) -> LogLine {
    LogLine {
        stream: stream.into(),
        tag: tag.into(),
        text: text.into(),
    }
}

/// Parses a log file's text, asserting that every line is in CRI format.
pub fn parse_cri_log(log: &str) -> Vec<LogLine> {
    log.lines()
        .map(|l| {
            let mut it = l.splitn(4, ' ');
            let (time, stream, tag) = (it.next().unwrap_or(""), it.next(), it.next());
            let ok_time = time.len() >= 20
                && time.as_bytes()[4] == b'-'
                && time.as_bytes()[10] == b'T'
                && (time.ends_with('Z') || time.contains('+'));
            assert!(ok_time, "bad timestamp in CRI log line {l:?}");
            let line = log_line(stream.unwrap_or(""), tag.unwrap_or(""), it.next().unwrap_or(""));
            assert!(
                line.stream == "stdout" || line.stream == "stderr",
                "bad stream in {l:?}"
            );
            assert!(line.tag == "F" || line.tag == "P", "bad tag in {l:?}");
            line
        })
        .collect()
}

/// The text of the log file at `path` (empty if it cannot be read).
pub fn read_log(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
