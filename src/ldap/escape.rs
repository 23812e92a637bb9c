//! RFC 4515 escaping of values that enter an LDAP search filter, so user data
//! (a DN, a login) can never change the filter's structure.

/// Escapes `*`, `(`, `)`, `\` and NUL as `\XX` hex pairs (RFC 4515 §3).
pub fn filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for ch in value.chars() {
        match ch {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_characters_are_hex_escaped() {
        let cases = [
            ("alice", "alice"),
            ("a*b", "a\\2ab"),
            ("(x)", "\\28x\\29"),
            ("c:\\dir", "c:\\5cdir"),
            ("nul\0", "nul\\00"),
            ("*)(uid=*", "\\2a\\29\\28uid=\\2a"),
            ("été", "été"),
        ];
        for (input, expected) in cases {
            assert_eq!(filter_value(input), expected, "input {input:?}");
        }
    }
}
