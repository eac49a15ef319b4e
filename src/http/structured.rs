//! Structured Field Dictionaries (RFC 8941 §3.2, §4.2.2), as targeted cache-control
//! fields use them (RFC 9213 §2.1).
//!
//! Parsing is strict, as RFC 8941 §4.2 requires: any syntax error fails the whole
//! field, and the caller then ignores the field. Parameters are checked and dropped;
//! inner lists are checked and kept only as such (no cache directive takes one).

use std::collections::HashMap;

/// A member's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An Integer (§3.3.1): at most 15 digits.
    Integer(i64),
    /// A Decimal (§3.3.2).
    Decimal(f64),
    /// A String (§3.3.3), unescaped.
    String(String),
    /// A Token (§3.3.4).
    Token(String),
    /// A Byte Sequence (§3.3.5), still base64.
    Bytes(String),
    /// A Boolean (§3.3.6); a member without a value is `true`.
    Boolean(bool),
    /// A Date (RFC 9651 §3.3.7): seconds since the epoch.
    Date(i64),
    /// An Inner List (§3.1.1).
    InnerList,
}

/// The members of a Dictionary in order, each key once (a repeated key keeps its last
/// value, §4.2.2); `None` on a syntax error.
pub fn parse_dictionary(input: &[u8]) -> Option<Vec<(String, Value)>> {
    let mut parser = Parser { input, pos: 0 };
    parser.skip_sp();
    let mut members: Vec<(String, Value)> = Vec::new();
    let mut positions: HashMap<String, usize> = HashMap::new();
    while !parser.at_end() {
        let key = parser.key()?;
        let value = if parser.eat(b'=') {
            parser.item_or_inner_list()?
        } else {
            parser.parameters()?;
            Value::Boolean(true)
        };
        // A repeated key keeps its first place and takes the new value; the index
        // keeps that linear for a hostile field of thousands of repeats.
        match positions.get(&key) {
            Some(&at) => members[at].1 = value,
            None => {
                positions.insert(key.clone(), members.len());
                members.push((key, value));
            }
        }
        parser.skip_ows();
        if parser.at_end() {
            break;
        }
        if !parser.eat(b',') {
            return None;
        }
        parser.skip_ows();
        if parser.at_end() {
            // A trailing comma.
            return None;
        }
    }
    Some(members)
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.pos += 1;
        }
        found
    }

    fn skip_sp(&mut self) {
        while self.eat(b' ') {}
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// `key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`
    fn key(&mut self) -> Option<String> {
        let start = self.pos;
        if !matches!(self.peek(), Some(b'a'..=b'z' | b'*')) {
            return None;
        }
        while matches!(
            self.peek(),
            Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*')
        ) {
            self.pos += 1;
        }
        Some(String::from_utf8_lossy(&self.input[start..self.pos]).into_owned())
    }

    fn item_or_inner_list(&mut self) -> Option<Value> {
        if self.peek() == Some(b'(') {
            self.inner_list()?;
            return Some(Value::InnerList);
        }
        let value = self.bare_item()?;
        self.parameters()?;
        Some(value)
    }

    fn inner_list(&mut self) -> Option<()> {
        self.pos += 1;
        loop {
            self.skip_sp();
            if self.eat(b')') {
                return self.parameters();
            }
            self.bare_item()?;
            self.parameters()?;
            if !matches!(self.peek(), Some(b' ' | b')')) {
                return None;
            }
        }
    }

    fn parameters(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.skip_sp();
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Some(())
    }

    fn bare_item(&mut self) -> Option<Value> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string().map(Value::String),
            b'A'..=b'Z' | b'a'..=b'z' | b'*' => Some(Value::Token(self.token())),
            b':' => self.byte_sequence().map(Value::Bytes),
            b'?' => self.boolean().map(Value::Boolean),
            b'@' => {
                self.pos += 1;
                match self.number()? {
                    Value::Integer(secs) => Some(Value::Date(secs)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// §4.2.4: an Integer of at most 15 digits, or a Decimal of at most 12 integer and
    /// 1 to 3 fractional digits.
    fn number(&mut self) -> Option<Value> {
        let negative = self.eat(b'-');
        let start = self.pos;
        let mut point = None;
        while let Some(b) = self.peek() {
            match b {
                b'0'..=b'9' => {}
                b'.' if point.is_none() => point = Some(self.pos),
                _ => break,
            }
            self.pos += 1;
            let digits = self.pos - start;
            if (point.is_none() && digits > 15) || (point.is_some() && digits > 16) {
                return None;
            }
        }
        let text = std::str::from_utf8(&self.input[start..self.pos]).ok()?;
        if text.is_empty() || !text.as_bytes()[0].is_ascii_digit() {
            return None;
        }
        match point {
            None => {
                let n: i64 = text.parse().ok()?;
                Some(Value::Integer(if negative { -n } else { n }))
            }
            Some(at) => {
                let (whole, fraction) = (at - start, self.pos - at - 1);
                if whole > 12 || fraction == 0 || fraction > 3 {
                    return None;
                }
                let n: f64 = text.parse().ok()?;
                Some(Value::Decimal(if negative { -n } else { n }))
            }
        }
    }

    /// §4.2.5: printable ASCII between quotes; `\` escapes only `"` and `\`.
    fn string(&mut self) -> Option<String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let b = self.peek()?;
            self.pos += 1;
            match b {
                b'"' => return Some(out),
                b'\\' => match self.peek()? {
                    c @ (b'"' | b'\\') => {
                        self.pos += 1;
                        out.push(char::from(c));
                    }
                    _ => return None,
                },
                0x20..=0x7e => out.push(char::from(b)),
                _ => return None,
            }
        }
    }

    /// §4.2.6: `( ALPHA / "*" ) *( tchar / ":" / "/" )`
    fn token(&mut self) -> String {
        let start = self.pos;
        self.pos += 1;
        while self
            .peek()
            .is_some_and(|b| is_tchar(b) || b == b':' || b == b'/')
        {
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.input[start..self.pos]).into_owned()
    }

    /// §4.2.7: base64 between colons.
    fn byte_sequence(&mut self) -> Option<String> {
        self.pos += 1;
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b == b':' {
                let text = String::from_utf8_lossy(&self.input[start..self.pos]).into_owned();
                self.pos += 1;
                return Some(text);
            }
            if !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')) {
                return None;
            }
            self.pos += 1;
        }
        None
    }

    /// §4.2.8: `?0` or `?1`.
    fn boolean(&mut self) -> Option<bool> {
        self.pos += 1;
        let value = match self.peek()? {
            b'0' => false,
            b'1' => true,
            _ => return None,
        };
        self.pos += 1;
        Some(value)
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Option<Vec<(String, Value)>> {
        parse_dictionary(text.as_bytes())
    }

    #[test]
    fn cache_directives_map_to_their_types() {
        let members = parse(r#"max-age=600, no-store, private="set-cookie", x=tok/en, d=1.5"#)
            .expect("a valid dictionary");
        assert_eq!(
            members,
            vec![
                ("max-age".into(), Value::Integer(600)),
                ("no-store".into(), Value::Boolean(true)),
                ("private".into(), Value::String("set-cookie".into())),
                ("x".into(), Value::Token("tok/en".into())),
                ("d".into(), Value::Decimal(1.5)),
            ]
        );
    }

    #[test]
    fn parameters_inner_lists_and_repeats_are_accepted() {
        let members = parse("a=1;p=?0, b=(1 \"x\");q, c, a=2").expect("valid");
        assert_eq!(
            members,
            vec![
                ("a".into(), Value::Integer(2)),
                ("b".into(), Value::InnerList),
                ("c".into(), Value::Boolean(true)),
            ]
        );
        assert_eq!(parse("  a=?1 ,\tb=:aGk=:"), parse("a=?1, b=:aGk=:"));
        assert_eq!(parse(""), Some(Vec::new()));
        let repeated = vec!["a=1"; 10_000].join(", ") + ", b, a=2";
        assert_eq!(
            parse(&repeated),
            Some(vec![
                ("a".into(), Value::Integer(2)),
                ("b".into(), Value::Boolean(true))
            ])
        );
    }

    #[test]
    fn syntax_errors_fail_the_whole_field() {
        for bad in [
            "max-age=10000, &&&&&",
            "max-age =60",
            "max-age= 60",
            "Max-Age=60",
            "a=1,",
            "a=1,,b",
            "a=\"open",
            "a=\"bad\\escape\"",
            "a=1234567890123456",
            "a=1.2345",
            "a=.5",
            "a=?2",
            "a=(1 2",
            "a=1 b=2",
            "a=:not base64!:",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        /// Any bytes: parsing never panics.
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = parse_dictionary(&bytes);
        }

        /// Integer members round-trip through their text.
        #[test]
        fn integers_round_trip(n in -999_999_999_999_999i64..=999_999_999_999_999) {
            let text = format!("k={n}");
            proptest::prop_assert_eq!(
                parse_dictionary(text.as_bytes()),
                Some(vec![("k".to_owned(), Value::Integer(n))])
            );
        }
    }
}
