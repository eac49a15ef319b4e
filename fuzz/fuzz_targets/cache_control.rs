//! Cache-Control parsing and freshness, and the same bytes as a Structured Field
//! `CDN-Cache-Control`: never panic on any field value.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

use edge::http::cache_control::CacheControl;
use edge::http::freshness::analyze;
use edge::http::structured::parse_dictionary;

fuzz_target!(|input: (&[u8], &[u8], &[u8])| {
    let (cc, expires, age) = input;
    let parsed = CacheControl::parse([cc]);
    // What it prints parses back to the same directives.
    let printed = parsed.to_string();
    assert_eq!(CacheControl::parse([printed.as_bytes()]), parsed);
    let mut headers = HeaderMap::new();
    for (name, value) in [("cache-control", cc), ("expires", expires), ("age", age)] {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.insert(name, v);
        }
    }
    let t = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let _ = analyze(200, &headers, t, t);
    // The same bytes as a targeted field: a Dictionary, or ignored whole.
    let _ = parse_dictionary(cc);
    if let Ok(v) = HeaderValue::from_bytes(cc) {
        headers.insert("cdn-cache-control", v);
        let _ = analyze(200, &headers, t, t);
    }
});
