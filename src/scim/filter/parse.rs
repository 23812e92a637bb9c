//! Recursive-descent parser: `or` binds looser than `and`, `not` and
//! parentheses group, `attr[...]` filters the elements of a complex value.
//! [`check_bounds`] runs over the tokens first, so the parser's recursion
//! is bounded by [`MAX_DEPTH`] before it starts.

use super::limits::{MAX_BYTES, MAX_CLAUSES, MAX_DEPTH};
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

fn too_deep() -> FilterError {
    FilterError(format!(
        "the filter nests parentheses, value filters and `not` deeper than {MAX_DEPTH} levels"
    ))
}

/// Checks [`MAX_DEPTH`] and [`MAX_CLAUSES`] in one pass over the tokens,
/// without recursion. The depth counted at each token is the number of
/// groups (`(`, `[`) and `not`s enclosing it, as the parser will nest
/// them: a `not` encloses its operand, which ends at an `and`/`or` in
/// operator position or at the close of the group around the `not`.
fn check_bounds(tokens: &[Token]) -> Result<(), FilterError> {
    #[derive(PartialEq)]
    enum Scope {
        Group,
        Not,
    }
    let mut scopes: Vec<Scope> = Vec::new();
    let close_nots = |scopes: &mut Vec<Scope>| {
        while scopes.last() == Some(&Scope::Not) {
            scopes.pop();
        }
    };
    let mut clauses = 0usize;
    // Whether the next token starts an operand (an attribute, `not` or `(`)
    // rather than continuing an attribute expression or joining operands.
    let mut expect_operand = true;
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::Open | Token::OpenBracket => {
                scopes.push(Scope::Group);
                expect_operand = true;
            }
            Token::Close | Token::CloseBracket => {
                close_nots(&mut scopes);
                scopes.pop();
                expect_operand = false;
            }
            Token::Word(w) if expect_operand && w.eq_ignore_ascii_case("not") => {
                scopes.push(Scope::Not);
            }
            Token::Word(_) if expect_operand => {
                // `emails[...]` is counted by the clauses inside it.
                if tokens.get(i + 1) != Some(&Token::OpenBracket) {
                    clauses += 1;
                }
                expect_operand = false;
            }
            Token::Word(w) if w.eq_ignore_ascii_case("and") || w.eq_ignore_ascii_case("or") => {
                close_nots(&mut scopes);
                expect_operand = true;
            }
            Token::Word(_) | Token::Str(_) => {}
        }
        if scopes.len() > MAX_DEPTH {
            return Err(too_deep());
        }
        if clauses > MAX_CLAUSES {
            return Err(FilterError(format!(
                "the filter has more than {MAX_CLAUSES} attribute expressions"
            )));
        }
    }
    Ok(())
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Groups and `not`s the parser is inside; never above [`MAX_DEPTH`]
    /// after [`check_bounds`], checked again so that the bound holds even
    /// if the two ever disagree.
    depth: usize,
    /// Whether the parser is inside `attr[...]` (which cannot nest).
    in_value_filter: bool,
}

