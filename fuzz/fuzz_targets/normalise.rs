//! Request-target normalisation: never panics, always absolute, idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;

use edge::http::path::{QueryPolicy, normalise_target};

fuzz_target!(|target: &str| {
    for policy in [QueryPolicy::Keep, QueryPolicy::Sort, QueryPolicy::Drop] {
        let once = normalise_target(target, &policy);
        assert!(once.starts_with('/'));
        assert_eq!(normalise_target(&once, &policy), once);
    }
});
