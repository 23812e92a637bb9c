//! SCIM filters (RFC 7644 §3.4.2.2): a parser to an AST, evaluation in
//! memory over resource JSON (exact for every filter), and in
//! `crate::store::scim_query` a translation of the indexed subset to SQL.
//!
//! Filters come from clients holding a token, so their size is bounded
//! ([`limits`]) before anything recurses over them: the parser, the
//! evaluator, the SQL translation and `Drop` all recurse at most
//! [`limits::MAX_DEPTH`] levels, and `and`/`or` chains are flat lists.

mod eval;
pub mod limits;
mod parse;

pub use eval::{matches, values_at};
pub use parse::{parse, parse_attr_path};

/// `urn:...:User:name.givenName` → uri, `name`, `givenName`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    pub uri: Option<String>,
    pub attr: String,
    pub sub: Option<String>,
}

impl AttrPath {
    /// Lower-cased `attr` or `attr.sub`, for matching attribute metadata.
    pub fn key(&self) -> String {
        match &self.sub {
            Some(sub) => format!("{}.{}", self.attr, sub).to_ascii_lowercase(),
            None => self.attr.to_ascii_lowercase(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    fn parse(word: &str) -> Option<Self> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// All of at least two filters: `a and b and c` is one flat list, so a
    /// long chain adds no depth.
    And(Vec<Filter>),
    /// Any of at least two filters, flat like [`Filter::And`].
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Present(AttrPath),
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: serde_json::Value,
    },
    /// `emails[type eq "work"]`: some element of `attr` matches `filter`.
    ValuePath {
        attr: AttrPath,
        filter: Box<Filter>,
    },
}

/// A filter that cannot be parsed or is beyond [`limits`]; answered as 400
/// `invalidFilter`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter: {0}")]
pub struct FilterError(pub String);
