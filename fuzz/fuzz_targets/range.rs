//! Range and If-Range parsing: never panics; every range is inside the body.
#![no_main]

use http::{HeaderMap, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;

use edge::http::range::{RangeOutcome, evaluate};

fuzz_target!(|input: (&[u8], &[u8], u32)| {
    let (range, if_range, len) = input;
    let len = u64::from(len % 100_000);
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(range) {
        headers.insert(http::header::RANGE, v);
    }
    if let Ok(v) = HeaderValue::from_bytes(if_range) {
        headers.insert(http::header::IF_RANGE, v);
    }
    if let RangeOutcome::Partial(ranges) = evaluate(&Method::GET, &headers, len, Some("\"e\""), None) {
        for r in ranges {
            assert!(r.start <= r.end && r.end < len);
        }
    }
});
