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

/// An RFC 3339 date-time (`2015-05-18T15:45:13Z`, with optional fraction
/// and `±hh:mm` offset) as Unix seconds. Strict: every field in range.
pub(crate) fn rfc3339(raw: &[u8]) -> Option<i64> {
    fn num(s: &[u8]) -> Option<i64> {
        s.iter().try_fold(0i64, |n, b| {
            b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
        })
    }
    if raw.len() < 20 || raw.len() > 40 {
        return None;
    }
    let (date, rest) = raw.split_at(10);
    if date[4] != b'-' || date[7] != b'-' || !matches!(rest[0], b'T' | b't') {
        return None;
    }
    let (year, month, day) = (num(&date[..4])?, num(&date[5..7])?, num(&date[8..10])?);
    let time = &rest[1..];
    if time[2] != b':' || time[5] != b':' {
        return None;
    }
    let (hour, minute, second) = (num(&time[..2])?, num(&time[3..5])?, num(&time[6..8])?);
    let mut zone = &time[8..];
    if let Some(frac) = zone.strip_prefix(b".") {
        let digits = frac.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        zone = &frac[digits..];
    }
    let offset = match zone {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (num(&[*h1, *h2])?, num(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return None,
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Unix seconds as `YYYY-MM-DDThh:mm:ssZ`, for test signers.
#[cfg(any(test, feature = "test-util"))]
pub(crate) fn format_rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Unix milliseconds (1 to 13 digits, no sign, no leading zero) as whole
/// Unix seconds.
pub(crate) fn millis(raw: &[u8]) -> Option<i64> {
    if raw.is_empty() || raw.len() > 13 || (raw.len() > 1 && raw[0] == b'0') {
        return None;
    }
    let mut value: i64 = 0;
    for &b in raw {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    Some(value.div_euclid(1000))
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