/// Parses a SCIM filter expression, refusing filters beyond the
/// [`limits`](super::limits).
pub fn parse(text: &str) -> Result<Filter, FilterError> {
    if text.len() > MAX_BYTES {
        return Err(FilterError(format!(
            "the filter is longer than {MAX_BYTES} bytes"
        )));
    }
    let tokens = tokenize(text)?;
    check_bounds(&tokens)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        depth: 0,
        in_value_filter: false,
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

    /// Runs `nested` one level deeper, within [`MAX_DEPTH`].
    fn nested<T>(
        &mut self,
        nested: impl FnOnce(&mut Self) -> Result<T, FilterError>,
    ) -> Result<T, FilterError> {
        if self.depth >= MAX_DEPTH {
            return Err(too_deep());
        }
        self.depth += 1;
        let result = nested(self);
        self.depth -= 1;
        result
    }

    fn or_expr(&mut self) -> Result<Filter, FilterError> {
        let mut any = vec![self.and_expr()?];
        while self.peek_keyword("or") {
            self.pos += 1;
            any.push(self.and_expr()?);
        }
        Ok(match any.len() {
            1 => any.remove(0),
            _ => Filter::Or(any),
        })
    }

    fn and_expr(&mut self) -> Result<Filter, FilterError> {
        let mut all = vec![self.unary()?];
        while self.peek_keyword("and") {
            self.pos += 1;
            all.push(self.unary()?);
        }
        Ok(match all.len() {
            1 => all.remove(0),
            _ => Filter::And(all),
        })
    }

    fn unary(&mut self) -> Result<Filter, FilterError> {
        if self.peek_keyword("not") {
            self.pos += 1;
            return self.nested(|p| Ok(Filter::Not(Box::new(p.unary()?))));
        }
        if self.peek() == Some(&Token::Open) {
            self.pos += 1;
            let inner = self.nested(Self::or_expr)?;
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
        // RFC 7644's grammar has no value filter inside a value filter.
        if self.in_value_filter {
            return Err(FilterError("value filters cannot be nested".into()));
        }
        self.pos += 1;
        self.in_value_filter = true;
        let inner = self.nested(Self::or_expr);
        self.in_value_filter = false;
        let inner = inner?;
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
            Filter::Or(vec![
                cmp("a", None, CompareOp::Eq, json!("1")),
                Filter::And(vec![
                    cmp("b", None, CompareOp::Eq, json!("2")),
                    cmp("c", None, CompareOp::Eq, json!("3"))
                ])
            ])
        );
    }

    #[test]
    fn parentheses_and_not_group() {
        let f = parse(r#"not (a eq "1" or b pr) and c gt 5"#).expect("parses");
        let Filter::And(all) = f else {
            panic!("expected and")
        };
        assert!(matches!(all[0], Filter::Not(_)));
        assert_eq!(all[1], cmp("c", None, CompareOp::Gt, json!(5)));
        assert_eq!(all.len(), 2);
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

    /// How deep a parsed filter nests (each list, `not` and value filter
    /// one level), and how many attribute expressions it has.
    fn shape(f: &Filter) -> (usize, usize) {
        match f {
            Filter::And(list) | Filter::Or(list) => {
                let shapes: Vec<(usize, usize)> = list.iter().map(shape).collect();
                let depth = shapes.iter().map(|s| s.0).max().unwrap_or(0);
                (depth + 1, shapes.iter().map(|s| s.1).sum())
            }
            Filter::Not(inner) | Filter::ValuePath { filter: inner, .. } => {
                let (depth, clauses) = shape(inner);
                (depth + 1, clauses)
            }
            Filter::Present(_) | Filter::Compare { .. } => (0, 1),
        }
    }

    fn reason(text: &str) -> String {
        parse(text).expect_err(text).0
    }

    #[test]
    fn nesting_is_bounded_before_the_parser_recurses() {
        let nested = |n: usize| format!("{}userName eq \"x\"{}", "(".repeat(n), ")".repeat(n));
        assert!(parse(&nested(MAX_DEPTH)).is_ok());
        assert!(reason(&nested(MAX_DEPTH + 1)).contains("deeper than 64"));
        // The reproducers of issue #16: each overflowed a worker's stack.
        assert!(reason(&nested(1_700)).contains("deeper"));
        let nots = format!("{}userName pr", "not(".repeat(2_000));
        assert!(reason(&nots).contains("deeper"));
        let bare_nots = format!("{}userName pr", "not ".repeat(2_000));
        assert!(reason(&bare_nots).contains("deeper"));
        let brackets = format!("{}type eq \"x\"", "emails[".repeat(2_000));
        assert!(reason(&brackets).contains("deeper"));
        let nots_in_groups = format!("{}userName pr", "not (".repeat(MAX_DEPTH / 2));
        let closed = format!("{nots_in_groups}{}", ")".repeat(MAX_DEPTH / 2));
        assert!(parse(&closed).is_ok(), "{closed}");
    }

    #[test]
    fn operands_of_and_or_do_not_add_depth() {
        // Many `not`s side by side nest one level each, not cumulatively.
        let side_by_side = vec!["not (userName pr)"; 500].join(" and ");
        assert!(parse(&side_by_side).is_ok());
        let bare = vec!["not userName pr"; 500].join(" or ");
        assert!(parse(&bare).is_ok());
        let value_filters = vec![r#"emails[type eq "work"]"#; 500].join(" or ");
        assert!(parse(&value_filters).is_ok());
    }

    #[test]
    fn clauses_are_bounded() {
        let chain = |n: usize, joiner: &str| {
            (0..n)
                .map(|i| format!("userName eq \"u{i}\""))
                .collect::<Vec<_>>()
                .join(joiner)
        };
        let at_limit = parse(&chain(MAX_CLAUSES, " or ")).expect("at the limit");
        assert_eq!(shape(&at_limit), (1, MAX_CLAUSES), "one flat list");
        assert!(reason(&chain(MAX_CLAUSES + 1, " or ")).contains("more than 1000"));
        assert!(reason(&chain(MAX_CLAUSES + 1, " and ")).contains("more than 1000"));
        let long = chain(10_000, " and ");
        assert!(reason(&long).contains("longer than") || reason(&long).contains("more than"));
        assert!(reason(&"a".repeat(MAX_BYTES + 1)).contains("longer than 65536 bytes"));
    }

    #[test]
    fn value_filters_do_not_nest() {
        assert!(reason(r#"emails[type[value eq "x"]]"#).contains("cannot be nested"));
        assert!(parse(r#"emails[type eq "a"] and phoneNumbers[type eq "b"]"#).is_ok());
    }

    /// Filters from pieces that nest and chain, deep and long.
    fn hostile_filter() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just("("),
            Just(")"),
            Just("["),
            Just("]"),
            Just("not "),
            Just(" and "),
            Just(" or "),
            Just("userName eq \"x\""),
            Just("emails"),
            Just("type pr"),
            Just("\"s\""),
            Just(" eq "),
        ];
        proptest::collection::vec(piece, 0..400).prop_map(|pieces| pieces.concat())
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(text in ".{0,60}") {
            let _ = parse(&text);
        }

        #[test]
        fn parsed_filters_are_within_the_limits(text in hostile_filter()) {
            if let Ok(f) = parse(&text) {
                let (depth, clauses) = shape(&f);
                // Each group or `not` adds at most a list and itself.
                proptest::prop_assert!(depth <= 2 * MAX_DEPTH + 1, "{depth}");
                proptest::prop_assert!(clauses <= MAX_CLAUSES);
            }
        }

        /// The pre-pass never lets through what the parser's own guard
        /// would stop: it counts depth as the parser nests.
        #[test]
        fn the_pre_pass_bounds_the_parser(text in hostile_filter()) {
            let tokens = tokenize(&text).expect("tokens");
            if check_bounds(&tokens).is_ok() {
                let mut parser = Parser { tokens, pos: 0, depth: 0, in_value_filter: false };
                if let Err(e) = parser.or_expr() {
                    proptest::prop_assert_ne!(e, too_deep());
                }
            }
        }

        /// Deep nesting rejected by the pre-pass is also beyond the guard.
        #[test]
        fn deep_nesting_is_refused(opens in proptest::collection::vec(0..3usize, 65..400)) {
            let head: String = opens
                .iter()
                .map(|o| ["(", "not ", "not ("][*o])
                .collect();
            let text = format!("{head}userName pr");
            proptest::prop_assert!(reason(&text).contains("deeper"));
        }

        #[test]
        fn quoted_values_round_trip(value in "[^\"\\\\\\p{Cc}]{0,20}") {
            let f = parse(&format!("userName eq \"{value}\"")).expect("parses");
            proptest::prop_assert_eq!(f, cmp("userName", None, CompareOp::Eq, json!(value)));
        }
    }
}
