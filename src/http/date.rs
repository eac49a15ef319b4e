//! HTTP-date parsing and formatting (RFC 9110 §5.6.7).
//!
//! Recipients accept all three historical formats (IMF-fixdate, RFC 850 and asctime);
//! senders generate only IMF-fixdate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The last instant an IMF-fixdate can express: 9999-12-31T23:59:59Z.
const LAST_FORMATTABLE_SECS: u64 = 253_402_300_799;

/// Parses an HTTP-date in any of the three formats of RFC 9110 §5.6.7, ignoring
/// surrounding whitespace.
///
/// Returns `None` for anything that is not a valid date (non-UTF-8 bytes, a list of
/// dates, "0", "-1"), which callers treat as RFC 9110 and RFC 9111 tell them to: an
/// invalid `Expires` means "already expired" (RFC 9111 §5.3), an invalid
/// `If-Modified-Since` is ignored (RFC 9110 §13.1.3).
pub fn parse(value: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(value.trim_ascii()).ok()?;
    httpdate::parse_http_date(text)
        .ok()
        .or_else(|| parse_leniently(text))
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// What strict parsing refuses but a robust recipient reads (RFC 9110 §5.6.7 asks
/// recipients to be robust): an IMF-fixdate or asctime date whose day name, month or
/// `GMT` is in another case, or whose day name does not match the date (the day name
/// is redundant). The layout itself stays exact: a missing comma, doubled spaces, a
/// two-digit year, another zone or a one-digit hour is still invalid.
fn parse_leniently(text: &str) -> Option<SystemTime> {
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    if !bytes.is_ascii() {
        return None;
    }
    // IMF-fixdate: `sun, 06 nov 1994 08:49:37 gmt`
    if bytes.len() == 29 && &lower[3..5] == ", " && &lower[25..] == " gmt" {
        let [day, month, year, time] = fields(&lower[5..25], ' ')?;
        if !DAYS.contains(&&lower[..3]) || day.len() != 2 || year.len() != 4 {
            return None;
        }
        return instant(year, month, day, time);
    }
    // asctime: `sun nov  6 08:49:37 1994`
    if bytes.len() == 24 && bytes[3] == b' ' && bytes[7] == b' ' && bytes[10] == b' ' {
        if !DAYS.contains(&&lower[..3]) || bytes[19] != b' ' {
            return None;
        }
        let day = lower[8..10].trim_start_matches(' ');
        return instant(&lower[20..], &lower[4..7], day, &lower[11..19]);
    }
    None
}

/// Exactly four parts of `text` split on `sep`.
fn fields(text: &str, sep: char) -> Option<[&str; 4]> {
    let mut parts = text.split(sep);
    let out = [parts.next()?, parts.next()?, parts.next()?, parts.next()?];
    parts.next().is_none().then_some(out)
}

/// The instant of a validated date and `hh:mm:ss` time, UTC.
fn instant(year: &str, month: &str, day: &str, time: &str) -> Option<SystemTime> {
    let number = |text: &str, len: std::ops::RangeInclusive<usize>| -> Option<u64> {
        (len.contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    let year = number(year, 4..=4)?;
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let day = number(day, 1..=2)?;
    let colons = time.as_bytes();
    if time.len() != 8 || colons[2] != b':' || colons[5] != b':' {
        return None;
    }
    let (hour, minute, second) = (
        number(&time[0..2], 2..=2)?,
        number(&time[3..5], 2..=2)?,
        number(&time[6..8], 2..=2)?,
    );
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if year < 1970 || day == 0 || day > month_days[month as usize - 1] {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Leap days in the years up to and including `y`.
    let leap_days = |y: u64| y / 4 - y / 100 + y / 400;
    let days_before_year = 365 * (year - 1970) + leap_days(year - 1) - leap_days(1969);
    let days_before_month: u64 = month_days[..month as usize - 1].iter().sum();
    let days = days_before_year + days_before_month + day - 1;
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Formats `t` as an IMF-fixdate (RFC 9110 §5.6.7), e.g.
/// `Sun, 06 Nov 1994 08:49:37 GMT`.
///
/// Sub-second precision is dropped. Instants outside what the format can express are
/// clamped to the Unix epoch or to the end of year 9999 instead of panicking.
pub fn format(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .min(LAST_FORMATTABLE_SECS);
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Seconds since the Unix epoch, zero for earlier instants: HTTP dates have
/// one-second resolution, so validators are compared at that resolution.
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Parses the first field line of `name` as an HTTP-date; `None` when the field is
/// absent or invalid.
pub(crate) fn header(
    headers: &http::HeaderMap,
    name: &http::header::HeaderName,
) -> Option<SystemTime> {
    parse(headers.get(name)?.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn parses_all_three_formats_of_rfc_9110() {
        // RFC 9110 §5.6.7: the example instant in each of its three formats.
        let expected = Some(at(784_111_777));
        assert_eq!(parse(b"Sun, 06 Nov 1994 08:49:37 GMT"), expected);
        assert_eq!(parse(b"Sunday, 06-Nov-94 08:49:37 GMT"), expected);
        assert_eq!(parse(b"Sun Nov  6 08:49:37 1994"), expected);
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        assert_eq!(
            parse(b"  Sun, 06 Nov 1994 08:49:37 GMT\t"),
            Some(at(784_111_777))
        );
    }

    #[test]
    fn case_and_a_wrong_day_name_are_forgiven() {
        // 18 Aug 2050 is a Thursday; 8 Aug 2050 a Monday.
        let expected = parse(b"Thu, 18 Aug 2050 02:01:18 GMT");
        assert!(expected.is_some());
        for lenient in [
            &b"THU, 18 Aug 2050 02:01:18 GMT"[..],
            b"Thu, 18 AUG 2050 02:01:18 GMT",
            b"Thu, 18 Aug 2050 02:01:18 gMT",
            b"Mon, 18 Aug 2050 02:01:18 GMT",
            b"thu aug 18 02:01:18 2050",
        ] {
            assert_eq!(
                parse(lenient),
                expected,
                "{}",
                String::from_utf8_lossy(lenient)
            );
        }
        assert_eq!(
            parse(b"Thu Aug  8 02:01:18 2050"),
            parse(b"Mon, 08 Aug 2050 02:01:18 GMT")
        );
        assert_eq!(
            parse(b"Thu, 29 Feb 2024 00:00:00 GMT"),
            Some(at(1_709_164_800))
        );
    }

    #[test]
    fn a_wrong_layout_is_still_invalid() {
        for bad in [
            &b"Thu, 18 Aug 2050 02:01:18 UTC"[..],
            b"Thu, 18 Aug 2050 02:01:18 AEST",
            b"Thu, 18 Aug 50 02:01:18 GMT",
            b"Thu 18 Aug 2050 02:01:18 GMT",
            b"Thu, 18  Aug  2050 02:01:18 GMT",
            b"Thu, 18-Aug-2050 02:01:18 GMT",
            b"Thu, 18 Aug 2050 02.01.18 GMT",
            b"Thu, 18 Aug 2050 2:01:18 GMT",
            b"Thu, 30 Feb 2050 02:01:18 GMT",
            b"Thu, 18 Aug 2050 24:01:18 GMT",
            b"Xyz, 18 Aug 2050 02:01:18 GMT",
            b"Thu Aug 18 02:01:18  2050",
        ] {
            assert_eq!(parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn invalid_dates_are_none() {
        for bad in [
            &b""[..],
            b"0",
            b"-1",
            b"tomorrow",
            b"Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 08:49:37 \xff",
        ] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn format_emits_imf_fixdate_and_round_trips() {
        let t = at(784_111_777);
        assert_eq!(format(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse(format(t).as_bytes()), Some(t));
    }

    #[test]
    fn format_drops_subseconds_and_clamps_instead_of_panicking() {
        assert_eq!(format(at(1) + Duration::from_millis(999)), format(at(1)));
        assert_eq!(
            format(UNIX_EPOCH - Duration::from_secs(5)),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        assert_eq!(format(at(1 << 40)), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    proptest::proptest! {
        /// Any bytes: parsing never panics.
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = parse(&bytes);
        }

        /// The lenient reading agrees with the strict one: a lower-cased IMF-fixdate
        /// names the same instant.
        #[test]
        fn a_lower_cased_date_parses_to_the_same_instant(secs in 0u64..253_402_300_799) {
            let t = at(secs);
            let lower = format(t).to_ascii_lowercase();
            proptest::prop_assert_eq!(parse(lower.as_bytes()), Some(t));
        }

        /// Every whole second from 1970 to 9999 formats and parses back to itself.
        #[test]
        fn format_then_parse_round_trips(secs in 0u64..253_402_300_799) {
            let t = at(secs);
            proptest::prop_assert_eq!(parse(format(t).as_bytes()), Some(t));
        }
    }
}
