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
    let text = std::str::from_utf8(value).ok()?.trim();
    httpdate::parse_http_date(text).ok()
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

        /// Every whole second from 1970 to 9999 formats and parses back to itself.
        #[test]
        fn format_then_parse_round_trips(secs in 0u64..253_402_300_799) {
            let t = at(secs);
            proptest::prop_assert_eq!(parse(format(t).as_bytes()), Some(t));
        }
    }
}
