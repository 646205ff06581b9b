//! Reading cgroupfs files: whole small files, single numbers and `key value` lines.

use std::fs;
use std::io;
use std::path::Path;

/// Reads a (small) cgroup file; errors name the file and keep their kind, so
/// callers can still tell a missing file (`NotFound`) from other failures.
pub(super) fn read(path: &Path) -> io::Result<String> {
    fs::read_to_string(path).map_err(|e| with_path(path, e))
}

pub(super) fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

pub(super) fn invalid(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: invalid {what}", path.display()),
    )
}

/// Parses an unsigned number the way the Go cgroups library does: negative
/// numbers (some kernels print `-1` for "no limit") read as 0.
pub(super) fn parse_uint(s: &str) -> Option<u64> {
    if let Ok(v) = s.parse::<u64>() {
        return Some(v);
    }
    let digits = s.strip_prefix('-')?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(0)
}

/// Reads a file holding one number.
pub(super) fn read_u64(path: &Path) -> io::Result<u64> {
    let text = read(path)?;
    parse_uint(text.trim()).ok_or_else(|| invalid(path, "number"))
}

/// Splits a `key value` line; lines with any other number of fields give `None`.
pub(super) fn kv(line: &str) -> Option<(&str, &str)> {
    let mut fields = line.split_whitespace();
    let key = fields.next()?;
    let value = fields.next()?;
    fields.next().is_none().then_some((key, value))
}

/// `key value` lines whose value is a number (others are skipped).
pub(super) fn kv_numbers(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines()
        .filter_map(kv)
        .filter_map(|(k, v)| Some((k, parse_uint(v)?)))
}

/// Turns a missing file into success: a controller or file the kernel doesn't
/// provide is skipped, as the Go shim does with `IgnoreNotExist`.
pub(super) fn tolerate_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_uint_like_go() {
        assert_eq!(parse_uint("42"), Some(42));
        assert_eq!(parse_uint("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_uint("-1"), Some(0));
        assert_eq!(parse_uint("-99999999999999999999999"), Some(0));
        assert_eq!(parse_uint("max"), None);
        assert_eq!(parse_uint("-"), None);
        assert_eq!(parse_uint(""), None);
    }

    #[test]
    fn kv_lines() {
        assert_eq!(kv("cache 12"), Some(("cache", "12")));
        assert_eq!(kv("  a\tb "), Some(("a", "b")));
        assert_eq!(kv("a"), None);
        assert_eq!(kv("a b c"), None);
        let got: Vec<_> = kv_numbers("a 1\nbad\nb x\nc 3\n").collect();
        assert_eq!(got, vec![("a", 1), ("c", 3)]);
    }
}
