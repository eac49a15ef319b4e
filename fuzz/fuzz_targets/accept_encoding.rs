//! Accept-Encoding negotiation: never panics; the choice is always available.
#![no_main]

use libfuzzer_sys::fuzz_target;

use edge::http::encoding::{Encoding, negotiate};

fuzz_target!(|header: &[u8]| {
    let available = [Encoding::Br, Encoding::Zstd, Encoding::Gzip, Encoding::Identity];
    if let Some(chosen) = negotiate(Some(header), &available) {
        assert!(available.contains(&chosen));
    }
});
