//! Recursive-descent parser: `or` binds looser than `and`, `not` and
//! parentheses group, `attr[...]` filters the elements of a complex value.

use super::{AttrPath, CompareOp, Filter, FilterError};

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Str(String),
    Word(String),
}

fn tokenize(text: &str) -> Result<Vec<Token>, FilterError> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => (tokens.push(Token::Open), i += 1).1,
            ')' => (tokens.push(Token::Close), i += 1).1,
            '[' => (tokens.push(Token::OpenBracket), i += 1).1,
            ']' => (tokens.push(Token::CloseBracket), i += 1).1,
            '"' => {
                let start = i;
                i += 1;
                let mut escaped = false;
                while i < chars.len() && (escaped || chars[i] != '"') {
                    escaped = !escaped && chars[i] == '\\';
                    i += 1;
                }
                if i >= chars.len() {
                    return Err(FilterError("unterminated string".into()));
                }
                let literal: String = chars[start..=i].iter().collect();
                let value: String = serde_json::from_str(&literal)
                    .map_err(|_| FilterError(format!("bad string literal {literal}")))?;
                tokens.push(Token::Str(value));
                i += 1;
            }
            _ => {
                let start = i;
                while i < chars.len() && !" \t\n\r()[]\"".contains(chars[i]) {
                    i += 1;
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

/// Parses a SCIM filter expression.
pub fn parse(text: &str) -> Result<Filter, FilterError> {
    let mut parser = Parser {
        tokens: tokenize(text)?,
        pos: 0,
    };
    let filter = parser.or_expr()?;
    match parser.peek() {
        None => Ok(filter),
        Some(t) => Err(FilterError(format!("unexpected {t:?} after the filter"))),
    }
}

/// Parses an attribute path such as `urn:...:User:name.givenName`.
pub fn parse_attr_path(word: &str) -> Result<AttrPath, FilterError> {
    let (uri, rest) = match word.rfind(':') {
        Some(i) => (Some(word[..i].to_string()), &word[i + 1..]),
        None => (None, word),
    };
    let (attr, sub) = match rest.split_once('.') {
        Some((a, s)) => (a, Some(s.to_string())),
        None => (rest, None),
    };
    let valid = |s: &str| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
    };
    if !valid(attr) || !sub.as_deref().is_none_or(valid) {
        return Err(FilterError(format!("{word:?} is not an attribute path")));
    }
    Ok(AttrPath {
        uri,
        attr: attr.to_string(),
        sub,
    })
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(keyword))
    }

    fn expect(&mut self, token: Token) -> Result<(), FilterError> {
        match self.next() {
            Some(t) if t == token => Ok(()),
            other => Err(FilterError(format!("expected {token:?}, found {other:?}"))),
        }
    }

    fn or_expr(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.and_expr()?;
        while self.peek_keyword("or") {
            self.pos += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and_expr()?));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.unary()?;
        while self.peek_keyword("and") {
            self.pos += 1;
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, FilterError> {
        if self.peek_keyword("not") {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Token::Open) {
            self.pos += 1;
            let inner = self.or_expr()?;
            self.expect(Token::Close)?;
            return Ok(inner);
        }
        self.attr_expr()
    }

    fn attr_expr(&mut self) -> Result<Filter, FilterError> {
        let word = match self.next() {
            Some(Token::Word(w)) => w,
            other => {
                return Err(FilterError(format!(
                    "expected an attribute, found {other:?}"
                )));
            }
        };
        let path = parse_attr_path(&word)?;
        if self.peek() == Some(&Token::OpenBracket) {
            return self.value_path(path);
        }
        let op_word = match self.next() {
            Some(Token::Word(w)) => w,
            other => {
                return Err(FilterError(format!(
                    "expected an operator, found {other:?}"
                )));
            }
        };
        if op_word.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let op = CompareOp::parse(&op_word)
            .ok_or_else(|| FilterError(format!("unknown operator {op_word:?}")))?;
        let value = self.comp_value()?;
        Ok(Filter::Compare { path, op, value })
    }

    fn value_path(&mut self, attr: AttrPath) -> Result<Filter, FilterError> {
        if attr.sub.is_some() {
            return Err(FilterError(
                "a value filter applies to an attribute, not a sub-attribute".into(),
            ));
        }
        self.pos += 1;
        let inner = self.or_expr()?;
        self.expect(Token::CloseBracket)?;
        let filter = Filter::ValuePath {
            attr,
            filter: Box::new(inner),
        };
        // `emails[type eq "work"].value` is only meaningful in PATCH paths.
        if let Some(Token::Word(w)) = self.peek()
            && w.starts_with('.')
        {
            return Err(FilterError(format!(
                "unexpected {w:?} after a value filter"
            )));
        }
        Ok(filter)
    }

    fn comp_value(&mut self) -> Result<serde_json::Value, FilterError> {
        match self.next() {
            Some(Token::Str(s)) => Ok(serde_json::Value::String(s)),
            Some(Token::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "true" => Ok(serde_json::Value::Bool(true)),
                "false" => Ok(serde_json::Value::Bool(false)),
                "null" => Ok(serde_json::Value::Null),
                _ => serde_json::from_str::<serde_json::Number>(&w)
                    .map(serde_json::Value::Number)
                    .map_err(|_| FilterError(format!("{w:?} is not a value"))),
            },
            other => Err(FilterError(format!("expected a value, found {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cmp(attr: &str, sub: Option<&str>, op: CompareOp, value: serde_json::Value) -> Filter {
        Filter::Compare {
            path: AttrPath {
                uri: None,
                attr: attr.into(),
                sub: sub.map(Into::into),
            },
            op,
            value,
        }
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let f = parse(r#"a eq "1" or b eq "2" and c eq "3""#).expect("parses");
        assert_eq!(
            f,
            Filter::Or(
                Box::new(cmp("a", None, CompareOp::Eq, json!("1"))),
                Box::new(Filter::And(
                    Box::new(cmp("b", None, CompareOp::Eq, json!("2"))),
                    Box::new(cmp("c", None, CompareOp::Eq, json!("3")))
                ))
            )
        );
    }

    #[test]
    fn parentheses_and_not_group() {
        let f = parse(r#"not (a eq "1" or b pr) and c gt 5"#).expect("parses");
        let Filter::And(left, right) = f else {
            panic!("expected and")
        };
        assert!(matches!(*left, Filter::Not(_)));
        assert_eq!(*right, cmp("c", None, CompareOp::Gt, json!(5)));
    }

    #[test]
    fn complex_value_filters_and_urns_parse() {
        let f = parse(r#"emails[type eq "work" and value co "@example.org"]"#).expect("parses");
        assert!(matches!(f, Filter::ValuePath { .. }));
        let f = parse(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq \"x\"",
        )
        .expect("parses");
        let Filter::Compare { path, .. } = f else {
            panic!()
        };
        assert_eq!(path.attr, "manager");
        assert_eq!(path.sub.as_deref(), Some("value"));
    }

    #[test]
    fn operators_are_case_insensitive() {
        assert_eq!(
            parse(r#"userName EQ "x""#).expect("parses"),
            cmp("userName", None, CompareOp::Eq, json!("x"))
        );
    }

    #[test]
    fn invalid_filters_are_rejected() {
        for text in [
            "",
            "userName",
            "userName eq",
            "userName xx \"a\"",
            "(userName eq \"a\"",
            "userName eq \"a\" and",
            "userName eq \"unterminated",
            "emails[type eq \"work\"",
            "userName eq bareword",
            "1abc eq \"x\"",
            "userName eq \"a\" )",
        ] {
            assert!(parse(text).is_err(), "{text:?} should be invalid");
        }
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(text in ".{0,60}") {
            let _ = parse(&text);
        }

        #[test]
        fn quoted_values_round_trip(value in "[^\"\\\\\\p{Cc}]{0,20}") {
            let f = parse(&format!("userName eq \"{value}\"")).expect("parses");
            proptest::prop_assert_eq!(f, cmp("userName", None, CompareOp::Eq, json!(value)));
        }
    }
}
