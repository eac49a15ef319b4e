use proptest::prelude::*;

use super::*;

#[test]
fn fingerprinted_names_are_recognised() {
    for path in [
        "/js/app.3f9a2c1e.js",
        "/css/main-5d41402abc4b2a76.css",
        "/assets/chunk.Ab3_x-9Qz.js",
        "/img/logo.968db97e.png",
        "/assets/index-CnB9vB8K.js",
        "/static/js/main.5D41402ABC.chunk.js",
        "/build/vendor_5d41402abc4b2a76.js",
        "/blobs/5d41402abc4b2a76",
        "/js/3f9a2c1e",
        "app.3f9a2c1e.js",
    ] {
        assert!(is_fingerprinted(path), "{path} should be fingerprinted");
    }
}

#[test]
fn ordinary_and_versioned_names_are_not_fingerprinted() {
    for path in [
        "/js/jquery.min.js",
        "/css/bootstrap-5.3.0.css",
        "/favicon.ico",
        "/js/my-long-filename.js",
        "/readme.txt",
        "/js/jquery-3.7.1.min.js",
        "/js/lodash-4.17.21.js",
        "/CHANGELOG-V2.md",
        "/downloads/Setup-Win64.exe",
        "/fonts/Roboto-Regular.woff2",
        "/js/es2015-polyfills.js",
        "/img/1200x630.png",
        "/js/deadbeefcafe.js",
        "/photos/IMG-20240101.jpg",
        "/users/550e8400-e29b-41d4-a716-446655440000.json",
        "/app.3f9a2c1e.js/index.html",
        "",
        "/",
    ] {
        assert!(
            !is_fingerprinted(path),
            "{path} should not be fingerprinted"
        );
    }
}

#[test]
fn a_hash_must_be_a_whole_segment_not_part_of_a_word() {
    assert!(!is_fingerprinted("/js/app3f9a2c1e.js"));
    assert!(
        !is_fingerprinted("/js/app.3f9a2c1.js"),
        "7 characters is too short"
    );
    assert!(
        !is_fingerprinted("/js/app.js.3f9a2c1e"),
        "the extension is not a hash"
    );
}

#[test]
fn default_rules_mark_fingerprinted_paths_immutable_and_leave_others() {
    let rules = ImmutableRules::default();
    assert_eq!(
        rules.cache_control_for("/js/app.3f9a2c1e.js"),
        Some(IMMUTABLE_CACHE_CONTROL)
    );
    assert_eq!(rules.cache_control_for("/js/app.js"), None);
    assert_eq!(rules.cache_control_for("/index.html"), None);
}

#[test]
fn first_matching_rule_wins_and_an_empty_value_keeps_the_origin_header() {
    let rules = ImmutableRules::new([
        ("/preview/*", ""),
        ("/static/*", "public, max-age=86400"),
        ("*.woff2", "public, max-age=31536000, immutable"),
        (FINGERPRINTED, IMMUTABLE_CACHE_CONTROL),
    ])
    .unwrap();
    assert_eq!(rules.cache_control_for("/preview/app.3f9a2c1e.js"), None);
    assert_eq!(
        rules.cache_control_for("/static/deep/font.woff2"),
        Some("public, max-age=86400")
    );
    assert_eq!(
        rules.cache_control_for("/fonts/inter.woff2"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(
        rules.cache_control_for("/js/app.3f9a2c1e.js"),
        Some(IMMUTABLE_CACHE_CONTROL)
    );
    assert_eq!(rules.cache_control_for("/js/app.js"), None);
}

#[test]
fn no_rules_match_nothing() {
    assert_eq!(
        ImmutableRules::none().cache_control_for("/js/app.3f9a2c1e.js"),
        None
    );
}

#[test]
fn invalid_rules_are_rejected() {
    assert_eq!(
        ImmutableRules::new([("static/*", "public")]),
        Err(RuleError::BadPattern("static/*".into()))
    );
    assert_eq!(
        ImmutableRules::new([("", "public")]),
        Err(RuleError::BadPattern(String::new()))
    );
    assert_eq!(
        ImmutableRules::new([("/a b", "public")]),
        Err(RuleError::BadPattern("/a b".into()))
    );
    assert_eq!(
        ImmutableRules::new([("/x", "public\r\nSet-Cookie: a=b")]),
        Err(RuleError::BadCacheControl(
            "public\r\nSet-Cookie: a=b".into()
        ))
    );
}

#[test]
fn glob_star_matches_any_run_including_slashes() {
    let m = |g: &str, t: &str| glob_matches(g.as_bytes(), t.as_bytes());
    assert!(m("/static/*", "/static/"));
    assert!(m("/static/*", "/static/a/b/c.js"));
    assert!(!m("/static/*", "/staticx/a.js"));
    assert!(!m("/static/*", "/static"));
    assert!(m("*.woff2", "/fonts/a.woff2"));
    assert!(!m("*.woff2", "/fonts/a.woff2.map"));
    assert!(m("/a/*/b/*.js", "/a/x/y/b/z.js"));
    assert!(m("/exact.js", "/exact.js"));
    assert!(!m("/exact.js", "/exact.jsx"));
    assert!(m("*", ""));
    assert!(m("**a", "aaa"));
    assert!(!m("*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

/// A glob matcher written the obvious exponential way, to check the linear one.
fn glob_reference(g: &[u8], t: &[u8]) -> bool {
    match g.split_first() {
        None => t.is_empty(),
        Some((b'*', rest)) => (0..=t.len()).any(|i| glob_reference(rest, &t[i..])),
        Some((c, rest)) => t.first() == Some(c) && glob_reference(rest, &t[1..]),
    }
}

proptest! {
    #[test]
    fn fingerprint_recognition_never_panics(path in any::<String>()) {
        let _ = is_fingerprinted(&path);
        let _ = ImmutableRules::default().cache_control_for(&path);
    }

    #[test]
    fn fingerprint_recognition_never_panics_on_path_like_input(
        path in "(/[a-zA-Z0-9._~%-]{0,24}){0,6}"
    ) {
        let _ = is_fingerprinted(&path);
    }

    #[test]
    fn glob_agrees_with_the_reference_matcher(
        glob in "[ab*/.]{0,8}",
        text in "[ab/.]{0,12}",
    ) {
        prop_assert_eq!(
            glob_matches(glob.as_bytes(), text.as_bytes()),
            glob_reference(glob.as_bytes(), text.as_bytes())
        );
    }

    #[test]
    fn a_hex_hash_segment_is_always_recognised(
        name in "[a-z]{1,10}",
        hash in "[0-9a-f]{8,20}",
        ext in "[a-z]{1,5}",
        dash in any::<bool>(),
    ) {
        prop_assume!(hash.bytes().any(|b| b.is_ascii_digit()));
        prop_assume!(hash.bytes().any(|b| b.is_ascii_alphabetic()));
        let sep = if dash { '-' } else { '.' };
        let path = format!("/assets/{name}{sep}{hash}.{ext}");
        prop_assert!(is_fingerprinted(&path), "{}", path);
    }
}
