//! Strict parsing of signed timestamps and the tolerance check.
//!
//! A timestamp is 1 to 10 ASCII digits with no sign, no leading zero, no
//! fraction and no exponent: `+1700000000`, `01700000000`, `1.7e9`, `-5` and
//! 13-digit millisecond values are malformed. Ten digits cover every second
//! up to the year 2286. The window check uses checked arithmetic, so no
//! clock value and no timestamp can overflow it.

use std::time::Duration;

/// Longest accepted timestamp, in digits.
pub(crate) const MAX_DIGITS: usize = 10;

/// Parses a timestamp header value, or `None` if it is malformed.
pub(crate) fn parse(raw: &[u8]) -> Option<i64> {
    if raw.is_empty() || raw.len() > MAX_DIGITS {
        return None;
    }
    if raw.len() > 1 && raw[0] == b'0' {
        return None;
    }
    let mut value: i64 = 0;
    for &b in raw {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    Some(value)
}

/// How a timestamp compares with the clock: `Ok` inside the window, or
/// `Err(skew)` where `skew` is `now - timestamp` in seconds (positive: in the
/// past), saturated if it does not fit.
pub(crate) fn check(timestamp: i64, now: i64, tolerance: Duration) -> Result<(), i64> {
    let skew = now.checked_sub(timestamp);
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    match skew {
        Some(skew) if skew.checked_abs().is_some_and(|abs| abs <= tolerance) => Ok(()),
        Some(skew) => Err(skew),
        None if timestamp > now => Err(i64::MIN),
        None => Err(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_seconds() {
        assert_eq!(parse(b"1531420618"), Some(1_531_420_618));
        assert_eq!(parse(b"0"), Some(0));
        assert_eq!(parse(b"9999999999"), Some(9_999_999_999));
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            &b""[..],
            b"+1700000000",
            b"01700000000",
            b"0123",
            b"1.7e9",
            b"1700000000.5",
            b"-1700000000",
            b"1700000000000",
            b" 1700000000",
            b"1700000000 ",
            b"17000\x0000",
            b"\xd9\xa1\xd9\xa2",
            b"99999999999",
        ] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn window_is_inclusive_both_ways() {
        let t = Duration::from_secs(300);
        assert_eq!(check(1000, 1300, t), Ok(()));
        assert_eq!(check(1300, 1000, t), Ok(()));
        assert_eq!(check(1000, 1301, t), Err(301));
        assert_eq!(check(1301, 1000, t), Err(-301));
    }

    #[test]
    fn extreme_clocks_do_not_overflow() {
        let t = Duration::from_secs(300);
        assert_eq!(check(9_999_999_999, i64::MIN, t), Err(i64::MIN));
        assert_eq!(check(0, i64::MAX, t), Err(i64::MAX));
        assert!(check(0, i64::MIN, t).is_err());
        assert_eq!(check(5, 5, Duration::MAX), Ok(()));
    }
}
