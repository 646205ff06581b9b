//! `google.protobuf.Timestamp` values as containerd expects them.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::Timestamp;

/// Seconds from Go's zero time (0001-01-01T00:00:00Z) to the Unix epoch.
const GO_ZERO_SECONDS: i64 = -62_135_596_800;

/// Go's zero time, which the Go shim sends as `exited_at` of a process that
/// has not exited.
pub fn go_zero() -> Timestamp {
    timestamp(GO_ZERO_SECONDS, 0)
}

/// Converts a system time (nanos always in `0..1e9`, seconds saturating).
pub fn from_system(t: SystemTime) -> Timestamp {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => timestamp(
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nanos_i32(d.subsec_nanos()),
        ),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).map_or(i64::MIN, |s| -s);
            match d.subsec_nanos() {
                0 => timestamp(secs, 0),
                n => timestamp(secs.saturating_sub(1), nanos_i32(1_000_000_000 - n)),
            }
        }
    }
}

/// The current time.
pub fn now() -> Timestamp {
    from_system(SystemTime::now())
}

fn timestamp(seconds: i64, nanos: i32) -> Timestamp {
    let mut ts = Timestamp::new();
    ts.seconds = seconds;
    ts.nanos = nanos;
    ts
}

/// `Duration::subsec_nanos` is below 1e9, so it always fits.
fn nanos_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(999_999_999)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn go_zero_is_year_one() {
        let ts = go_zero();
        assert_eq!(ts.seconds, -62135596800);
        assert_eq!(ts.nanos, 0);
        // Days from 0001-01-01 to 1970-01-01 (proleptic Gregorian).
        assert_eq!(ts.seconds, -719_162 * 86_400);
    }

    #[test]
    fn from_system_after_epoch() {
        let ts = from_system(UNIX_EPOCH + Duration::new(1_700_000_000, 123));
        assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 123));
        let ts = from_system(UNIX_EPOCH);
        assert_eq!((ts.seconds, ts.nanos), (0, 0));
    }

    #[test]
    fn from_system_before_epoch_keeps_nanos_positive() {
        let ts = from_system(UNIX_EPOCH - Duration::new(1, 250_000_000));
        assert_eq!((ts.seconds, ts.nanos), (-2, 750_000_000));
        let ts = from_system(UNIX_EPOCH - Duration::from_secs(3));
        assert_eq!((ts.seconds, ts.nanos), (-3, 0));
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now().seconds > 1_577_836_800);
    }
}
